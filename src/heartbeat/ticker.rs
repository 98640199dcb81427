//! One ticker per policy: it builds (and for `json-gzip` compresses) the ping once per
//! tick and hands the same bytes to every route using the policy.
//!
//! Why one shared ticker rather than a timer per connection: a tick costs one timer
//! and one encode whatever the number of connections, and each connection's task only
//! wakes to write its ping.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{self, Instant, MissedTickBehavior};
use tokio_util::task::AbortOnDropHandle;

use super::{Heartbeat, now_millis};
use crate::config::Policy;
use crate::wire::WireFrame;

/// One tick's ping, shared by every connection of the policy.
#[derive(Debug, Clone)]
pub struct Ping {
    /// Milliseconds since the epoch, also inside the payload.
    pub token: u64,
    /// The ping as a complete frame, built once per tick; every connection writes these bytes.
    pub frame: WireFrame,
}

/// What a route's connections watch: the current policy and, on a tick, its ping.
#[derive(Debug, Clone, Default)]
pub struct Pulse {
    /// The policy's name and strategy; `None` when the route has no heartbeat.
    pub policy: Option<(Arc<str>, Arc<dyn Heartbeat>)>,
    /// Set on a tick; `None` when the policy itself changed.
    pub ping: Option<Ping>,
}

/// A route's name and the sender its connections' pulses come from.
pub type RoutePulse = (String, watch::Sender<Pulse>);

/// Called once per tick per policy (metrics: pings built).
pub type OnTick = Arc<dyn Fn(&Policy) + Send + Sync>;

/// The running tickers, keyed by policy, each with the routes' senders it feeds.
#[derive(Default)]
pub struct Schedule {
    running: BTreeMap<String, Running>,
}

struct Running {
    policy: Policy,
    routes: Vec<String>,
    _task: AbortOnDropHandle<()>,
}

impl Schedule {
    /// Makes the running tickers match `wanted` (policy → routes' pulse senders).
    /// A ticker whose policy and routes are unchanged keeps its phase; others restart,
    /// and their routes learn the new policy at once (their connections from the next tick).
    pub fn apply(&mut self, wanted: Vec<(Policy, Vec<RoutePulse>)>, on_tick: OnTick) {
        let mut next = BTreeMap::new();
        for (policy, routes) in wanted {
            let names: Vec<String> = routes.iter().map(|(n, _)| n.clone()).collect();
            if let Some(old) = self.running.remove(&policy.name) {
                if old.policy == policy && old.routes == names {
                    next.insert(policy.name.clone(), old);
                    continue;
                }
            }
            let Some(heartbeat) = policy.build() else {
                for (_, tx) in &routes {
                    tx.send_replace(Pulse::default());
                }
                continue;
            };
            let name: Arc<str> = Arc::from(policy.name.as_str());
            let senders: Vec<watch::Sender<Pulse>> = routes.into_iter().map(|(_, tx)| tx).collect();
            for tx in &senders {
                tx.send_replace(Pulse {
                    policy: Some((name.clone(), heartbeat.clone())),
                    ping: None,
                });
            }
            let period = policy.ping_interval.unwrap_or(Duration::MAX);
            let task = tokio::spawn(tick(
                policy.clone(),
                name,
                heartbeat,
                senders,
                period,
                on_tick.clone(),
            ));
            next.insert(
                policy.name.clone(),
                Running {
                    policy,
                    routes: names,
                    _task: AbortOnDropHandle::new(task),
                },
            );
        }
        // Tickers no longer wanted stop when dropped here.
        self.running = next;
    }
}

async fn tick(
    policy: Policy,
    name: Arc<str>,
    heartbeat: Arc<dyn Heartbeat>,
    routes: Vec<watch::Sender<Pulse>>,
    period: Duration,
    on_tick: OnTick,
) {
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
            frame: WireFrame::new(heartbeat.ping(token)),
        };
        on_tick(&policy);
        for tx in &routes {
            tx.send_replace(Pulse {
                policy: Some((name.clone(), heartbeat.clone())),
                ping: Some(ping.clone()),
            });
        }
    }
}
