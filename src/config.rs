//! The config file: [`RawConfig`] mirrors the TOML, [`Config`] is what the daemon runs on.
//!
//! `load` is pure: it reads the file and the `HEARTWIRE_*` environment, validates
//! everything and returns either a `Config` whose fields cannot be wrong or an error
//! naming the file, the key and the fix.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

use crate::heartbeat::{Liveness, Strategy};
use crate::origin::{OriginPattern, Origins};

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
/// Messages a route buffers for its slowest reader before cutting it off.
pub const DEFAULT_OUTBOUND_QUEUE: usize = 1024;
/// Bytes a reader may fall behind its route before it gets the slow-consumer policy.
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
/// Default heartbeat interval.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(5);
/// Default number of unanswered `json-gzip` pings before a peer is closed (the seed's 2).
pub const DEFAULT_MAX_MISSED: u32 = 2;
/// Longest channel name, in bytes.
pub const MAX_CHANNEL_LEN: usize = 128;

/// Longest any duration key may be: beyond it a value is a typo, and timers overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
/// Largest message, frame or publish body a config may allow (tungstenite's own default).
pub const MAX_SIZE_LIMIT: usize = 64 * 1024 * 1024;
/// Largest `server.outbound_queue`: each route allocates its ring up front.
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
    /// `[heartbeat.NAME]`, by name.
    pub heartbeats: BTreeMap<String, Policy>,
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
    /// Messages a route buffers for its slowest reader.
    pub outbound_queue: usize,
    /// Bytes a reader may fall behind its route.
    pub outbound_queue_bytes: usize,
    /// Most connections not (yet) upgraded to WebSocket.
    pub max_http_connections: usize,
    /// How long one write to a client may block.
    pub write_timeout: Duration,
    /// On shutdown, connections are closed in batches spread over this long.
    pub drain_period: Duration,
    /// Drained clients are told to reconnect after a random delay up to this.
    pub reconnect_jitter: Duration,
}

/// `[admin]`: the operators' listener (health, metrics, connections).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Where it listens; `None` when `enabled = false`. Changing it needs a restart.
    pub listen: Option<SocketAddr>,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter: `info`, `heartwire=debug`, ...
    #[serde(default = "default_log_level")]
    pub level: String,
    /// `text` (human) or `json` (one object per line).
    #[serde(default)]
    pub format: LogFormat,
    /// When set, logs also go to rolling files in this directory.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// How often the log file rolls over.
    #[serde(default)]
    pub rotation: Rotation,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: default_log_level(),
            format: LogFormat::default(),
            dir: None,
            rotation: Rotation::default(),
        }
    }
}

fn default_log_level() -> String {
    "info".into()
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

/// A named heartbeat policy, `[heartbeat.NAME]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The policy's name.
    pub name: String,
    /// How pings look on the wire.
    pub strategy: Strategy,
    /// Time between pings (`None` for strategy `none`).
    pub ping_interval: Option<Duration>,
    /// When a peer counts as dead.
    pub liveness: Liveness,
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

/// `[[route]]`: a WebSocket endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    /// URL path, e.g. `/ws`.
    pub path: String,
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
    /// The name publishers target (defaults to the path).
    pub channel: String,
    /// Name of the heartbeat policy, if any.
    pub heartbeat: Option<String>,
    /// What happens to a client that falls behind.
    pub slow_consumer: SlowConsumer,
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

/// The TOML as written.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    log: LogConfig,
    #[serde(default)]
    publish: RawPublish,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    heartbeat: BTreeMap<String, RawPolicy>,
    #[serde(default, rename = "route")]
    routes: Vec<RawRoute>,
    #[serde(default, rename = "static")]
    statics: Vec<StaticConfig>,
}

/// One address or a list of them.
#[derive(Debug, Deserialize, Serialize)]
#[serde(untagged)]
enum Listen {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default = "default_listen")]
    listen: Listen,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default = "default_max_connections_per_ip")]
    max_connections_per_ip: usize,
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    shutdown_grace: Duration,
    #[serde(default = "default_handshake_timeout", with = "humantime_serde")]
    handshake_timeout: Duration,
    #[serde(default = "default_max_message_size")]
    max_message_size: usize,
    #[serde(default)]
    max_frame_size: Option<usize>,
    #[serde(default = "default_outbound_queue")]
    outbound_queue: usize,
    #[serde(default = "default_outbound_queue_bytes")]
    outbound_queue_bytes: usize,
    #[serde(default = "default_max_http_connections")]
    max_http_connections: usize,
    #[serde(default = "default_write_timeout", with = "humantime_serde")]
    write_timeout: Duration,
    #[serde(default = "default_drain_period", with = "humantime_serde")]
    drain_period: Duration,
    #[serde(default = "default_reconnect_jitter", with = "humantime_serde")]
    reconnect_jitter: Duration,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    #[serde(default = "default_true")]
    enabled: bool,
    #[serde(default = "default_admin_listen")]
    listen: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: default_admin_listen(),
        }
    }
}

fn default_admin_listen() -> String {
    DEFAULT_ADMIN_LISTEN.into()
}
fn default_drain_period() -> Duration {
    DEFAULT_DRAIN_PERIOD
}
fn default_reconnect_jitter() -> Duration {
    DEFAULT_RECONNECT_JITTER
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_frame_size: None,
            outbound_queue: DEFAULT_OUTBOUND_QUEUE,
            outbound_queue_bytes: DEFAULT_OUTBOUND_QUEUE_BYTES,
            max_http_connections: DEFAULT_MAX_HTTP_CONNECTIONS,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            drain_period: DEFAULT_DRAIN_PERIOD,
            reconnect_jitter: DEFAULT_RECONNECT_JITTER,
        }
    }
}

fn default_listen() -> Listen {
    Listen::One(DEFAULT_LISTEN.into())
}
fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}
fn default_max_connections_per_ip() -> usize {
    DEFAULT_MAX_CONNECTIONS_PER_IP
}
fn default_shutdown_grace() -> Duration {
    DEFAULT_SHUTDOWN_GRACE
}
fn default_handshake_timeout() -> Duration {
    DEFAULT_HANDSHAKE_TIMEOUT
}
fn default_max_message_size() -> usize {
    DEFAULT_MAX_MESSAGE_SIZE
}
fn default_outbound_queue() -> usize {
    DEFAULT_OUTBOUND_QUEUE
}
fn default_outbound_queue_bytes() -> usize {
    DEFAULT_OUTBOUND_QUEUE_BYTES
}
fn default_max_http_connections() -> usize {
    DEFAULT_MAX_HTTP_CONNECTIONS
}
fn default_write_timeout() -> Duration {
    DEFAULT_WRITE_TIMEOUT
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawPublish {
    #[serde(default = "default_publish_path")]
    path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_file: Option<PathBuf>,
    #[serde(default = "default_true")]
    allow_get: bool,
    #[serde(default)]
    max_body_size: Option<usize>,
    #[serde(default)]
    allow_unauthenticated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rate_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rate_burst: Option<u32>,
}

impl Default for RawPublish {
    fn default() -> Self {
        Self {
            path: default_publish_path(),
            token: None,
            token_file: None,
            allow_get: true,
            max_body_size: None,
            allow_unauthenticated: false,
            rate_limit: None,
            rate_burst: None,
        }
    }
}

fn default_publish_path() -> String {
    DEFAULT_PUBLISH_PATH.into()
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    strategy: Strategy,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    ping_interval: Option<Duration>,
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    ping_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_missed: Option<u32>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    origins: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    welcome: Option<String>,
    #[serde(default)]
    on_message: OnMessage,
    #[serde(default)]
    echo_prefix: String,
    #[serde(default)]
    relay_prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    heartbeat: Option<String>,
    #[serde(default)]
    slow_consumer: SlowConsumer,
}

/// Why a config was refused. Every message names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is missing, unreadable, not TOML, or a value has the wrong type.
    #[error("{0}")]
    Parse(String),
    /// A value parsed but makes no sense.
    #[error("{file}: `{key}`: {reason}")]
    Invalid {
        /// The config file.
        file: String,
        /// Dotted key, e.g. `heartbeat.app.max_missed`.
        key: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

/// Reads `path`, then `HEARTWIRE_SECTION__KEY` environment overrides, and validates.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    Config::from_raw(raw(path)?, path)
}

/// The effective config (file plus environment) as TOML, with the publish token redacted.
pub fn effective_toml(path: &Path) -> Result<String, ConfigError> {
    let mut raw = raw(path)?;
    if raw.publish.token.is_some() {
        raw.publish.token = Some("<redacted>".into());
    }
    toml::to_string_pretty(&raw).map_err(|e| ConfigError::Parse(format!("{}: {e}", path.display())))
}

/// The file plus the environment, parsed but not yet validated.
fn raw(path: &Path) -> Result<RawConfig, ConfigError> {
    // The message names the file.
    let text = read_bounded(path, MAX_CONFIG_FILE).map_err(ConfigError::Parse)?;
    Figment::new()
        .merge(Toml::string(&text))
        // Only SECTION__KEY names: HEARTWIRE_CONFIG and friends are not config keys.
        .merge(
            Env::prefixed("HEARTWIRE_")
                .filter(|key| key.as_str().contains("__"))
                .split("__"),
        )
        .extract()
        .map_err(|e| parse_error(path, e))
}

/// Reads a text file of at most `max` bytes (a config names its files: `/dev/zero` must
/// not fill memory).
fn read_bounded(path: &Path, max: u64) -> Result<String, String> {
    let cannot = |e: std::io::Error| format!("cannot read `{}`: {e}", path.display());
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(cannot)?
        .take(max + 1)
        .read_to_string(&mut text)
        .map_err(cannot)?;
    if text.len() as u64 > max {
        return Err(format!(
            "`{}` is larger than {max} bytes: is it the right file?",
            path.display()
        ));
    }
    Ok(text)
}

/// Parses a config from TOML text (tests and `check`), without the environment.
pub fn from_toml(text: &str, source: &Path) -> Result<Config, ConfigError> {
    let raw: RawConfig = Figment::new()
        .merge(Toml::string(text))
        .extract()
        .map_err(|e| parse_error(source, e))?;
    Config::from_raw(raw, source)
}

/// Turns figment's errors into one line each: `file: key: what`.
fn parse_error(path: &Path, err: figment::Error) -> ConfigError {
    let lines: Vec<String> = err
        .into_iter()
        .map(|e| {
            // The text was read from `path`; anything else came from the environment.
            let origin = match e.metadata.as_ref() {
                Some(m) if m.name.contains("environment") => format!("environment ({})", m.name),
                _ => path.display().to_string(),
            };
            if e.path.is_empty() {
                format!("{origin}: {}", e.kind)
            } else {
                format!("{origin}: `{}`: {}", dotted(&e.path), e.kind)
            }
        })
        .collect();
    ConfigError::Parse(lines.join("\n"))
}

/// `["route", "0", "path"]` -> `route[0].path`, the spelling validation errors use too.
fn dotted(path: &[String]) -> String {
    let mut out = String::new();
    for part in path {
        if part.bytes().all(|b| b.is_ascii_digit()) && !out.is_empty() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

impl Config {
    /// Validates a parsed file. `source` is named in every error.
    pub fn from_raw(raw: RawConfig, source: &Path) -> Result<Self, ConfigError> {
        let file = source.display().to_string();
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            file: file.clone(),
            key: key.to_owned(),
            reason,
        };

        let server = server(raw.server, &invalid)?;
        if let Err(err) = tracing_subscriber::EnvFilter::try_new(&raw.log.level) {
            return Err(invalid(
                "log.level",
                format!(
                    "`{}` is not a log filter ({err}); use error, warn, info, debug or trace",
                    raw.log.level
                ),
            ));
        }
        let publish = publish(raw.publish, source, &invalid)?;
        let largest = server.max_message_size.max(publish.max_body_size);
        if server.outbound_queue_bytes < largest {
            return Err(invalid(
                "server.outbound_queue_bytes",
                format!(
                    "{} is smaller than one message ({largest} bytes: server.max_message_size or publish.max_body_size): raise it to at least {largest}, better a few times that",
                    server.outbound_queue_bytes
                ),
            ));
        }
        let admin = admin(raw.admin, &invalid)?;
        let mut heartbeats = BTreeMap::new();
        for (name, raw) in raw.heartbeat {
            let policy = policy(&name, raw, &invalid)?;
            heartbeats.insert(name, policy);
        }

        let mut paths = BTreeSet::from([publish.path.clone()]);
        let mut routes = Vec::with_capacity(raw.routes.len());
        for (i, raw) in raw.routes.into_iter().enumerate() {
            let key = |field: &str| format!("route[{i}].{field}");
            check_path(&raw.path).map_err(|r| invalid(&key("path"), r))?;
            if !paths.insert(raw.path.clone()) {
                return Err(invalid(
                    &key("path"),
                    format!(
                        "`{}` is already used by another route or by [publish]",
                        raw.path
                    ),
                ));
            }
            let origins = match raw.origins {
                None => Origins::SameOrigin,
                Some(list) => {
                    let patterns = list
                        .iter()
                        .map(|p| OriginPattern::parse(p))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|r| invalid(&key("origins"), r))?;
                    Origins::List(patterns)
                }
            };
            let channel = raw.channel.unwrap_or_else(|| raw.path.clone());
            check_channel(&channel).map_err(|r| invalid(&key("channel"), r))?;
            if let Some(name) = &raw.heartbeat {
                if !heartbeats.contains_key(name) {
                    let known: Vec<&str> = heartbeats.keys().map(String::as_str).collect();
                    return Err(invalid(
                        &key("heartbeat"),
                        format!(
                            "no policy named `{name}`; define [heartbeat.{name}] or use one of: {}",
                            list_or_none(&known)
                        ),
                    ));
                }
            }
            routes.push(Arc::new(RouteConfig {
                path: raw.path,
                origins,
                welcome: raw.welcome,
                on_message: raw.on_message,
                echo_prefix: raw.echo_prefix,
                relay_prefix: raw.relay_prefix,
                channel,
                heartbeat: raw.heartbeat,
                slow_consumer: raw.slow_consumer,
            }));
        }
        for (i, s) in raw.statics.iter().enumerate() {
            let key = format!("static[{i}].path");
            check_path(&s.path).map_err(|r| invalid(&key, r))?;
            if !paths.insert(s.path.clone()) {
                return Err(invalid(
                    &key,
                    format!("`{}` is already used by a route or by [publish]", s.path),
                ));
            }
        }

        let config = Config {
            source: source.to_owned(),
            server,
            log: raw.log,
            publish,
            admin,
            heartbeats,
            routes,
            statics: raw.statics,
        };
        config.check_exposure(&Served {
            addrs: config.server.listen.clone(),
            from: Listeners::Configured,
        })?;
        Ok(config)
    }

    /// Refuses a publish endpoint without a token on a listener reachable from other
    /// machines. Checked against `server.listen` on load, and against the addresses actually
    /// served (sockets inherited from systemd ignore `server.listen`) at start and reload.
    pub fn check_exposure(&self, served: &Served) -> Result<(), ConfigError> {
        let publish = &self.publish;
        if publish.token.is_some() || publish.allow_unauthenticated {
            return Ok(());
        }
        let Some(open) = served.addrs.iter().find(|a| !a.ip().is_loopback()) else {
            return Ok(());
        };
        let what = match served.from {
            Listeners::Configured => format!("server.listen {open}"),
            Listeners::Inherited => format!(
                "the socket {open} inherited from systemd (ListenStream= in heartwire.socket; server.listen is not used then)"
            ),
        };
        Err(ConfigError::Invalid {
            file: self.source.display().to_string(),
            key: "publish.token".into(),
            reason: format!(
                "{what} is reachable from other machines, so anyone could publish: set publish.token_file (or token), or publish.allow_unauthenticated = true if a firewall or proxy guards {}",
                publish.path
            ),
        })
    }

    /// The route serving `path`, if any.
    pub fn route(&self, path: &str) -> Option<&Arc<RouteConfig>> {
        self.routes.iter().find(|r| r.path == path)
    }
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "(none defined)".into()
    } else {
        items.join(", ")
    }
}

type Invalid<'a> = dyn Fn(&str, String) -> ConfigError + 'a;

fn server(raw: RawServer, invalid: &Invalid) -> Result<ServerConfig, ConfigError> {
    let listen = match raw.listen {
        Listen::One(a) => vec![a],
        Listen::Many(list) => list,
    };
    if listen.is_empty() {
        return Err(invalid(
            "server.listen",
            "needs at least one address, e.g. \"127.0.0.1:8080\"".into(),
        ));
    }
    let listen = listen
        .iter()
        .map(|a| {
            a.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "server.listen",
                    format!("`{a}` is not an IP:port address, e.g. \"0.0.0.0:8080\""),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    positive("server.max_connections", raw.max_connections, invalid)?;
    positive(
        "server.max_http_connections",
        raw.max_http_connections,
        invalid,
    )?;
    within(
        "server.outbound_queue",
        raw.outbound_queue,
        MAX_OUTBOUND_QUEUE,
        invalid,
    )?;
    within(
        "server.outbound_queue_bytes",
        raw.outbound_queue_bytes,
        MAX_OUTBOUND_QUEUE_BYTES,
        invalid,
    )?;
    within(
        "server.max_message_size",
        raw.max_message_size,
        MAX_SIZE_LIMIT,
        invalid,
    )?;
    nonzero_duration("server.handshake_timeout", raw.handshake_timeout, invalid)?;
    nonzero_duration("server.write_timeout", raw.write_timeout, invalid)?;
    for (key, value) in [
        ("server.shutdown_grace", raw.shutdown_grace),
        ("server.drain_period", raw.drain_period),
        ("server.reconnect_jitter", raw.reconnect_jitter),
    ] {
        duration(key, value, invalid)?;
    }
    let max_frame_size = raw.max_frame_size.unwrap_or(raw.max_message_size);
    within(
        "server.max_frame_size",
        max_frame_size,
        MAX_SIZE_LIMIT,
        invalid,
    )?;
    if max_frame_size > raw.max_message_size {
        return Err(invalid(
            "server.max_frame_size",
            format!(
                "{max_frame_size} is larger than server.max_message_size ({}); a frame cannot exceed a message",
                raw.max_message_size
            ),
        ));
    }
    Ok(ServerConfig {
        listen,
        max_connections: raw.max_connections,
        max_connections_per_ip: raw.max_connections_per_ip,
        shutdown_grace: raw.shutdown_grace,
        handshake_timeout: raw.handshake_timeout,
        max_message_size: raw.max_message_size,
        max_frame_size,
        outbound_queue: raw.outbound_queue,
        outbound_queue_bytes: raw.outbound_queue_bytes,
        max_http_connections: raw.max_http_connections,
        write_timeout: raw.write_timeout,
        drain_period: raw.drain_period,
        reconnect_jitter: raw.reconnect_jitter,
    })
}

fn admin(raw: RawAdmin, invalid: &Invalid) -> Result<AdminConfig, ConfigError> {
    if !raw.enabled {
        return Ok(AdminConfig { listen: None });
    }
    let addr = raw.listen.parse::<SocketAddr>().map_err(|_| {
        invalid(
            "admin.listen",
            format!(
                "`{}` is not an IP:port address, e.g. \"127.0.0.1:9090\" (or set admin.enabled = false)",
                raw.listen
            ),
        )
    })?;
    Ok(AdminConfig { listen: Some(addr) })
}

fn publish(
    raw: RawPublish,
    source: &Path,
    invalid: &Invalid,
) -> Result<PublishConfig, ConfigError> {
    check_path(&raw.path).map_err(|r| invalid("publish.path", r))?;
    let token = match (raw.token, raw.token_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "publish.token_file",
                "set either publish.token or publish.token_file, not both".into(),
            ));
        }
        (Some(t), None) => Some(t),
        (None, Some(file)) => {
            // A relative token_file is relative to the config file, like an include.
            let file = match source.parent() {
                Some(dir) if file.is_relative() => dir.join(file),
                _ => file,
            };
            let text = read_bounded(&file, MAX_TOKEN_FILE)
                .map_err(|e| invalid("publish.token_file", e))?;
            Some(text.trim().to_owned())
        }
        (None, None) => None,
    };
    if token.as_deref() == Some("") {
        return Err(invalid(
            "publish.token",
            "is empty; remove it to disable auth, or set a long random secret".into(),
        ));
    }
    let max_body_size = raw.max_body_size.unwrap_or(DEFAULT_MAX_MESSAGE_SIZE);
    within(
        "publish.max_body_size",
        max_body_size,
        MAX_SIZE_LIMIT,
        invalid,
    )?;
    Ok(PublishConfig {
        path: raw.path,
        token,
        allow_get: raw.allow_get,
        max_body_size,
        allow_unauthenticated: raw.allow_unauthenticated,
        rate: publish_rate(raw.rate_limit, raw.rate_burst, invalid)?,
    })
}

fn publish_rate(
    limit: Option<u32>,
    burst: Option<u32>,
    invalid: &Invalid,
) -> Result<Option<PublishRate>, ConfigError> {
    let Some(per_second) = limit.and_then(NonZeroU32::new) else {
        if burst.is_some() {
            return Err(invalid(
                "publish.rate_burst",
                "applies only with publish.rate_limit: set rate_limit (requests per second) or remove rate_burst".into(),
            ));
        }
        return Ok(None);
    };
    let burst = match burst {
        None => per_second,
        Some(n) => NonZeroU32::new(n).ok_or_else(|| {
            invalid(
                "publish.rate_burst",
                "is 0, which would refuse every publish: use at least 1 (it defaults to rate_limit)".into(),
            )
        })?,
    };
    Ok(Some(PublishRate { per_second, burst }))
}

fn policy(name: &str, raw: RawPolicy, invalid: &Invalid) -> Result<Policy, ConfigError> {
    let key = |field: &str| format!("heartbeat.{name}.{field}");
    let refuse = |field: &str, why: &str| Err(invalid(&key(field), why.to_owned()));
    let interval = raw.ping_interval.unwrap_or(DEFAULT_PING_INTERVAL);
    if raw.ping_interval.is_some() {
        nonzero_duration(&key("ping_interval"), interval, invalid)?;
    }
    let liveness = match raw.strategy {
        Strategy::None => {
            if raw.ping_interval.is_some() || raw.ping_timeout.is_some() || raw.max_missed.is_some()
            {
                return refuse(
                    "strategy",
                    "is `none`, which sends no pings: remove ping_interval, ping_timeout and max_missed",
                );
            }
            return Ok(Policy {
                name: name.to_owned(),
                strategy: Strategy::None,
                ping_interval: None,
                liveness: Liveness::Never,
            });
        }
        Strategy::Protocol => {
            if raw.max_missed.is_some() {
                return refuse(
                    "max_missed",
                    "applies to strategy `json-gzip`; `protocol` closes a peer silent for ping_timeout",
                );
            }
            // Tornado's default: three intervals (interval is at most MAX_DURATION here).
            let timeout = raw.ping_timeout.unwrap_or((interval * 3).min(MAX_DURATION));
            nonzero_duration(&key("ping_timeout"), timeout, invalid)?;
            Liveness::Timeout(timeout)
        }
        Strategy::JsonGzip => {
            if raw.ping_timeout.is_some() {
                return refuse(
                    "ping_timeout",
                    "applies to strategy `protocol`; `json-gzip` closes a peer after max_missed unanswered pings",
                );
            }
            let missed = raw.max_missed.unwrap_or(DEFAULT_MAX_MISSED);
            let missed = NonZeroU32::new(missed).ok_or_else(|| {
                invalid(
                    &key("max_missed"),
                    "must be at least 1 (the seed uses 2)".into(),
                )
            })?;
            Liveness::MaxMissed(missed)
        }
    };
    Ok(Policy {
        name: name.to_owned(),
        strategy: raw.strategy,
        ping_interval: Some(interval),
        liveness,
    })
}

fn positive(key: &str, value: usize, invalid: &Invalid) -> Result<(), ConfigError> {
    within(key, value, usize::MAX, invalid)
}

/// `value` in `1..=max`.
fn within(key: &str, value: usize, max: usize, invalid: &Invalid) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(invalid(key, "must be greater than 0".into()));
    }
    if value > max {
        return Err(invalid(key, format!("{value} is over the limit of {max}")));
    }
    Ok(())
}

fn nonzero_duration(key: &str, value: Duration, invalid: &Invalid) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(invalid(
            key,
            "must be greater than 0, e.g. \"5s\" or \"250ms\"".into(),
        ));
    }
    duration(key, value, invalid)
}

fn duration(key: &str, value: Duration, invalid: &Invalid) -> Result<(), ConfigError> {
    if value > MAX_DURATION {
        return Err(invalid(
            key,
            format!(
                "{} is longer than the limit of 24h",
                humantime::format_duration(value)
            ),
        ));
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), String> {
    let ok = path.starts_with('/')
        && path.len() <= 256
        && !path.contains(['?', '#'])
        && path.chars().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{path}` is not a URL path: it must start with `/` and hold no spaces, `?` or `#`"
        ))
    }
}

/// Channel names: what publishers may target, from the config or a request.
pub fn check_channel(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_CHANNEL_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_.:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a channel name: use 1 to {MAX_CHANNEL_LEN} characters from A-Z a-z 0-9 / _ . : -"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FILE: &str = "prop.toml";

    /// What the file says, re-rendered as TOML and read again, is the same config.
    fn round_trip(text: &str) -> Config {
        let config = from_toml(text, Path::new(FILE)).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let raw: RawConfig = Figment::new().merge(Toml::string(text)).extract().unwrap();
        let rendered = toml::to_string(&raw).unwrap();
        let again =
            from_toml(&rendered, Path::new(FILE)).unwrap_or_else(|e| panic!("{e}\n{rendered}"));
        assert_eq!(config, again, "{rendered}");
        config
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            let _ = from_toml(&text, Path::new(FILE));
        }

        #[test]
        fn arbitrary_values_for_real_keys_never_panic(
            key in prop::sample::select(vec![
                "server]\nlisten", "server]\nmax_connections", "server]\nshutdown_grace",
                "server]\nmax_frame_size", "server]\noutbound_queue", "server]\noutbound_queue_bytes",
                "server]\nmax_http_connections", "server]\nhandshake_timeout",
                "publish]\npath", "publish]\ntoken", "publish]\nmax_body_size", "log]\nlevel",
                "heartbeat.x]\nping_timeout",
                "heartbeat.x]\nstrategy", "heartbeat.x]\nping_interval", "heartbeat.x]\nmax_missed",
            ]),
            value in prop::sample::select(vec![
                "0", "-1", "18446744073709551616", "\"\"", "\"0s\"", "\"1ns\"", "\"999999999999h\"",
                "\"json-gzip\"", "\"none\"", "[]", "[\"a\"]", "{}", "1.5", "true", "\"/x\"", "\"*\"",
            ]),
        ) {
            let _ = from_toml(&format!("[{key} = {value}\n"), Path::new(FILE));
        }

        #[test]
        fn written_values_read_back(
            interval_ms in 1u64..1_000_000,
            timeout_ms in 1u64..1_000_000,
            missed in 1u32..1000,
            max in 1usize..10_000_000,
            path in "/[a-z0-9_-]{0,12}",
            channel in "[A-Za-z0-9/_.:-]{1,40}",
            origin in "https://(\\*\\.)?[a-z]{1,10}\\.[a-z]{2,4}(:[1-9][0-9]{0,3})?",
            welcome in "[^\"\\\\\\p{Cc}]{0,40}",
        ) {
            let text = format!(
                "[server]\nmax_connections = {max}\n\
                 [heartbeat.p]\nstrategy = \"protocol\"\nping_interval = \"{interval_ms}ms\"\nping_timeout = \"{timeout_ms}ms\"\n\
                 [heartbeat.j]\nstrategy = \"json-gzip\"\nping_interval = \"{interval_ms}ms\"\nmax_missed = {missed}\n\
                 [[route]]\npath = \"{path}\"\nchannel = \"{channel}\"\norigins = [\"{origin}\"]\nwelcome = \"{welcome}\"\nheartbeat = \"j\"\n"
            );
            prop_assume!(path != DEFAULT_PUBLISH_PATH);
            let c = round_trip(&text);
            prop_assert_eq!(c.server.max_connections, max);
            prop_assert_eq!(c.heartbeats["p"].liveness, Liveness::Timeout(Duration::from_millis(timeout_ms)));
            prop_assert_eq!(c.heartbeats["j"].ping_interval, Some(Duration::from_millis(interval_ms)));
            prop_assert_eq!(c.heartbeats["j"].liveness, Liveness::MaxMissed(NonZeroU32::new(missed).unwrap()));
            let route = c.route(&path).unwrap();
            prop_assert_eq!(&route.channel, &channel);
            prop_assert_eq!(route.welcome.as_deref(), Some(welcome.as_str()));
            prop_assert_eq!(&route.origins, &Origins::List(vec![OriginPattern::parse(&origin).unwrap()]));
        }
    }

    #[test]
    fn the_shipped_configs_round_trip() {
        for file in ["config/heartwire.toml", "config/tornado-demo.toml"] {
            let text =
                std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
            round_trip(&text);
        }
    }
}
