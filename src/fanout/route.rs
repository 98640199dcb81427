//! One live WebSocket route: its settings, its broadcast ring, its heartbeat pulse and
//! its registered connections.
//!
//! The ring is shared by all the route's connections: a published message is stored once
//! and every connection sends the same reference-counted bytes. A reader that falls more
//! than `outbound_queue` messages, or `outbound_queue_bytes` bytes, behind gets the route's
//! slow-consumer policy, so a slow client bounds its own backlog and never delays anyone.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::vitals::Vitals;
use crate::config::RouteConfig;
use crate::heartbeat::Pulse;
use crate::metrics::{Metrics, RouteCounters};
use crate::wire::WireFrame;

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
    /// The route's settings in force (replaced on reload; new connections take them).
    settings: RwLock<Arc<RouteConfig>>,
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
    pub(super) fn new(settings: Arc<RouteConfig>, queue: usize, metrics: &Metrics) -> Self {
        Self {
            counters: Arc::new(metrics.route(&settings.path)),
            path: settings.path.clone(),
            settings: RwLock::new(settings),
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

    /// Registers a connection from `peer` with id `id`; it is removed when the returned
    /// guard drops.
    pub(super) fn register(
        self: &Arc<Self>,
        id: u64,
        peer: SocketAddr,
        metrics: &Arc<Metrics>,
    ) -> (Conn, Registration) {
        let conn = Conn {
            id,
            peer,
            since: SystemTime::now(),
            token: self.closing.child_token(),
            vitals: Arc::new(Vitals::new(metrics, self.counters.clone())),
        };
        self.counters.opened();
        self.lock().insert(id, conn.clone());
        let reg = Registration {
            route: self.clone(),
            id,
        };
        (conn, reg)
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
}

impl Drop for Registration {
    fn drop(&mut self) {
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
