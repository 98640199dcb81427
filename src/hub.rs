//! The registry of live routes and connections, and local fan-out.
//!
//! Each route has one broadcast ring shared by all its connections: a published message
//! is stored once and every connection sends the same reference-counted bytes. A reader
//! that falls more than `outbound_queue` messages, or `outbound_queue_bytes` bytes, behind
//! gets its route's slow-consumer policy, so a slow client bounds its own backlog and never
//! delays anyone else.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use tokio::sync::{broadcast, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::heartbeat::Pulse;
use crate::metrics::{Metrics, RouteCounters};
use crate::vitals::Vitals;
use crate::wire::WireFrame;

/// Who a message is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every connection of every route.
    All,
    /// Every connection of the routes with this channel.
    Channel(String),
    /// Every connection of the route with this path.
    Route(String),
}

/// A publish the hub could not route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// No route has this channel.
    #[error("no route has channel `{0}`; channels are set by `channel` (or `path`) in [[route]]")]
    UnknownChannel(String),
}

/// A frame in a route's ring, with the route's byte count once it was queued.
#[derive(Debug, Clone)]
pub struct Queued {
    /// The frame every reader writes.
    pub frame: WireFrame,
    /// Bytes the route had queued up to and including this frame.
    end: u64,
}

impl AsRef<WireFrame> for Queued {
    fn as_ref(&self) -> &WireFrame {
        &self.frame
    }
}

/// A live WebSocket route.
pub struct Route {
    /// Its path, which identifies it across reloads.
    pub path: String,
    outbound: broadcast::Sender<Queued>,
    /// Encoded bytes ever queued on `outbound`: how far behind a reader is, in bytes.
    queued_bytes: AtomicU64,
    /// Its counters, shared by its connections.
    counters: Arc<RouteCounters>,
    /// The heartbeat pulse its connections follow.
    pub pulse: watch::Sender<Pulse>,
    /// Cancelled when the route is removed (or drained at shutdown).
    pub closing: CancellationToken,
    conns: Mutex<HashMap<u64, Conn>>,
}

/// A connection's subscriptions to its route: fan-out frames and heartbeat pulses.
pub struct Feeds {
    /// The route's fan-out, from the moment of subscribing.
    pub outbound: broadcast::Receiver<Queued>,
    /// The route's heartbeat policy and ticks.
    pub pulse: watch::Receiver<Pulse>,
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
}

impl Route {
    fn new(path: String, queue: usize, metrics: &Metrics) -> Self {
        Self {
            counters: Arc::new(metrics.route(&path)),
            path,
            outbound: broadcast::channel(queue).0,
            queued_bytes: AtomicU64::new(0),
            pulse: watch::Sender::new(Pulse::default()),
            closing: CancellationToken::new(),
            conns: Mutex::new(HashMap::new()),
        }
    }

    /// Queues an encoded frame for every connection of this route; returns how many.
    pub fn send(&self, frame: WireFrame) -> usize {
        let len = u64::try_from(frame.encoded().len()).unwrap_or(u64::MAX);
        // Concurrent publishers may queue in the other order than they counted: a reader's
        // figure is then off by at most the messages in flight, never unbounded.
        let end = self
            .queued_bytes
            .fetch_add(len, Ordering::Relaxed)
            .saturating_add(len);
        self.outbound.send(Queued { frame, end }).unwrap_or(0)
    }

    /// Bytes queued on this route after `taken`: how far behind a reader that has just
    /// taken it is.
    pub fn bytes_after(&self, taken: &Queued) -> u64 {
        self.queued_bytes
            .load(Ordering::Relaxed)
            .saturating_sub(taken.end)
    }

    /// Subscribes a new connection to the route's fan-out and heartbeat.
    pub fn feeds(&self) -> Feeds {
        Feeds {
            outbound: self.outbound.subscribe(),
            pulse: self.pulse.subscribe(),
        }
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

#[derive(Default)]
struct Table {
    routes: HashMap<String, Arc<Route>>,
    channels: HashMap<String, Vec<Arc<Route>>>,
}

/// All routes and their connections.
#[derive(Default)]
pub struct Hub {
    table: RwLock<Table>,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
}

/// What a config change did to the routes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RouteChanges {
    /// Paths now served that were not.
    pub added: Vec<String>,
    /// Paths no longer served; their connections are closing.
    pub removed: Vec<String>,
}

/// Removes a connection from its route when its task ends, however it ends.
pub struct Registration {
    route: Arc<Route>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut conns = self.route.lock();
        conns.remove(&self.id);
        // A map keeps the capacity of its peak; give most of it back once the crowd has
        // gone (halving at a quarter full keeps this amortized O(1)).
        let len = conns.len();
        if conns.capacity() > 64 && len < conns.capacity() / 4 {
            conns.shrink_to(len * 2);
        }
    }
}

impl Hub {
    /// An empty hub whose connections count into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            table: RwLock::default(),
            next_id: AtomicU64::new(0),
            metrics,
        }
    }

    /// The metrics its connections count into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Makes the routes match `config`: new paths start, removed ones close.
    pub fn apply(&self, config: &Config) -> RouteChanges {
        let mut table = self.write();
        let mut changes = RouteChanges::default();
        let mut routes = HashMap::with_capacity(config.routes.len());
        let mut channels: HashMap<String, Vec<Arc<Route>>> = HashMap::new();
        for rc in &config.routes {
            let route = match table.routes.remove(&rc.path) {
                Some(existing) => existing,
                None => {
                    changes.added.push(rc.path.clone());
                    Arc::new(Route::new(
                        rc.path.clone(),
                        config.server.outbound_queue,
                        &self.metrics,
                    ))
                }
            };
            channels
                .entry(rc.channel.clone())
                .or_default()
                .push(route.clone());
            routes.insert(rc.path.clone(), route);
        }
        for (path, gone) in table.routes.drain() {
            gone.closing.cancel();
            changes.removed.push(path);
        }
        changes.added.sort();
        changes.removed.sort();
        *table = Table { routes, channels };
        changes
    }

    /// The live route at `path`.
    pub fn route(&self, path: &str) -> Option<Arc<Route>> {
        self.read().routes.get(path).cloned()
    }

    /// Every live route.
    pub fn routes(&self) -> Vec<Arc<Route>> {
        self.read().routes.values().cloned().collect()
    }

    /// Queues `msg` for every connection `target` names; returns how many.
    /// The message is encoded once, whatever the number of routes and connections.
    pub fn deliver(&self, target: &Target, msg: Message) -> Result<usize, DeliveryError> {
        let msg = WireFrame::new(msg);
        let table = self.read();
        let count = match target {
            Target::All => table.routes.values().map(|r| r.send(msg.clone())).sum(),
            Target::Route(path) => table.routes.get(path).map_or(0, |r| r.send(msg)),
            Target::Channel(name) => table
                .channels
                .get(name)
                .ok_or_else(|| DeliveryError::UnknownChannel(name.clone()))?
                .iter()
                .map(|r| r.send(msg.clone()))
                .sum(),
        };
        Ok(count)
    }

    /// Registers a connection on `route`; it is removed when the returned guard drops.
    pub fn register(&self, route: &Arc<Route>, peer: SocketAddr) -> (Conn, Registration) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let conn = Conn {
            id,
            peer,
            since: SystemTime::now(),
            token: route.closing.child_token(),
            vitals: Arc::new(Vitals::new(&self.metrics, route.counters.clone())),
        };
        self.metrics.accepted(&route.path);
        route.lock().insert(id, conn.clone());
        let reg = Registration {
            route: route.clone(),
            id,
        };
        (conn, reg)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        // The table is replaced whole under the lock, so it is valid even after a panic.
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }
}
