//! One live WebSocket route: its settings, its heartbeat pulse and its registered
//! connections. What a connection receives is in its own [`Mailbox`]; which channels it
//! holds is in the hub's [`Subscriptions`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::mailbox::Mailbox;
use super::subscriptions::Subscriptions;
use super::vitals::Vitals;
use crate::config::RouteConfig;
use crate::heartbeat::Pulse;
use crate::metrics::{Metrics, RouteCounters};

/// A live WebSocket route.
pub struct Route {
    /// Its path as written, which identifies it across reloads.
    pub path: String,
    /// Its counters, shared by its connections.
    counters: Arc<RouteCounters>,
    /// The route's settings in force (replaced on reload; new connections take them).
    settings: RwLock<Arc<RouteConfig>>,
    /// The heartbeat pulse its connections follow.
    pub pulse: watch::Sender<Pulse>,
    /// Cancelled when the route is removed (or drained at shutdown).
    pub closing: CancellationToken,
    conns: Mutex<HashMap<u64, Conn>>,
}

/// A registered connection, as listed for operators.
#[derive(Debug, Clone)]
pub struct Conn {
    /// Connection id, unique for the process.
    pub id: u64,
    /// Peer address.
    pub peer: SocketAddr,
    /// When it opened.
    pub since: SystemTime,
    /// Cancelling it closes the connection with 1001.
    pub token: CancellationToken,
    /// Its live figures (policy, RTT, missed pings, queue depth) and counters.
    pub vitals: Arc<Vitals>,
    /// What it is sent, queued.
    pub mailbox: Arc<Mailbox>,
    /// Who it is: its verified token's `sub`, when the route requires a token.
    pub user: Option<Arc<str>>,
    /// The channels it holds.
    pub channels: Arc<[Arc<str>]>,
}

/// Who a new connection is and what it holds, as its handshake decided.
#[derive(Debug, Clone, Default)]
pub struct Subscriber {
    /// Its verified `sub`, if any.
    pub user: Option<Arc<str>>,
    /// Its channels, each once.
    pub channels: Vec<Arc<str>>,
    /// Where it stopped on channels it asks to recover.
    pub resume: Vec<Resume>,
}

/// Where a reconnecting client says it stopped on a channel (`recover=CHANNEL:OFFSET:EPOCH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The channel.
    pub channel: String,
    /// The offset of the last message it got.
    pub offset: u64,
    /// The epoch that offset belongs to.
    pub epoch: String,
}

impl Route {
    pub(super) fn new(settings: Arc<RouteConfig>, metrics: &Metrics) -> Self {
        Self {
            counters: Arc::new(metrics.route(&settings.path)),
            path: settings.path.clone(),
            settings: RwLock::new(settings),
            pulse: watch::Sender::new(Pulse::default()),
            closing: CancellationToken::new(),
            conns: Mutex::new(HashMap::new()),
        }
    }

    /// The route's settings in force.
    pub fn settings(&self) -> Arc<RouteConfig> {
        // Replaced whole under the lock, so valid even after a panic.
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) fn set_settings(&self, settings: Arc<RouteConfig>) {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = settings;
    }

    /// Registers connection `id` from `peer`; the guard returned unregisters it, and
    /// unsubscribes it from its channels in `subs` (the hub subscribes it).
    pub(super) fn register(
        self: &Arc<Self>,
        id: u64,
        peer: SocketAddr,
        who: Subscriber,
        mailbox: Mailbox,
        subs: &Arc<Subscriptions>,
        metrics: &Arc<Metrics>,
    ) -> (Conn, Registration) {
        let conn = Conn {
            id,
            peer,
            since: SystemTime::now(),
            token: self.closing.child_token(),
            vitals: Arc::new(Vitals::new(metrics, self.counters.clone())),
            mailbox: Arc::new(mailbox),
            user: who.user,
            channels: who.channels.into(),
        };
        self.counters.opened();
        self.lock().insert(id, conn.clone());
        let reg = Registration {
            route: self.clone(),
            id,
            subs: subs.clone(),
            channels: conn.channels.clone(),
        };
        (conn, reg)
    }

    /// Calls `f` with each live connection, under the registry's lock (keep `f` short).
    pub fn each_conn(&self, f: impl FnMut(&Conn)) {
        self.lock().values().for_each(f);
    }

    /// Live connections.
    pub fn conns(&self) -> Vec<Conn> {
        self.lock().values().cloned().collect()
    }

    /// Number of live connections.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the route has no connection.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Conn>> {
        // A panic while holding this lock leaves a plain map in a valid state.
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Removes a connection from its route when its task ends, however it ends.
pub struct Registration {
    route: Arc<Route>,
    id: u64,
    subs: Arc<Subscriptions>,
    channels: Arc<[Arc<str>]>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.subs.unsubscribe(self.id, &self.channels);
        let mut conns = self.route.lock();
        conns.remove(&self.id);
        self.route.counters.closed();
        // A map keeps the capacity of its peak; give most of it back once the crowd has
        // gone (halving at a quarter full keeps this amortized O(1)).
        let len = conns.len();
        if conns.capacity() > 64 && len < conns.capacity() / 4 {
            conns.shrink_to(len * 2);
        }
    }
}
