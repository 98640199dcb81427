//! Heartbeat strategies: how a connection proves it is alive.
//!
//! The supervisor owns time (tickers, deadlines); a strategy owns bytes: what a ping
//! looks like, which inbound message answers it, and the rule that declares a peer
//! dead. One strategy per file behind [`Heartbeat`].

mod json_gzip;
mod peer;
mod protocol;
mod ticker;

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message;

pub use json_gzip::JsonGzip;
pub use peer::{PeerBeat, TickAction};
pub use protocol::ProtocolPing;
pub use ticker::{Ping, Pulse, Schedule};

use crate::config::Policy;

/// How a connection proves liveness. Implementations do no I/O and keep no timers:
/// `ping` is called once per tick per policy and its bytes are shared by every connection.
pub trait Heartbeat: Send + Sync + fmt::Debug {
    /// The ping message for a tick whose token is `token` (milliseconds since the epoch).
    fn ping(&self, token: u64) -> Message;
    /// Whether `msg` from the peer is heartbeat traffic, and what it means.
    fn inspect(&self, msg: &Message) -> Inbound;
    /// The rule by which the supervisor declares a peer dead.
    fn liveness(&self) -> Liveness;
    /// The strategy's config name, for logs and metrics.
    fn strategy(&self) -> Strategy;
}

/// What an inbound message means to the heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// Not heartbeat traffic: hand it to the route.
    Pass,
    /// An answer to a ping, carrying its token when readable. Consumed.
    Pong(Option<u64>),
    /// A client-initiated ping: answer with this message. Consumed.
    Reply(Message),
}

/// When a peer counts as dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Never (strategy `none`).
    Never,
    /// No frame at all within this long of a ping.
    Timeout(Duration),
    /// This many consecutive pings without a matching pong.
    MaxMissed(NonZeroU32),
}

/// The `strategy` key of a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// RFC 6455 Ping/Pong frames carrying a 13-byte timestamp.
    Protocol,
    /// gzip-compressed `{"ping": ms}` binary messages answered by `{"pong": ms}`.
    JsonGzip,
    /// No heartbeat.
    None,
}

impl Strategy {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Protocol => "protocol",
            Self::JsonGzip => "json-gzip",
            Self::None => "none",
        }
    }
}

impl Policy {
    /// The strategy object for this policy, or `None` for strategy `none`.
    pub fn build(&self) -> Option<Arc<dyn Heartbeat>> {
        match (self.strategy, self.liveness) {
            (Strategy::Protocol, Liveness::Timeout(t)) => Some(Arc::new(ProtocolPing::new(t))),
            (Strategy::JsonGzip, Liveness::MaxMissed(n)) => Some(Arc::new(JsonGzip::new(n))),
            // Config validation pairs each strategy with its rule; anything else is `none`.
            _ => None,
        }
    }
}

/// Milliseconds since the Unix epoch: the token both strategies put in their pings.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
