//! Close codes heartwire sends, in one place (the README's table mirrors this file).

use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// 1001: the server is shutting down (reason `server shutting down; reconnect in N ms`,
/// see [`crate::drain`]), or the route was removed from the config.
pub const GOING_AWAY: u16 = 1001;
/// 1002: the client broke RFC 6455 (unmasked frame, reserved bits, bad opcode, ...).
pub const PROTOCOL_ERROR: u16 = 1002;
/// 1007: a text message was not valid UTF-8.
pub const INVALID_PAYLOAD: u16 = 1007;
/// 1008 (policy violation): the client read too slowly and fell behind its route's
/// queue, or sent faster than its route's `client_rate`.
pub const POLICY: u16 = 1008;
/// 1009: a message or frame was larger than `server.max_message_size`.
pub const TOO_BIG: u16 = 1009;
/// 4000: the client stopped answering heartbeats.
pub const HEARTBEAT_TIMEOUT: u16 = 4000;
/// 4001: the connection's token expired and no fresh one came (`{"token": "..."}`), or
/// the token it connected or refreshed with had expired already. A fresh token fixes it.
pub const TOKEN_EXPIRED: u16 = 4001;
/// 4003: refused, and a retry is refused again, so clients stop: a token refused for
/// another reason than its age (at the handshake of a client that offered `heartwire`, or
/// on refresh; mapped by `AuthError::close`), or an Origin the route's `origins` do not
/// allow (at the handshake of a client that offered `heartwire`). The reason says why and
/// what to change.
pub const REFUSED: u16 = 4003;
/// 4009: the backend disconnected it (`POST <publish path>/disconnect`): logout, ban.
/// Clients do not reconnect.
pub const DISCONNECTED: u16 = 4009;

/// The most a close reason holds, in bytes (a control frame's 125 less the code's 2).
pub const MAX_REASON: usize = 123;

/// A close frame with `code` and a reason (truncated to [`MAX_REASON`] bytes).
pub fn frame(code: u16, reason: &str) -> CloseFrame {
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    CloseFrame {
        code: CloseCode::from(code),
        reason: reason[..end].to_owned().into(),
    }
}
