//! The envelope format: what a route with `format = "envelope"` sends instead of the bare
//! message. Every frame is one JSON object with a `type`:
//!
//! - `{"type":"message","channel":"news","offset":42,"epoch":"k3j9x2","data":...}`: a
//!   message; `data` is the JSON a publisher posted as JSON, else a string; a binary
//!   payload comes as `"data_base64"` instead. `offset` and `epoch` only on channels with
//!   history, `channel` only on messages published to channels.
//! - `{"type":"position","channel":"news","epoch":"k3j9x2","offset":41, ...}`: where a
//!   channel with history stands when the connection opens (the offset of its last
//!   message, 0 if none), and how a recovery went (`"recovered":true,"replayed":N`, or
//!   `"recovered":false,"reason":"epoch_changed"`).
//!
//! Each frame is encoded once and shared by every subscriber, like a raw one.

use std::fmt::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio_tungstenite::tungstenite::Message;

use crate::wire::{Payload, WireFrame};

/// Where a message sits in its channel's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At<'a> {
    /// The history's epoch: changes only when the history is lost.
    pub epoch: &'a str,
    /// The message's offset (1, 2, ...), or for a position the offset of the last message.
    pub offset: u64,
}

/// Why a recovery could not replay what the client missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// The history the client saw is gone (a restart without `history.dir`, eviction of a
    /// whole channel, or a position from somewhere else).
    EpochChanged,
    /// Messages it missed have left the history (`history_size`, `history_ttl`, or the
    /// global `history.max_bytes`).
    WindowExceeded,
    /// The connection does not hold that channel, or the channel keeps no history.
    UnknownChannel,
}

impl Miss {
    /// Every reason, for metrics.
    pub const ALL: [Miss; 3] = [
        Self::EpochChanged,
        Self::WindowExceeded,
        Self::UnknownChannel,
    ];

    /// As sent and counted.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EpochChanged => "epoch_changed",
            Self::WindowExceeded => "window_exceeded",
            Self::UnknownChannel => "unknown_channel",
        }
    }
}

/// What a position frame says about recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// The client asked for none.
    NotAsked,
    /// Every missed message follows, this many.
    Replayed(usize),
    /// Nothing is replayed: the app should reload its state.
    Failed(Miss),
}

/// A message frame.
pub fn message(channel: Option<&str>, at: Option<At<'_>>, payload: &Payload) -> WireFrame {
    WireFrame::new(Message::text(message_text(channel, at, payload)))
}

/// A message frame's JSON text.
fn message_text(channel: Option<&str>, at: Option<At<'_>>, payload: &Payload) -> String {
    let mut out = String::with_capacity(payload.len() + 96);
    out.push_str(r#"{"type":"message""#);
    if let Some(channel) = channel {
        field_str(&mut out, "channel", channel);
    }
    if let Some(at) = at {
        let _ = write!(out, r#","offset":{}"#, at.offset);
        field_str(&mut out, "epoch", at.epoch);
    }
    match payload {
        Payload::Json(json) => {
            out.push_str(r#","data":"#);
            out.push_str(json.as_str());
        }
        Payload::Text(text) => field_str(&mut out, "data", text.as_str()),
        Payload::Binary(bytes) => {
            out.push_str(r#","data_base64":""#);
            STANDARD.encode_string(bytes, &mut out);
            out.push('"');
        }
    }
    out.push('}');
    out
}

/// `msg` as a route with `envelope` sends it: wrapped as a message without channel when
/// set (a welcome, an echo), else as it is.
pub fn wrap(msg: Message, envelope: bool) -> Message {
    if !envelope {
        return msg;
    }
    Message::text(message_text(None, None, &Payload::from(msg)))
}

/// A position frame for `channel`: `at` is where it stands (`None` for an unknown channel).
pub fn position(channel: &str, at: Option<At<'_>>, recovery: Recovery) -> WireFrame {
    let mut out = String::with_capacity(128);
    out.push_str(r#"{"type":"position""#);
    field_str(&mut out, "channel", channel);
    if let Some(at) = at {
        field_str(&mut out, "epoch", at.epoch);
        let _ = write!(out, r#","offset":{}"#, at.offset);
    }
    match recovery {
        Recovery::NotAsked => {}
        Recovery::Replayed(n) => {
            let _ = write!(out, r#","recovered":true,"replayed":{n}"#);
        }
        Recovery::Failed(miss) => {
            let _ = write!(out, r#","recovered":false,"reason":"{}""#, miss.as_str());
        }
    }
    out.push('}');
    WireFrame::new(Message::text(out))
}

fn field_str(out: &mut String, key: &str, value: &str) {
    let _ = write!(out, r#","{key}":"#);
    // Serializing a str cannot fail.
    out.push_str(&serde_json::to_string(value).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use serde_json::{Value, json};

    use super::*;

    fn parsed(frame: &WireFrame) -> Value {
        serde_json::from_str(frame.message().to_text().unwrap()).unwrap()
    }

    #[test]
    fn messages_carry_json_inline_text_as_strings_and_binary_as_base64() {
        let at = Some(At {
            epoch: "k3j9",
            offset: 42,
        });
        let json = Payload::Json(r#"{"n": [1, 2]}"#.into());
        assert_eq!(
            parsed(&message(Some("news"), at, &json)),
            json!({"type": "message", "channel": "news", "offset": 42, "epoch": "k3j9", "data": {"n": [1, 2]}})
        );
        let text = Payload::Text("say \"hi\"\n".into());
        assert_eq!(
            parsed(&message(None, None, &text)),
            json!({"type": "message", "data": "say \"hi\"\n"})
        );
        let binary = Payload::Binary(Bytes::from_static(&[0, 255, 7]));
        assert_eq!(
            parsed(&message(Some("b"), None, &binary)),
            json!({"type": "message", "channel": "b", "data_base64": "AP8H"})
        );
    }

    #[test]
    fn positions_say_how_recovery_went() {
        let at = Some(At {
            epoch: "e1",
            offset: 7,
        });
        assert_eq!(
            parsed(&position("news", at, Recovery::NotAsked)),
            json!({"type": "position", "channel": "news", "epoch": "e1", "offset": 7})
        );
        assert_eq!(
            parsed(&position("news", at, Recovery::Replayed(3))),
            json!({"type": "position", "channel": "news", "epoch": "e1", "offset": 7, "recovered": true, "replayed": 3})
        );
        assert_eq!(
            parsed(&position("x", None, Recovery::Failed(Miss::UnknownChannel))),
            json!({"type": "position", "channel": "x", "recovered": false, "reason": "unknown_channel"})
        );
    }
}
