//! Fan-out: who gets a message. The [`Hub`] knows the live routes, their connections and
//! the channels they hold; each connection has a [`Mailbox`] publishers push shared
//! frames into; the [`Broker`] carries publishes to every node's hub; [`drain`] spreads
//! shutdown closes over time; [`Vitals`] are one connection's live figures.

mod broker;
pub(crate) mod drain;
mod history;
pub mod history_file;
mod hub;
pub(crate) mod idempotency;
mod mailbox;
#[cfg(test)]
mod recovery_tests;
pub mod redis;
mod route;
mod subscriptions;
mod vitals;

pub use broker::{Broker, BrokerError, Hold, MemoryBroker};
pub(crate) use history::is_epoch;
pub use history::{History, Saved};
pub use hub::{BusSlice, Delivered, Hub, Kick, MAX_KICK_USER, Placed, Receipt, Target};
pub use idempotency::{Claim, check_key};
pub(crate) use mailbox::{Behind, Ending, Limits};
pub use route::Route;
pub(crate) use route::{Conn, Registration, Resume, Subscriber};
pub(crate) use vitals::Vitals;
