//! The contract every heartbeat strategy implements: bytes only, no time.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_tungstenite::tungstenite::Message;

/// How a connection proves liveness. Implementations do no I/O and keep no timers:
/// `ping` is called once per tick per policy and its bytes are shared by every connection.
pub trait Heartbeat: Send + Sync + fmt::Debug {
    /// The ping message for a tick whose token is `token` (milliseconds since the epoch).
    fn ping(&self, token: u64) -> Message;
    /// Whether `msg` from the peer is heartbeat traffic, and what it means.
    fn inspect(&self, msg: &Message) -> Inbound;
}

/// What an inbound message means to the heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// Not heartbeat traffic: hand it to the route.
    Pass,
    /// An answer to a ping, carrying its token when readable. Consumed.
    Pong(Option<u64>),
}

/// Milliseconds since the Unix epoch: the token both strategies put in their pings.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
