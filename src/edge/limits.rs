//! Connection limits: WebSocket slots (`server.max_connections`, `max_connections_per_ip`)
//! and connections still speaking HTTP (`server.max_http_connections`). Limits are read
//! from the config in force at each claim, so a reload applies at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;

/// Connections open at the peak before their leaving counts as a wave worth a trim.
const TRIM_WAVE: usize = 32;

/// Called after a wave of disconnects (the daemon passes the allocator's trim).
pub type OnWave = Box<dyn Fn() + Send + Sync>;

/// Counts open WebSocket connections against `server.max_connections` and
/// `server.max_connections_per_ip`.
pub struct Slots {
    open: AtomicUsize,
    /// Most open at once since `on_wave` was last called.
    peak: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    on_wave: OnWave,
}

/// One claimed slot, released on drop.
pub struct Slot {
    slots: Arc<Slots>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let open = self.slots.open.fetch_sub(1, Ordering::AcqRel) - 1;
        self.slots.maybe_trim(open);
        let mut per_ip = self.slots.lock();
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// Why a slot was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// `server.max_connections` reached.
    Server,
    /// `server.max_connections_per_ip` reached for this address.
    Ip,
}

impl Slots {
    /// No slot taken; `on_wave` runs each time half the connections of a peak of at least
    /// [`TRIM_WAVE`] have gone.
    pub fn new(on_wave: OnWave) -> Self {
        Self {
            open: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            per_ip: Mutex::default(),
            on_wave,
        }
    }

    /// Claims a slot for `ip` within the limits (read per call, so a reload applies at once;
    /// a per-IP limit of 0 means none).
    pub fn try_claim(
        self: &Arc<Self>,
        ip: IpAddr,
        max: usize,
        max_per_ip: usize,
    ) -> Result<Slot, Full> {
        let mut per_ip = self.lock();
        let from_ip = per_ip.get(&ip).copied().unwrap_or(0);
        if max_per_ip != 0 && from_ip >= max_per_ip {
            return Err(Full::Ip);
        }
        let open = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| Full::Server)?;
        self.peak.fetch_max(open + 1, Ordering::AcqRel);
        per_ip.insert(ip, from_ip + 1);
        Ok(Slot {
            slots: self.clone(),
            ip,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Counts stay consistent under the lock; a panic elsewhere cannot corrupt them.
        self.per_ip.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// After a wave of disconnects (half the peak gone), calls `on_wave`: the memory they
    /// freed is worth handing back to the kernel rather than leaving it cached.
    fn maybe_trim(&self, open: usize) {
        let peak = self.peak.load(Ordering::Acquire);
        if peak >= TRIM_WAVE
            && open <= peak / 2
            && self
                .peak
                .compare_exchange(peak, open, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            (self.on_wave)();
        }
    }

    /// Open WebSocket connections.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// Counts connections that are not (yet) WebSockets: handshakes in progress, publish and
/// static-page requests, idle keep-alives. The accept loop waits for one to end rather
/// than accept past `server.max_http_connections`; new clients wait in the kernel's
/// listen queue meanwhile.
#[derive(Debug, Default)]
pub struct HttpSlots {
    /// The count itself, exported as `heartwire_http_connections`.
    open: Gauge,
    freed: Notify,
}

/// One HTTP connection's place, released on drop.
pub struct HttpSlot {
    slots: Arc<HttpSlots>,
}

impl Drop for HttpSlot {
    fn drop(&mut self) {
        self.slots.open.dec();
        self.slots.freed.notify_one();
    }
}

impl HttpSlots {
    /// No connection yet; `open` is the metrics gauge that counts them.
    pub fn new(open: Gauge) -> Self {
        Self {
            open,
            freed: Notify::new(),
        }
    }

    /// Claims a place if fewer than `max` are open.
    pub fn try_claim(self: &Arc<Self>, max: usize) -> Option<HttpSlot> {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.open
            .inner()
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(HttpSlot {
            slots: self.clone(),
        })
    }

    /// Claims a place, waiting for one to be released while `max` are open.
    pub async fn claim(self: &Arc<Self>, max: impl Fn() -> usize) -> HttpSlot {
        loop {
            // Registered before the second look, so a release in between is not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(slot) = self.try_claim(max()) {
                return slot;
            }
            freed.await;
        }
    }

    /// Open HTTP connections.
    pub fn open(&self) -> i64 {
        self.open.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wave_of_disconnects_asks_for_one_trim() {
        let waves = Arc::new(AtomicUsize::new(0));
        let counted = waves.clone();
        let slots = Arc::new(Slots::new(Box::new(move || {
            counted.fetch_add(1, Ordering::Relaxed);
        })));
        let trims = || waves.load(Ordering::Relaxed);
        let ip = IpAddr::from([127, 0, 0, 1]);
        let mut held: Vec<Slot> = (0..40)
            .map(|_| slots.try_claim(ip, 100, 0).unwrap())
            .collect();
        let before = trims();
        held.truncate(21);
        assert_eq!(trims(), before, "19 of 40 gone is not a wave");
        held.truncate(20);
        assert_eq!(trims(), before + 1, "half of 40 gone is");
        held.clear();
        assert_eq!(trims(), before + 1, "a peak of 20 is below TRIM_WAVE");
        assert_eq!(slots.open(), 0);
        // A new crowd makes a new peak.
        held = (0..64)
            .map(|_| slots.try_claim(ip, 100, 0).unwrap())
            .collect();
        held.truncate(32);
        assert_eq!(trims(), before + 2);
    }

    #[tokio::test]
    async fn an_http_claim_waits_for_a_release() {
        let slots = Arc::new(HttpSlots::default());
        let first = slots.try_claim(1).unwrap();
        assert!(slots.try_claim(1).is_none());
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.claim(|| 1).await }
        });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished(), "claimed past the limit");
        drop(first);
        let second = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("a release did not wake the claim")
            .unwrap();
        assert_eq!(slots.open(), 1);
        drop(second);
        assert_eq!(slots.open(), 0);
    }
}
