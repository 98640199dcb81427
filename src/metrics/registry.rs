//! [`Metrics`]: every family heartwire exports, registered once, and the scrape.

use std::fmt;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::counters::{BrokerCounters, HistoryCounters, PolicyCounters, RouteCounters};
use super::labels::*;
use crate::auth::AuthError;
use crate::heartbeat::Strategy;
use crate::process::ProcessCollector;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric heartwire exports, and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    connections_open: Family<RouteLabel, Gauge>,
    routes: Gauge,
    accepted: Family<RouteLabel, Counter>,
    rejected: Family<Reason, Counter>,
    auth_refused: Family<Reason, Counter>,
    expired: Counter,
    too_fast: Counter,
    http_open: Gauge,
    http_full: Counter,
    sent: Family<RouteKind, Counter>,
    received: Family<RouteKind, Counter>,
    bytes_out: Family<RouteLabel, Counter>,
    slow: Family<RouteAction, Counter>,
    dropped: Family<RouteLabel, Counter>,
    publish: Family<Status, Counter>,
    pings: Family<PolicyStrategy, Counter>,
    pongs: Family<PolicyStrategy, Counter>,
    timeouts: Family<PolicyStrategy, Counter>,
    rtt: RttFamily,
    payloads: Family<PolicyLabel, Counter>,
    reloads: Family<Outcome, Counter>,
    last_reload_ok: Gauge,
    draining: Gauge,
    panics: Counter,
    allocated: Gauge,
    resident: Gauge,
    /// No series until a certificate is served, so an alert on it cannot fire on a
    /// listener without TLS; one series (the file served) after.
    tls_expiry: Family<CertFile, Gauge>,
    history: HistoryCounters,
    broker: BrokerCounters,
    evicted: Family<Reason, Counter>,
    idempotent_replays: Counter,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every family registered and build info set.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        // The standard `process_*` names take no prefix; every family below is `heartwire_*`.
        registry.register_collector(Box::new(ProcessCollector));
        let m = Self {
            connections_open: Family::default(),
            routes: Gauge::default(),
            accepted: Family::default(),
            rejected: Family::default(),
            auth_refused: Family::default(),
            expired: Counter::default(),
            too_fast: Counter::default(),
            http_open: Gauge::default(),
            http_full: Counter::default(),
            sent: Family::default(),
            received: Family::default(),
            bytes_out: Family::default(),
            slow: Family::default(),
            dropped: Family::default(),
            publish: Family::default(),
            pings: Family::default(),
            pongs: Family::default(),
            timeouts: Family::default(),
            rtt: Family::new_with_constructor(rtt_histogram),
            payloads: Family::default(),
            reloads: Family::default(),
            last_reload_ok: Gauge::default(),
            draining: Gauge::default(),
            panics: Counter::default(),
            allocated: Gauge::default(),
            resident: Gauge::default(),
            tls_expiry: Family::default(),
            history: HistoryCounters::default(),
            broker: BrokerCounters::default(),
            evicted: Family::default(),
            idempotent_replays: Counter::default(),
            registry: Registry::default(),
        };
        let build: Family<Build, Gauge> = Family::default();
        build
            .get_or_create(&Build {
                version: env!("CARGO_PKG_VERSION"),
                revision: env!("BUILD_GIT_REVISION"),
            })
            .set(1);
        m.last_reload_ok.set(1);
        // The embedded broker is always up; a shared one says otherwise until connected.
        m.broker.up.set(1);
        // Every label set known now exists from the first scrape, at 0, so `absent()` and
        // `rate()` alerts work before the first event.
        for why in Rejection::ALL {
            m.rejected.get_or_create_owned(&Reason {
                reason: why.as_str(),
            });
        }
        for reason in AuthError::ALL_LABELS {
            m.auth_refused.get_or_create_owned(&Reason { reason });
        }
        for result in ["ok", "error"] {
            m.reloads.get_or_create_owned(&Outcome { result });
        }
        let evicted = |reason| m.evicted.get_or_create_owned(&Reason { reason });
        let history = HistoryCounters {
            evicted_size: evicted("size"),
            evicted_ttl: evicted("ttl"),
            evicted_cap: evicted("max_bytes"),
            ..m.history.clone()
        };
        for result in [
            "recovered",
            "epoch_changed",
            "window_exceeded",
            "unknown_channel",
        ] {
            history.recoveries.get_or_create_owned(&Outcome { result });
        }
        let r = registry.sub_registry_with_prefix("heartwire");
        r.register(
            "build_info",
            "heartwire version and git revision (value is always 1)",
            build,
        );
        r.register(
            "connections_open",
            "Open WebSocket connections by route",
            m.connections_open.clone(),
        );
        r.register("routes", "WebSocket routes served", m.routes.clone());
        r.register(
            "connections_accepted",
            "WebSocket handshakes accepted, by route",
            m.accepted.clone(),
        );
        r.register(
            "connections_rejected",
            "WebSocket handshakes refused, by reason (origin, limit, bad_handshake, channel, auth), connections closed for their PROXY header (proxy_header, untrusted_proxy), and failed TLS handshakes (tls_handshake)",
            m.rejected.clone(),
        );
        r.register(
            "auth_refusals",
            "Subscriber tokens refused, at the handshake or on refresh, by reason (missing, too_large, invalid, expired, not_yet_valid, issuer, audience, channel, too_soon)",
            m.auth_refused.clone(),
        );
        r.register(
            "tokens_expired",
            "Connections closed with 4001 because their token expired unrefreshed",
            m.expired.clone(),
        );
        r.register(
            "clients_too_fast",
            "Connections closed with 1008 for sending faster than their route's client_rate",
            m.too_fast.clone(),
        );
        r.register(
            "http_connections",
            "Connections not (yet) upgraded to WebSocket: handshakes, publish and static requests, idle keep-alives",
            m.http_open.clone(),
        );
        r.register(
            "http_connections_full",
            "Times accepting paused because server.max_http_connections were open",
            m.http_full.clone(),
        );
        r.register(
            "messages_sent",
            "Data messages written to clients, by route and kind",
            m.sent.clone(),
        );
        r.register(
            "messages_received",
            "Data messages received from clients (heartbeat traffic excluded), by route and kind",
            m.received.clone(),
        );
        r.register(
            "bytes_out",
            "Payload bytes written to clients, heartbeats included, by route",
            m.bytes_out.clone(),
        );
        r.register(
            "slow_consumers",
            "Times a client read too slowly, by route and what was done (disconnect: closed with 1008; skip: skipped messages; write_timeout: dropped)",
            m.slow.clone(),
        );
        r.register(
            "messages_dropped",
            "Messages a connected client never got because it read too slowly (drop-oldest, keep-latest), by route",
            m.dropped.clone(),
        );
        r.register(
            "publish_requests",
            "Publish requests by HTTP status",
            m.publish.clone(),
        );
        r.register(
            "heartbeat_pings_sent",
            "Heartbeat pings sent, by policy and strategy",
            m.pings.clone(),
        );
        r.register(
            "heartbeat_pongs_received",
            "Heartbeat pongs matching a ping, by policy and strategy",
            m.pongs.clone(),
        );
        r.register(
            "heartbeat_timeouts",
            "Clients closed with 4000 (heartbeat timeout), by policy and strategy",
            m.timeouts.clone(),
        );
        r.register(
            "heartbeat_rtt_seconds",
            "Ping to pong round-trip time, by policy",
            m.rtt.clone(),
        );
        r.register(
            "heartbeat_ping_payloads_built",
            "Ping payloads built (one per tick per policy, shared by its connections)",
            m.payloads.clone(),
        );
        r.register(
            "config_reloads",
            "Config reloads (SIGHUP) by result (ok, error)",
            m.reloads.clone(),
        );
        r.register(
            "config_last_reload_successful",
            "1 if the last reload was applied (or none happened), 0 if it was refused",
            m.last_reload_ok.clone(),
        );
        r.register("draining", "1 once shutdown has begun", m.draining.clone());
        r.register(
            "allocator_allocated_bytes",
            "Bytes the allocator has handed out (grows without bound only on a leak)",
            m.allocated.clone(),
        );
        r.register(
            "allocator_resident_bytes",
            "Bytes the allocator keeps resident (above allocated: memory held after a peak)",
            m.resident.clone(),
        );
        r.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When the certificate served on the public listener expires, in seconds since the Unix epoch by server.tls.cert_file (no series without [server.tls])",
            m.tls_expiry.clone(),
        );
        r.register(
            "connection_panics",
            "Connection tasks that panicked (a bug: the connection was dropped, the daemon carried on)",
            m.panics.clone(),
        );
        r.register(
            "history_messages",
            "Messages held in channel history",
            history.messages.clone(),
        );
        r.register(
            "history_bytes",
            "Bytes channel history takes, messages and per-channel bookkeeping (bounded by history.max_bytes)",
            history.bytes.clone(),
        );
        r.register(
            "history_channels",
            "Channels with a history: an epoch and a last offset",
            history.channels.clone(),
        );
        r.register(
            "history_evicted",
            "Messages that left history, by reason (size: history_size, ttl: history_ttl, max_bytes: history.max_bytes, oldest first)",
            m.evicted.clone(),
        );
        r.register(
            "recoveries",
            "Channels a reconnecting client asked to recover, by result (recovered; epoch_changed, window_exceeded, unknown_channel: told recovered false)",
            history.recoveries.clone(),
        );
        r.register(
            "publish_idempotent_replays",
            "Publishes answered from an earlier one with the same Idempotency-Key, not published again",
            m.idempotent_replays.clone(),
        );
        let b = &m.broker;
        r.register(
            "broker_up",
            "1 while a publish reaches every node (always with the memory broker); 0 while the shared broker is unreachable or its pub/sub is silent",
            b.up.clone(),
        );
        r.register(
            "broker_reconnects",
            "Attempts to make the pub/sub link to the shared broker again after a loss",
            b.reconnects.clone(),
        );
        r.register(
            "broker_publish_errors",
            "Publishes the shared broker refused or did not answer within broker.timeout (answered 503)",
            b.publish_errors.clone(),
        );
        r.register(
            "broker_publish_seconds",
            "How long the shared broker took to accept a publish",
            b.publish_seconds.clone(),
        );
        r.register(
            "broker_lag_seconds",
            "From a publish on any node to its fan-out on this one (across machines, includes their clock difference)",
            b.lag_seconds.clone(),
        );
        r.register(
            "broker_resubscribe_seconds",
            "How long subscribing to every held channel again and catching up took after a reconnect",
            b.resubscribe_seconds.clone(),
        );
        r.register(
            "broker_catchup_messages",
            "Messages fetched from the shared broker's history to fill a gap this node saw",
            b.catchup_messages.clone(),
        );
        r.register(
            "broker_probes_lost",
            "Probes that did not come back through the shared broker's pub/sub in time (the link is then made again)",
            b.probes_lost.clone(),
        );
        Self {
            registry,
            history,
            ..m
        }
    }

    /// The handles a shared broker updates.
    pub fn broker(&self) -> &BrokerCounters {
        &self.broker
    }

    /// The handles the history store updates.
    pub fn history(&self) -> &HistoryCounters {
        &self.history
    }

    /// A publish was answered from an earlier one with its Idempotency-Key.
    pub fn idempotent_replay(&self) {
        self.idempotent_replays.inc();
    }

    /// Renders every family.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            // Writing to a String fails only if an encoder does; say so in the scrape.
            out = format!("# encoding failed: {err}\n# EOF\n");
        }
        out
    }

    /// The allocator's figures, set by whoever renders (they are read, not counted).
    pub fn set_allocator(&self, allocated: u64, resident: u64) {
        self.allocated
            .set(i64::try_from(allocated).unwrap_or(i64::MAX));
        self.resident
            .set(i64::try_from(resident).unwrap_or(i64::MAX));
    }

    /// The number of routes served now.
    pub fn set_routes(&self, n: usize) {
        self.routes.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A route is no longer served: its open-connections series goes (its last clients
    /// count down on the handle they hold, no longer exported).
    pub fn route_removed(&self, route: &str) {
        self.connections_open.remove(&RouteLabel {
            route: route.to_owned(),
        });
    }

    /// The counters a connection on `route` updates, resolved once.
    pub fn route(&self, route: &str) -> RouteCounters {
        let kind = |family: &Family<RouteKind, Counter>, kind| {
            family.get_or_create_owned(&RouteKind {
                route: route.to_owned(),
                kind,
            })
        };
        let label = RouteLabel {
            route: route.to_owned(),
        };
        let slow = |action: SlowAction| {
            self.slow.get_or_create_owned(&RouteAction {
                route: route.to_owned(),
                action: action.as_str(),
            })
        };
        RouteCounters {
            open: self.connections_open.get_or_create_owned(&label),
            accepted: self.accepted.get_or_create_owned(&label),
            sent_text: kind(&self.sent, "text"),
            sent_binary: kind(&self.sent, "binary"),
            received_text: kind(&self.received, "text"),
            received_binary: kind(&self.received, "binary"),
            bytes_out: self.bytes_out.get_or_create_owned(&label),
            slow_disconnect: slow(SlowAction::Disconnect),
            slow_skip: slow(SlowAction::Skip),
            slow_write_timeout: slow(SlowAction::WriteTimeout),
            dropped: self.dropped.get_or_create_owned(&label),
            expired: self.expired.clone(),
            too_fast: self.too_fast.clone(),
            auth_refused: self.auth_refused.clone(),
        }
    }

    /// The counters a connection following `policy` updates, resolved once per policy change.
    pub fn policy(&self, policy: &str, strategy: Strategy) -> PolicyCounters {
        let label = PolicyStrategy {
            policy: policy.to_owned(),
            strategy: strategy.as_str(),
        };
        PolicyCounters {
            pings: self.pings.get_or_create_owned(&label),
            pongs: self.pongs.get_or_create_owned(&label),
            timeouts: self.timeouts.get_or_create_owned(&label),
            rtt: self.rtt.get_or_create_owned(&PolicyLabel {
                policy: policy.to_owned(),
            }),
        }
    }

    /// A route follows `policy`: its series exist from now on, before any connection.
    pub fn policy_in_use(&self, policy: &str, strategy: Strategy) {
        self.policy(policy, strategy);
        self.payloads.get_or_create_owned(&PolicyLabel {
            policy: policy.to_owned(),
        });
    }

    /// A handshake was refused.
    pub fn rejected(&self, why: Rejection) {
        self.rejected
            .get_or_create(&Reason {
                reason: why.as_str(),
            })
            .inc();
    }

    /// A subscriber token was refused (`label`: one of [`AuthError::ALL_LABELS`]).
    pub fn auth_refused(&self, label: &'static str) {
        self.auth_refused
            .get_or_create(&Reason { reason: label })
            .inc();
    }

    /// The gauge of open HTTP connections, for `HttpSlots` (edge limits) to keep.
    pub fn http_gauge(&self) -> Gauge {
        self.http_open.clone()
    }

    /// Accepting paused: `server.max_http_connections` are open.
    pub fn http_full(&self) {
        self.http_full.inc();
    }

    /// Every status the publish endpoint can answer: each series exists from the start.
    pub fn publish_answers(&self, statuses: impl IntoIterator<Item = u16>) {
        for status in statuses {
            self.publish.get_or_create_owned(&Status { status });
        }
    }

    /// A publish request was answered with `status`.
    pub fn published(&self, status: u16) {
        self.publish.get_or_create(&Status { status }).inc();
    }

    /// A policy's ticker built its ping payload.
    pub fn payload_built(&self, policy: &str) {
        self.payloads
            .get_or_create(&PolicyLabel {
                policy: policy.to_owned(),
            })
            .inc();
    }

    /// A SIGHUP reload finished: applied (`true`) or refused.
    pub fn reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&Outcome { result }).inc();
        self.last_reload_ok.set(i64::from(ok));
    }

    /// Whether the last reload was applied (true before any reload).
    pub fn last_reload_ok(&self) -> bool {
        self.last_reload_ok.get() == 1
    }

    /// A connection task panicked.
    pub fn panicked(&self) {
        self.panics.inc();
    }

    /// The certificate served, from `cert_file`, expires at `unix_seconds`.
    pub fn set_tls_expiry(&self, cert_file: &std::path::Path, unix_seconds: i64) {
        // One series: the file served now (a reload may name another).
        self.tls_expiry.clear();
        self.tls_expiry
            .get_or_create_owned(&CertFile {
                cert_file: cert_file.display().to_string(),
            })
            .set(unix_seconds);
    }

    /// Shutdown has begun.
    pub fn set_draining(&self) {
        self.draining.set(1);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_tungstenite::tungstenite::Message;

    use super::*;

    #[test]
    fn renders_families_with_their_labels() {
        let m = Metrics::new();
        m.rejected(Rejection::Origin);
        m.published(200);
        m.reloaded(false);
        let c = m.route("/ws");
        c.opened();
        c.sent(&Message::text("hello"));
        let p = m.policy("app", Strategy::JsonGzip);
        p.ping();
        p.pong(Duration::from_millis(3));
        let text = m.render();
        for line in [
            "heartwire_build_info{version=\"",
            "heartwire_connections_accepted_total{route=\"/ws\"} 1",
            "heartwire_connections_rejected_total{reason=\"origin\"} 1",
            "heartwire_publish_requests_total{status=\"200\"} 1",
            "heartwire_config_reloads_total{result=\"error\"} 1",
            "heartwire_config_last_reload_successful 0",
            "heartwire_messages_sent_total{route=\"/ws\",kind=\"text\"} 1",
            "heartwire_bytes_out_total{route=\"/ws\"} 5",
            "heartwire_heartbeat_pings_sent_total{policy=\"app\",strategy=\"json-gzip\"} 1",
            "heartwire_heartbeat_rtt_seconds_count{policy=\"app\"} 1",
            "heartwire_connections_open{route=\"/ws\"} 1",
            "heartwire_routes 0",
        ] {
            assert!(text.contains(line), "missing `{line}` in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        for name in [
            "process_resident_memory_bytes ",
            "process_virtual_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
            "process_cpu_seconds_total ",
            "process_start_time_seconds ",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(name)),
                "missing `{name}` in\n{text}"
            );
        }
    }

    #[test]
    fn known_label_sets_exist_at_zero() {
        let m = Metrics::new();
        m.publish_answers([200, 429]);
        m.policy_in_use("app", Strategy::Protocol);
        let text = m.render();
        for line in [
            "heartwire_connections_rejected_total{reason=\"origin\"} 0",
            "heartwire_connections_rejected_total{reason=\"limit\"} 0",
            "heartwire_connections_rejected_total{reason=\"bad_handshake\"} 0",
            "heartwire_config_reloads_total{result=\"ok\"} 0",
            "heartwire_config_reloads_total{result=\"error\"} 0",
            "heartwire_publish_requests_total{status=\"200\"} 0",
            "heartwire_publish_requests_total{status=\"429\"} 0",
            "heartwire_heartbeat_pings_sent_total{policy=\"app\",strategy=\"protocol\"} 0",
            "heartwire_heartbeat_timeouts_total{policy=\"app\",strategy=\"protocol\"} 0",
            "heartwire_heartbeat_ping_payloads_built_total{policy=\"app\"} 0",
        ] {
            assert!(text.contains(line), "missing `{line}` in\n{text}");
        }
    }
}
