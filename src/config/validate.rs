//! From the raw file to a [`Config`]: every value checked, every cross-field rule
//! applied, each error naming the file and the key.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::origin::{OriginPattern, Origins};
use super::proxies::trusted_proxies;
use super::raw::{Listen, RawAdmin, RawConfig, RawPublish, RawServer};
use super::types::*;
use crate::heartbeat::{Policy, RawPolicy};

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
        trusted_proxies: trusted_proxies(&raw.trusted_proxies)
            .map_err(|r| invalid("server.trusted_proxies", r))?,
        proxy_protocol: raw.proxy_protocol,
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

/// `[heartbeat.NAME]`: ceilings here, the strategy's own rules in [`RawPolicy::validate`].
fn policy(name: &str, raw: RawPolicy, invalid: &Invalid) -> Result<Option<Policy>, ConfigError> {
    let key = |field: &str| format!("heartbeat.{name}.{field}");
    for (field, value) in [
        ("ping_interval", raw.ping_interval),
        ("ping_timeout", raw.ping_timeout),
    ] {
        if let Some(value) = value {
            duration(&key(field), value, invalid)?;
        }
    }
    raw.validate(MAX_DURATION)
        .map_err(|e| invalid(&key(e.field), e.reason))
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

/// Reads a text file of at most `max` bytes (a config names its files: `/dev/zero` must
/// not fill memory).
pub(super) fn read_bounded(path: &Path, max: u64) -> Result<String, String> {
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
