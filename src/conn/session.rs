//! What a connection is given at its handshake, and how it ended.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, RouteConfig};
use crate::fanout::{Broker, Conn, Route};

/// Everything a connection needs, fixed at its handshake.
pub struct Session {
    /// Its registry entry (id, peer, cancellation).
    pub conn: Conn,
    /// The live route it belongs to.
    pub route: Arc<Route>,
    /// The route's settings when it connected (welcome, prefixes, handler).
    pub settings: Arc<RouteConfig>,
    /// Where relayed messages go.
    pub broker: Arc<dyn Broker>,
    /// Longest a write may block.
    pub write_timeout: Duration,
    /// How long a shutdown close waits for the peer's answer.
    pub close_grace: Duration,
    /// The daemon's shutdown signal, to tell shutdown from a removed route.
    pub shutdown: CancellationToken,
    /// When its token runs out (`exp` plus leeway), unless refreshed; `None` without one.
    /// On the runtime's clock, as heartbeat deadlines are.
    pub expires: Option<std::time::Instant>,
}

impl Session {
    /// The session of a connection registered as `conn` on `route`, under `config`.
    pub fn new(
        conn: Conn,
        route: Arc<Route>,
        config: &Config,
        broker: Arc<dyn Broker>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            conn,
            settings: route.settings(),
            route,
            broker,
            write_timeout: config.server.write_timeout,
            close_grace: config.server.shutdown_grace,
            shutdown,
            expires: None,
        }
    }
}

/// How a connection ended, for the log.
#[derive(Debug)]
pub struct Ended {
    /// Close code sent by the server, if it closed.
    pub code: Option<u16>,
    /// Why.
    pub reason: String,
}
