//! The handles a connection holds: its route's counters and its policy's, resolved once
//! so hot paths never look a label set up.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio_tungstenite::tungstenite::Message;

use prometheus_client::metrics::family::Family;

use super::labels::{Reason, SlowAction};

/// One route's counters, as a connection holds them.
#[derive(Debug, Clone, Default)]
pub struct RouteCounters {
    pub(super) open: Gauge,
    pub(super) accepted: Counter,
    pub(super) sent_text: Counter,
    pub(super) sent_binary: Counter,
    pub(super) received_text: Counter,
    pub(super) received_binary: Counter,
    pub(super) bytes_out: Counter,
    pub(super) slow_disconnect: Counter,
    pub(super) slow_skip: Counter,
    pub(super) slow_write_timeout: Counter,
    pub(super) dropped: Counter,
    pub(super) expired: Counter,
    pub(super) too_fast: Counter,
    pub(super) auth_refused: Family<Reason, Counter>,
}

impl RouteCounters {
    /// A connection was accepted and is open.
    pub fn opened(&self) {
        self.accepted.inc();
        self.open.inc();
    }

    /// A connection's token expired unrefreshed (closed with 4001).
    pub fn token_expired(&self) {
        self.expired.inc();
    }

    /// A client sent faster than its route's `client_rate` (closed with 1008).
    pub fn too_fast(&self) {
        self.too_fast.inc();
    }

    /// A refreshed token was refused (`label`: an `AuthError` label).
    pub fn auth_refused(&self, label: &'static str) {
        self.auth_refused
            .get_or_create(&Reason { reason: label })
            .inc();
    }

    /// A connection closed.
    pub fn closed(&self) {
        self.open.dec();
    }

    /// A data message is being written.
    pub fn sent(&self, msg: &Message) {
        match msg {
            Message::Text(t) => {
                self.sent_text.inc();
                self.bytes(t.len());
            }
            Message::Binary(b) => {
                self.sent_binary.inc();
                self.bytes(b.len());
            }
            other => self.bytes(other.len()),
        }
    }

    /// A data message arrived.
    pub fn received(&self, msg: &Message) {
        match msg {
            Message::Text(_) => self.received_text.inc(),
            Message::Binary(_) => self.received_binary.inc(),
            _ => return,
        };
    }

    /// Payload bytes written that are not data messages (heartbeats).
    pub fn bytes(&self, n: usize) {
        self.bytes_out.inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// The connection read too slowly, and this was done about it.
    pub fn slow(&self, action: SlowAction) {
        match action {
            SlowAction::Disconnect => &self.slow_disconnect,
            SlowAction::Skip => &self.slow_skip,
            SlowAction::WriteTimeout => &self.slow_write_timeout,
        }
        .inc();
    }

    /// The connection skipped `n` messages.
    pub fn dropped(&self, n: u64) {
        self.dropped.inc_by(n);
    }
}

/// One policy's counters, as a connection holds them.
#[derive(Debug, Clone)]
pub struct PolicyCounters {
    pub(super) pings: Counter,
    pub(super) pongs: Counter,
    pub(super) timeouts: Counter,
    pub(super) rtt: Histogram,
}

impl PolicyCounters {
    /// A ping is being written.
    pub fn ping(&self) {
        self.pings.inc();
    }

    /// A pong answered a remembered ping after `rtt`.
    pub fn pong(&self, rtt: Duration) {
        self.pongs.inc();
        self.rtt.observe(rtt.as_secs_f64());
    }

    /// The peer was declared dead.
    pub fn timeout(&self) {
        self.timeouts.inc();
    }
}

/// What history holds and loses, as the history store updates it.
#[derive(Debug, Clone, Default)]
pub struct HistoryCounters {
    /// Messages stored.
    pub messages: Gauge,
    /// Bytes they and their channels take (what `history.max_bytes` bounds).
    pub bytes: Gauge,
    /// Channels with a history (an epoch and a last offset).
    pub channels: Gauge,
    /// Messages gone because their channel held `history_size`.
    pub evicted_size: Counter,
    /// Messages gone after `history_ttl`.
    pub evicted_ttl: Counter,
    /// Messages gone, oldest first, because all history held `history.max_bytes`.
    pub evicted_cap: Counter,
    /// Recoveries by outcome (`recovered`, or why not).
    pub(super) recoveries: Family<super::labels::Outcome, Counter>,
}

impl HistoryCounters {
    /// A recovery ended with `outcome` (`recovered`, or a reason it could not).
    pub fn recovery(&self, outcome: &'static str) {
        self.recoveries
            .get_or_create(&super::labels::Outcome { result: outcome })
            .inc();
    }
}

/// The shared broker's health, as its link and publishes update it.
#[derive(Debug, Clone)]
pub struct BrokerCounters {
    /// 1 while publishes reach every node (the memory broker always), else 0.
    pub up: Gauge,
    /// Attempts to make the pub/sub link again after a loss.
    pub reconnects: Counter,
    /// Publishes the broker refused or did not answer in time (answered 503).
    pub publish_errors: Counter,
    /// How long the broker took to accept a publish.
    pub publish_seconds: Histogram,
    /// From publish (on any node) to fan-out on this one.
    pub lag_seconds: Histogram,
    /// How long subscribing to every held channel again and catching up took.
    pub resubscribe_seconds: Histogram,
    /// Messages this node fetched from the broker's history to fill a gap.
    pub catchup_messages: Counter,
    /// Probes that did not come back through pub/sub in time.
    pub probes_lost: Counter,
}

impl Default for BrokerCounters {
    fn default() -> Self {
        // 100 us to ~3 s, doubling.
        let latency = || Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        Self {
            up: Gauge::default(),
            reconnects: Counter::default(),
            publish_errors: Counter::default(),
            publish_seconds: latency(),
            lag_seconds: latency(),
            resubscribe_seconds: latency(),
            catchup_messages: Counter::default(),
            probes_lost: Counter::default(),
        }
    }
}
