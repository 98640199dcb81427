//! A client's message: heartbeat traffic goes to the heartbeat, a client's `{"ping"}` is
//! answered, the rest goes to the route's action (`echo`, `relay`, `ignore`); read errors
//! become the close RFC 6455 asks for.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::SinkExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{self, Instant};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message};

use super::rate::admit;
use super::refresh::{REFRESH_BURST, Refresh, TokenClock, refresh};
use super::session::Session;
use super::step::{Step, written};
use super::write::write;
use crate::close;
use crate::config::{OnMessage, RouteFormat};
use crate::envelope;
use crate::fanout::Target;
use crate::heartbeat::{Heartbeat, Inbound, PeerBeat, client_ping};
use crate::wire::Payload;
use tracing::debug;

/// Handles one client message.
pub(super) async fn inbound<S>(
    ws: &mut WebSocketStream<S>,
    s: &Session,
    heartbeat: Option<&dyn Heartbeat>,
    beat: &mut PeerBeat,
    token: &mut TokenClock,
    sent_limit: &mut Option<std::time::Instant>,
    msg: Message,
) -> Step
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let rate = s.settings.client_rate;
    if rate > 0 {
        let (every, now) = (Duration::from_secs(1) / rate, Instant::now().into_std());
        if !admit(sent_limit, now, every, rate) {
            s.conn.vitals.route().too_fast();
            let reason =
                format!("sent over {rate} messages in a second (route client_rate): slow down");
            return Step::Close(close::POLICY, reason, Duration::ZERO);
        }
    }
    match heartbeat.map_or(Inbound::Pass, |h| h.inspect(&msg)) {
        Inbound::Pong(token) => {
            let rtt = beat.on_pong(token, Instant::now().into_std());
            s.conn.vitals.pong(rtt, beat.missed());
            return Step::Continue;
        }
        Inbound::Pass => {}
    }
    // Browsers cannot send Ping frames: their `{"ping": X}` gets `{"pong": X}`, flushed at once.
    if s.settings.client_pings
        && let Some(reply) = client_ping(&msg)
    {
        return write(ws, [reply], s.write_timeout).await;
    }
    if let Message::Text(text) = &msg {
        match refresh(s, text.as_str(), &mut token.refresh_limit) {
            Refresh::NotOne => {}
            Refresh::Renewed(at) => {
                token.expires = at;
                return Step::Continue;
            }
            Refresh::TooSoon => {
                s.conn.vitals.route().auth_refused("too_soon");
                debug!("token refresh refused: over the rate limit");
                let reason = format!(
                    "token refreshed over {REFRESH_BURST} times at once or once a second: refresh shortly before expiry"
                );
                return Step::Close(close::REFUSED, reason, Duration::ZERO);
            }
            Refresh::Refused(e) => {
                s.conn.vitals.route().auth_refused(e.label());
                debug!(reason = e.label(), "token refresh refused: {e}");
                let (code, reason) = e.close(&e.to_string());
                return Step::Close(code, reason, Duration::ZERO);
            }
        }
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
                let echo = envelope::wrap(echo, s.settings.format == RouteFormat::Envelope);
                s.conn.vitals.route().sent(&echo);
                write(ws, [echo], s.write_timeout).await
            }
            OnMessage::Relay => {
                s.conn.vitals.route().received(&msg);
                // To the sender's channels: the route's channel unless it names others.
                let target =
                    Target::Channels(s.conn.channels.iter().map(|c| c.to_string()).collect());
                let relayed = prefixed(&s.settings.relay_prefix, msg);
                // The receipt is not needed here.
                if let Err(err) = s.broker.publish(&target, Payload::from(relayed)).await {
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

/// Why a peer that vanished without the closing handshake is gone: it ended the stream
/// (EOF, or a FIN mid-frame).
pub(super) const NO_CLOSE_FRAME: &str = "closed without a close frame";
/// The same, when the peer's TCP stack reset the connection.
pub(super) const RESET: &str = "connection reset, no close frame";

/// Maps a read error to the close code RFC 6455 asks for, or to [`Step::Gone`] when the
/// peer has left and there is nobody to send a close frame to.
pub(super) fn read_error(err: tungstenite::Error) -> Step {
    use std::io::ErrorKind;
    use tungstenite::Error as E;
    use tungstenite::error::ProtocolError;
    let (code, reason) = match &err {
        E::ConnectionClosed | E::AlreadyClosed => return Step::Gone("closed by peer".into()),
        // tungstenite reports a stream that ends before a close frame as a protocol error;
        // it is a departure (a killed tab, a dropped network), not a broken client, and
        // answering it with 1002 would only wait on a dead socket.
        E::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            return Step::Gone(NO_CLOSE_FRAME.into());
        }
        E::Io(e)
            if matches!(
                e.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
            ) =>
        {
            return Step::Gone(RESET.into());
        }
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

#[cfg(test)]
mod tests {
    use std::io;

    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    use tokio_tungstenite::tungstenite::protocol::Role;

    use super::*;

    fn gone(step: Step) -> String {
        match step {
            Step::Gone(reason) => reason,
            Step::Close(code, reason, _) => panic!("closed with {code} {reason:?}, not gone"),
            Step::Continue | Step::Stuck(_) => panic!("neither gone nor closed"),
        }
    }

    #[test]
    fn a_peer_that_vanishes_is_gone_not_a_protocol_error() {
        use tungstenite::Error as E;
        let cases = [
            (
                E::Protocol(ProtocolError::ResetWithoutClosingHandshake),
                NO_CLOSE_FRAME,
            ),
            (E::Io(io::ErrorKind::ConnectionReset.into()), RESET),
            (E::Io(io::ErrorKind::ConnectionAborted.into()), RESET),
            (E::Io(io::ErrorKind::BrokenPipe.into()), RESET),
            (E::ConnectionClosed, "closed by peer"),
        ];
        for (err, want) in cases {
            let shown = err.to_string();
            assert_eq!(gone(read_error(err)), want, "for {shown}");
        }
        // A real protocol violation still gets 1002.
        match read_error(E::Protocol(ProtocolError::UnmaskedFrameFromClient)) {
            Step::Close(code, reason, _) => {
                assert_eq!(code, close::PROTOCOL_ERROR);
                assert!(reason.starts_with("protocol error:"), "{reason}");
            }
            _ => panic!("an unmasked frame must close with 1002"),
        }
    }

    /// What tungstenite itself reports when a client's stream ends without a close frame,
    /// between frames and in the middle of one.
    #[tokio::test]
    async fn eof_without_a_close_frame_maps_to_gone() {
        for sent in [&b""[..], &[0x81, 0x85, 1, 2][..]] {
            let (server, mut client) = tokio::io::duplex(64);
            let mut ws = WebSocketStream::from_raw_socket(server, Role::Server, None).await;
            client.write_all(sent).await.unwrap();
            drop(client);
            let err = ws
                .next()
                .await
                .expect("an error, not the end of the stream")
                .expect_err("no message was sent");
            assert_eq!(gone(read_error(err)), NO_CLOSE_FRAME, "after {sent:?}");
        }
    }
}
