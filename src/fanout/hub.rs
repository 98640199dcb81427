//! The registry of live routes (by path) and channels (by name), and local fan-out: a
//! message for a target is encoded once and queued in the mailbox of every connection
//! it names.

use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use super::history::{self, History, Stream};
use super::mailbox::{Limits, Mailbox};
use super::route::{Conn, Registration, Route, Subscriber};
use super::subscriptions::Subscriptions;
use crate::channels::{Params, PathPattern, Template};
use crate::config::{
    Config, DEFAULT_HISTORY_MAX_BYTES, DEFAULT_POSITION_TTL, HistoryPolicy, RouteFormat,
};
use crate::envelope::{self, At, Miss, Recovery};
use crate::heartbeat::Schedule;
use crate::metrics::Metrics;
use crate::wire::{Payload, WireFrame};

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

/// Longest user (a token's `sub`) a kick may name.
pub const MAX_KICK_USER: usize = 256;

/// Whose connections a kick closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kick {
    /// Every connection whose verified `sub` is this.
    User(String),
    /// Every connection holding this channel.
    Channel(String),
}

#[derive(Default)]
struct Table {
    /// By path as written: literal paths are looked up here directly.
    routes: HashMap<String, Arc<Route>>,
    /// Routes with `{name}` segments, in config order: the first that matches wins.
    patterned: Vec<(PathPattern, Arc<Route>)>,
    /// Every route's channel templates, with the route's history: what a publish could
    /// reach, and which history a channel keeps (the first route's, in config order, that
    /// keeps one and could hold it).
    templates: Vec<(Template, Option<HistoryPolicy>)>,
}

/// What a publish achieved, for the publisher's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Connections on this node the message was queued for, each counted once.
    pub queued: usize,
    /// For a publish to channels: each channel in the order asked.
    pub per_channel: Vec<Delivered>,
}

/// What a publish did on one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Connections holding it.
    pub subscribers: usize,
    /// Its epoch and the message's offset, on a channel with history.
    pub at: Option<(Arc<str>, u64)>,
}

/// Where a message numbered by a shared broker went ([`Hub::deliver_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// Stored, and queued for this many connections.
    Delivered(usize),
    /// This node already had it (a catch-up crossed the live message).
    Duplicate,
    /// Something before it is missing here: fetch the channel after `from` from the
    /// broker and hand it to [`Hub::sync`].
    Behind {
        /// The last offset this node has of the channel's epoch.
        from: u64,
    },
}

/// What a shared broker holds of one channel: its epoch, its last offset, and messages
/// after `from` (oldest first; fewer when its history no longer reaches back that far).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusSlice {
    /// The channel's epoch in the broker.
    pub epoch: String,
    /// Its last offset.
    pub last: u64,
    /// The offset the entries were asked after.
    pub from: u64,
    /// (offset, payload), oldest first.
    pub entries: Vec<(u64, Payload)>,
}

/// All routes and their connections.
pub struct Hub {
    table: RwLock<Table>,
    /// The heartbeat tickers its routes follow.
    schedule: Mutex<Schedule>,
    subs: Arc<Subscriptions>,
    history: History,
    /// Set by a shared broker: it numbers messages ([`Hub::deliver_at`]), this node's
    /// history only mirrors its streams.
    bus_numbers: AtomicBool,
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
            history: History::new(
                DEFAULT_HISTORY_MAX_BYTES,
                DEFAULT_POSITION_TTL,
                metrics.history().clone(),
            ),
            bus_numbers: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            metrics,
        }
    }

    /// From now on a shared broker numbers messages on channels with history; `deliver`
    /// only fans out.
    pub fn numbered_by_bus(&self) {
        self.bus_numbers.store(true, Ordering::Relaxed);
    }

    /// Channel history.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The metrics its connections count into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Makes the routes and their heartbeats match `config`: new paths start, removed ones
    /// close, and every route follows its policy (see [`Schedule::apply`]).
    pub fn apply(&self, config: &Config) -> RouteChanges {
        self.history
            .configure(config.history.max_bytes, config.history.position_ttl);
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
            templates.extend(rc.channels.iter().map(|t| (t.clone(), rc.history)));
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
        self.read()
            .templates
            .iter()
            .any(|(t, _)| t.could_produce(name))
    }

    /// The history channel `name` keeps, if any.
    pub fn history_of(&self, name: &str) -> Option<HistoryPolicy> {
        self.read()
            .templates
            .iter()
            .find_map(|(t, h)| h.filter(|_| t.could_produce(name)))
    }

    /// Queues `payload` for every connection `target` names, once each (once per channel
    /// on envelope routes). Each frame is encoded once, whatever the number of recipients;
    /// a message to a channel with history is numbered and stored first.
    pub fn deliver(&self, target: &Target, payload: &Payload) -> Receipt {
        let raw = OnceCell::new();
        let raw = || raw.get_or_init(|| WireFrame::new(payload.message()));
        let names = match target {
            Target::Channels(names) => names,
            Target::All | Target::Route(_) => {
                let bare = OnceCell::new();
                let frame = |envelope: bool| match envelope {
                    true => bare.get_or_init(|| envelope::message(None, None, payload)),
                    false => raw(),
                };
                let mut queued = 0;
                let table = self.read();
                let named = |path: &String| !matches!(target, Target::Route(p) if p != path);
                for (_, route) in table.routes.iter().filter(|(path, _)| named(path)) {
                    route.each_conn(|c| {
                        queued += usize::from(c.mailbox.push(frame(c.mailbox.envelope())));
                    });
                }
                return Receipt {
                    queued,
                    per_channel: Vec::new(),
                };
            }
        };
        let mut seen = (names.len() > 1).then(HashSet::new);
        let mut receipt = Receipt {
            queued: 0,
            per_channel: Vec::with_capacity(names.len()),
        };
        for name in names {
            let wrapped = OnceCell::new();
            let kept = self
                .history_of(name)
                .filter(|_| !self.bus_numbers.load(Ordering::Relaxed))
                .map(|policy| (policy, Instant::now()))
                .map(|(policy, now)| (policy, now, self.history.stream(name, policy, now)));
            // Held through the fan-out below: subscribers see the channel's offsets in order.
            let mut locked = kept.as_ref().map(|(.., stream)| history::lock(stream));
            let at = match (locked.as_deref_mut(), &kept) {
                (Some(s), Some((policy, now, _))) => {
                    let (epoch, offset, stored) = self.history.append(s, *policy, *now, |at| {
                        envelope::message(Some(name), Some(at), payload)
                    });
                    // The stored frame is the one envelope subscribers get.
                    let _ = wrapped.set(stored);
                    Some((epoch, offset))
                }
                _ => None,
            };
            let frame = |envelope: bool| match envelope {
                true => wrapped.get_or_init(|| envelope::message(Some(name), None, payload)),
                false => raw(),
            };
            let (held, queued) = self.subs.deliver(name, frame, seen.as_mut());
            if locked.take().is_some() {
                self.history.enforce_cap();
            }
            receipt.queued += queued;
            receipt.per_channel.push(Delivered {
                subscribers: held,
                at,
            });
        }
        receipt
    }

    /// Stores and queues a message a shared broker numbered `offset` in `epoch` on channel
    /// `name`, if it is the next one this node expects; see [`Placed`].
    pub fn deliver_at(&self, name: &str, epoch: &str, offset: u64, payload: &Payload) -> Placed {
        let Some(policy) = self.history_of(name) else {
            // No route here keeps its history: pass it on with its position.
            let wrapped = envelope::message(Some(name), Some(At { epoch, offset }), payload);
            return Placed::Delivered(self.queue(name, &wrapped, payload));
        };
        let now = Instant::now();
        let stream = self
            .history
            .mirror(name, policy, now, epoch, offset.saturating_sub(1));
        let mut s = history::lock(&stream);
        let last = s.at().offset;
        if s.at().epoch != epoch {
            return Placed::Behind {
                from: offset.saturating_sub(1),
            };
        }
        if offset <= last {
            return Placed::Duplicate;
        }
        if offset > last.saturating_add(1) {
            return Placed::Behind { from: last };
        }
        let queued = self.store_and_queue(&mut s, name, policy, now, payload, true);
        drop(s);
        self.history.enforce_cap();
        Placed::Delivered(queued)
    }

    /// Brings this node's copy of channel `name` in line with what its shared broker
    /// holds: its subscribers get, in order, what they have not had; when the broker lost
    /// the epoch, or no longer holds messages they missed, they are told (`recovered:
    /// false`, then where the channel stands) instead. Returns the messages queued.
    pub fn sync(&self, name: &str, slice: &BusSlice) -> usize {
        let Some(policy) = self.history_of(name) else {
            return 0;
        };
        let now = Instant::now();
        let start = slice.from.min(slice.last);
        let stream = self.history.mirror(name, policy, now, &slice.epoch, start);
        let mut s = history::lock(&stream);
        self.history.touch(&mut s, now);
        let last = s.at().offset;
        let first = slice.entries.first().map(|(o, _)| *o);
        // The entries start right after `from`, before this node's copy does, and reach
        // its last offset: rebuilt from them, the copy serves a recovery from `from`, and
        // its subscribers get nothing twice.
        let copy_from = s.entries().next().map_or(last, |e| e.offset - 1);
        let rebuild = first.is_some_and(|o| Some(o) == slice.from.checked_add(1))
            && slice.from < copy_from
            && slice.entries.last().is_some_and(|(o, _)| *o >= last);
        let (miss, news_after) = if s.at().epoch != slice.epoch {
            (Some(Miss::EpochChanged), u64::MAX)
        } else if slice.last > last && first.is_none_or(|o| o > last.saturating_add(1)) {
            // The broker no longer holds what this node's subscribers missed.
            (Some(Miss::WindowExceeded), u64::MAX)
        } else {
            (None, last)
        };
        match (miss, first) {
            (Some(_), Some(o)) => self.history.rewind(&mut s, &slice.epoch, o - 1),
            (Some(_), None) => self.history.rewind(&mut s, &slice.epoch, slice.last),
            (None, _) if rebuild => self.history.rewind(&mut s, &slice.epoch, slice.from),
            (None, _) => {}
        }
        let mut queued = 0;
        for (offset, payload) in &slice.entries {
            if *offset <= s.at().offset {
                continue;
            }
            if *offset != s.at().offset.saturating_add(1) {
                break;
            }
            let fan_out = *offset > news_after;
            queued += self.store_and_queue(&mut s, name, policy, now, payload, fan_out);
        }
        if let Some(miss) = miss {
            let told = envelope::position(name, Some(s.at()), Recovery::Failed(miss));
            self.subs.tell(name, &told);
        }
        drop(s);
        self.history.enforce_cap();
        queued
    }

    /// The last offset of channel `name` as this node has it.
    pub fn last_offset(&self, name: &str) -> Option<u64> {
        let stream = self.history.find(name)?;
        let offset = history::lock(&stream).at().offset;
        Some(offset)
    }

    /// Numbers and stores `payload` as the next message of the locked stream `s` of
    /// channel `name`, and (with `fan_out`) queues it for its subscribers; returns how
    /// many.
    fn store_and_queue(
        &self,
        s: &mut Stream,
        name: &str,
        policy: HistoryPolicy,
        now: Instant,
        payload: &Payload,
        fan_out: bool,
    ) -> usize {
        let (.., stored) = self.history.append(s, policy, now, |at| {
            envelope::message(Some(name), Some(at), payload)
        });
        match fan_out {
            true => self.queue(name, &stored, payload),
            false => 0,
        }
    }

    /// Queues a message of channel `name` for its subscribers: `wrapped` on envelope
    /// routes, `payload` as is on raw ones (encoded only if one holds it); returns how many.
    fn queue(&self, name: &str, wrapped: &WireFrame, payload: &Payload) -> usize {
        let raw = OnceCell::new();
        let frame = |envelope: bool| match envelope {
            true => wrapped,
            false => raw.get_or_init(|| WireFrame::new(payload.message())),
        };
        self.subs.deliver(name, frame, None).1
    }

    /// Closes the connections `kick` names with 4009 (`close::DISCONNECTED`) and
    /// `reason`; returns how many.
    pub fn kick(&self, kick: &Kick, reason: &str) -> usize {
        match kick {
            Kick::User(user) => self.close_user(user, crate::close::DISCONNECTED, reason),
            Kick::Channel(channel) => {
                self.close_channel(channel, crate::close::DISCONNECTED, reason)
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
    /// `limits`, and subscribes it to its channels; it is removed (and leaves its
    /// channels) when the returned guard drops.
    ///
    /// On an envelope route, each channel with history first queues its position frame
    /// and, for a channel in `who.resume`, the messages missed since (or why not), under
    /// the channel's lock: nothing published meanwhile is missed or sent twice.
    pub fn register(
        &self,
        route: &Arc<Route>,
        peer: SocketAddr,
        mut who: Subscriber,
        limits: Limits,
    ) -> (Conn, Registration) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let envelope = route.settings().format == RouteFormat::Envelope;
        let resume = std::mem::take(&mut who.resume);
        let (conn, registration) = route.register(
            id,
            peer,
            who,
            Mailbox::new(limits, envelope),
            &self.subs,
            &self.metrics,
        );
        if !envelope {
            self.subs.subscribe(id, &conn.mailbox, &conn.channels);
            return (conn, registration);
        }
        let counters = self.history.counters();
        let kept: Vec<(&Arc<str>, Option<HistoryPolicy>)> = conn
            .channels
            .iter()
            .map(|c| (c, self.history_of(c)))
            .collect();
        for r in &resume {
            if !kept.iter().any(|(c, h)| ***c == *r.channel && h.is_some()) {
                counters.recovery(Miss::UnknownChannel.as_str());
                let miss = Recovery::Failed(Miss::UnknownChannel);
                conn.mailbox
                    .preload([envelope::position(&r.channel, None, miss)]);
            }
        }
        let now = Instant::now();
        for (name, policy) in kept {
            let Some(policy) = policy else {
                self.subs
                    .subscribe(id, &conn.mailbox, std::slice::from_ref(name));
                continue;
            };
            let stream = self.history.stream(name, policy, now);
            let mut s = history::lock(&stream);
            self.history.touch(&mut s, now);
            let asked = resume.iter().find(|r| *r.channel == **name);
            let (recovery, replay) = match asked.map(|r| s.missed(&r.epoch, r.offset, now)) {
                None => (Recovery::NotAsked, Vec::new()),
                Some(Ok(replay)) => {
                    counters.recovery("recovered");
                    (Recovery::Replayed(replay.len()), replay)
                }
                Some(Err(miss)) => {
                    counters.recovery(miss.as_str());
                    (Recovery::Failed(miss), Vec::new())
                }
            };
            let position = envelope::position(name, Some(s.at()), recovery);
            conn.mailbox
                .preload(std::iter::once(position).chain(replay));
            self.subs
                .subscribe(id, &conn.mailbox, std::slice::from_ref(name));
        }
        (conn, registration)
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
