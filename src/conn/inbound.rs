//! A client's message: heartbeat traffic goes to the heartbeat, the rest to the route's
//! action (`echo`, `relay`, `ignore`); read errors become the close RFC 6455 asks for.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::SinkExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{self, Instant};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message};

use super::session::Session;
use super::step::{Step, written};
use super::write::write;
use crate::close;
use crate::config::OnMessage;
use crate::fanout::Target;
use crate::heartbeat::{Heartbeat, Inbound, PeerBeat};
use tracing::debug;

/// Handles one client message.
pub(super) async fn inbound<S>(
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
                let relayed = prefixed(&s.settings.relay_prefix, msg);
                // Relay to a route always resolves; the receipt is not needed here.
                if let Err(err) = s.broker.publish(&target, relayed).await {
                    debug!(error = %err, "relay not delivered");
                }
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

/// Maps a read error to the close code RFC 6455 asks for.
pub(super) fn read_error(err: tungstenite::Error) -> Step {
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
