//! The validated config: types whose values cannot be wrong, the defaults and ceilings,
//! and the error that names the file and the key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::origin::Origins;
use super::proxies::TrustedProxies;
use super::tls::TlsConfig;
use crate::auth::Verifier;
use crate::channels::{PathPattern, Template};
use crate::heartbeat::Policy;

/// Where the daemon listens when the file says nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Most WebSocket connections held at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// How long shutdown waits for clients to answer their close frames.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a client may take to send its HTTP request and upgrade.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest message (and frame) a client may send.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024;
/// Messages a connection's mailbox holds before the slow-consumer policy applies.
pub const DEFAULT_OUTBOUND_QUEUE: usize = 1024;
/// Bytes a connection's mailbox holds before the slow-consumer policy applies.
pub const DEFAULT_OUTBOUND_QUEUE_BYTES: usize = 4 * 1024 * 1024;
/// Most connections still speaking HTTP (handshakes, publishes, static pages) at once.
pub const DEFAULT_MAX_HTTP_CONNECTIONS: usize = 1024;
/// Most WebSocket connections from one client IP address.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 1024;
/// How long one write to a client may block before it is cut off.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Over how long shutdown spreads the closing of connections (batches, 1001 each).
pub const DEFAULT_DRAIN_PERIOD: Duration = Duration::from_secs(10);
/// Upper bound of the random reconnect delay suggested to each drained client.
pub const DEFAULT_RECONNECT_JITTER: Duration = Duration::from_secs(5);
/// Where the admin listener (health, metrics, connections) binds.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// Where backends publish.
pub const DEFAULT_PUBLISH_PATH: &str = "/publish";
/// Most channel templates one route may name.
pub const MAX_ROUTE_CHANNELS: usize = 16;
/// Whether routes answer a client's text `{"ping": X}` with `{"pong": X}`.
pub const DEFAULT_CLIENT_PINGS: bool = true;
/// Where `[client]` serves the browser client module.
pub const CLIENT_SCRIPT_PATH: &str = "/heartwire.js";
/// Where `[client] demo` serves the demo page.
pub const CLIENT_DEMO_PATH: &str = "/demo";

/// `broker.prefix` unless set.
pub const DEFAULT_BROKER_PREFIX: &str = "heartwire";
/// `broker.timeout` unless set.
pub const DEFAULT_BROKER_TIMEOUT: Duration = Duration::from_secs(1);
/// `broker.probe_interval` unless set.
pub const DEFAULT_BROKER_PROBE: Duration = Duration::from_secs(1);
/// Largest `broker.ca_file`.
pub const MAX_CA_FILE: u64 = 1 << 20;
/// Longest `broker.timeout` and `broker.probe_interval`.
pub const MAX_BROKER_WAIT: Duration = Duration::from_secs(60);
/// Highest `client_rate` (messages a client may send per second).
pub const MAX_CLIENT_RATE: u32 = 100_000;
/// Most messages a channel's history may keep (`history_size`).
pub const MAX_HISTORY_SIZE: usize = 10_000;
/// How long history keeps a message unless `history_ttl` says otherwise.
pub const DEFAULT_HISTORY_TTL: Duration = Duration::from_secs(5 * 60);
/// Bytes all channels' history may hold together (`history.max_bytes`).
pub const DEFAULT_HISTORY_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Smallest `history.max_bytes`.
pub const MIN_HISTORY_MAX_BYTES: usize = 64 * 1024;
/// Largest `history.max_bytes`.
pub const MAX_HISTORY_MAX_BYTES: usize = 64 * 1024 * 1024 * 1024;
/// How long a channel's epoch and offset outlive its last message.
pub const DEFAULT_POSITION_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Longest any duration key may be: beyond it a value is a typo, and timers overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
/// Largest message, frame or publish body a config may allow (tungstenite's own default).
pub const MAX_SIZE_LIMIT: usize = 64 * 1024 * 1024;
/// Largest `server.outbound_queue`: a mailbox may grow to this many frames.
pub const MAX_OUTBOUND_QUEUE: usize = 65_536;
/// Largest `server.outbound_queue_bytes`.
pub const MAX_OUTBOUND_QUEUE_BYTES: usize = 1024 * 1024 * 1024;
/// Largest config file read.
pub const MAX_CONFIG_FILE: u64 = 1024 * 1024;
/// Largest `publish.token_file` read.
pub const MAX_TOKEN_FILE: u64 = 4096;

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it came from (named in errors and reloads).
    pub source: PathBuf,
    /// `[server]`
    pub server: ServerConfig,
    /// `[log]`
    pub log: LogConfig,
    /// `[publish]`
    pub publish: PublishConfig,
    /// `[admin]`
    pub admin: AdminConfig,
    /// `[auth]`: the verifier of subscriber tokens; `None` when no key is configured.
    pub auth: Option<Verifier>,
    /// `[client]`
    pub client: ClientConfig,
    /// `[history]`
    pub history: HistoryConfig,
    /// `[broker]`
    pub broker: BrokerConfig,
    /// `[heartbeat.NAME]`, by name; `None` for strategy `none`.
    pub heartbeats: BTreeMap<String, Option<Policy>>,
    /// `[[route]]`: WebSocket routes.
    pub routes: Vec<Arc<RouteConfig>>,
    /// `[[static]]`: plain HTTP text routes.
    pub statics: Vec<StaticConfig>,
}

/// `[server]`: the public listener and its limits.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Addresses to bind (used only at start; a change needs a restart).
    pub listen: Vec<SocketAddr>,
    /// Most WebSocket connections at once; more get HTTP 503.
    pub max_connections: usize,
    /// Most WebSocket connections from one IP address (0: no limit); more get HTTP 503.
    pub max_connections_per_ip: usize,
    /// How long shutdown waits for connections to close.
    pub shutdown_grace: Duration,
    /// How long a client may take to send its request headers.
    pub handshake_timeout: Duration,
    /// Largest incoming message.
    pub max_message_size: usize,
    /// Largest incoming frame.
    pub max_frame_size: usize,
    /// Messages a connection's mailbox holds.
    pub outbound_queue: usize,
    /// Bytes a connection's mailbox holds.
    pub outbound_queue_bytes: usize,
    /// Most connections not (yet) upgraded to WebSocket.
    pub max_http_connections: usize,
    /// How long one write to a client may block.
    pub write_timeout: Duration,
    /// On shutdown, connections are closed in batches spread over this long.
    pub drain_period: Duration,
    /// Drained clients are told to reconnect after a random delay up to this.
    pub reconnect_jitter: Duration,
    /// Proxies whose `X-Forwarded-For` / `Forwarded` (and PROXY headers) are believed.
    pub trusted_proxies: TrustedProxies,
    /// Every connection starts with a PROXY protocol (v1 or v2) header.
    pub proxy_protocol: bool,
    /// `[server.tls]`: serve TLS (`wss://`, `https://`) with this pair. Turning it on or
    /// off needs a restart; a new pair applies to new connections at once.
    pub tls: Option<TlsConfig>,
}

/// `[admin]`: the operators' listener (health, metrics, connections).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Where it listens; `None` when `enabled = false`. Changing it needs a restart.
    pub listen: Option<SocketAddr>,
}

/// `[client]`: the browser client (`/heartwire.js`) and its demo page (`/demo`), both
/// embedded in the binary. Off unless enabled: each is a path the config no longer has free.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// Serve the client module at [`CLIENT_SCRIPT_PATH`].
    pub enabled: bool,
    /// Serve the demo page at [`CLIENT_DEMO_PATH`] (needs `enabled`: the page imports it).
    pub demo: bool,
}

impl ClientConfig {
    /// The paths it serves, for collision checks.
    pub fn paths(&self) -> impl Iterator<Item = &'static str> {
        [
            (self.enabled, CLIENT_SCRIPT_PATH),
            (self.enabled && self.demo, CLIENT_DEMO_PATH),
        ]
        .into_iter()
        .filter_map(|(on, path)| on.then_some(path))
    }
}

/// `[broker]`: how a publish reaches every node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BrokerConfig {
    /// This process is the only node (`kind = "memory"`).
    #[default]
    Memory,
    /// Every node shares publishes and history through one Redis (`kind = "redis"`).
    Redis(RedisConfig),
}

/// `[broker] kind = "redis"`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://host:port/db` or `rediss://` for TLS.
    pub url: String,
    /// From `password_file` (never written inline).
    pub password: Option<String>,
    /// From `ca_file`: PEM certificates trusted for `rediss://` instead of the system's.
    pub ca: Option<Vec<u8>>,
    /// What every key and pub/sub channel starts with.
    pub prefix: String,
    /// The longest any Redis call may take; a publish beyond it answers 503.
    pub timeout: Duration,
    /// How often a probe goes through pub/sub to prove it still delivers.
    pub probe_interval: Duration,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca", &self.ca.as_ref().map(Vec::len))
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("probe_interval", &self.probe_interval)
            .finish()
    }
}

/// `[history]`: what all channels' history may hold together, and where it survives a
/// restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Bytes all stored messages may take; the oldest go first beyond it.
    pub max_bytes: usize,
    /// Where history is written on shutdown and read back at start (`None`: a restart
    /// loses it, and clients are told `epoch_changed`).
    pub dir: Option<PathBuf>,
    /// How long a channel's epoch and last offset are kept after its last message, so
    /// a client coming back after a quiet spell recovers (with nothing to replay).
    pub position_ttl: Duration,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter: `info`, `heartwire=debug,warn`, ... Once validated, every level
    /// is spelled as tracing reads it (`warning` becomes `warn`).
    pub level: String,
    /// `text` (human) or `json` (one object per line).
    pub format: LogFormat,
    /// When set, logs also go to rolling files in this directory.
    pub dir: Option<PathBuf>,
    /// How often the log file rolls over.
    pub rotation: Rotation,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::default(),
            dir: None,
            rotation: Rotation::default(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// How often a log file rolls over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rotation {
    /// A new file every hour.
    Hourly,
    /// A new file every day.
    #[default]
    Daily,
    /// One file forever.
    Never,
}

/// `[publish]`: the backend's HTTP endpoint.
#[derive(Clone, PartialEq)]
pub struct PublishConfig {
    /// Request path.
    pub path: String,
    /// Bearer token required when set.
    pub token: Option<String>,
    /// Accept Tornado-style `GET path?msg=...`.
    pub allow_get: bool,
    /// Largest request body; larger gets 413.
    pub max_body_size: usize,
    /// Allow publishing without a token on a listener reachable from other machines.
    pub allow_unauthenticated: bool,
    /// Requests accepted per second over all publishers (`None`: no limit).
    pub rate: Option<PublishRate>,
}

/// `publish.rate_limit` and `publish.rate_burst`: a token bucket refilled at `per_second`,
/// holding at most `burst` requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishRate {
    /// Requests per second, sustained.
    pub per_second: NonZeroU32,
    /// Requests accepted at once after a quiet spell.
    pub burst: NonZeroU32,
}

impl fmt::Debug for PublishConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a secret: never print it.
        f.debug_struct("PublishConfig")
            .field("path", &self.path)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("allow_get", &self.allow_get)
            .field("max_body_size", &self.max_body_size)
            .field("allow_unauthenticated", &self.allow_unauthenticated)
            .field("rate", &self.rate)
            .finish()
    }
}

/// What a route does with a client's message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnMessage {
    /// Reply to the sender with `echo_prefix` + message.
    #[default]
    Echo,
    /// Send `relay_prefix` + message to every client of the route, sender included.
    Relay,
    /// Drop it.
    Ignore,
}

/// What a route does with a client that reads slower than its traffic arrives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SlowConsumer {
    /// Close it with 1008 once it falls `outbound_queue` messages behind.
    #[default]
    Disconnect,
    /// Skip the oldest messages it missed and carry on.
    DropOldest,
    /// Only the newest message waits: anything older is skipped (tick-style data).
    KeepLatest,
}

/// How a route frames what it sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteFormat {
    /// The message as published, one frame (the seeds' clients).
    #[default]
    Raw,
    /// One JSON object per message with its channel, offset and epoch (see the README,
    /// "History and recovery").
    Envelope,
}

/// A channel's history: how many messages, for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryPolicy {
    /// Messages kept (the oldest go first).
    pub size: usize,
    /// How long each is kept.
    pub ttl: Duration,
}

/// `[[route]]`: a WebSocket endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    /// URL path as written, e.g. `/ws` or `/user/{id}`; identifies the route on reload.
    pub path: String,
    /// The same path, parsed: which request paths it serves.
    pub pattern: PathPattern,
    /// Which browser origins may connect.
    pub origins: Origins,
    /// Text sent on open.
    pub welcome: Option<String>,
    /// What a client's message does.
    pub on_message: OnMessage,
    /// Prepended to echoed messages.
    pub echo_prefix: String,
    /// Prepended to relayed messages.
    pub relay_prefix: String,
    /// The channels each connection holds, as templates (default: `channel`, else the
    /// path); a connection gets each once.
    pub channels: Vec<Template>,
    /// Name of the heartbeat policy, if any.
    pub heartbeat: Option<String>,
    /// What happens to a client that falls behind.
    pub slow_consumer: SlowConsumer,
    /// Answer a client's text `{"ping": X}` with `{"pong": X}` (consumed, never passed on);
    /// when off, such a message is ordinary traffic.
    pub client_pings: bool,
    /// Most messages a client may send per second, and at once (`client_rate`); 0: no
    /// limit.
    pub client_rate: u32,
    /// `auth = "jwt"`: how connections prove who they are; `None` for anyone.
    pub auth: Option<TokenAuth>,
    /// What its frames look like.
    pub format: RouteFormat,
    /// History of its channels (`history_size`, `history_ttl`); `None`: none.
    pub history: Option<HistoryPolicy>,
}

/// Whether a route requires a token (`auth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteAuth {
    /// Anyone the origin check lets in may connect.
    #[default]
    None,
    /// A JWT verified against `[auth]` keys.
    Jwt,
}

/// A route's token requirement, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenAuth {
    /// The keys and rules of `[auth]` (replaced on reload; connections keep their identity).
    pub verifier: Verifier,
    /// `token_cookie`: a cookie that may carry the token (only with an origin allow-list).
    pub cookie: Option<String>,
}

/// `[[static]]`: a fixed HTTP response.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    /// URL path.
    pub path: String,
    /// Response body.
    pub body: String,
    /// Response `Content-Type`.
    #[serde(default = "default_content_type")]
    pub content_type: String,
}

fn default_content_type() -> String {
    "text/plain; charset=utf-8".into()
}

/// The public listener's addresses as served, for [`Config::check_exposure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// Local addresses of the listening sockets.
    pub addrs: Vec<SocketAddr>,
    /// Where the sockets came from.
    pub from: Listeners,
}

/// Where the public listener's sockets come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listeners {
    /// Bound by heartwire from `server.listen`.
    Configured,
    /// Passed by systemd (socket activation).
    Inherited,
}

/// Why a config was refused: one line per problem, each naming the file (or the
/// environment variable) and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is missing, unreadable or not TOML, a value has the wrong type, or an
    /// environment variable names no key. Parsing stops at the first wrong value, so
    /// this is usually one line.
    #[error("{}", .0.join("\n"))]
    Parse(Vec<String>),
    /// Values that parsed but make no sense: every one found, in file order.
    #[error("{}", lines(.0))]
    Invalid(Vec<Problem>),
}

/// One value that parsed but makes no sense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The config file.
    pub file: String,
    /// Dotted key, e.g. `heartbeat.app.max_missed`.
    pub key: String,
    /// What is wrong and how to fix it.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: `{}`: {}", self.file, self.key, self.reason)
    }
}

fn lines(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(Problem::to_string).collect();
    lines.join("\n")
}

impl ConfigError {
    /// One line per problem, as `Display` prints them.
    pub fn lines(&self) -> Vec<String> {
        match self {
            Self::Parse(lines) => lines.clone(),
            Self::Invalid(problems) => problems.iter().map(Problem::to_string).collect(),
        }
    }
}

impl Config {
    /// The route serving `path`, if any.
    pub fn route(&self, path: &str) -> Option<&Arc<RouteConfig>> {
        self.routes.iter().find(|r| r.path == path)
    }

    /// The heartbeat policy `route` follows, with its name: `None` when it names none or
    /// one with strategy `none`.
    pub fn policy_of<'a>(&self, route: &'a RouteConfig) -> Option<(&'a str, Policy)> {
        let name = route.heartbeat.as_deref()?;
        let policy = (*self.heartbeats.get(name)?)?;
        Some((name, policy))
    }
}
