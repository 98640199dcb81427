//! One ticker per policy: it builds (and for `json-gzip` compresses) the ping once per
//! tick and hands the same bytes to every route using the policy.
//!
//! Why one shared ticker rather than a timer per connection: a tick costs one timer
//! and one encode whatever the number of connections, and each connection's task only
//! wakes to write its ping.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::{self, Instant, MissedTickBehavior};
use tokio_util::task::AbortOnDropHandle;

use super::policy::Policy;
use super::strategy::{Heartbeat, now_millis};
use crate::wire::WireFrame;

/// One tick's ping, shared by every connection of the policy.
#[derive(Debug, Clone)]
pub struct Ping {
    /// Milliseconds since the epoch, also inside the payload.
    pub token: u64,
    /// The ping as a complete frame, built once per tick; every connection writes these bytes.
    pub frame: WireFrame,
}

/// A route's heartbeat policy in force: its name, its rules and its strategy object.
#[derive(Debug)]
pub struct Active {
    /// The policy's name (`[heartbeat.NAME]`).
    pub name: Arc<str>,
    /// Interval and liveness rule.
    pub policy: Policy,
    /// Builds pings, reads answers.
    pub heartbeat: Arc<dyn Heartbeat>,
}

/// What a route's connections watch. A connection re-reads `policy` only when
/// `generation` moves; a tick changes nothing but `ping`.
#[derive(Debug, Clone, Default)]
pub struct Pulse {
    /// Bumped each time the route's policy changes (set, edited, switched, removed).
    pub generation: u64,
    /// The policy in force; `None` when the route has no heartbeat.
    pub policy: Option<Arc<Active>>,
    /// The latest tick's ping.
    pub ping: Option<Ping>,
}

/// A route's pulse sender and the policy it should follow (name and rules), if any.
pub type RoutePulse = (watch::Sender<Pulse>, Option<(String, Policy)>);

/// Called once per tick per policy with its name (metrics: pings built).
pub type OnTick = Arc<dyn Fn(&str) + Send + Sync>;

/// The running tickers, keyed by policy name.
#[derive(Default)]
pub struct Schedule {
    running: BTreeMap<String, Running>,
}

struct Running {
    active: Arc<Active>,
    /// Its routes' senders, to notice a route joining or leaving.
    routes: Vec<watch::Sender<Pulse>>,
    _task: AbortOnDropHandle<()>,
}

impl Schedule {
    /// Makes every route follow its wanted policy and the tickers match. A ticker whose
    /// policy and routes are unchanged keeps its phase; others restart.
    pub fn apply(&mut self, routes: Vec<RoutePulse>, on_tick: OnTick) {
        // One Active per policy name: the running one while its rules are unchanged.
        let mut actives: BTreeMap<String, (Arc<Active>, Vec<watch::Sender<Pulse>>)> =
            BTreeMap::new();
        for (tx, wanted) in routes {
            let active = wanted.map(|(name, policy)| {
                let running = self.running.get(&name).map(|r| r.active.clone());
                let (active, senders) = actives.entry(name).or_insert_with_key(|name| {
                    let active = running.filter(|a| a.policy == policy).unwrap_or_else(|| {
                        Arc::new(Active {
                            name: Arc::from(name.as_str()),
                            policy,
                            heartbeat: policy.build(),
                        })
                    });
                    (active, Vec::new())
                });
                senders.push(tx.clone());
                active.clone()
            });
            follow(&tx, active);
        }
        let mut next = BTreeMap::new();
        for (name, (active, senders)) in actives {
            if let Some(old) = self.running.remove(&name) {
                let same_routes = old.routes.len() == senders.len()
                    && old
                        .routes
                        .iter()
                        .zip(&senders)
                        .all(|(a, b)| a.same_channel(b));
                if Arc::ptr_eq(&old.active, &active) && same_routes {
                    next.insert(name, old);
                    continue;
                }
            }
            let task = tokio::spawn(tick(active.clone(), senders.clone(), on_tick.clone()));
            next.insert(
                name,
                Running {
                    active,
                    routes: senders,
                    _task: AbortOnDropHandle::new(task),
                },
            );
        }
        // Tickers no longer wanted stop when dropped here.
        self.running = next;
    }
}

/// Points a route's pulse at `active`. This is the one place that decides whether a
/// route's policy changed (name or rules): only then does its generation move, and its
/// connections reset their books and learn the new policy.
fn follow(tx: &watch::Sender<Pulse>, active: Option<Arc<Active>>) {
    tx.send_if_modified(|pulse| {
        let same = match (&pulse.policy, &active) {
            (None, None) => true,
            (Some(now), Some(next)) => now.name == next.name && now.policy == next.policy,
            _ => false,
        };
        if !same {
            pulse.generation += 1;
            pulse.ping = None;
        }
        // The same rules under a new `Arc` need no wake-up; ticks match on this one.
        pulse.policy = active;
        !same
    });
}

async fn tick(active: Arc<Active>, routes: Vec<watch::Sender<Pulse>>, on_tick: OnTick) {
    let period = active.policy.interval();
    let mut interval = time::interval_at(Instant::now() + period, period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last = 0;
    loop {
        interval.tick().await;
        // Tokens must differ between ticks for pongs to match the right ping.
        let token = now_millis().max(last + 1);
        last = token;
        let ping = Ping {
            token,
            frame: WireFrame::new(active.heartbeat.ping(token)),
        };
        on_tick(&active.name);
        for tx in &routes {
            // Only while the route still follows this policy: a reload may have moved it on
            // while this tick was being built.
            tx.send_if_modified(|pulse| match &pulse.policy {
                Some(now) if Arc::ptr_eq(now, &active) => {
                    pulse.ping = Some(ping.clone());
                    true
                }
                _ => false,
            });
        }
    }
}
