//! Label sets and the enums behind them: what each family is keyed by.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// Why a WebSocket handshake was refused (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The route's `origins` do not allow the client's Origin (403).
    Origin,
    /// `server.max_connections` reached (503).
    Limit,
    /// Not a valid WebSocket upgrade: method, headers, version or key (405/426/400).
    BadHandshake,
    /// `server.proxy_protocol`: a connection without a valid PROXY header (closed).
    ProxyHeader,
    /// `server.proxy_protocol`: a connection from outside `server.trusted_proxies` (closed).
    UntrustedProxy,
    /// `[server.tls]`: a connection whose TLS handshake failed or timed out (closed).
    TlsHandshake,
    /// The route's channels could not be made from the request (400).
    Channel,
    /// The route requires a token and it was missing (401) or refused (403); the
    /// `auth_refusals` family says why.
    Auth,
    /// The shared broker could not subscribe this node to the connection's channels (503).
    Broker,
}

impl Rejection {
    /// Every reason, so each series exists (at 0) from the start.
    pub(super) const ALL: [Self; 9] = [
        Self::Origin,
        Self::Limit,
        Self::BadHandshake,
        Self::ProxyHeader,
        Self::UntrustedProxy,
        Self::TlsHandshake,
        Self::Channel,
        Self::Auth,
        Self::Broker,
    ];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Origin => "origin",
            Self::Limit => "limit",
            Self::BadHandshake => "bad_handshake",
            Self::ProxyHeader => "proxy_header",
            Self::UntrustedProxy => "untrusted_proxy",
            Self::TlsHandshake => "tls_handshake",
            Self::Broker => "broker",
            Self::Channel => "channel",
            Self::Auth => "auth",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RouteLabel {
    pub(super) route: String,
}

/// What the slow-consumer handling did to a client (the `action` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowAction {
    /// Closed with 1008: it fell behind under `slow_consumer = "disconnect"`.
    Disconnect,
    /// Skipped messages it had fallen behind on (`drop-oldest`, `keep-latest`).
    Skip,
    /// Dropped: a write to it blocked for `server.write_timeout`.
    WriteTimeout,
}

impl SlowAction {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Disconnect => "disconnect",
            Self::Skip => "skip",
            Self::WriteTimeout => "write_timeout",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RouteAction {
    pub(super) route: String,
    pub(super) action: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RouteKind {
    pub(super) route: String,
    pub(super) kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct Reason {
    pub(super) reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct Status {
    pub(super) status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PolicyStrategy {
    pub(super) policy: String,
    pub(super) strategy: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PolicyLabel {
    pub(super) policy: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct Outcome {
    pub(super) result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct Build {
    pub(super) version: &'static str,
    /// The git revision built from (build.rs), `unknown` outside a checkout.
    pub(super) revision: &'static str,
}

pub(super) type RttFamily = Family<PolicyLabel, Histogram, fn() -> Histogram>;

pub(super) fn rtt_histogram() -> Histogram {
    // 1 ms to ~16 s, doubling: LAN pongs land low, a phone on a bad cell high.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The certificate file served (`server.tls.cert_file`, as resolved).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CertFile {
    pub(super) cert_file: String,
}
