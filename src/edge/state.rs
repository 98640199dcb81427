//! What every connection and request on the public listener shares.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::limits::{HttpSlots, OnWave, Slots};
use super::publish;
use super::rate_limit::RateLimit;
use super::tls::Tls;
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
    /// TLS, when the config at start had `[server.tls]` (on or off until a restart).
    pub tls: Option<Tls>,
}

impl Edge {
    /// Fresh limits and counters over the daemon's config, hub and broker; `on_wave` runs
    /// after a wave of disconnects (see [`Slots::new`]). Fails only if TLS cannot be set up
    /// with the config's `[server.tls]`.
    pub fn new(
        config: watch::Receiver<Arc<Config>>,
        hub: Arc<Hub>,
        broker: Arc<dyn Broker>,
        shutdown: CancellationToken,
        metrics: Arc<Metrics>,
        on_wave: OnWave,
    ) -> Result<Self, rustls::Error> {
        metrics.publish_answers(publish::ANSWERS.iter().map(|s| s.as_u16()));
        let first = config.borrow().server.tls.clone();
        let tls = match &first {
            Some(pair) => Some(Tls::new(config.clone(), pair)?),
            None => None,
        };
        let edge = Self {
            config,
            hub,
            broker,
            tracker: TaskTracker::new(),
            slots: Arc::new(Slots::new(on_wave)),
            http: Arc::new(HttpSlots::new(metrics.http_gauge())),
            publish_limit: RateLimit::default(),
            shutdown,
            metrics,
            tls,
        };
        edge.config_changed(&edge.config.borrow());
        Ok(edge)
    }

    /// Follows a new config where the edge keeps state of its own: the expiry of the
    /// certificate served (the certificate itself is looked up per handshake).
    pub fn config_changed(&self, config: &Config) {
        if let (Some(_), Some(pair)) = (&self.tls, &config.server.tls) {
            self.metrics.set_tls_expiry(&pair.cert_file, pair.not_after);
        }
    }
}
