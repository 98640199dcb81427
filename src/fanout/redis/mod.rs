//! The Redis broker (`[broker] kind = "redis"`): any number of heartwire nodes share
//! publishes and channel history through one Redis.
//!
//! A publish on any node runs one script per channel with history that numbers the
//! message, appends it to the channel's stream and publishes it, atomically; the publish
//! is answered 200 only once Redis did. Each node subscribes to the channels its
//! connections hold ([`holds`]) over one pub/sub link ([`link`]) and fans out what arrives
//! through its hub, which keeps a copy of each held channel's history, numbered as Redis
//! numbered it; a recovery replays from that copy once it has been brought up to date from
//! Redis ([`RedisBroker::prepare`]), so a client that moves to another node recovers too.

mod bus;
mod codec;
mod holds;
mod link;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use self::bus::Bus;
use self::holds::Holds;
use self::link::{Link, Status};
use crate::config::RedisConfig;
use crate::fanout::{Broker, BrokerError, Claim, Hold, Hub, Kick, Receipt, Resume, Target};
use crate::metrics::BrokerCounters;
use crate::wire::Payload;

/// The Redis broker.
pub struct RedisBroker {
    config: RedisConfig,
    position_ttl: Duration,
    counters: BrokerCounters,
    node: String,
    bus: OnceLock<Arc<Bus>>,
    hub: OnceLock<Arc<Hub>>,
    holds: Arc<Holds>,
    status: Arc<Status>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBroker")
            .field("url", &self.config.url)
            .field("node", &self.node)
            .finish()
    }
}

impl RedisBroker {
    /// A broker for `config`; `position_ttl` is how long Redis keeps a channel's epoch
    /// and last offset (`history.position_ttl`). Connects in `start`.
    pub fn new(config: RedisConfig, position_ttl: Duration, counters: BrokerCounters) -> Self {
        counters.up.set(0);
        Self {
            config,
            position_ttl,
            counters,
            node: crate::fanout::history::new_epoch().to_string(),
            bus: OnceLock::new(),
            hub: OnceLock::new(),
            holds: Arc::default(),
            status: Arc::default(),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    fn parts(&self) -> Result<(&Arc<Bus>, &Arc<Hub>), BrokerError> {
        match (self.bus.get(), self.hub.get()) {
            (Some(bus), Some(hub)) => Ok((bus, hub)),
            _ => Err(BrokerError::NotRunning),
        }
    }

    async fn prepare_now(
        &self,
        channels: &[Arc<str>],
        resume: &[Resume],
    ) -> Result<Hold, BrokerError> {
        if channels.is_empty() {
            return Ok(Hold::default());
        }
        let (bus, hub) = self.parts()?;
        self.status.ready().map_err(BrokerError::Unavailable)?;
        let (held, ack) = self.holds.take(channels);
        match tokio::time::timeout(bus.timeout, ack).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(why))) => return Err(BrokerError::Unavailable(why)),
            Ok(Err(_)) => return Err(BrokerError::NotRunning),
            Err(_) => {
                return Err(BrokerError::Unavailable(format!(
                    "Redis did not confirm the subscription within {:?} (broker.timeout)",
                    bus.timeout
                )));
            }
        }
        // Subscribed: bring this node's copy of each channel with history up to date,
        // back to where the client asks to recover from.
        let wants: Vec<_> = channels
            .iter()
            .map(|name| {
                let asked = resume.iter().find(|r| *r.channel == **name);
                let from = match (asked.map(|r| r.offset), hub.last_offset(name)) {
                    (Some(a), Some(m)) => a.min(m),
                    (Some(o), None) | (None, Some(o)) => o,
                    (None, None) => u64::MAX,
                };
                (name.clone(), from)
            })
            .collect();
        bus.sync(hub, &wants)
            .await
            .map_err(BrokerError::Unavailable)?;
        Ok(Hold::new(held))
    }
}

impl Broker for RedisBroker {
    fn start(&self, hub: Arc<Hub>) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move {
            let bus = Bus::new(
                &self.config,
                &self.node,
                self.position_ttl,
                self.counters.clone(),
            )
            .map_err(BrokerError::Unavailable)?;
            let bus = Arc::new(bus);
            hub.numbered_by_bus();
            if self.bus.set(bus.clone()).is_err() || self.hub.set(hub.clone()).is_err() {
                // Started once already: the first link goes on.
                return Ok(());
            }
            let link = Link {
                bus,
                holds: self.holds.clone(),
                status: self.status.clone(),
                hub,
            };
            self.tasks.spawn(link.run(self.stop.clone()));
            Ok(())
        })
    }

    fn publish<'a>(
        &'a self,
        target: &'a Target,
        payload: Payload,
    ) -> BoxFuture<'a, Result<Receipt, BrokerError>> {
        Box::pin(async move {
            let (bus, hub) = self.parts()?;
            bus.publish(hub, target, &payload).await
        })
    }

    fn kick<'a>(
        &'a self,
        kick: &'a Kick,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<usize, BrokerError>> {
        Box::pin(async move { self.parts()?.0.kick(kick, reason).await })
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.stop.cancel();
            self.tasks.close();
            self.tasks.wait().await;
        })
    }

    fn prepare<'a>(
        &'a self,
        channels: &'a [Arc<str>],
        resume: &'a [Resume],
    ) -> BoxFuture<'a, Result<Hold, BrokerError>> {
        Box::pin(self.prepare_now(channels, resume))
    }

    fn ready(&self) -> Result<(), String> {
        self.status.ready()
    }

    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Claim, BrokerError>> {
        Box::pin(async move { self.parts()?.0.claim(key).await })
    }

    fn answered<'a>(&'a self, key: &'a str, body: Bytes) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Ok((bus, _)) = self.parts() else { return };
            if let Err(why) = bus.answered(key, &body).await {
                // The publish stands; a retry gets 409 until the claim lapses, then publishes.
                warn!("Idempotency-Key answer not kept in Redis: {why}");
            }
        })
    }

    fn failed(&self, key: &str) -> BoxFuture<'static, ()> {
        let bus = self.bus.get().cloned();
        let key = key.to_owned();
        Box::pin(async move {
            let Some(bus) = bus else { return };
            if let Err(why) = bus.forget(&key).await {
                debug!("Idempotency-Key claim not released (it lapses on its own): {why}");
            }
        })
    }
}
