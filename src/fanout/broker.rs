//! Where published and relayed messages go: the seam between publishers and the hubs.
//!
//! A broker takes a message for a [`Target`] and makes every node's [`Hub`] deliver it.
//! The embedded [`MemoryBroker`] is the default: this process is the only node, so it
//! hands messages straight to its hub. A networked broker (Redis, NATS) implements the
//! same trait: `publish` answers once the bus has the message, and the tasks it starts in
//! `start` feed what arrives from the bus to the local hub.

use std::fmt;
use std::sync::{Arc, OnceLock};

use std::time::Instant;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use super::hub::{Hub, Kick, Receipt, Target};
use super::idempotency::{Claim, Idempotency};
use super::route::Resume;
use crate::wire::Payload;

/// Why a broker refused a publish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// Publishing before [`Broker::start`] (or after [`Broker::stop`]).
    #[error("the broker is not running; retry shortly")]
    NotRunning,
    /// The bus did not take the message (or did not answer in time): it may not reach
    /// every node.
    #[error("broker unavailable: {0}; retry shortly")]
    Unavailable(String),
}

/// What a connection holds on the bus (its node's subscriptions to its channels) until
/// it drops.
#[derive(Default)]
pub struct Hold {
    _held: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl Hold {
    /// Holds `what` until dropped.
    pub fn new(what: impl std::any::Any + Send + Sync) -> Self {
        Self {
            _held: Some(Box::new(what)),
        }
    }
}

/// A delivery source for the daemon. The daemon calls `start` once before it serves and
/// `stop` once after the last connection has gone.
pub trait Broker: Send + Sync + fmt::Debug {
    /// Starts delivering to `hub` (and any tasks of the broker's own).
    fn start(&self, hub: Arc<Hub>) -> BoxFuture<'_, Result<(), BrokerError>>;
    /// Sends `payload` to `target` on every node; resolves once the message is accepted
    /// (numbered and stored first on channels with history).
    fn publish<'a>(
        &'a self,
        target: &'a Target,
        payload: Payload,
    ) -> BoxFuture<'a, Result<Receipt, BrokerError>>;
    /// Closes the connections `kick` names on every node, telling them `reason`; resolves
    /// with how many (here: connections; a shared broker: nodes that took it).
    fn kick<'a>(
        &'a self,
        kick: &'a Kick,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<usize, BrokerError>>;
    /// Stops the broker's tasks.
    fn stop(&self) -> BoxFuture<'_, ()>;
    /// Makes this node ready for a new connection holding `channels` and recovering
    /// `resume`: subscribed to them on the bus, and its copy of their history current.
    /// The connection keeps the [`Hold`] while it lives.
    fn prepare<'a>(
        &'a self,
        channels: &'a [Arc<str>],
        resume: &'a [Resume],
    ) -> BoxFuture<'a, Result<Hold, BrokerError>> {
        let _ = (channels, resume);
        Box::pin(std::future::ready(Ok(Hold::default())))
    }
    /// Whether publishes can reach every node now (what `/healthz` reports), or why not.
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
    /// Claims a publish's `Idempotency-Key` for this attempt, where every node sharing the
    /// bus sees it (see [`super::idempotency`]).
    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Claim, BrokerError>>;
    /// The publish claimed with `key` answered 200 with `body`: a retry on any node gets it.
    fn answered<'a>(&'a self, key: &'a str, body: Bytes) -> BoxFuture<'a, ()>;
    /// The publish claimed with `key` did not answer 200: a retry may publish once the
    /// returned future is done (it needs no borrow, so a dropped request can spawn it).
    fn failed(&self, key: &str) -> BoxFuture<'static, ()>;
}

/// The embedded broker: this process is the only node.
#[derive(Default)]
pub struct MemoryBroker {
    hub: OnceLock<Arc<Hub>>,
    keys: Idempotency,
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
        payload: Payload,
    ) -> BoxFuture<'a, Result<Receipt, BrokerError>> {
        let result = match self.hub.get() {
            Some(hub) => Ok(hub.deliver(target, &payload)),
            None => Err(BrokerError::NotRunning),
        };
        Box::pin(std::future::ready(result))
    }

    fn kick<'a>(
        &'a self,
        kick: &'a Kick,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<usize, BrokerError>> {
        let result = match self.hub.get() {
            Some(hub) => Ok(hub.kick(kick, reason)),
            None => Err(BrokerError::NotRunning),
        };
        Box::pin(std::future::ready(result))
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Claim, BrokerError>> {
        Box::pin(std::future::ready(Ok(self.keys.claim(key, Instant::now()))))
    }

    fn answered<'a>(&'a self, key: &'a str, body: Bytes) -> BoxFuture<'a, ()> {
        self.keys.answered(key, body, Instant::now());
        Box::pin(std::future::ready(()))
    }

    fn failed(&self, key: &str) -> BoxFuture<'static, ()> {
        self.keys.failed(key);
        Box::pin(std::future::ready(()))
    }
}
