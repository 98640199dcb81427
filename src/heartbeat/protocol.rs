//! Strategy `protocol`: RFC 6455 Ping frames, as Tornado's `websocket_ping_interval`.
//!
//! The payload is the send time as a 13-byte big-endian millisecond count (the seed's
//! `round(time.time()*1000).to_bytes(13, 'big')`); the peer echoes it in its Pong, which
//! gives the round-trip time.

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;

use super::strategy::{Heartbeat, Inbound};

/// Length of the timestamp payload.
pub const PAYLOAD_LEN: usize = 13;

/// Ping frames with a timestamp, answered by Pongs (the rule for a dead peer is the
/// policy's `ping_timeout`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProtocolPing;

/// Encodes `ms` as 13 big-endian bytes.
pub fn encode(ms: u64) -> [u8; PAYLOAD_LEN] {
    let mut out = [0u8; PAYLOAD_LEN];
    out[PAYLOAD_LEN - 8..].copy_from_slice(&ms.to_be_bytes());
    out
}

/// Decodes a 13-byte big-endian timestamp; `None` for any other payload.
pub fn decode(payload: &[u8]) -> Option<u64> {
    let bytes: &[u8; PAYLOAD_LEN] = payload.try_into().ok()?;
    let (high, low) = bytes.split_at(PAYLOAD_LEN - 8);
    if high.iter().any(|&b| b != 0) {
        return None;
    }
    Some(u64::from_be_bytes(low.try_into().ok()?))
}

impl Heartbeat for ProtocolPing {
    fn ping(&self, token: u64) -> Message {
        Message::Ping(Bytes::copy_from_slice(&encode(token)))
    }

    fn inspect(&self, msg: &Message) -> Inbound {
        match msg {
            Message::Pong(payload) => Inbound::Pong(decode(payload)),
            _ => Inbound::Pass,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_like_the_seed() {
        let ms = 1_492_420_473_027u64;
        let bytes = encode(ms);
        assert_eq!(bytes.len(), 13);
        // Python: (1492420473027).to_bytes(13, 'big')
        assert_eq!(&bytes[..5], &[0; 5]);
        assert_eq!(decode(&bytes), Some(ms));
        let p = ProtocolPing;
        let Message::Ping(payload) = p.ping(ms) else {
            panic!("not a ping")
        };
        assert_eq!(p.inspect(&Message::Pong(payload)), Inbound::Pong(Some(ms)));
    }

    #[test]
    fn other_payloads_are_liveness_without_a_token() {
        let p = ProtocolPing;
        for payload in [&b""[..], b"hello", &[1u8; 13]] {
            assert_eq!(
                p.inspect(&Message::Pong(Bytes::copy_from_slice(payload))),
                Inbound::Pong(None)
            );
        }
        assert_eq!(p.inspect(&Message::text("{\"pong\":1}")), Inbound::Pass);
    }
}
