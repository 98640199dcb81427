//! The serde mirror of the file: every section as written, with its defaults. Nothing
//! here is validated; [`super::validate`] turns it into a [`super::Config`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::tls::RawTls;
use super::types::*;
use crate::auth::RawAuth;
use crate::duration::HumanDuration;
use crate::heartbeat::RawPolicy;

/// The TOML as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub(super) server: RawServer,
    pub(super) log: LogConfig,
    pub(super) publish: RawPublish,
    pub(super) admin: RawAdmin,
    pub(super) auth: RawAuth,
    pub(super) client: ClientConfig,
    pub(super) history: RawHistory,
    pub(super) broker: RawBroker,
    pub(super) heartbeat: BTreeMap<String, RawPolicy>,
    #[serde(rename = "route")]
    pub(super) routes: Vec<RawRoute>,
    #[serde(rename = "static")]
    pub(super) statics: Vec<StaticConfig>,
}

/// One address or a list of them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub(super) enum Listen {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawServer {
    pub(super) listen: Listen,
    pub(super) max_connections: usize,
    pub(super) max_connections_per_ip: usize,
    pub(super) shutdown_grace: HumanDuration,
    pub(super) handshake_timeout: HumanDuration,
    pub(super) max_message_size: usize,
    pub(super) max_frame_size: Option<usize>,
    pub(super) outbound_queue: usize,
    pub(super) outbound_queue_bytes: usize,
    pub(super) max_http_connections: usize,
    pub(super) write_timeout: HumanDuration,
    pub(super) drain_period: HumanDuration,
    pub(super) reconnect_jitter: HumanDuration,
    pub(super) trusted_proxies: Vec<String>,
    pub(super) proxy_protocol: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tls: Option<RawTls>,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: Listen::One(DEFAULT_LISTEN.into()),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            shutdown_grace: HumanDuration::from(DEFAULT_SHUTDOWN_GRACE),
            handshake_timeout: HumanDuration::from(DEFAULT_HANDSHAKE_TIMEOUT),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_frame_size: None,
            outbound_queue: DEFAULT_OUTBOUND_QUEUE,
            outbound_queue_bytes: DEFAULT_OUTBOUND_QUEUE_BYTES,
            max_http_connections: DEFAULT_MAX_HTTP_CONNECTIONS,
            write_timeout: HumanDuration::from(DEFAULT_WRITE_TIMEOUT),
            drain_period: HumanDuration::from(DEFAULT_DRAIN_PERIOD),
            reconnect_jitter: HumanDuration::from(DEFAULT_RECONNECT_JITTER),
            trusted_proxies: Vec::new(),
            proxy_protocol: false,
            tls: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawHistory {
    pub(super) max_bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) dir: Option<PathBuf>,
    pub(super) position_ttl: HumanDuration,
}

impl Default for RawHistory {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_HISTORY_MAX_BYTES,
            dir: None,
            position_ttl: HumanDuration::from(DEFAULT_POSITION_TTL),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawBroker {
    pub(super) kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) password_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) ca_file: Option<PathBuf>,
    pub(super) prefix: String,
    pub(super) timeout: HumanDuration,
    pub(super) probe_interval: HumanDuration,
}

impl Default for RawBroker {
    fn default() -> Self {
        Self {
            kind: "memory".into(),
            url: None,
            password_file: None,
            ca_file: None,
            prefix: DEFAULT_BROKER_PREFIX.into(),
            timeout: HumanDuration::from(DEFAULT_BROKER_TIMEOUT),
            probe_interval: HumanDuration::from(DEFAULT_BROKER_PROBE),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAdmin {
    pub(super) enabled: bool,
    pub(super) listen: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: DEFAULT_ADMIN_LISTEN.into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawPublish {
    pub(super) path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) token_file: Option<PathBuf>,
    pub(super) allow_get: bool,
    pub(super) max_body_size: Option<usize>,
    pub(super) allow_unauthenticated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) rate_limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) rate_burst: Option<u32>,
}

impl Default for RawPublish {
    fn default() -> Self {
        Self {
            path: DEFAULT_PUBLISH_PATH.into(),
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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) origins: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) welcome: Option<String>,
    #[serde(default)]
    pub(super) on_message: OnMessage,
    #[serde(default)]
    pub(super) echo_prefix: String,
    #[serde(default)]
    pub(super) relay_prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) channels: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) heartbeat: Option<String>,
    #[serde(default)]
    pub(super) slow_consumer: SlowConsumer,
    #[serde(default)]
    pub(super) auth: RouteAuth,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) token_cookie: Option<String>,
    #[serde(default = "answer_client_pings")]
    pub(super) client_pings: bool,
    #[serde(default)]
    pub(super) client_rate: u32,
    #[serde(default)]
    pub(super) format: RouteFormat,
    #[serde(default)]
    pub(super) history_size: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) history_ttl: Option<HumanDuration>,
}

fn answer_client_pings() -> bool {
    DEFAULT_CLIENT_PINGS
}
