//! Channel history: the last messages of each channel with history, so a client that
//! reconnects gets exactly what it missed.
//!
//! Each channel's [`Stream`] numbers its messages 1, 2, 3, ... (its offsets) under an
//! epoch, a short random name that changes only when the history is lost. A stream is
//! locked while a message is numbered, stored and queued for its subscribers, and while a
//! recovering connection subscribes and takes its replay: both happen in offset order, so a
//! replay and live messages never overlap or leave a gap.
//!
//! A stored message is the envelope frame already encoded for its subscribers (the same
//! allocation), plus [`ENTRY_COST`] bytes of bookkeeping. Everything stored counts against
//! `history.max_bytes`; beyond it the oldest messages of all channels go first. A channel's
//! epoch and last offset outlive its messages by `history.position_ttl`, so a client that
//! comes back after a quiet spell is told it missed nothing rather than to reload.
//!
//! Lock order: the channel map, then a stream, then the eviction order; never a stream
//! while holding the order, never the map while holding a stream.

use std::collections::{HashMap, VecDeque};
use std::mem::size_of;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use crate::config::HistoryPolicy;
use crate::envelope::{At, Miss};
use crate::metrics::HistoryCounters;
use crate::wire::WireFrame;

/// Bookkeeping per stored message beyond its frame: its entry and its place in the
/// eviction order.
pub const ENTRY_COST: usize = size_of::<Entry>() + size_of::<(Arc<str>, u64)>();
/// Bookkeeping per channel beyond its name: its stream and its map slot.
const STREAM_COST: usize = size_of::<Stream>() + size_of::<Arc<Mutex<Stream>>>() + 64;
/// Length of an epoch.
pub const EPOCH_LEN: usize = 8;

/// One stored message.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its offset in the channel.
    pub offset: u64,
    /// When it was stored.
    pub at: Instant,
    /// The envelope frame its subscribers were sent.
    pub frame: WireFrame,
}

/// One channel's history.
#[derive(Debug)]
pub struct Stream {
    /// Its channel: the same allocation as its key in the map.
    name: Arc<str>,
    epoch: Arc<str>,
    last: u64,
    entries: VecDeque<Entry>,
    policy: HistoryPolicy,
    /// The last publish or subscription: a stream idle for `position_ttl` with nothing
    /// stored goes.
    touched: Instant,
}

impl Stream {
    fn new(name: Arc<str>, epoch: Arc<str>, policy: HistoryPolicy, now: Instant) -> Self {
        Self {
            name,
            epoch,
            last: 0,
            entries: VecDeque::new(),
            policy,
            touched: now,
        }
    }

    /// Where the channel stands: its epoch and the offset of its last message.
    pub fn at(&self) -> At<'_> {
        At {
            epoch: &self.epoch,
            offset: self.last,
        }
    }

    /// The frames a client that saw up to `offset` of `epoch` missed, in order; or why
    /// they cannot all be replayed (never a part).
    pub fn missed(&self, epoch: &str, offset: u64, now: Instant) -> Result<Vec<WireFrame>, Miss> {
        if epoch != &*self.epoch || offset > self.last {
            return Err(Miss::EpochChanged);
        }
        if offset == self.last {
            return Ok(Vec::new());
        }
        let live = |e: &&Entry| now.saturating_duration_since(e.at) < self.policy.ttl;
        let mut kept = self
            .entries
            .iter()
            .filter(live)
            .skip_while(|e| e.offset <= offset);
        match kept.next() {
            Some(first) if first.offset == offset + 1 => Ok(std::iter::once(first)
                .chain(kept)
                .map(|e| e.frame.clone())
                .collect()),
            _ => Err(Miss::WindowExceeded),
        }
    }

    /// The messages stored, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }
}

/// Every channel's history.
pub struct History {
    streams: RwLock<HashMap<Arc<str>, Arc<Mutex<Stream>>>>,
    /// Every stored message as (channel, offset), oldest first; entries already gone
    /// (size, TTL) stay until they reach the front or a sweep compacts them.
    order: Mutex<VecDeque<(Arc<str>, u64)>>,
    bytes: AtomicUsize,
    stored: AtomicUsize,
    max_bytes: AtomicUsize,
    position_ttl: Mutex<Duration>,
    counters: HistoryCounters,
}

/// A channel's stream as saved to disk or restored from it.
#[derive(Debug, Clone)]
pub struct Saved {
    /// The channel.
    pub name: Arc<str>,
    /// Its epoch.
    pub epoch: Arc<str>,
    /// The offset of its last message.
    pub last: u64,
    /// Its policy when saved.
    pub policy: HistoryPolicy,
    /// The messages kept, oldest first.
    pub entries: Vec<Entry>,
}

impl History {
    /// An empty history bounded by `max_bytes`, updating `counters`.
    pub fn new(max_bytes: usize, position_ttl: Duration, counters: HistoryCounters) -> Self {
        Self {
            streams: RwLock::default(),
            order: Mutex::default(),
            bytes: AtomicUsize::new(0),
            stored: AtomicUsize::new(0),
            max_bytes: AtomicUsize::new(max_bytes),
            position_ttl: Mutex::new(position_ttl),
            counters,
        }
    }

    /// New bounds from a reloaded config (a smaller `max_bytes` evicts at once).
    pub fn configure(&self, max_bytes: usize, position_ttl: Duration) {
        self.max_bytes.store(max_bytes, Ordering::Relaxed);
        *lock(&self.position_ttl) = position_ttl;
        self.enforce_cap();
    }

    /// The stream of channel `name`, made (empty, with a new epoch) if it has none. Lock
    /// it to number a message or to subscribe with a recovery.
    pub fn stream(&self, name: &str, policy: HistoryPolicy, now: Instant) -> Arc<Mutex<Stream>> {
        if let Some(s) = self.read().get(name) {
            return s.clone();
        }
        let mut map = self.write();
        if let Some(s) = map.get(name) {
            return s.clone();
        }
        let name: Arc<str> = Arc::from(name);
        let stream = Arc::new(Mutex::new(Stream::new(
            name.clone(),
            new_epoch(),
            policy,
            now,
        )));
        map.insert(name.clone(), stream.clone());
        self.grew(STREAM_COST + name.len());
        self.counters.channels.set(map.len() as i64);
        stream
    }

    /// The stream of channel `name`, made at `epoch` and `last` if it has none: this
    /// node's copy of a stream a shared broker numbers.
    pub fn mirror(
        &self,
        name: &str,
        policy: HistoryPolicy,
        now: Instant,
        epoch: &str,
        last: u64,
    ) -> Arc<Mutex<Stream>> {
        if let Some(s) = self.read().get(name) {
            return s.clone();
        }
        let stream = self.stream(name, policy, now);
        let mut s = lock(&stream);
        if s.entries.is_empty() && s.last == 0 {
            s.epoch = Arc::from(epoch);
            s.last = last;
        }
        drop(s);
        stream
    }

    /// The stream of channel `name`, if it has one.
    pub fn find(&self, name: &str) -> Option<Arc<Mutex<Stream>>> {
        self.read().get(name).cloned()
    }

    /// Starts the locked stream `s` over at `epoch` and `last`, dropping what it stored
    /// (its broker lost the history, or this node's copy is to be rebuilt).
    pub fn rewind(&self, s: &mut Stream, epoch: &str, last: u64) {
        self.drop_stream(s);
        s.entries.clear();
        if *s.epoch != *epoch {
            s.epoch = Arc::from(epoch);
        }
        s.last = last;
    }

    /// Numbers the next message of the locked stream `s`, stores the frame `encode` makes
    /// for its position, and returns that frame. Call [`History::enforce_cap`] once the
    /// stream is unlocked.
    pub fn append(
        &self,
        s: &mut Stream,
        policy: HistoryPolicy,
        now: Instant,
        encode: impl FnOnce(At<'_>) -> WireFrame,
    ) -> (Arc<str>, u64, WireFrame) {
        s.policy = policy;
        s.touched = now;
        self.expire(s, now);
        s.last += 1;
        let frame = encode(At {
            epoch: &s.epoch,
            offset: s.last,
        });
        while s.entries.len() >= policy.size {
            self.remove_front(s);
            self.counters.evicted_size.inc();
        }
        s.entries.push_back(Entry {
            offset: s.last,
            at: now,
            frame: frame.clone(),
        });
        lock(&self.order).push_back((s.name.clone(), s.last));
        self.grew(ENTRY_COST + frame.encoded().len());
        self.stored.fetch_add(1, Ordering::Relaxed);
        self.counters.messages.inc();
        (s.epoch.clone(), s.last, frame)
    }

    /// Marks `s` as in use now (a subscription), so its position is kept.
    pub fn touch(&self, s: &mut Stream, now: Instant) {
        s.touched = now;
    }

    /// Evicts the oldest messages of any channel while all history holds more than
    /// `history.max_bytes`. Takes stream locks: call it holding none.
    pub fn enforce_cap(&self) {
        while self.bytes.load(Ordering::Relaxed) > self.max_bytes.load(Ordering::Relaxed) {
            let Some((name, offset)) = lock(&self.order).pop_front() else {
                // Only empty streams left: the sweep removes the idlest.
                return;
            };
            let Some(stream) = self.read().get(&name).cloned() else {
                continue;
            };
            let mut s = lock(&stream);
            if s.entries.front().is_some_and(|e| e.offset == offset) {
                self.remove_front(&mut s);
                self.counters.evicted_cap.inc();
            }
        }
    }

    /// Drops expired messages, streams idle past `position_ttl` with nothing stored, and
    /// (over `max_bytes`) the idlest empty streams; compacts the eviction order. Run
    /// about every second.
    pub fn sweep(&self, now: Instant) {
        let position_ttl = *lock(&self.position_ttl);
        let streams: Vec<(Arc<str>, Arc<Mutex<Stream>>)> = self
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut idle = Vec::new();
        for (name, stream) in &streams {
            let mut s = lock(stream);
            self.expire(&mut s, now);
            if s.entries.is_empty() {
                idle.push((s.touched, name.clone()));
            }
        }
        drop(streams);
        idle.sort();
        let over = self.bytes.load(Ordering::Relaxed) > self.max_bytes.load(Ordering::Relaxed);
        let mut map = self.write();
        for (touched, name) in idle {
            let stale = now.saturating_duration_since(touched) >= position_ttl;
            let full =
                over && self.bytes.load(Ordering::Relaxed) > self.max_bytes.load(Ordering::Relaxed);
            if !(stale || full) {
                continue;
            }
            // Only when nobody is between looking it up and locking it.
            let free = map.get(&name).is_some_and(|s| {
                Arc::strong_count(s) == 1 && s.try_lock().is_ok_and(|s| s.entries.is_empty())
            });
            if free {
                map.remove(&name);
                self.shrank(STREAM_COST + name.len());
            }
        }
        self.counters.channels.set(map.len() as i64);
        drop(map);
        self.compact();
    }

    /// Every stream as it stands, for saving.
    pub fn snapshot(&self, now: Instant) -> Vec<Saved> {
        let streams: Vec<(Arc<str>, Arc<Mutex<Stream>>)> = self
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        streams
            .into_iter()
            .map(|(name, stream)| {
                let mut s = lock(&stream);
                self.expire(&mut s, now);
                Saved {
                    name,
                    epoch: s.epoch.clone(),
                    last: s.last,
                    policy: s.policy,
                    entries: s.entries.iter().cloned().collect(),
                }
            })
            .collect()
    }

    /// Adds saved streams (at start, before anyone connects), keeping their epochs.
    pub fn restore(&self, saved: Vec<Saved>, now: Instant) {
        let mut order: Vec<(Instant, Arc<str>, u64)> = Vec::new();
        {
            let mut map = self.write();
            for mut one in saved {
                let mut s = Stream::new(one.name.clone(), one.epoch, one.policy, now);
                s.last = one.last;
                let mut bytes = STREAM_COST + one.name.len();
                one.entries
                    .retain(|e| now.saturating_duration_since(e.at) < one.policy.ttl);
                for e in one.entries {
                    bytes += ENTRY_COST + e.frame.encoded().len();
                    order.push((e.at, one.name.clone(), e.offset));
                    s.entries.push_back(e);
                }
                self.stored.fetch_add(s.entries.len(), Ordering::Relaxed);
                self.counters.messages.inc_by(s.entries.len() as i64);
                if let Some(old) = map.insert(one.name, Arc::new(Mutex::new(s))) {
                    self.drop_stream(&lock(&old));
                }
                self.grew(bytes);
            }
            self.counters.channels.set(map.len() as i64);
        }
        order.sort_by_key(|(at, ..)| *at);
        lock(&self.order).extend(order.into_iter().map(|(_, name, offset)| (name, offset)));
        self.enforce_cap();
    }

    /// Bytes held, as bounded by `max_bytes`.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Messages held.
    pub fn len(&self) -> usize {
        self.stored.load(Ordering::Relaxed)
    }

    /// Whether no message is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The counters it updates (recoveries are counted by the hub).
    pub fn counters(&self) -> &HistoryCounters {
        &self.counters
    }

    fn expire(&self, s: &mut Stream, now: Instant) {
        while s
            .entries
            .front()
            .is_some_and(|e| now.saturating_duration_since(e.at) >= s.policy.ttl)
        {
            self.remove_front(s);
            self.counters.evicted_ttl.inc();
        }
    }

    fn remove_front(&self, s: &mut Stream) {
        if let Some(e) = s.entries.pop_front() {
            self.shrank(ENTRY_COST + e.frame.encoded().len());
            self.stored.fetch_sub(1, Ordering::Relaxed);
            self.counters.messages.dec();
        }
    }

    fn drop_stream(&self, s: &Stream) {
        let bytes: usize = s
            .entries
            .iter()
            .map(|e| ENTRY_COST + e.frame.encoded().len())
            .sum();
        self.shrank(bytes);
        self.stored.fetch_sub(s.entries.len(), Ordering::Relaxed);
        self.counters.messages.dec_by(s.entries.len() as i64);
    }

    /// Drops order items whose message is gone, once they outnumber the live ones.
    fn compact(&self) {
        let stored = self.stored.load(Ordering::Relaxed);
        if lock(&self.order).len() <= 2 * stored + 1024 {
            return;
        }
        let old = std::mem::take(&mut *lock(&self.order));
        let kept: VecDeque<(Arc<str>, u64)> = {
            let map = self.read();
            old.into_iter()
                .filter(|(name, offset)| {
                    map.get(name).is_some_and(|s| {
                        let s = lock(s);
                        s.entries.front().is_some_and(|f| f.offset <= *offset) && *offset <= s.last
                    })
                })
                .collect()
        };
        let mut order = lock(&self.order);
        let newer = std::mem::replace(&mut *order, kept);
        order.extend(newer);
    }

    fn grew(&self, n: usize) {
        let now = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        self.counters.bytes.set(now as i64);
    }

    fn shrank(&self, n: usize) {
        let now = self.bytes.fetch_sub(n, Ordering::Relaxed).saturating_sub(n);
        self.counters.bytes.set(now as i64);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, Arc<Mutex<Stream>>>> {
        // Every update leaves the map consistent, so a poisoned lock is still usable.
        self.streams.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Arc<str>, Arc<Mutex<Stream>>>> {
        self.streams.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Locks a stream (or the order); each update leaves it consistent, so a poisoned lock is
/// still usable.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A fresh epoch: [`EPOCH_LEN`] characters of `a-z0-9`.
pub(crate) fn new_epoch() -> Arc<str> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let epoch: String = (0..EPOCH_LEN)
        .map(|_| char::from(ALPHABET[fastrand::usize(..ALPHABET.len())]))
        .collect();
    Arc::from(epoch)
}

/// Whether `epoch` could be one [`new_epoch`] made (for positions read from clients and files).
pub fn is_epoch(epoch: &str) -> bool {
    epoch.len() == EPOCH_LEN
        && epoch
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}
