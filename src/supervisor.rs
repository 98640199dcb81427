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
use crate::hub::{Conn, Feeds, Route, Target};
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
            if let Step::Gone(why) = Box::pin(write(&mut ws, [welcome], s.write_timeout)).await {
                return Ended {
                    code: None,
                    reason: why,
                };
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
                        Ok(first) => match take_batch(outbound, first, policy, &mut batch) {
                            Ok((dropped, left)) => {
                                if dropped > 0 {
                                    // keep-latest skips by design; drop-oldest only when the ring overflowed.
                                    if policy == SlowConsumer::DropOldest {
                                        vitals.route().overflowed();
                                    }
                                    debug!(dropped, ?policy, "slow consumer: skipped messages");
                                }
                                for frame in &batch {
                                    vitals.route().sent(frame.message());
                                }
                                vitals.set_queue_depth(left);
                                let step = write_shared(&mut ws, &batch, s.write_timeout).await;
                                batch.clear();
                                step
                            }
                            Err(lagged) => slow(lagged),
                        },
                        Err(RecvError::Lagged(n)) if policy == SlowConsumer::Disconnect => slow(n),
                        Err(RecvError::Lagged(n)) => {
                            vitals.route().overflowed();
                            debug!(dropped = n, ?policy, "slow consumer: skipped messages");
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
                    vitals.route().overflowed();
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
            Step::Gone(reason) => Ended { code: None, reason },
            Step::Continue => Ended {
                code: None,
                reason: String::new(),
            },
        }
    }
}

/// Fills `batch` with `first` and what else the route has queued for this connection, as
/// its policy says: up to [`BATCH`] frames or [`BATCH_BYTES`] bytes; for `keep-latest` only
/// the newest. Returns how many were skipped and how many are still queued after the batch;
/// `Err(lagged)` means a `disconnect` client fell behind.
fn take_batch(
    rx: &mut broadcast::Receiver<WireFrame>,
    first: WireFrame,
    policy: SlowConsumer,
    batch: &mut Vec<WireFrame>,
) -> Result<(u64, usize), u64> {
    let mut bytes = first.encoded().len();
    let mut dropped = 0;
    batch.push(first);
    for _ in 0..SKIP_LIMIT {
        let full = batch.len() >= BATCH || bytes >= BATCH_BYTES;
        if full && policy != SlowConsumer::KeepLatest {
            break;
        }
        match rx.try_recv() {
            Ok(frame) => {
                if policy == SlowConsumer::KeepLatest {
                    dropped += batch.len() as u64;
                    batch.clear();
                    bytes = 0;
                }
                bytes += frame.encoded().len();
                batch.push(frame);
            }
            Err(TryRecvError::Lagged(n)) if policy == SlowConsumer::Disconnect => {
                batch.clear();
                return Err(n);
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

/// Writes shared, pre-encoded frames straight to the socket (one syscall for a batch when
/// the stream supports vectored writes), after anything tungstenite itself has queued.
async fn write_shared<S>(ws: &mut WebSocketStream<S>, frames: &[WireFrame], limit: Duration) -> Step
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let result = time::timeout(limit, async {
        // tungstenite's own frames (pongs, echoes) go first, so frames never interleave.
        ws.flush().await.map_err(|e| e.to_string())?;
        let io = ws.get_mut();
        let written = match frames {
            [one] => io.write_all(one.encoded()).await,
            many => write_all_vectored(io, many).await,
        };
        written.map_err(|e| e.to_string())?;
        io.flush().await.map_err(|e| e.to_string())
    })
    .await;
    written(result, limit)
}

async fn write_all_vectored<W: AsyncWrite + Unpin>(
    io: &mut W,
    frames: &[WireFrame],
) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = frames.iter().map(|f| IoSlice::new(f.encoded())).collect();
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

fn slow(lagged: u64) -> Step {
    Step::Close(
        close::SLOW_CONSUMER,
        format!("slow consumer: fell {lagged} messages behind; read faster or reconnect"),
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
        Message::Ping(_) => match time::timeout(s.write_timeout, ws.flush()).await {
            Ok(Ok(())) => Step::Continue,
            _ => Step::Gone("write failed".into()),
        },
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
        Err(_) => Step::Gone(format!(
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
