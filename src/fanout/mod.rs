//! Fan-out: who gets a message. The [`Hub`] knows the live routes, their connections and
//! the channels they hold; each connection has a [`Mailbox`] publishers push shared
//! frames into; the [`Broker`] carries publishes to every node's hub; [`drain`] spreads
//! shutdown closes over time; [`Vitals`] are one connection's live figures.

mod broker;
pub(crate) mod drain;
mod hub;
mod mailbox;
mod route;
mod subscriptions;
mod vitals;

pub use broker::{Broker, BrokerError, MemoryBroker, Receipt};
pub use hub::{Hub, Target};
pub(crate) use mailbox::{Behind, Ending, Limits};
pub use route::Route;
pub(crate) use route::{Conn, Registration, Subscriber};
pub(crate) use vitals::Vitals;
