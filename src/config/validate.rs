//! From the raw file to a [`Config`]: every value checked, every cross-field rule
//! applied, each error naming the file and the key.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::bounded::read_bounded_text;
use super::origin::{OriginPattern, Origins};
use super::proxies::trusted_proxies;
use super::raw::{
    Listen, RawAdmin, RawBroker, RawConfig, RawHistory, RawPublish, RawRoute, RawServer,
};
use super::tls;
use super::token_file;
use super::types::*;
use super::{log_filter, writable_dir};
use crate::auth::Verifier;
use crate::channels::{PathPattern, Source, Template};
use crate::duration::HumanDuration;
use crate::heartbeat::{Policy, RawPolicy};

impl Config {
    /// Validates a parsed file. `source` is named in every error; every problem found is
    /// reported, not only the first.
    pub fn from_raw(raw: RawConfig, source: &Path) -> Result<Self, ConfigError> {
        let mut p = Problems::new(source);
        let server = server(raw.server, source, &mut p);
        let log = log(raw.log, &mut p);
        let publish = publish(raw.publish, source, &mut p);
        if let (Some(server), Some(publish)) = (&server, &publish) {
            let largest = server.max_message_size.max(publish.max_body_size);
            if server.outbound_queue_bytes < largest {
                p.add(
                    "server.outbound_queue_bytes",
                    format!(
                        "{} is smaller than one message ({largest} bytes: server.max_message_size or publish.max_body_size): raise it to at least {largest}, better a few times that",
                        server.outbound_queue_bytes
                    ),
                );
            }
        }
        let admin = admin(raw.admin, &mut p);
        let history = history(raw.history, &mut p);
        let broker = broker(raw.broker, source, &mut p);
        // Err: `[auth]` is invalid (recorded); routes that need it add nothing more.
        let verifier = raw
            .auth
            .validate(&|written| token_file::resolve_here(written, source))
            .map_err(|problems| {
                for (key, reason) in problems {
                    p.add(&key, reason);
                }
            });
        // Routes may name a policy that is itself invalid: that is one problem, not two.
        let policy_names: BTreeSet<String> = raw.heartbeat.keys().cloned().collect();
        let mut heartbeats = BTreeMap::new();
        for (name, raw) in raw.heartbeat {
            if let Some(policy) = policy(&name, raw, &mut p) {
                heartbeats.insert(name, policy);
            }
        }

        if raw.client.demo && !raw.client.enabled {
            p.add(
                "client.demo",
                "the demo page imports the client module: set client.enabled = true too, or remove client.demo".into(),
            );
        }
        let publish_path = publish
            .as_ref()
            .map_or(DEFAULT_PUBLISH_PATH.to_owned(), |p| p.path.clone());
        // The kick endpoint lives under the publish path.
        let mut paths = BTreeSet::from([format!("{publish_path}/disconnect"), publish_path]);
        for path in raw.client.paths() {
            if !paths.insert(path.to_owned()) {
                p.add(
                    "publish.path",
                    format!("`{path}` is served by [client]: choose another path"),
                );
            }
        }
        let mut routes = Vec::with_capacity(raw.routes.len());
        for (i, raw) in raw.routes.into_iter().enumerate() {
            let verifier = verifier.as_ref().map(Option::as_ref);
            if let Some(route) = route(i, raw, &policy_names, verifier, &mut paths, &mut p) {
                routes.push(Arc::new(route));
            }
        }
        for (i, s) in raw.statics.iter().enumerate() {
            let key = format!("static[{i}].path");
            if p.take(&key, check_path(&s.path)).is_some() && !paths.insert(s.path.clone()) {
                p.add(
                    &key,
                    format!(
                        "`{}` is already used by a route, by [publish] or by [client]",
                        s.path
                    ),
                );
            }
        }
        if let (Some(server), Some(publish)) = (&server, &publish) {
            let served = Served {
                addrs: server.listen.clone(),
                from: Listeners::Configured,
            };
            if let Some(reason) = exposure(publish, &served) {
                p.add("publish.token", reason);
            }
        }

        // Each `None` below was recorded as a problem when it was made.
        let (Some(server), Some(log), Some(publish), Some(admin), Some(history), Some(broker)) =
            (server, log, publish, admin, history, broker)
        else {
            return Err(p.into_error());
        };
        if !p.is_empty() {
            return Err(p.into_error());
        }
        Ok(Config {
            source: source.to_owned(),
            server,
            log,
            publish,
            admin,
            auth: verifier.ok().flatten(),
            client: raw.client,
            history,
            broker,
            heartbeats,
            routes,
            statics: raw.statics,
        })
    }

    /// Refuses a publish endpoint without a token on a listener reachable from other
    /// machines. Checked against `server.listen` on load, and against the addresses actually
    /// served (sockets inherited from systemd ignore `server.listen`) at start and reload.
    pub fn check_exposure(&self, served: &Served) -> Result<(), ConfigError> {
        match exposure(&self.publish, served) {
            None => Ok(()),
            Some(reason) => Err(ConfigError::Invalid(vec![Problem {
                file: self.source.display().to_string(),
                key: "publish.token".into(),
                reason,
            }])),
        }
    }
}

/// Why `publish` must not be served on `served`, if it must not.
fn exposure(publish: &PublishConfig, served: &Served) -> Option<String> {
    if publish.token.is_some() || publish.allow_unauthenticated {
        return None;
    }
    let open = served.addrs.iter().find(|a| !a.ip().is_loopback())?;
    let what = match served.from {
        Listeners::Configured => format!("server.listen {open}"),
        Listeners::Inherited => format!(
            "the socket {open} inherited from systemd (ListenStream= in heartwire.socket; server.listen is not used then)"
        ),
    };
    Some(format!(
        "{what} is reachable from other machines, so anyone could publish: set publish.token_file (or token), or publish.allow_unauthenticated = true if a firewall or proxy guards {}",
        publish.path
    ))
}

/// The problems found so far in one file.
struct Problems {
    file: String,
    list: Vec<Problem>,
}

impl Problems {
    fn new(source: &Path) -> Self {
        Self {
            file: source.display().to_string(),
            list: Vec::new(),
        }
    }

    fn add(&mut self, key: &str, reason: String) {
        self.list.push(Problem {
            file: self.file.clone(),
            key: key.to_owned(),
            reason,
        });
    }

    /// The value when `checked` is fine; otherwise records why under `key`.
    fn take<T>(&mut self, key: &str, checked: Result<T, String>) -> Option<T> {
        checked.map_err(|reason| self.add(key, reason)).ok()
    }

    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    fn into_error(self) -> ConfigError {
        ConfigError::Invalid(self.list)
    }
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "(none defined)".into()
    } else {
        items.join(", ")
    }
}

fn server(raw: RawServer, source: &Path, p: &mut Problems) -> Option<ServerConfig> {
    let listen = match raw.listen {
        Listen::One(a) => vec![a],
        Listen::Many(list) => list,
    };
    if listen.is_empty() {
        p.add(
            "server.listen",
            "needs at least one address, e.g. \"127.0.0.1:8080\"".into(),
        );
    }
    let mut addrs = Vec::with_capacity(listen.len());
    for a in &listen {
        let parsed = a
            .parse::<SocketAddr>()
            .map_err(|_| format!("`{a}` is not an IP:port address, e.g. \"0.0.0.0:8080\""));
        addrs.extend(p.take("server.listen", parsed));
    }
    let max_connections = p.take("server.max_connections", positive(raw.max_connections));
    let max_http_connections = p.take(
        "server.max_http_connections",
        positive(raw.max_http_connections),
    );
    let outbound_queue = p.take(
        "server.outbound_queue",
        within(raw.outbound_queue, MAX_OUTBOUND_QUEUE),
    );
    let outbound_queue_bytes = p.take(
        "server.outbound_queue_bytes",
        within(raw.outbound_queue_bytes, MAX_OUTBOUND_QUEUE_BYTES),
    );
    let max_message_size = p.take(
        "server.max_message_size",
        within(raw.max_message_size, MAX_SIZE_LIMIT),
    );
    let handshake_timeout = p.take(
        "server.handshake_timeout",
        nonzero_duration(&raw.handshake_timeout),
    );
    let write_timeout = p.take("server.write_timeout", nonzero_duration(&raw.write_timeout));
    let shutdown_grace = p.take("server.shutdown_grace", duration(&raw.shutdown_grace));
    let drain_period = p.take("server.drain_period", duration(&raw.drain_period));
    let reconnect_jitter = p.take("server.reconnect_jitter", duration(&raw.reconnect_jitter));
    let max_frame_size = raw.max_frame_size.unwrap_or(raw.max_message_size);
    let mut max_frame_size = p.take(
        "server.max_frame_size",
        within(max_frame_size, MAX_SIZE_LIMIT),
    );
    if let (Some(frame), Some(message)) = (max_frame_size, max_message_size)
        && frame > message
    {
        p.add(
                "server.max_frame_size",
                format!(
                    "{frame} is larger than server.max_message_size ({message}); a frame cannot exceed a message"
                ),
            );
        max_frame_size = None;
    }
    let tls = match &raw.tls {
        None => Some(None),
        Some(pair) => match tls::load(pair, source, std::time::SystemTime::now()) {
            Ok(loaded) => Some(Some(loaded)),
            Err((key, reason)) => {
                p.add(key, reason);
                None
            }
        },
    };
    if addrs.len() != listen.len() || addrs.is_empty() {
        return None;
    }
    Some(ServerConfig {
        listen: addrs,
        max_connections: max_connections?,
        max_connections_per_ip: raw.max_connections_per_ip,
        shutdown_grace: shutdown_grace?,
        handshake_timeout: handshake_timeout?,
        max_message_size: max_message_size?,
        max_frame_size: max_frame_size?,
        outbound_queue: outbound_queue?,
        outbound_queue_bytes: outbound_queue_bytes?,
        max_http_connections: max_http_connections?,
        write_timeout: write_timeout?,
        drain_period: drain_period?,
        reconnect_jitter: reconnect_jitter?,
        trusted_proxies: p.take(
            "server.trusted_proxies",
            trusted_proxies(&raw.trusted_proxies),
        )?,
        proxy_protocol: raw.proxy_protocol,
        tls: tls?,
    })
}

fn log(mut raw: LogConfig, p: &mut Problems) -> Option<LogConfig> {
    let level = p.take("log.level", log_filter::normalise(&raw.level));
    let dir_ok = match &raw.dir {
        Some(dir) => p.take(
            "log.dir",
            writable_dir::check(
                dir,
                "under systemd use /var/log/heartwire (the unit's LogsDirectory=), or remove log.dir to log to stderr only",
            ),
        ).is_some(),
        None => true,
    };
    raw.level = level?;
    dir_ok.then_some(raw)
}

fn history(raw: RawHistory, p: &mut Problems) -> Option<HistoryConfig> {
    let max_bytes = p.take(
        "history.max_bytes",
        if raw.max_bytes < MIN_HISTORY_MAX_BYTES {
            Err(format!(
                "{} is below the minimum of {MIN_HISTORY_MAX_BYTES} bytes: history that small holds next to nothing",
                raw.max_bytes
            ))
        } else {
            within(raw.max_bytes, MAX_HISTORY_MAX_BYTES)
        },
    );
    let dir_ok = match &raw.dir {
        Some(dir) => p
            .take(
                "history.dir",
                writable_dir::check(
                    dir,
                    "under systemd use /var/lib/heartwire (the unit's StateDirectory=), or remove history.dir to keep history in memory only",
                ),
            )
            .is_some(),
        None => true,
    };
    let position_ttl = p.take("history.position_ttl", nonzero_duration(&raw.position_ttl));
    dir_ok.then_some(HistoryConfig {
        max_bytes: max_bytes?,
        dir: raw.dir,
        position_ttl: position_ttl?,
    })
}

fn broker(raw: RawBroker, source: &Path, p: &mut Problems) -> Option<BrokerConfig> {
    let wait = |key: &str, value: &HumanDuration, p: &mut Problems| {
        p.take(
            key,
            nonzero_duration(value).and_then(|d| match d <= MAX_BROKER_WAIT {
                true => Ok(d),
                false => Err(format!("`{value}` is longer than the limit of 60s")),
            }),
        )
    };
    let timeout = wait("broker.timeout", &raw.timeout, p);
    let probe_interval = wait("broker.probe_interval", &raw.probe_interval, p);
    let prefix_ok = !raw.prefix.is_empty()
        && raw.prefix.len() <= 64
        && raw
            .prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
    if !prefix_ok {
        p.add(
            "broker.prefix",
            format!(
                "`{}` is not a key prefix: use 1 to 64 characters from A-Z a-z 0-9 _ . : -",
                raw.prefix
            ),
        );
    }
    match raw.kind.as_str() {
        "memory" => {
            for (key, set) in [
                ("broker.url", raw.url.is_some()),
                ("broker.password_file", raw.password_file.is_some()),
                ("broker.ca_file", raw.ca_file.is_some()),
            ] {
                if set {
                    p.add(
                        key,
                        "applies only with kind = \"redis\": set broker.kind = \"redis\", or remove it".into(),
                    );
                }
            }
            (timeout.is_some() && probe_interval.is_some() && prefix_ok)
                .then_some(BrokerConfig::Memory)
        }
        "redis" => {
            let url = match raw.url {
                None => {
                    p.add(
                        "broker.url",
                        "kind = \"redis\" needs the server's address, e.g. url = \"redis://127.0.0.1:6379\" (rediss:// for TLS)".into(),
                    );
                    None
                }
                Some(url) => p.take("broker.url", redis_url(&url).map(|()| url)),
            };
            let password = match &raw.password_file {
                None => Some(None),
                Some(file) => p
                    .take(
                        "broker.password_file",
                        read_token(file, source, "remove password_file if Redis needs none"),
                    )
                    .map(Some),
            };
            let ca = match (&raw.ca_file, &url) {
                (None, _) => Some(None),
                (Some(_), Some(url)) if !url.starts_with("rediss://") => {
                    p.add(
                        "broker.ca_file",
                        "applies only to TLS: write the url as rediss://, or remove ca_file".into(),
                    );
                    None
                }
                (Some(file), _) => p
                    .take(
                        "broker.ca_file",
                        token_file::resolve_here(file, source).and_then(|f| read_ca(&f)),
                    )
                    .map(Some),
            };
            Some(BrokerConfig::Redis(RedisConfig {
                url: url?,
                password: password?,
                ca: ca?,
                prefix: prefix_ok.then_some(raw.prefix)?,
                timeout: timeout?,
                probe_interval: probe_interval?,
            }))
        }
        other => {
            p.add(
                "broker.kind",
                format!(
                    "`{other}` is not a broker: use \"memory\" (one node, the default) or \"redis\""
                ),
            );
            None
        }
    }
}

/// PEM certificates to trust, read bounded.
fn read_ca(file: &Path) -> Result<Vec<u8>, String> {
    let pem = super::bounded::read_bounded(file, MAX_CA_FILE)?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(format!(
            "`{}` holds no PEM certificate (-----BEGIN CERTIFICATE-----): give the CA that signed Redis's certificate",
            file.display()
        ));
    }
    Ok(pem)
}

/// A Redis address heartwire can use: `redis://` or `rediss://`, a host, no password.
fn redis_url(url: &str) -> Result<(), String> {
    use redis::IntoConnectionInfo;
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(format!(
            "`{url}` is not a Redis URL: write redis://HOST:PORT (rediss://HOST:PORT for TLS)"
        ));
    }
    let info = url
        .into_connection_info()
        .map_err(|e| format!("`{url}` is not a Redis URL ({e}): write redis://HOST:PORT/DB"))?;
    if info.redis_settings().password().is_some() {
        return Err(
            "holds a password: put it in a file named by broker.password_file, not in the config"
                .into(),
        );
    }
    Ok(())
}

/// A route's history: `None` when `history_size` is 0 (off), `Some(None)` when invalid
/// (recorded).
fn route_history(
    raw: &RawRoute,
    key: &dyn Fn(&str) -> String,
    p: &mut Problems,
) -> Option<Option<HistoryPolicy>> {
    if raw.history_size == 0 {
        if raw.history_ttl.is_some() {
            p.add(
                &key("history_ttl"),
                "applies only with history: set history_size (e.g. 100), or remove history_ttl"
                    .into(),
            );
            return Some(None);
        }
        return None;
    }
    let mut ok = true;
    let size = p.take(
        &key("history_size"),
        within(raw.history_size, MAX_HISTORY_SIZE),
    );
    if raw.format != RouteFormat::Envelope {
        p.add(
            &key("history_size"),
            "history needs format = \"envelope\": its clients name their position from the offsets it carries".into(),
        );
        ok = false;
    }
    if raw.slow_consumer != SlowConsumer::Disconnect {
        p.add(
            &key("slow_consumer"),
            "a route with history must disconnect a client that falls behind (slow_consumer = \"disconnect\"): it then recovers what it missed; skipping messages would leave gaps".into(),
        );
        ok = false;
    }
    let ttl = match &raw.history_ttl {
        None => Some(DEFAULT_HISTORY_TTL),
        Some(ttl) => p.take(&key("history_ttl"), nonzero_duration(ttl)),
    };
    match (size, ttl, ok) {
        (Some(size), Some(ttl), true) => Some(Some(HistoryPolicy { size, ttl })),
        _ => Some(None),
    }
}

fn admin(raw: RawAdmin, p: &mut Problems) -> Option<AdminConfig> {
    if !raw.enabled {
        return Some(AdminConfig { listen: None });
    }
    let addr = raw.listen.parse::<SocketAddr>().map_err(|_| {
        format!(
            "`{}` is not an IP:port address, e.g. \"127.0.0.1:9090\" (or set admin.enabled = false)",
            raw.listen
        )
    });
    let addr = p.take("admin.listen", addr)?;
    Some(AdminConfig { listen: Some(addr) })
}

fn publish(raw: RawPublish, source: &Path, p: &mut Problems) -> Option<PublishConfig> {
    let path = p.take("publish.path", check_path(&raw.path).map(|()| raw.path));
    let token = match (raw.token, raw.token_file) {
        (Some(_), Some(_)) => {
            p.add(
                "publish.token_file",
                "set either publish.token or publish.token_file, not both".into(),
            );
            None
        }
        (Some(t), None) => Some(Some(t)),
        (None, Some(file)) => p
            .take(
                "publish.token_file",
                read_token(
                    &file,
                    source,
                    "remove token_file to publish without a token",
                ),
            )
            .map(Some),
        (None, None) => Some(None),
    };
    let token = match token {
        Some(Some(t)) if t.is_empty() => {
            p.add(
                "publish.token",
                "is empty; remove it to disable auth, or set a long random secret".into(),
            );
            None
        }
        other => other,
    };
    let max_body_size = raw.max_body_size.unwrap_or(DEFAULT_MAX_MESSAGE_SIZE);
    let max_body_size = p.take(
        "publish.max_body_size",
        within(max_body_size, MAX_SIZE_LIMIT),
    );
    let rate = publish_rate(raw.rate_limit, raw.rate_burst, p);
    Some(PublishConfig {
        path: path?,
        token: token?,
        allow_get: raw.allow_get,
        max_body_size: max_body_size?,
        allow_unauthenticated: raw.allow_unauthenticated,
        rate: rate?,
    })
}

fn publish_rate(
    limit: Option<u32>,
    burst: Option<u32>,
    p: &mut Problems,
) -> Option<Option<PublishRate>> {
    let Some(per_second) = limit.and_then(NonZeroU32::new) else {
        if burst.is_some() {
            p.add(
                "publish.rate_burst",
                "applies only with publish.rate_limit: set rate_limit (requests per second) or remove rate_burst".into(),
            );
            return None;
        }
        return Some(None);
    };
    let burst = match burst {
        None => per_second,
        Some(n) => p.take(
            "publish.rate_burst",
            NonZeroU32::new(n).ok_or_else(|| {
                "is 0, which would refuse every publish: use at least 1 (it defaults to rate_limit)"
                    .to_owned()
            }),
        )?,
    };
    Some(Some(PublishRate { per_second, burst }))
}

/// `[heartbeat.NAME]`: ceilings here, the strategy's own rules in [`RawPolicy::validate`].
/// `None` when invalid (recorded); `Some(None)` for strategy `none`.
fn policy(name: &str, raw: RawPolicy, p: &mut Problems) -> Option<Option<Policy>> {
    let key = |field: &str| format!("heartbeat.{name}.{field}");
    let mut ok = true;
    for (field, value) in [
        ("ping_interval", &raw.ping_interval),
        ("ping_timeout", &raw.ping_timeout),
    ] {
        if let Some(value) = value {
            ok &= p.take(&key(field), duration(value)).is_some();
        }
    }
    let policy = raw.validate(MAX_DURATION).map_err(|e| (e.field, e.reason));
    match policy {
        Ok(policy) if ok => Some(policy),
        Ok(_) => None,
        Err((field, reason)) => {
            p.add(&key(field), reason);
            None
        }
    }
}

/// `[[route]]` number `i`; `paths` holds the paths taken so far; `verifier` is `[auth]`'s
/// (`Err` when `[auth]` is invalid, already recorded).
fn route(
    i: usize,
    raw: RawRoute,
    policies: &BTreeSet<String>,
    verifier: Result<Option<&Verifier>, &()>,
    paths: &mut BTreeSet<String>,
    p: &mut Problems,
) -> Option<RouteConfig> {
    let key = |field: &str| format!("route[{i}].{field}");
    let mut path = p.take(&key("path"), check_path(&raw.path).map(|()| &raw.path));
    if path.is_some() && !paths.insert(raw.path.clone()) {
        p.add(
            &key("path"),
            format!(
                "`{}` is already used by another route, by [publish] or by [client]",
                raw.path
            ),
        );
        path = None;
    }
    let origins = match &raw.origins {
        None => Some(Origins::SameOrigin),
        Some(list) => {
            let mut patterns = Vec::with_capacity(list.len());
            for text in list {
                patterns.extend(p.take(&key("origins"), OriginPattern::parse(text)));
            }
            (patterns.len() == list.len()).then_some(Origins::List(patterns))
        }
    };
    let auth = token_auth(&raw, &origins, verifier, &key, p);
    let history = route_history(&raw, &key, p);
    let client_rate = raw.client_rate;
    if client_rate > MAX_CLIENT_RATE {
        p.add(
            &key("client_rate"),
            format!(
                "{client_rate} is over {MAX_CLIENT_RATE} messages per second: set at most {MAX_CLIENT_RATE}, or 0 for no limit"
            ),
        );
    }
    let pattern = path.and_then(|path| p.take(&key("path"), PathPattern::parse(path)));
    let channels = pattern
        .as_ref()
        .and_then(|pattern| channels(&raw, pattern, &key, p));
    let mut heartbeat_ok = true;
    if let Some(name) = &raw.heartbeat
        && !policies.contains(name)
    {
        let known: Vec<&str> = policies.iter().map(String::as_str).collect();
        p.add(
            &key("heartbeat"),
            format!(
                "no policy named `{name}`; define [heartbeat.{name}] or use one of: {}",
                list_or_none(&known)
            ),
        );
        heartbeat_ok = false;
    }
    if !heartbeat_ok {
        return None;
    }
    Some(RouteConfig {
        pattern: pattern?,
        path: raw.path,
        origins: origins?,
        welcome: raw.welcome,
        on_message: raw.on_message,
        echo_prefix: raw.echo_prefix,
        relay_prefix: raw.relay_prefix,
        channels: channels?,
        heartbeat: raw.heartbeat,
        slow_consumer: raw.slow_consumer,
        auth: auth?,
        client_pings: raw.client_pings,
        client_rate,
        format: raw.format,
        history: match history {
            None => None,
            Some(policy) => Some(policy?),
        },
    })
}

/// The longest `token_cookie` name.
const MAX_COOKIE_NAME: usize = 64;

/// The route's token requirement: `Some(None)` for none, `None` when invalid (recorded).
fn token_auth(
    raw: &RawRoute,
    origins: &Option<Origins>,
    verifier: Result<Option<&Verifier>, &()>,
    key: &dyn Fn(&str) -> String,
    p: &mut Problems,
) -> Option<Option<TokenAuth>> {
    let cookie_ok = match &raw.token_cookie {
        None => true,
        Some(_) if raw.auth == RouteAuth::None => {
            p.add(
                &key("token_cookie"),
                "applies only to routes with auth = \"jwt\": set auth, or remove token_cookie"
                    .into(),
            );
            false
        }
        Some(name) => p
            .take(&key("token_cookie"), cookie_name(name, origins))
            .is_some(),
    };
    let verifier = match (raw.auth, verifier) {
        (RouteAuth::None, _) => return cookie_ok.then_some(None),
        (RouteAuth::Jwt, Err(_)) => return None,
        (RouteAuth::Jwt, Ok(None)) => {
            p.add(
                &key("auth"),
                "\"jwt\" needs a key to verify tokens with: add an [[auth.key]] with `algorithm` and `file` (e.g. algorithm = \"HS256\", file = \"keys/hs256.secret\")".into(),
            );
            return None;
        }
        (RouteAuth::Jwt, Ok(Some(v))) => v.clone(),
    };
    cookie_ok.then(|| {
        Some(TokenAuth {
            verifier,
            cookie: raw.token_cookie.clone(),
        })
    })
}

/// A `token_cookie`: a cookie name (RFC 6265 token), on a route whose origins are an
/// explicit list without `*`: browsers send cookies with any page's WebSocket, so only an
/// allow-list stops another site from connecting as the user (cross-site WebSocket hijacking).
fn cookie_name(name: &str, origins: &Option<Origins>) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_COOKIE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid {
        return Err(format!(
            "`{name}` is not a cookie name: use 1 to {MAX_COOKIE_NAME} letters, digits or -_. (e.g. \"heartwire_token\")"
        ));
    }
    match origins {
        Some(Origins::List(list)) if !list.contains(&OriginPattern::Any) => Ok(()),
        // Invalid origins were recorded already.
        None => Ok(()),
        Some(_) => Err(format!(
            "a token in cookie `{name}` needs an explicit origins allow-list without \"*\" on this route: browsers send the cookie with any site's WebSocket (cross-site WebSocket hijacking); list the origins that may connect, e.g. origins = [\"https://app.example\"]"
        )),
    }
}

/// The route's channel templates: `channels`, else `channel`, else the path; each
/// placeholder must have a source on this route.
fn channels(
    raw: &RawRoute,
    pattern: &PathPattern,
    key: &dyn Fn(&str) -> String,
    p: &mut Problems,
) -> Option<Vec<Template>> {
    let (field, written) = match (&raw.channel, &raw.channels) {
        (Some(_), Some(_)) => {
            p.add(
                &key("channels"),
                "set either `channel` or `channels`, not both (`channels = [\"a\", \"b\"]` holds several)"
                    .into(),
            );
            return None;
        }
        (Some(one), None) => ("channel", vec![one.clone()]),
        (None, Some(list)) => ("channels", list.clone()),
        (None, None) => ("path", vec![raw.path.clone()]),
    };
    if written.is_empty() || written.len() > MAX_ROUTE_CHANNELS {
        p.add(
            &key(field),
            format!("name 1 to {MAX_ROUTE_CHANNELS} channels, e.g. [\"news\", \"user.{{sub}}\"]"),
        );
        return None;
    }
    let mut templates = Vec::with_capacity(written.len());
    for text in &written {
        let Some(t) = p.take(&key(field), Template::parse(text)) else {
            continue;
        };
        let missing = t.sources().find_map(|s| match s {
            Source::Path(name) if !pattern.has_param(name) => Some(format!(
                "`{t}` needs `{{{name}}}`, which is not a segment of path `{}`: add it to the path (e.g. \"/user/{{{name}}}\"), or take it from {{query.{name}}} or a token claim",
                raw.path
            )),
            Source::Claim(name) if raw.auth == RouteAuth::None => Some(format!(
                "`{t}` takes `{name}` from a token, but this route requires none: set auth = \"jwt\" on the route"
            )),
            Source::Claim(_) => None,
            // The token itself must never become a channel name (shown in /connections).
            Source::Query(name) if name == "token" && raw.auth == RouteAuth::Jwt => Some(format!(
                "`{t}` would put the token (the `token` query parameter) into a channel name: use a claim, e.g. {{sub}}"
            )),
            Source::Path(_) | Source::Query(_) => None,
        });
        match missing {
            Some(reason) => p.add(&key(field), reason),
            None => templates.push(t),
        }
    }
    (templates.len() == written.len()).then_some(templates)
}

fn positive(value: usize) -> Result<usize, String> {
    within(value, usize::MAX)
}

/// `value` in `1..=max`.
fn within(value: usize, max: usize) -> Result<usize, String> {
    if value == 0 {
        return Err("must be greater than 0".into());
    }
    if value > max {
        return Err(format!("{value} is over the limit of {max}"));
    }
    Ok(value)
}

fn nonzero_duration(value: &HumanDuration) -> Result<Duration, String> {
    if value.get().is_zero() {
        return Err("must be greater than 0, e.g. \"5s\" or \"250ms\"".into());
    }
    duration(value)
}

/// Within [`MAX_DURATION`]; the message quotes the value as written.
fn duration(value: &HumanDuration) -> Result<Duration, String> {
    if value.get() > MAX_DURATION {
        return Err(format!("`{value}` is longer than the limit of 24h"));
    }
    Ok(value.get())
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

/// The token in `publish.token_file` (`written` as in the config at `source`).
fn read_token(written: &Path, source: &Path, without: &str) -> Result<String, String> {
    let file = token_file::resolve_here(written, source)?;
    let credential = token_file::credential(written)?;
    let text = read_bounded_text(&file, MAX_TOKEN_FILE).map_err(|e| match credential {
        Some(name) => format!(
            "{e} (is LoadCredential={name}:/etc/heartwire/{name} in the unit, and does its source exist?)"
        ),
        None => e,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(match credential {
            Some(name) => format!(
                "`{}` ({}) is empty: write a long random secret into the source of the unit's LoadCredential={name}:..., e.g. /etc/heartwire/{name}, and restart; or {without}",
                written.display(),
                file.display()
            ),
            None => format!(
                "`{}` is empty: write a long random secret into it, or {without}",
                file.display()
            ),
        });
    }
    Ok(token.to_owned())
}
