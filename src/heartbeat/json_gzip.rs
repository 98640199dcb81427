//! Strategy `json-gzip`: the seed's application-level heartbeat.
//!
//! Every tick each connection gets a binary message, gzip of `{"ping": ms}`; the client
//! answers `{"pong": ms}` as text (or the same JSON gzip-compressed, as binary).
//!
//! The same JSON serves the other direction on every route: a browser, which cannot send
//! Ping frames, sends text `{"ping": X}` and gets `{"pong": X}` ([`client_ping`]; the route's
//! `client_pings` decides whether it is asked).

use std::io::{Read, Write};

use bytes::Bytes;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use super::strategy::{Heartbeat, Inbound};

/// Largest heartbeat JSON considered, compressed or not. A pong is about 25 bytes;
/// anything bigger is ordinary traffic, and a gzip bomb stops inflating here.
pub const MAX_BEAT_JSON: usize = 256;

/// gzip JSON pings and pongs (the rule for a dead peer is the policy's `max_missed`).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonGzip;

/// gzip of `{"ping": token}`, as the seed's `gzip.compress(json.dumps(...))`.
pub fn encode_ping(token: u64) -> Vec<u8> {
    let json = format!("{{\"ping\": {token}}}");
    let mut gz = GzEncoder::new(Vec::with_capacity(64), Compression::default());
    // Writing to a Vec cannot fail.
    let _ = gz.write_all(json.as_bytes());
    gz.finish().unwrap_or_default()
}

/// Inflates at most [`MAX_BEAT_JSON`] bytes; `None` if not gzip or larger than that.
fn gunzip_small(data: &[u8]) -> Option<Vec<u8>> {
    if !data.starts_with(&[0x1f, 0x8b]) || data.len() > MAX_BEAT_JSON {
        return None;
    }
    let mut out = Vec::with_capacity(64);
    let limit = u64::try_from(MAX_BEAT_JSON).ok()? + 1;
    GzDecoder::new(data)
        .take(limit)
        .read_to_end(&mut out)
        .ok()?;
    (out.len() <= MAX_BEAT_JSON).then_some(out)
}

/// What a piece of heartbeat JSON is.
#[derive(Debug, PartialEq)]
enum Beat {
    /// `{"pong": n}`, with `n` when it is a token.
    Pong(Option<u64>),
    /// `{"ping": x}`: the answer, `{"pong": x}`.
    Ping(Message),
    /// Anything else.
    Other,
}

/// Classifies heartbeat JSON: `{"pong": n}` or `{"ping": x}`.
fn classify(json: &[u8]) -> Beat {
    // Cheap filter first: most traffic is not a heartbeat.
    let trimmed = json.trim_ascii_start();
    if json.len() > MAX_BEAT_JSON || !trimmed.starts_with(b"{") {
        return Beat::Other;
    }
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(json) else {
        return Beat::Other;
    };
    if let Some(pong) = map.get("pong") {
        // A pong whose value is not one of our tokens still is a pong: consumed, not matched.
        return Beat::Pong(pong.as_u64());
    }
    if let Some(ping) = map.get("ping") {
        let reply = serde_json::json!({ "pong": ping }).to_string();
        return Beat::Ping(Message::text(reply));
    }
    Beat::Other
}

/// The answer to a client's text `{"ping": X}`: `{"pong": X}`; `None` for anything else.
/// Only small text starting with `{` is parsed, so ordinary traffic costs a length check
/// and a byte compare.
pub fn client_ping(msg: &Message) -> Option<Message> {
    match msg {
        Message::Text(text) => match classify(text.as_bytes()) {
            Beat::Ping(reply) => Some(reply),
            _ => None,
        },
        _ => None,
    }
}

impl Heartbeat for JsonGzip {
    fn ping(&self, token: u64) -> Message {
        Message::Binary(Bytes::from(encode_ping(token)))
    }

    fn inspect(&self, msg: &Message) -> Inbound {
        match msg {
            // A client's `{"ping"}` is not an answer: the route decides ([`client_ping`]).
            Message::Text(text) => match classify(text.as_bytes()) {
                Beat::Pong(token) => Inbound::Pong(token),
                _ => Inbound::Pass,
            },
            // Only pongs may come compressed; a gzip `{"ping"}` is ordinary data.
            Message::Binary(data) => match gunzip_small(data).map(|json| classify(&json)) {
                Some(Beat::Pong(token)) => Inbound::Pong(token),
                _ => Inbound::Pass,
            },
            _ => Inbound::Pass,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn strategy() -> JsonGzip {
        JsonGzip
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn ping_gunzips_to_the_seed_json() {
        let Message::Binary(bytes) = strategy().ping(1_492_420_473_027) else {
            panic!("not binary")
        };
        let json = gunzip_small(&bytes).unwrap();
        let value: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value, serde_json::json!({"ping": 1_492_420_473_027u64}));
    }

    #[test]
    fn inspect_table() {
        let s = strategy();
        let cases: Vec<(Message, Inbound)> = vec![
            (Message::text(r#"{"pong": 42}"#), Inbound::Pong(Some(42))),
            (
                Message::text(r#" {"pong":42,"x":1}"#),
                Inbound::Pong(Some(42)),
            ),
            (Message::text(r#"{"pong": "42"}"#), Inbound::Pong(None)),
            (Message::text(r#"{"pong": -1}"#), Inbound::Pong(None)),
            (Message::text(r#"{"ping": 7}"#), Inbound::Pass),
            (Message::text(r#"{"pong": "#), Inbound::Pass),
            (Message::text("hello"), Inbound::Pass),
            (Message::text(r#"{"data": 1}"#), Inbound::Pass),
            (
                Message::binary(gzip(br#"{"pong": 9}"#)),
                Inbound::Pong(Some(9)),
            ),
            (Message::binary(gzip(br#"{"ping": 9}"#)), Inbound::Pass),
            (Message::binary(b"\x1f\x8bgarbage".to_vec()), Inbound::Pass),
            (Message::binary(b"plain".to_vec()), Inbound::Pass),
        ];
        for (msg, want) in cases {
            assert_eq!(s.inspect(&msg), want, "{msg:?}");
        }
    }

    #[test]
    fn client_pings_are_answered_with_the_same_value() {
        let pong = |s: &str| Some(Message::text(s));
        let cases: Vec<(Message, Option<Message>)> = vec![
            (Message::text(r#"{"ping": 7}"#), pong(r#"{"pong":7}"#)),
            (Message::text(r#" {"ping":12.5}"#), pong(r#"{"pong":12.5}"#)),
            (
                Message::text(r#"{"ping": "abc"}"#),
                pong(r#"{"pong":"abc"}"#),
            ),
            (Message::text(r#"{"pong": 7}"#), None),
            (Message::text(r#"{"ping": "#), None),
            (Message::text("ping"), None),
            (
                Message::text(format!(r#"{{"ping": "{}"}}"#, "a".repeat(300))),
                None,
            ),
            (Message::binary(gzip(br#"{"ping": 9}"#)), None),
            (Message::binary(br#"{"ping": 9}"#.to_vec()), None),
            (Message::Ping(Bytes::from_static(b"x")), None),
        ];
        for (msg, want) in cases {
            assert_eq!(client_ping(&msg), want, "{msg:?}");
        }
    }

    #[test]
    fn a_gzip_bomb_is_not_inflated() {
        let bomb = gzip(&vec![b' '; 10 << 20]);
        assert!(bomb.len() > MAX_BEAT_JSON, "compressed size {}", bomb.len());
        assert_eq!(strategy().inspect(&Message::binary(bomb)), Inbound::Pass);
        // Small compressed input that inflates past the limit is refused too.
        let mut padded = br#"{"pong": 1, "pad": ""#.to_vec();
        padded.extend(vec![b'a'; 4096]);
        padded.extend(br#""}"#);
        let small = gzip(&padded);
        assert!(small.len() <= MAX_BEAT_JSON);
        assert_eq!(strategy().inspect(&Message::binary(small)), Inbound::Pass);
    }

    proptest! {
        #[test]
        fn inspect_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400), text in ".{0,300}") {
            let s = strategy();
            let _ = s.inspect(&Message::binary(data.clone()));
            let _ = s.inspect(&Message::binary(gzip(&data)));
            let _ = client_ping(&Message::text(text.clone()));
            let _ = s.inspect(&Message::text(text));
        }

        #[test]
        fn pong_round_trips(token in any::<u64>()) {
            let s = strategy();
            prop_assert_eq!(s.inspect(&Message::text(format!("{{\"pong\": {token}}}"))), Inbound::Pong(Some(token)));
            let json = gunzip_small(&encode_ping(token)).unwrap();
            let value: Value = serde_json::from_slice(&json).unwrap();
            prop_assert_eq!(value["ping"].as_u64(), Some(token));
        }
    }
}
