//! Who holds which channel: channel name to the mailboxes of its subscribers.
//!
//! A channel exists while someone is subscribed: the first subscriber creates it, the
//! last one's departure removes it. Most channels of a push daemon have one subscriber
//! (`user.42`), so that case takes no allocation beyond the name; a shared channel keeps
//! a map by connection id, so leaving it costs the same with 10 or 100 000 subscribers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::mailbox::Mailbox;
use crate::wire::WireFrame;

enum Subscribers {
    One(u64, Arc<Mailbox>),
    Many(HashMap<u64, Arc<Mailbox>>),
}

impl Subscribers {
    fn each(&self) -> impl Iterator<Item = (u64, &Arc<Mailbox>)> {
        let (one, many) = match self {
            Self::One(id, m) => (Some((*id, m)), None),
            Self::Many(map) => (None, Some(map.iter().map(|(id, m)| (*id, m)))),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

/// Every live channel and its subscribers.
#[derive(Default)]
pub struct Subscriptions {
    map: RwLock<HashMap<Arc<str>, Subscribers>>,
}

impl Subscriptions {
    /// Subscribes connection `id` to each of `names`.
    pub fn subscribe(&self, id: u64, mailbox: &Arc<Mailbox>, names: &[Arc<str>]) {
        let mut map = self.write();
        for name in names {
            match map.get_mut(name) {
                None => {
                    map.insert(name.clone(), Subscribers::One(id, mailbox.clone()));
                }
                Some(Subscribers::Many(subs)) => {
                    subs.insert(id, mailbox.clone());
                }
                Some(one) => {
                    let mut subs = HashMap::with_capacity(2);
                    subs.extend(one.each().map(|(i, m)| (i, m.clone())));
                    subs.insert(id, mailbox.clone());
                    *one = Subscribers::Many(subs);
                }
            }
        }
    }

    /// Unsubscribes connection `id` from each of `names`; channels left empty are gone.
    pub fn unsubscribe(&self, id: u64, names: &[Arc<str>]) {
        let mut map = self.write();
        for name in names {
            let empty = match map.get_mut(name) {
                Some(Subscribers::One(held, _)) => *held == id,
                Some(Subscribers::Many(subs)) => {
                    subs.remove(&id);
                    // Give back the peak's memory once most have left (amortized O(1)).
                    if subs.capacity() > 64 && subs.len() < subs.capacity() / 4 {
                        subs.shrink_to(subs.len() * 2);
                    }
                    subs.is_empty()
                }
                None => false,
            };
            if empty {
                map.remove(name);
            }
        }
        if map.capacity() > 1024 && map.len() < map.capacity() / 4 {
            let keep = map.len() * 2;
            map.shrink_to(keep);
        }
    }

    /// Queues a frame for every subscriber of channel `name`: `frame(envelope)` gives the
    /// one for its route's format. A raw subscriber already in `seen` (it held an earlier
    /// channel of the same publish) is skipped; an envelope one gets each channel's frame.
    /// Returns (subscribers, connections queued for).
    pub fn deliver<'f>(
        &self,
        name: &str,
        frame: impl Fn(bool) -> &'f WireFrame,
        mut seen: Option<&mut HashSet<u64>>,
    ) -> (usize, usize) {
        let map = self.read();
        let (mut held, mut queued) = (0, 0);
        for (id, mailbox) in map.get(name).into_iter().flat_map(Subscribers::each) {
            held += 1;
            let envelope = mailbox.envelope();
            let first = envelope || seen.as_mut().is_none_or(|s| s.insert(id));
            if first && mailbox.push(frame(envelope)) {
                queued += 1;
            }
        }
        (held, queued)
    }

    /// Queues `frame` for every subscriber of `name` on an envelope route (a control
    /// message a raw client would take for a published one); returns how many.
    pub fn tell(&self, name: &str, frame: &WireFrame) -> usize {
        let map = self.read();
        let mut told = 0;
        for (_, mailbox) in map.get(name).into_iter().flat_map(Subscribers::each) {
            if mailbox.envelope() && mailbox.push(frame) {
                told += 1;
            }
        }
        told
    }

    /// The mailboxes subscribed to `name`.
    pub fn mailboxes(&self, name: &str) -> Vec<Arc<Mailbox>> {
        let map = self.read();
        map.get(name)
            .into_iter()
            .flat_map(Subscribers::each)
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// Number of live channels.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.read().len()
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<Arc<str>, Subscribers>> {
        // Every update leaves the map consistent, so a poisoned lock is still usable.
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<Arc<str>, Subscribers>> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use tokio_tungstenite::tungstenite::Message;

    use super::*;
    use crate::config::SlowConsumer;
    use crate::fanout::mailbox::Limits;

    fn mailbox() -> Arc<Mailbox> {
        Arc::new(Mailbox::new(
            Limits {
                policy: SlowConsumer::Disconnect,
                messages: 100,
                bytes: 1 << 20,
            },
            false,
        ))
    }

    fn names(list: &[&str]) -> Vec<Arc<str>> {
        list.iter().map(|n| Arc::from(*n)).collect()
    }

    /// Delivers `frame` to `names` as one publish: (per channel held, queued).
    fn deliver(subs: &Subscriptions, list: &[&str], frame: &WireFrame) -> (Vec<usize>, usize) {
        let mut seen = HashSet::new();
        let mut queued = 0;
        let per = list
            .iter()
            .map(|n| {
                let (held, q) = subs.deliver(n, |_| frame, Some(&mut seen));
                queued += q;
                held
            })
            .collect();
        (per, queued)
    }

    #[test]
    fn channels_live_while_held_and_deliver_once_per_connection() {
        let subs = Subscriptions::default();
        let (a, b, c) = (mailbox(), mailbox(), mailbox());
        subs.subscribe(1, &a, &names(&["news", "user.1"]));
        subs.subscribe(2, &b, &names(&["news", "user.2"]));
        subs.subscribe(3, &c, &names(&["news", "user.2"]));
        assert_eq!(subs.len(), 3);
        let frame = WireFrame::new(Message::text("x"));
        assert_eq!(deliver(&subs, &["user.2"], &frame), (vec![2], 2));
        assert_eq!(
            deliver(&subs, &["news", "user.2", "nobody"], &frame),
            (vec![3, 2, 0], 3)
        );
        let mut batch = Vec::new();
        assert_eq!(a.take(&mut batch).left, 0);
        assert_eq!(batch.len(), 1, "a: once, from news");
        batch.clear();
        b.take(&mut batch);
        assert_eq!(batch.len(), 2, "b: user.2, then news+user.2 once");
        subs.unsubscribe(1, &names(&["news", "user.1"]));
        assert_eq!(subs.len(), 2, "user.1 is gone with its only subscriber");
        subs.unsubscribe(2, &names(&["news", "user.2"]));
        subs.unsubscribe(3, &names(&["news", "user.2"]));
        assert_eq!(subs.len(), 0);
        assert_eq!(deliver(&subs, &["news"], &frame).1, 0);
    }
}
