//! Which channels this node must be subscribed to on Redis: for each, how many
//! connections (and handshakes about to become connections) hold it; and what changed
//! since the pub/sub link last looked.
//!
//! A handshake takes its channels and waits until the link has sent SUBSCRIBE for them
//! and Redis acknowledged it: from then on every message for them reaches this node. A
//! connection's [`Held`] gives them back when it drops; the link unsubscribes a channel
//! whose count was 0 when it looked, and one taken again since is subscribed again by
//! the link's next batch, before that handshake's ack.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, oneshot};

/// Whether the link subscribed a handshake's channels (or why not).
pub(super) type Ack = oneshot::Receiver<Result<(), String>>;
/// Handshakes waiting for the link's next SUBSCRIBE.
pub(super) type Waiters = Vec<oneshot::Sender<Result<(), String>>>;

#[derive(Default)]
struct Inner {
    counts: HashMap<Arc<str>, usize>,
    /// Channels whose subscription the link must (re)send, or drop if no longer counted.
    dirty: HashSet<Arc<str>>,
    waiters: Waiters,
}

/// The channels this node holds.
#[derive(Default)]
pub(super) struct Holds {
    inner: Mutex<Inner>,
    changed: Notify,
}

/// What the link is to do: subscribe, unsubscribe, then answer the waiters.
pub(super) struct Changes {
    pub subscribe: Vec<Arc<str>>,
    pub unsubscribe: Vec<Arc<str>>,
    pub waiters: Waiters,
}

impl Holds {
    /// Counts `names` as held until the guard drops; the ack resolves once Redis
    /// confirmed the subscription.
    pub fn take(self: &Arc<Self>, names: &[Arc<str>]) -> (Held, Ack) {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        for name in names {
            *inner.counts.entry(name.clone()).or_default() += 1;
            inner.dirty.insert(name.clone());
        }
        inner.waiters.push(tx);
        drop(inner);
        self.changed.notify_one();
        let held = Held {
            holds: self.clone(),
            names: names.to_vec(),
        };
        (held, rx)
    }

    /// What changed since the last call.
    pub fn changes(&self) -> Changes {
        let mut inner = self.lock();
        let dirty = std::mem::take(&mut inner.dirty);
        let (subscribe, unsubscribe) = dirty
            .into_iter()
            .partition(|name| inner.counts.contains_key(name));
        Changes {
            subscribe,
            unsubscribe,
            waiters: std::mem::take(&mut inner.waiters),
        }
    }

    /// Every channel held (to subscribe again on a new connection). Forgets what was
    /// dirty: all of it is being sent.
    pub fn all(&self) -> (Vec<Arc<str>>, Waiters) {
        let mut inner = self.lock();
        inner.dirty.clear();
        let all = inner.counts.keys().cloned().collect();
        (all, std::mem::take(&mut inner.waiters))
    }

    /// Resolves after a change (at once if one happened since the last wait).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Each update leaves the maps consistent, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A connection's channels, held until it drops.
pub(super) struct Held {
    holds: Arc<Holds>,
    names: Vec<Arc<str>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut inner = self.holds.lock();
        for name in &self.names {
            if let Some(n) = inner.counts.get_mut(name) {
                *n -= 1;
                if *n == 0 {
                    inner.counts.remove(name);
                    inner.dirty.insert(name.clone());
                }
            }
        }
        drop(inner);
        self.holds.changed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<Arc<str>> {
        list.iter().map(|n| Arc::from(*n)).collect()
    }

    #[test]
    fn a_channel_is_dropped_only_when_its_last_holder_goes() {
        let holds = Arc::new(Holds::default());
        let (a, _) = holds.take(&names(&["news", "user.1"]));
        let (b, _) = holds.take(&names(&["news"]));
        let c = holds.changes();
        assert_eq!(c.subscribe.len(), 2);
        assert_eq!(c.waiters.len(), 2);
        drop(a);
        let c = holds.changes();
        assert_eq!(c.unsubscribe, names(&["user.1"]));
        assert!(c.subscribe.is_empty(), "news is still held by b");
        drop(b);
        // Taken again before the link looked: subscribed, not dropped.
        let (_again, _) = holds.take(&names(&["news"]));
        let c = holds.changes();
        assert_eq!(c.subscribe, names(&["news"]));
        assert!(c.unsubscribe.is_empty());
    }
}
