//! The registry of live routes (by path and by channel), and local fan-out: a message
//! for a target is encoded once and queued on every route it names.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio_tungstenite::tungstenite::Message;

use super::route::{Conn, Registration, Route};
use crate::config::Config;
use crate::heartbeat::Schedule;
use crate::metrics::Metrics;
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

#[derive(Default)]
struct Table {
    routes: HashMap<String, Arc<Route>>,
    channels: HashMap<String, Vec<Arc<Route>>>,
}

/// All routes and their connections.
pub struct Hub {
    table: RwLock<Table>,
    /// The heartbeat tickers its routes follow.
    schedule: Mutex<Schedule>,
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

impl Hub {
    /// An empty hub whose connections count into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            table: RwLock::default(),
            schedule: Mutex::default(),
            next_id: AtomicU64::new(0),
            metrics,
        }
    }

    /// The metrics its connections count into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Makes the routes and their heartbeats match `config`: new paths start, removed ones
    /// close, and every route follows its policy (see [`Schedule::apply`]).
    pub fn apply(&self, config: &Config) -> RouteChanges {
        let changes = self.apply_routes(config);
        let routes = config
            .routes
            .iter()
            .filter_map(|r| {
                let live = self.route(&r.path)?;
                let policy = config.policy_of(r).map(|(name, p)| {
                    self.metrics.policy_in_use(name, p.strategy());
                    (name.to_owned(), p)
                });
                Some((live.pulse.clone(), policy))
            })
            .collect();
        let metrics = self.metrics.clone();
        let on_tick = Arc::new(move |name: &str| metrics.payload_built(name));
        lock(&self.schedule).apply(routes, on_tick);
        changes
    }

    /// Stops every heartbeat ticker (after the drain, when no connection is left to ping).
    pub fn stop_heartbeats(&self) {
        *lock(&self.schedule) = Schedule::default();
    }

    fn apply_routes(&self, config: &Config) -> RouteChanges {
        let mut table = self.write();
        let mut changes = RouteChanges::default();
        let mut routes = HashMap::with_capacity(config.routes.len());
        let mut channels: HashMap<String, Vec<Arc<Route>>> = HashMap::new();
        for rc in &config.routes {
            let route = match table.routes.remove(&rc.path) {
                Some(existing) => {
                    existing.set_settings(rc.clone());
                    existing
                }
                None => {
                    changes.added.push(rc.path.clone());
                    Arc::new(Route::new(
                        rc.clone(),
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
            self.metrics.route_removed(&path);
            changes.removed.push(path);
        }
        self.metrics.set_routes(routes.len());
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
        route.register(id, peer, &self.metrics)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        // The table is replaced whole under the lock, so it is valid even after a panic.
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn lock(schedule: &Mutex<Schedule>) -> MutexGuard<'_, Schedule> {
    // Only `apply` swaps tickers under this lock; a panic there leaves a valid schedule.
    schedule.lock().unwrap_or_else(|p| p.into_inner())
}
