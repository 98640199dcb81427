//! Where published and relayed messages go: the seam between publishers and the hubs.
//!
//! A broker takes a message for a [`Target`] and makes every node's [`Hub`] deliver it.
//! The embedded [`MemoryBroker`] is the default: this process is the only node, so it
//! hands messages straight to its hub. A networked broker (Redis, NATS) implements the
//! same trait: `publish` answers once the bus has the message, and the tasks it starts in
//! `start` feed what arrives from the bus to the local hub.

use std::fmt;
use std::sync::{Arc, OnceLock};

use futures_util::future::BoxFuture;
use tokio_tungstenite::tungstenite::Message;

use super::hub::{Hub, Target};

/// What a publish achieved, for the publisher's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Connections on this node the message was queued for, each counted once.
    pub queued: usize,
    /// For a publish to channels: connections holding each, in the order asked.
    pub per_channel: Vec<usize>,
}

/// Why a broker refused a publish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// Publishing before [`Broker::start`] (or after [`Broker::stop`]).
    #[error("the broker is not running; retry shortly")]
    NotRunning,
}

/// A delivery source for the daemon. The daemon calls `start` once before it serves and
/// `stop` once after the last connection has gone.
pub trait Broker: Send + Sync + fmt::Debug {
    /// Starts delivering to `hub` (and any tasks of the broker's own).
    fn start(&self, hub: Arc<Hub>) -> BoxFuture<'_, Result<(), BrokerError>>;
    /// Sends `msg` to `target` on every node; resolves once the message is accepted.
    fn publish<'a>(
        &'a self,
        target: &'a Target,
        msg: Message,
    ) -> BoxFuture<'a, Result<Receipt, BrokerError>>;
    /// Stops the broker's tasks.
    fn stop(&self) -> BoxFuture<'_, ()>;
}

/// The embedded broker: this process is the only node.
#[derive(Default)]
pub struct MemoryBroker {
    hub: OnceLock<Arc<Hub>>,
}

impl fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MemoryBroker")
    }
}

impl Broker for MemoryBroker {
    fn start(&self, hub: Arc<Hub>) -> BoxFuture<'_, Result<(), BrokerError>> {
        // A second start keeps the first hub: the daemon starts a broker once.
        let _ = self.hub.set(hub);
        Box::pin(std::future::ready(Ok(())))
    }

    fn publish<'a>(
        &'a self,
        target: &'a Target,
        msg: Message,
    ) -> BoxFuture<'a, Result<Receipt, BrokerError>> {
        let result = match self.hub.get() {
            Some(hub) => {
                let reached = hub.deliver(target, msg);
                Ok(Receipt {
                    queued: reached.queued,
                    per_channel: reached.per_channel,
                })
            }
            None => Err(BrokerError::NotRunning),
        };
        Box::pin(std::future::ready(result))
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}
