//! Heartbeat strategies: how a connection proves it is alive.
//!
//! The supervisor owns time (tickers, deadlines); a strategy owns bytes: what a ping
//! looks like and which inbound message answers it. A [`Policy`] pairs a strategy with
//! its interval and the rule that declares a peer dead. One strategy per file behind
//! [`Heartbeat`]; [`ticker`] builds each tick's ping once, [`peer`] keeps one peer's books.

mod json_gzip;
mod peer;
mod policy;
mod protocol;
mod strategy;
mod ticker;

pub use json_gzip::{JsonGzip, client_ping};
pub(crate) use peer::{PeerBeat, TickAction};
pub use policy::{
    DEFAULT_MAX_MISSED, DEFAULT_PING_INTERVAL, Liveness, Policy, PolicyError, RawPolicy, Strategy,
    StrategyKey,
};
pub use protocol::ProtocolPing;
pub use strategy::{Heartbeat, Inbound};
pub(crate) use ticker::{Active, Pulse, Schedule};
