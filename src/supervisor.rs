//! One connection's life: welcome, inbound messages, fan-out, heartbeat and close.
//!
//! The loop `select!`s over cancel-safe futures only (cancellation, the heartbeat
//! deadline, the next client frame, the route's fan-out, the heartbeat pulse); writes
//! happen in arm bodies, each bounded by `write_timeout`. It knows nothing
//! strategy-specific: the [`Heartbeat`] it gets from the pulse classifies traffic and
//! [`PeerBeat`] keeps the liveness books.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use std::io::IoSlice;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::{self, Instant};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::debug;

use crate::broker::Broker;
use crate::close;
use crate::config::{OnMessage, RouteConfig, SlowConsumer};
use crate::heartbeat::{Heartbeat, Inbound, Liveness, PeerBeat, TickAction};
use crate::hub::{Conn, Feeds, Queued, Route, Target};
use crate::metrics::SlowAction;
use crate::vitals::Vitals;
use crate::wire::WireFrame;

/// Most queued messages written before one flush.
const BATCH: usize = 64;
/// Most queued bytes written before one flush: bounds a connection's write buffer.
const BATCH_BYTES: usize = 64 * 1024;
/// Most queued messages a `keep-latest` connection skips in one go.
const SKIP_LIMIT: usize = 4096;
/// How long a close waits for the peer's answer when the server closes for a fault.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Everything a connection needs, fixed at its handshake.
pub struct Session {
    /// Its registry entry (id, peer, cancellation).
    pub conn: Conn,
    /// The live route it belongs to.
    pub route: Arc<Route>,
    /// The route's settings when it connected (welcome, prefixes, handler).
    pub settings: Arc<RouteConfig>,
    /// Where relayed messages go.
    pub broker: Arc<dyn Broker>,
    /// Longest a write may block.
    pub write_timeout: Duration,
    /// Most bytes it may fall behind its route (`server.outbound_queue_bytes`).
    pub max_behind_bytes: u64,
    /// How long a shutdown close waits for the peer's answer.
    pub close_grace: Duration,
    /// The daemon's shutdown signal, to tell shutdown from a removed route.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// How a connection ended, for the log.
#[derive(Debug)]
pub struct Ended {
    /// Close code sent by the server, if it closed.
    pub code: Option<u16>,
    /// Why.
    pub reason: String,
}

enum Step {
    Continue,
    Close(u16, String, Duration),
    Gone(String),
    /// A write blocked for `write_timeout`: the client is not reading.
    Stuck(String),
}

/// How far a `disconnect` client fell behind.
enum Behind {
    Messages(u64),
    Bytes(u64),
}

/// Runs a connection until it closes. `feeds` were subscribed before the handshake was
/// answered, so nothing published after the client saw its 101 is missed.
///
/// A plain function around an `async move` block, not an `async fn`: an `async fn` keeps
/// its arguments and their moved-into locals side by side in every state (500 bytes more
/// per idle connection), while the block uses its captures in place.
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn supervise<S>(
    mut ws: WebSocketStream<S>,
    s: Session,
    mut feeds: Feeds,
) -> impl Future<Output = Ended>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    async move {
        let Feeds { outbound, pulse } = &mut feeds;
        // Reused for every batch: no allocation per delivery.
        let mut batch = Vec::new();
        let mut heartbeat = pulse.borrow_and_update().policy.clone();
        let mut beat = PeerBeat::default();
        let vitals = s.conn.vitals.clone();
        vitals.follow(heartbeat.as_ref());

        if let Some(welcome) = &s.settings.welcome {
            let welcome = Message::text(welcome.as_str());
            vitals.route().sent(&welcome);
            let step = Box::pin(write(&mut ws, [welcome], s.write_timeout)).await;
            if let Some(ended) = unwritten(step, &vitals) {
                return ended;
            }
        }

        let step = loop {
            let rule = heartbeat
                .as_ref()
                .map_or(Liveness::Never, |(_, h)| h.liveness());
            let deadline = beat.deadline();
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
                () = sleep_until(deadline) => Step::Close(
                    close::HEARTBEAT_TIMEOUT,
                    "heartbeat timeout".into(),
                    Duration::ZERO,
                ),
                frame = ws.next() => match frame {
                    None => Step::Gone("closed by peer".into()),
                    Some(Ok(msg)) => {
                        beat.on_frame(rule);
                        vitals.set_missed(beat.missed());
                        // Boxed, like the close below: cold paths whose state would otherwise
                        // enlarge every idle connection's task.
                        Box::pin(inbound(&mut ws, &s, heartbeat.as_ref().map(|(_, h)| h.as_ref()), &mut beat, msg)).await
                    }
                    Some(Err(err)) => read_error(err),
                },
                msg = outbound.recv() => {
                    let policy = s.settings.slow_consumer;
                    match msg {
                        Ok(first) => match take_batch(outbound, &s.route, first, policy, s.max_behind_bytes, &mut batch) {
                            Ok((dropped, left)) => {
                                skipped(&vitals, dropped, policy);
                                for queued in &batch {
                                    vitals.route().sent(queued.frame.message());
                                }
                                vitals.set_queue_depth(left);
                                let step = write_shared(&mut ws, &batch, s.write_timeout).await;
                                batch.clear();
                                step
                            }
                            Err(behind) => slow(behind, s.max_behind_bytes),
                        },
                        Err(RecvError::Lagged(n)) if policy == SlowConsumer::Disconnect => slow(Behind::Messages(n), s.max_behind_bytes),
                        Err(RecvError::Lagged(n)) => {
                            skipped(&vitals, n, policy);
                            Step::Continue
                        }
                        Err(RecvError::Closed) => {
                            Step::Close(close::GOING_AWAY, "route removed from config".into(), s.close_grace)
                        }
                    }
                }
                changed = pulse.changed() => match changed {
                    Err(_) => Step::Close(close::GOING_AWAY, "route removed from config".into(), s.close_grace),
                    Ok(()) => {
                        let now = pulse.borrow_and_update().clone();
                        let same_rule = now.policy.as_ref().map(|(_, h)| (h.strategy(), h.liveness()))
                            == heartbeat.as_ref().map(|(_, h)| (h.strategy(), h.liveness()));
                        if !same_rule {
                            beat.reset();
                        }
                        heartbeat = now.policy;
                        vitals.follow(heartbeat.as_ref());
                        match (now.ping, &heartbeat) {
                            (Some(ping), Some((_, h))) => match beat.on_tick(h.liveness(), ping.token, Instant::now().into_std()) {
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
                if code == close::SLOW_CONSUMER {
                    vitals.route().slow(SlowAction::Disconnect);
                }
                if code == close::HEARTBEAT_TIMEOUT {
                    vitals.timed_out();
                    debug!(
                        policy = heartbeat.as_ref().map(|(n, _)| n.as_ref()),
                        strategy = heartbeat.as_ref().map(|(_, h)| h.strategy().as_str()),
                        missed = beat.missed(),
                        last_rtt_ms = beat.last_rtt().map(|d| d.as_secs_f64() * 1e3),
                        "peer declared dead"
                    );
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

/// Fills `batch` with `first` and what else the route has queued for this connection, as
/// its policy says: up to [`BATCH`] frames or [`BATCH_BYTES`] bytes; for `keep-latest` only
/// the newest. A client more than `max_behind` bytes behind skips (`drop-oldest`) to within
/// it. Returns how many were skipped and how many are still queued after the batch;
/// `Err` means a `disconnect` client fell too far behind.
fn take_batch(
    rx: &mut broadcast::Receiver<Queued>,
    route: &Route,
    mut first: Queued,
    policy: SlowConsumer,
    max_behind: u64,
    batch: &mut Vec<Queued>,
) -> Result<(u64, usize), Behind> {
    let mut dropped = 0;
    // The bytes bound, checked once per batch: the rest of the batch is closer to the tail.
    // (keep-latest is never more than one message behind.)
    loop {
        let behind = route.bytes_after(&first);
        if behind <= max_behind || policy == SlowConsumer::KeepLatest {
            break;
        }
        if policy == SlowConsumer::Disconnect {
            return Err(Behind::Bytes(behind));
        }
        match rx.try_recv() {
            Ok(next) => {
                dropped += 1;
                first = next;
            }
            Err(TryRecvError::Lagged(n)) => dropped += n,
            // Counted but not yet queued by a concurrent publisher: nothing newer to take.
            Err(_) => break,
        }
    }
    let mut bytes = first.frame.encoded().len();
    batch.push(first);
    for _ in 0..SKIP_LIMIT {
        let full = batch.len() >= BATCH || bytes >= BATCH_BYTES;
        if full && policy != SlowConsumer::KeepLatest {
            break;
        }
        match rx.try_recv() {
            Ok(queued) => {
                if policy == SlowConsumer::KeepLatest {
                    dropped += batch.len() as u64;
                    batch.clear();
                    bytes = 0;
                }
                bytes += queued.frame.encoded().len();
                batch.push(queued);
            }
            Err(TryRecvError::Lagged(n)) if policy == SlowConsumer::Disconnect => {
                batch.clear();
                return Err(Behind::Messages(n));
            }
            Err(TryRecvError::Lagged(n)) => dropped += n,
            // Drained: nothing left, known without asking the channel.
            Err(_) => return Ok((dropped, 0)),
        }
    }
    // Stopped by the batch cap: only now is the backlog worth counting. `len()` locks the
    // channel's tail, which every publish takes too, so it stays off the common path.
    Ok((dropped, rx.len()))
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

/// Counts messages a `drop-oldest` or `keep-latest` client skipped.
fn skipped(vitals: &Vitals, dropped: u64, policy: SlowConsumer) {
    if dropped > 0 {
        vitals.route().slow(SlowAction::Skip);
        vitals.route().dropped(dropped);
        debug!(dropped, ?policy, "slow consumer: skipped messages");
    }
}

/// Writes shared, pre-encoded frames straight to the socket (one syscall for a batch when
/// the stream supports vectored writes), after anything tungstenite itself has queued.
async fn write_shared<S, F>(ws: &mut WebSocketStream<S>, frames: &[F], limit: Duration) -> Step
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: AsRef<WireFrame>,
{
    let result = time::timeout(limit, async {
        // tungstenite's own frames (pongs, echoes) go first, so frames never interleave.
        ws.flush().await.map_err(|e| e.to_string())?;
        let io = ws.get_mut();
        let written = match frames {
            [one] => io.write_all(one.as_ref().encoded()).await,
            many => write_all_vectored(io, many).await,
        };
        written.map_err(|e| e.to_string())?;
        io.flush().await.map_err(|e| e.to_string())
    })
    .await;
    written(result, limit)
}

async fn write_all_vectored<W: AsyncWrite + Unpin, F: AsRef<WireFrame>>(
    io: &mut W,
    frames: &[F],
) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = frames
        .iter()
        .map(|f| IoSlice::new(f.as_ref().encoded()))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = io.write_vectored(rest).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(at) => time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn slow(behind: Behind, max_bytes: u64) -> Step {
    let how_far = match behind {
        Behind::Messages(n) => format!("{n} messages"),
        Behind::Bytes(n) => format!("{n} bytes (limit {max_bytes})"),
    };
    Step::Close(
        close::SLOW_CONSUMER,
        format!("slow consumer: fell {how_far} behind; read faster or reconnect"),
        Duration::ZERO,
    )
}

/// Handles one client message.
async fn inbound<S>(
    ws: &mut WebSocketStream<S>,
    s: &Session,
    heartbeat: Option<&dyn Heartbeat>,
    beat: &mut PeerBeat,
    msg: Message,
) -> Step
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match heartbeat.map_or(Inbound::Pass, |h| h.inspect(&msg)) {
        Inbound::Pong(token) => {
            let rtt = beat.on_pong(token, Instant::now().into_std());
            s.conn.vitals.pong(rtt, beat.missed());
            return Step::Continue;
        }
        Inbound::Reply(reply) => return write(ws, [reply], s.write_timeout).await,
        Inbound::Pass => {}
    }
    match msg {
        // tungstenite queued the Pong; flush it now rather than with the next write.
        Message::Ping(_) => written(
            time::timeout(s.write_timeout, ws.flush()).await,
            s.write_timeout,
        ),
        Message::Text(_) | Message::Binary(_) => match s.settings.on_message {
            OnMessage::Ignore => {
                s.conn.vitals.route().received(&msg);
                Step::Continue
            }
            OnMessage::Echo => {
                s.conn.vitals.route().received(&msg);
                let echo = prefixed(&s.settings.echo_prefix, msg);
                s.conn.vitals.route().sent(&echo);
                write(ws, [echo], s.write_timeout).await
            }
            OnMessage::Relay => {
                s.conn.vitals.route().received(&msg);
                let target = Target::Route(s.route.path.clone());
                // Relay to a route always resolves; the count is not needed here.
                let _ = s
                    .broker
                    .publish(&target, prefixed(&s.settings.relay_prefix, msg));
                Step::Continue
            }
        },
        // A client Close is answered by tungstenite; the stream then ends.
        Message::Pong(_) | Message::Close(_) | Message::Frame(_) => Step::Continue,
    }
}

/// `prefix` + `msg`, keeping text as text and binary as binary; no copy when `prefix` is empty.
fn prefixed(prefix: &str, msg: Message) -> Message {
    if prefix.is_empty() {
        return msg;
    }
    match msg {
        Message::Text(text) => Message::text(format!("{prefix}{}", text.as_str())),
        Message::Binary(data) => {
            let mut out = BytesMut::with_capacity(prefix.len() + data.len());
            out.extend_from_slice(prefix.as_bytes());
            out.extend_from_slice(&data);
            Message::Binary(Bytes::from(out))
        }
        other => other,
    }
}

/// Writes `msgs` then flushes once, within `limit`.
async fn write<S, I>(ws: &mut WebSocketStream<S>, msgs: I, limit: Duration) -> Step
where
    S: AsyncRead + AsyncWrite + Unpin,
    I: IntoIterator<Item = Message>,
{
    let result = time::timeout(limit, async {
        for msg in msgs {
            ws.feed(msg).await?;
        }
        ws.flush().await
    })
    .await;
    written(result, limit)
}

/// The step after a write bounded by `limit`.
fn written<E: std::fmt::Display>(
    result: Result<Result<(), E>, time::error::Elapsed>,
    limit: Duration,
) -> Step {
    match result {
        Ok(Ok(())) => Step::Continue,
        Ok(Err(err)) => Step::Gone(format!("write failed: {err}")),
        Err(_) => Step::Stuck(format!(
            "write blocked for more than {limit:?}: client not reading"
        )),
    }
}

/// Maps a read error to the close code RFC 6455 asks for.
fn read_error(err: tungstenite::Error) -> Step {
    use tungstenite::Error as E;
    let (code, reason) = match &err {
        E::ConnectionClosed | E::AlreadyClosed => return Step::Gone("closed by peer".into()),
        E::Io(e) => return Step::Gone(format!("read failed: {e}")),
        E::Protocol(p) => (close::PROTOCOL_ERROR, format!("protocol error: {p}")),
        E::Capacity(tungstenite::error::CapacityError::MessageTooLong { size, max_size }) => (
            close::TOO_BIG,
            format!("message too big: {size} bytes, limit {max_size}"),
        ),
        E::Capacity(c) => (close::TOO_BIG, c.to_string()),
        E::Utf8(_) => (
            close::INVALID_PAYLOAD,
            "text message is not valid UTF-8".into(),
        ),
        other => (close::PROTOCOL_ERROR, other.to_string()),
    };
    Step::Close(code, reason, Duration::ZERO)
}

/// Sends a close frame and waits up to `wait` for the peer's, then gives up the socket.
async fn close_with<S>(ws: &mut WebSocketStream<S>, code: u16, reason: &str, wait: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = time::timeout(wait, async {
        if ws.close(Some(close::frame(code, reason))).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}
