//! The registry of live routes (by path) and channels (by name), and local fan-out: a
//! message for a target is encoded once and queued in the mailbox of every connection
//! it names.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio_tungstenite::tungstenite::Message;

use super::mailbox::{Limits, Mailbox};
use super::route::{Conn, Registration, Route, Subscriber};
use super::subscriptions::{Reached, Subscriptions};
use crate::channels::{Params, PathPattern, Template};
use crate::config::Config;
use crate::heartbeat::Schedule;
use crate::metrics::Metrics;
use crate::wire::WireFrame;

/// Who a message is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every connection of every route.
    All,
    /// Every connection holding one of these channels, once each.
    Channels(Vec<String>),
    /// Every connection of the route with this path (as written).
    Route(String),
}

#[derive(Default)]
struct Table {
    /// By path as written: literal paths are looked up here directly.
    routes: HashMap<String, Arc<Route>>,
    /// Routes with `{name}` segments, in config order: the first that matches wins.
    patterned: Vec<(PathPattern, Arc<Route>)>,
    /// Every route's channel templates: what a publish could reach.
    templates: Vec<Template>,
}

/// All routes and their connections.
pub struct Hub {
    table: RwLock<Table>,
    /// The heartbeat tickers its routes follow.
    schedule: Mutex<Schedule>,
    subs: Arc<Subscriptions>,
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
            subs: Arc::default(),
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
        let mut patterned = Vec::new();
        let mut templates = Vec::new();
        for rc in &config.routes {
            let route = match table.routes.remove(&rc.path) {
                Some(existing) => {
                    existing.set_settings(rc.clone());
                    existing
                }
                None => {
                    changes.added.push(rc.path.clone());
                    Arc::new(Route::new(rc.clone(), &self.metrics))
                }
            };
            if !rc.pattern.is_literal() {
                patterned.push((rc.pattern.clone(), route.clone()));
            }
            templates.extend(rc.channels.iter().cloned());
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
        *table = Table {
            routes,
            patterned,
            templates,
        };
        changes
    }

    /// The live route whose path is written `path`.
    pub fn route(&self, path: &str) -> Option<Arc<Route>> {
        self.read().routes.get(path).cloned()
    }

    /// The live route serving the request path `path`, with its path parameters: a
    /// literal path first, then the `{name}` routes in config order.
    pub fn find(&self, path: &str) -> Option<(Arc<Route>, Params)> {
        let table = self.read();
        if let Some(route) = table.routes.get(path).filter(|r| !r.path.contains('{')) {
            return Some((route.clone(), Params::new()));
        }
        table
            .patterned
            .iter()
            .find_map(|(pattern, route)| Some((route.clone(), pattern.matches(path)?)))
    }

    /// Every live route.
    pub fn routes(&self) -> Vec<Arc<Route>> {
        self.read().routes.values().cloned().collect()
    }

    /// Whether a connection of some route could ever hold channel `name` (a publish to
    /// a name none could is a mistake worth a 404).
    pub fn could_hold(&self, name: &str) -> bool {
        self.read().templates.iter().any(|t| t.could_produce(name))
    }

    /// Queues `msg` for every connection `target` names, once each. The message is
    /// encoded once, whatever the number of recipients.
    pub fn deliver(&self, target: &Target, msg: Message) -> Reached {
        let frame = WireFrame::new(msg);
        match target {
            Target::Channels(names) => self.subs.deliver(names, &frame),
            Target::All => {
                let mut queued = 0;
                for route in self.read().routes.values() {
                    route.each_conn(|c| queued += usize::from(c.mailbox.push(&frame)));
                }
                Reached {
                    queued,
                    per_channel: Vec::new(),
                }
            }
            Target::Route(path) => {
                let mut queued = 0;
                if let Some(route) = self.read().routes.get(path) {
                    route.each_conn(|c| queued += usize::from(c.mailbox.push(&frame)));
                }
                Reached {
                    queued,
                    per_channel: Vec::new(),
                }
            }
        }
    }

    /// Closes, with `code` and `reason`, every connection holding channel `channel`;
    /// returns how many.
    pub fn close_channel(&self, channel: &str, code: u16, reason: &str) -> usize {
        let held = self.subs.mailboxes(channel);
        for mailbox in &held {
            mailbox.close(code, reason.to_owned());
        }
        held.len()
    }

    /// Closes, with `code` and `reason`, every connection whose verified `sub` is
    /// `user`; returns how many.
    pub fn close_user(&self, user: &str, code: u16, reason: &str) -> usize {
        let mut n = 0;
        for route in self.routes() {
            route.each_conn(|c| {
                if c.user.as_deref() == Some(user) {
                    c.mailbox.close(code, reason.to_owned());
                    n += 1;
                }
            });
        }
        n
    }

    /// Registers a connection `who` from `peer` on `route`, its mailbox bounded by
    /// `limits`; it is removed (and leaves its channels) when the returned guard drops.
    pub fn register(
        &self,
        route: &Arc<Route>,
        peer: SocketAddr,
        who: Subscriber,
        limits: Limits,
    ) -> (Conn, Registration) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        route.register(
            id,
            peer,
            who,
            Mailbox::new(limits),
            &self.subs,
            &self.metrics,
        )
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
