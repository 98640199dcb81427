//! Fan-out: who gets a message. The [`Hub`] knows the live routes and their connections;
//! each [`Route`] has one ring its connections read from; the [`Broker`] carries publishes
//! to every node's hub; [`drain`] spreads shutdown closes over time; [`Vitals`] are one
//! connection's live figures as operators see them.

mod broker;
pub mod drain;
mod hub;
mod route;
mod vitals;

pub use broker::{Broker, BrokerError, MemoryBroker, Receipt};
pub use hub::{DeliveryError, Hub, RouteChanges, Target};
pub use route::{Conn, Feeds, Queued, Registration, Route};
pub use vitals::{Snapshot, Vitals};
