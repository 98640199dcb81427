//! Frames encoded once and shared by every recipient.
//!
//! Server frames are unmasked (RFC 6455 5.1), so a broadcast frame is the same bytes for
//! every connection. Each published message, relay and heartbeat ping is encoded once,
//! header and payload in one allocation, and every connection writes those bytes straight
//! to its socket: no per-connection copy, and no per-connection buffer that grows to the
//! largest message and keeps that memory afterwards (tungstenite's write buffer does).

use std::sync::Arc;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// A published or relayed message, as the publisher typed it: what a raw route sends as
/// one frame, and what an envelope route wraps (JSON inline, text as a string, binary as
/// base64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// UTF-8 text.
    Text(Utf8Bytes),
    /// UTF-8 text known to be one JSON value (checked at publish).
    Json(Utf8Bytes),
    /// Bytes.
    Binary(Bytes),
}

impl Payload {
    /// The message a raw route sends.
    pub fn message(&self) -> Message {
        match self {
            Self::Text(t) | Self::Json(t) => Message::Text(t.clone()),
            Self::Binary(b) => Message::Binary(b.clone()),
        }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Self::Text(t) | Self::Json(t) => t.len(),
            Self::Binary(b) => b.len(),
        }
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Message> for Payload {
    /// A client's text or binary message (anything else is carried as empty text).
    fn from(msg: Message) -> Self {
        match msg {
            Message::Text(t) => Self::Text(t),
            Message::Binary(b) => Self::Binary(b),
            _ => Self::Text(Utf8Bytes::default()),
        }
    }
}

/// A complete WebSocket frame, ready for the wire. Cloning it (once per recipient) is one
/// reference count: a queued frame is a pointer, whatever the message.
#[derive(Debug, Clone)]
pub struct WireFrame(Arc<Encoded>);

#[derive(Debug)]
struct Encoded {
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
        Self(Arc::new(Encoded { encoded, message }))
    }

    /// A frame [`WireFrame::new`] encoded from a text message, read back (from the history
    /// file): `None` unless `encoded` is exactly one final, unmasked text frame of UTF-8.
    pub fn decode_text(encoded: Bytes) -> Option<Self> {
        let mut cursor = std::io::Cursor::new(encoded.as_ref());
        let (header, len) = FrameHeader::parse(&mut cursor).ok()??;
        let start = usize::try_from(cursor.position()).ok()?;
        let ok = header.is_final
            && header.mask.is_none()
            && !header.rsv1
            && !header.rsv2
            && !header.rsv3
            && header.opcode == OpCode::Data(Data::Text)
            && u64::try_from(encoded.len() - start).ok() == Some(len);
        if !ok {
            return None;
        }
        let text = Utf8Bytes::try_from(encoded.slice(start..)).ok()?;
        Some(Self(Arc::new(Encoded {
            encoded,
            message: Message::Text(text),
        })))
    }

    /// The frame's bytes.
    pub fn encoded(&self) -> &Bytes {
        &self.0.encoded
    }

    /// The message it carries.
    pub fn message(&self) -> &Message {
        &self.0.message
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

    #[test]
    fn text_frames_read_back_and_anything_else_is_refused() {
        let frame = WireFrame::new(Message::text("héllo"));
        let back = WireFrame::decode_text(frame.encoded().clone()).unwrap();
        assert_eq!(back.message(), &Message::text("héllo"));
        let binary = WireFrame::new(Message::binary(vec![1u8, 2]));
        assert!(WireFrame::decode_text(binary.encoded().clone()).is_none());
        let whole = frame.encoded();
        assert!(WireFrame::decode_text(whole.slice(..whole.len() - 1)).is_none());
        let mut longer = whole.to_vec();
        longer.push(b'x');
        assert!(WireFrame::decode_text(Bytes::from(longer)).is_none());
        assert!(WireFrame::decode_text(Bytes::new()).is_none());
    }

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
