//! One connection's life: welcome, inbound messages, fan-out, heartbeat and close.
//!
//! The loop `select!`s over cancel-safe futures only (cancellation, the heartbeat
//! deadline, the next client frame, its mailbox, the heartbeat pulse); writes
//! happen in arm bodies, each bounded by `write_timeout`. It knows nothing
//! strategy-specific: the policy it follows (from the route's pulse) classifies traffic
//! and [`PeerBeat`] keeps the liveness books.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::{self, Instant};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tracing::debug;

use super::inbound::{inbound, read_error};
use super::outbound::{ended, skipped};
use super::refresh::TokenClock;
use super::session::{Ended, Session};
use super::step::Step;
use super::write::{close_with, write, write_shared};
use crate::close;
use crate::config::RouteFormat;
use crate::envelope;
use crate::fanout::Vitals;
use crate::heartbeat::{Active, PeerBeat, Pulse, TickAction};
use crate::metrics::SlowAction;

/// The close reason of 4001.
const EXPIRED: &str = "token expired: send {\"token\": \"<fresh>\"} before it runs out, or reconnect with a fresh token";

/// How long a close waits for the peer's answer when the server closes for a fault.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Runs a connection until it closes. Its mailbox and `pulse` were subscribed before the
/// handshake was answered, so nothing published after the client saw its 101 is missed.
///
/// A plain function around an `async move` block, not an `async fn`: an `async fn` keeps
/// its arguments and their moved-into locals side by side in every state (500 bytes more
/// per idle connection), while the block uses its captures in place.
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn supervise<S>(
    mut ws: WebSocketStream<S>,
    s: Session,
    mut pulse: watch::Receiver<Pulse>,
) -> impl Future<Output = Ended>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    async move {
        // Reused for every batch: no allocation per delivery.
        let mut batch = Vec::new();
        let (mut generation, mut heartbeat) = {
            let now = pulse.borrow_and_update();
            (now.generation, now.policy.clone())
        };
        let mut beat = PeerBeat::default();
        let mut token = TokenClock {
            expires: s.expires,
            refresh_limit: None,
        };
        // The `client_rate` limit's state (see `rate::admit`).
        let mut sent_limit = None;
        let vitals = s.conn.vitals.clone();
        vitals.follow(heartbeat.as_deref());

        if let Some(welcome) = &s.settings.welcome {
            let welcome = envelope::wrap(
                Message::text(welcome.as_str()),
                s.settings.format == RouteFormat::Envelope,
            );
            vitals.route().sent(&welcome);
            let step = Box::pin(write(&mut ws, [welcome], s.write_timeout)).await;
            if let Some(ended) = unwritten(step, &vitals) {
                return ended;
            }
        }

        let step = loop {
            // One timer for both deadlines: a second would enlarge every connection.
            let deadline = earliest(beat.deadline(), token.expires);
            let step = tokio::select! {
                biased;
                () = s.conn.token.cancelled() => Step::Close(
                    close::GOING_AWAY,
                    // A drain sets a reason with a reconnect hint before cancelling.
                    match vitals.take_farewell() {
                        Some(reason) => reason,
                        None if s.shutdown.is_cancelled() => "server shutting down".into(),
                        None => "route removed from config".into(),
                    },
                    s.close_grace,
                ),
                // Built per turn on purpose: when a pong clears the deadline the timer is
                // dropped with it, rather than left to wake an idle connection for nothing.
                () = sleep_until(deadline) => if token.expires.is_some_and(|at| at <= Instant::now().into_std()) {
                    // Counted here, not by its code: a refresh with an expired token closes
                    // with 4001 too, and is counted as a refusal.
                    vitals.route().token_expired();
                    Step::Close(close::TOKEN_EXPIRED, EXPIRED.into(), Duration::ZERO)
                } else {
                    Step::Close(close::HEARTBEAT_TIMEOUT, "heartbeat timeout".into(), Duration::ZERO)
                },
                frame = ws.next() => match frame {
                    None => Step::Gone("closed by peer".into()),
                    Some(Ok(msg)) => {
                        if let Some(active) = &heartbeat {
                            beat.on_frame(active.policy.liveness());
                            vitals.set_missed(beat.missed());
                        }
                        // Boxed, like the close below: cold paths whose state would otherwise
                        // enlarge every idle connection's task.
                        Box::pin(inbound(&mut ws, &s, heartbeat.as_ref().map(|a| a.heartbeat.as_ref()), &mut beat, &mut token, &mut sent_limit, msg)).await
                    }
                    Some(Err(err)) => read_error(err),
                },
                () = s.conn.mailbox.ready() => {
                    let limits = s.conn.mailbox.limits();
                    let taken = s.conn.mailbox.take(&mut batch);
                    skipped(&vitals, taken.dropped, limits);
                    match taken.ending {
                        Some(ending) => ended(&vitals, ending, limits),
                        None if batch.is_empty() => Step::Continue,
                        None => {
                            for frame in &batch {
                                vitals.route().sent(frame.message());
                            }
                            vitals.set_queue_depth(taken.left);
                            let step = write_shared(&mut ws, &batch, s.write_timeout).await;
                            batch.clear();
                            step
                        }
                    }
                }
                changed = pulse.changed() => match changed {
                    Err(_) => Step::Close(close::GOING_AWAY, "route removed from config".into(), s.close_grace),
                    Ok(()) => {
                        let (now, ping) = {
                            let p = pulse.borrow_and_update();
                            (p.generation, p.ping.clone())
                        };
                        // A new generation is a changed policy (decided by the schedule):
                        // forget outstanding pings and follow it.
                        if now != generation {
                            generation = now;
                            heartbeat = pulse.borrow().policy.clone();
                            beat.reset();
                            vitals.follow(heartbeat.as_deref());
                        }
                        match (ping, &heartbeat) {
                            (Some(ping), Some(active)) => match beat.on_tick(active.policy.liveness(), ping.token, Instant::now().into_std()) {
                                TickAction::Send => {
                                    vitals.ping_sent(ping.frame.message(), beat.missed());
                                    // Boxed: once per interval, and inline it would enlarge every idle connection.
                                    Box::pin(write_shared(&mut ws, std::slice::from_ref(&ping.frame), s.write_timeout)).await
                                }
                                TickAction::Dead { missed } => Step::Close(
                                    close::HEARTBEAT_TIMEOUT,
                                    format!("heartbeat timeout: {missed} pings unanswered"),
                                    Duration::ZERO,
                                ),
                            },
                            _ => Step::Continue,
                        }
                    }
                },
            };
            if !matches!(step, Step::Continue) {
                break step;
            }
        };

        match step {
            Step::Close(code, reason, wait) => {
                if code == close::HEARTBEAT_TIMEOUT {
                    vitals.timed_out();
                    log_dead(heartbeat.as_deref(), &beat);
                }
                Box::pin(close_with(
                    &mut ws,
                    code,
                    &reason,
                    wait.max(CLOSE_WAIT.min(s.close_grace)),
                ))
                .await;
                Ended {
                    code: Some(code),
                    reason,
                }
            }
            other => unwritten(other, &vitals).unwrap_or(Ended {
                code: None,
                reason: String::new(),
            }),
        }
    }
}

fn log_dead(active: Option<&Active>, beat: &PeerBeat) {
    debug!(
        policy = active.map(|a| &*a.name),
        strategy = active.map(|a| a.policy.strategy().as_str()),
        missed = beat.missed(),
        last_rtt_ms = beat.last_rtt().map(|d| d.as_secs_f64() * 1e3),
        "peer declared dead"
    );
}

/// How the connection ended if `step` is a failed write (`None` otherwise).
fn unwritten(step: Step, vitals: &Vitals) -> Option<Ended> {
    match step {
        Step::Gone(reason) => Some(Ended { code: None, reason }),
        Step::Stuck(reason) => {
            vitals.route().slow(SlowAction::WriteTimeout);
            Some(Ended { code: None, reason })
        }
        Step::Continue | Step::Close(..) => None,
    }
}

fn earliest(
    a: Option<std::time::Instant>,
    b: Option<std::time::Instant>,
) -> Option<std::time::Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(at) => time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
