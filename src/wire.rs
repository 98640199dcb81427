//! Frames encoded once and shared by every recipient.
//!
//! Server frames are unmasked (RFC 6455 5.1), so a broadcast frame is the same bytes for
//! every connection. Each published message, relay and heartbeat ping is encoded once,
//! header and payload in one allocation, and every connection writes those bytes straight
//! to its socket: no per-connection copy, and no per-connection buffer that grows to the
//! largest message and keeps that memory afterwards (tungstenite's write buffer does).

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// A complete WebSocket frame, ready for the wire.
#[derive(Debug, Clone)]
pub struct WireFrame {
    encoded: Bytes,
    /// The same message, its payload a slice of `encoded` (for metrics and tests).
    message: Message,
}

impl WireFrame {
    /// Encodes a text, binary or ping message as one final frame.
    pub fn new(message: Message) -> Self {
        let frame = match &message {
            Message::Text(t) => {
                Frame::message(Bytes::from(t.clone()), OpCode::Data(Data::Text), true)
            }
            Message::Binary(b) => Frame::message(b.clone(), OpCode::Data(Data::Binary), true),
            Message::Ping(p) => Frame::ping(p.clone()),
            Message::Pong(p) => Frame::pong(p.clone()),
            // Close and raw frames are per-connection; tungstenite writes them.
            Message::Close(_) | Message::Frame(_) => Frame::ping(Bytes::new()),
        };
        let payload_len = frame.payload().len();
        let mut out = Vec::with_capacity(frame.len());
        // Formatting into a Vec cannot fail.
        let _ = frame.format(&mut out);
        let encoded = Bytes::from(out);
        let payload = encoded.slice(encoded.len() - payload_len..);
        let message = match message {
            // Already valid UTF-8: the conversion only re-checks it, once per broadcast.
            Message::Text(t) => payload
                .clone()
                .try_into()
                .map(Message::Text)
                .unwrap_or(Message::Text(t)),
            Message::Binary(_) => Message::Binary(payload),
            Message::Ping(_) => Message::Ping(payload),
            other => other,
        };
        Self { encoded, message }
    }

    /// The frame's bytes.
    pub fn encoded(&self) -> &Bytes {
        &self.encoded
    }

    /// The message it carries.
    pub fn message(&self) -> &Message {
        &self.message
    }
}

impl AsRef<WireFrame> for WireFrame {
    fn as_ref(&self) -> &WireFrame {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

    #[test]
    fn encodes_unmasked_final_frames_sharing_one_allocation() {
        for (msg, opcode) in [
            (Message::text("héllo"), 0x1),
            (Message::binary(vec![7u8; 70_000]), 0x2),
            (Message::Ping(Bytes::from_static(&[0, 1, 2])), 0x9),
        ] {
            let wire = WireFrame::new(msg.clone());
            let bytes = wire.encoded();
            assert_eq!(bytes[0], 0x80 | opcode, "FIN and opcode");
            assert_eq!(bytes[1] & 0x80, 0, "server frames are unmasked");
            let mut cursor = std::io::Cursor::new(bytes.as_ref());
            let (_, len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
            assert_eq!(len as usize, msg.len());
            assert_eq!(
                &bytes[cursor.position() as usize..],
                msg.clone().into_data().as_ref()
            );
            assert_eq!(wire.message(), &msg);
        }
    }
}
