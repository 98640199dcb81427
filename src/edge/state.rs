//! What every connection and request on the public listener shares.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::limits::{HttpSlots, OnWave, Slots};
use super::publish;
use super::rate_limit::RateLimit;
use crate::config::Config;
use crate::fanout::{Broker, Hub};
use crate::metrics::Metrics;

/// What every connection and request on the public listener shares.
pub struct Edge {
    /// The config in force (replaced whole on reload).
    pub config: watch::Receiver<Arc<Config>>,
    /// Routes and connections.
    pub hub: Arc<Hub>,
    /// Where publishes and relays go.
    pub broker: Arc<dyn Broker>,
    /// Every connection task, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// WebSocket connection slots.
    pub slots: Arc<Slots>,
    /// Connections still speaking HTTP.
    pub http: Arc<HttpSlots>,
    /// The publish rate limit's bucket.
    pub publish_limit: RateLimit,
    /// Cancelled when the daemon shuts down.
    pub shutdown: CancellationToken,
    /// Where refusals, publishes and HTTP connections are counted.
    pub metrics: Arc<Metrics>,
}

impl Edge {
    /// Fresh limits and counters over the daemon's config, hub and broker; `on_wave` runs
    /// after a wave of disconnects (see [`Slots::new`]).
    pub fn new(
        config: watch::Receiver<Arc<Config>>,
        hub: Arc<Hub>,
        broker: Arc<dyn Broker>,
        shutdown: CancellationToken,
        metrics: Arc<Metrics>,
        on_wave: OnWave,
    ) -> Self {
        metrics.publish_answers(publish::ANSWERS.iter().map(|s| s.as_u16()));
        Self {
            config,
            hub,
            broker,
            tracker: TaskTracker::new(),
            slots: Arc::new(Slots::new(on_wave)),
            http: Arc::new(HttpSlots::new(metrics.http_gauge())),
            publish_limit: RateLimit::default(),
            shutdown,
            metrics,
        }
    }
}
