//! Where published and relayed messages go: the delivery source behind publish.
//!
//! Today the only broker is [`LocalBroker`], which hands messages to this process's
//! [`Hub`]. A multi-node broker (Redis pub/sub, NATS) implements the same trait by
//! forwarding to the bus, with a subscriber task calling [`Hub::deliver`] on every node.

use std::fmt;
use std::sync::Arc;

use tokio_tungstenite::tungstenite::Message;

use crate::hub::{DeliveryError, Hub, Target};

/// A delivery source. `publish` must not block: a networked broker queues (boundedly)
/// and forwards from its own task.
pub trait Broker: Send + Sync + fmt::Debug {
    /// Sends `msg` to `target`; returns how many local connections it was queued for.
    fn publish(&self, target: &Target, msg: Message) -> Result<usize, DeliveryError>;
}

/// Delivers to this process's connections only.
pub struct LocalBroker {
    hub: Arc<Hub>,
}

impl LocalBroker {
    /// A broker over `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }
}

impl fmt::Debug for LocalBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LocalBroker")
    }
}

impl Broker for LocalBroker {
    fn publish(&self, target: &Target, msg: Message) -> Result<usize, DeliveryError> {
        self.hub.deliver(target, msg)
    }
}
