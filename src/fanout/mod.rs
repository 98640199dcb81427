//! Fan-out: who gets a message. The [`Hub`] knows the live routes and their connections;
//! each [`Route`] has one ring its connections read from; the [`Broker`] carries publishes
//! to every node's hub; [`drain`] spreads shutdown closes over time; [`Vitals`] are one
//! connection's live figures as operators see them.

mod broker;
pub(crate) mod drain;
mod hub;
mod route;
mod vitals;

pub use broker::{Broker, BrokerError, MemoryBroker, Receipt};
pub use hub::{DeliveryError, Hub, Target};
pub use route::Route;
pub(crate) use route::{Conn, Feeds, Queued, Registration};
pub(crate) use vitals::Vitals;
