//! One live connection's shared state: what its supervisor updates as it runs (cheaply:
//! atomics, and a lock taken only when the policy changes) and what operators read
//! (`GET /connections`, `/metrics`), plus how a drain asks the connection to leave.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio_tungstenite::tungstenite::Message;

use crate::heartbeat::{Active, Strategy};
use crate::metrics::{Metrics, PolicyCounters, RouteCounters};

/// `last_rtt_us` before any pong.
const NO_RTT: u64 = u64::MAX;

/// Live figures of one connection. Created at its handshake, carried by [`super::Conn`].
pub struct Vitals {
    counters: Arc<RouteCounters>,
    metrics: Option<Arc<Metrics>>,
    policy: Mutex<Option<Following>>,
    last_rtt_us: AtomicU64,
    missed: AtomicU32,
    queue_depth: AtomicU64,
    farewell: Mutex<Option<String>>,
}

struct Following {
    name: Arc<str>,
    strategy: Strategy,
    counters: Option<PolicyCounters>,
}

/// A copy of a connection's figures at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Heartbeat policy it follows, if any.
    pub policy: Option<String>,
    /// That policy's strategy.
    pub strategy: Option<Strategy>,
    /// Round-trip time of its last answered ping.
    pub last_rtt: Option<Duration>,
    /// Consecutive unanswered pings.
    pub missed: u32,
    /// Route messages it had yet to receive when it last wrote.
    pub queue_depth: u64,
}

impl fmt::Debug for Vitals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.snapshot(), f)
    }
}

impl Default for Vitals {
    /// Figures that count into no registry (tests, tools).
    fn default() -> Self {
        Self::with(Arc::default(), None)
    }
}

impl Vitals {
    /// Figures for a connection counting into `metrics`, its route's counters shared with
    /// the route's other connections.
    pub fn new(metrics: &Arc<Metrics>, route: Arc<RouteCounters>) -> Self {
        Self::with(route, Some(metrics.clone()))
    }

    fn with(counters: Arc<RouteCounters>, metrics: Option<Arc<Metrics>>) -> Self {
        Self {
            counters,
            metrics,
            policy: Mutex::new(None),
            last_rtt_us: AtomicU64::new(NO_RTT),
            missed: AtomicU32::new(0),
            queue_depth: AtomicU64::new(0),
            farewell: Mutex::new(None),
        }
    }

    /// The route's counters (messages, bytes, slow consumers).
    pub fn route(&self) -> &RouteCounters {
        &self.counters
    }

    /// The connection follows `policy` now (called when its route's policy changes).
    pub fn follow(&self, policy: Option<&Active>) {
        *lock(&self.policy) = policy.map(|a| Following {
            name: a.name.clone(),
            strategy: a.policy.strategy(),
            counters: self
                .metrics
                .as_ref()
                .map(|m| m.policy(&a.name, a.policy.strategy())),
        });
    }

    /// A heartbeat ping is being written; `missed` counts it.
    pub fn ping_sent(&self, ping: &Message, missed: u32) {
        self.counters.bytes(ping.len());
        self.missed.store(missed, Ordering::Relaxed);
        if let Some(c) = lock(&self.policy)
            .as_ref()
            .and_then(|f| f.counters.as_ref())
        {
            c.ping();
        }
    }

    /// A pong arrived; `rtt` is set when it answered a remembered ping.
    pub fn pong(&self, rtt: Option<Duration>, missed: u32) {
        self.missed.store(missed, Ordering::Relaxed);
        let Some(rtt) = rtt else { return };
        let us = u64::try_from(rtt.as_micros()).unwrap_or(NO_RTT - 1);
        self.last_rtt_us.store(us, Ordering::Relaxed);
        if let Some(c) = lock(&self.policy)
            .as_ref()
            .and_then(|f| f.counters.as_ref())
        {
            c.pong(rtt);
        }
    }

    /// The unanswered-ping count changed (any frame resets it under a timeout rule).
    pub fn set_missed(&self, missed: u32) {
        self.missed.store(missed, Ordering::Relaxed);
    }

    /// The peer was declared dead by its heartbeat.
    pub fn timed_out(&self) {
        if let Some(c) = lock(&self.policy)
            .as_ref()
            .and_then(|f| f.counters.as_ref())
        {
            c.timeout();
        }
    }

    /// Messages queued for it and not yet taken.
    pub fn set_queue_depth(&self, n: usize) {
        self.queue_depth
            .store(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The close reason a drain chose for it, taken once.
    pub fn take_farewell(&self) -> Option<String> {
        lock(&self.farewell).take()
    }

    /// Sets the close reason used when the connection's token is next cancelled.
    pub fn set_farewell(&self, reason: String) {
        *lock(&self.farewell) = Some(reason);
    }

    /// Its figures now.
    pub fn snapshot(&self) -> Snapshot {
        let policy = lock(&self.policy);
        let rtt = self.last_rtt_us.load(Ordering::Relaxed);
        Snapshot {
            policy: policy.as_ref().map(|f| f.name.to_string()),
            strategy: policy.as_ref().map(|f| f.strategy),
            last_rtt: (rtt != NO_RTT).then(|| Duration::from_micros(rtt)),
            missed: self.missed.load(Ordering::Relaxed),
            queue_depth: self.queue_depth.load(Ordering::Relaxed),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every value behind these locks is valid at all times, so a poisoned one is usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heartbeat::{Policy, ProtocolPing};

    #[test]
    fn follows_policies_and_keeps_figures() {
        let metrics = Arc::new(Metrics::new());
        let v = Vitals::new(&metrics, Arc::new(metrics.route("/ws")));
        assert_eq!(v.snapshot().policy, None);
        let p = Active {
            name: Arc::from("frames"),
            policy: Policy::Protocol {
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(3),
            },
            heartbeat: Arc::new(ProtocolPing),
        };
        v.follow(Some(&p));
        v.ping_sent(&Message::Ping(vec![0; 13].into()), 1);
        v.pong(Some(Duration::from_millis(4)), 0);
        v.set_queue_depth(3);
        let s = v.snapshot();
        assert_eq!(s.policy.as_deref(), Some("frames"));
        assert_eq!(s.strategy, Some(Strategy::Protocol));
        assert_eq!(s.last_rtt, Some(Duration::from_millis(4)));
        assert_eq!((s.missed, s.queue_depth), (0, 3));
        v.follow(None);
        assert_eq!(v.snapshot().policy, None);
        assert_eq!(v.take_farewell(), None);
        v.set_farewell("bye".into());
        assert_eq!(v.take_farewell().as_deref(), Some("bye"));
        assert_eq!(v.take_farewell(), None);
    }
}
