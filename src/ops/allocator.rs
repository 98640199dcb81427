//! The memory allocator, and what it reports about itself.
//!
//! jemalloc, chosen by measurement (scripts/soak, 1 500 clients then none; RSS against the
//! pre-client baseline): glibc malloc kept 3.0x, mimalloc 2.7x, jemalloc with its
//! background purge thread 1.3x. Its counters tell a leak (allocated bytes grow) from
//! memory the allocator holds after a peak (resident minus allocated); /metrics exports both.
//!
//! After a wave of disconnects the freed memory sits in per-thread caches and dirty pages,
//! which jemalloc hands back only as threads allocate again or after its decay time.
//! [`trim`] asks for it back at once: every runtime thread flushes its cache the next time
//! it parks ([`on_park`]) and purges the arenas' free pages.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use tikv_jemalloc_ctl::{Access, AsName};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Bumped by [`trim`]; each thread flushes when it sees a value it has not seen.
static TRIMS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static TRIMMED: Cell<u64> = const { Cell::new(0) };
}

/// Asks every runtime thread to hand its free memory back the next time it parks.
pub fn trim() {
    TRIMS.fetch_add(1, Ordering::Relaxed);
}

/// How many times [`trim`] was called.
pub fn trims() -> u64 {
    TRIMS.load(Ordering::Relaxed)
}

/// For the runtime's `on_thread_park`: releases this thread's cache if [`trim`] was called
/// since it last did. Costs one atomic load otherwise.
pub fn on_park() {
    let wanted = TRIMS.load(Ordering::Relaxed);
    if TRIMMED.with(|t| t.replace(wanted)) != wanted {
        release();
    }
}

/// Flushes the calling thread's cache into the arenas, then purges every arena's free
/// pages (returns them to the kernel). Errors are ignored: this only saves memory.
pub fn release() {
    // Turning the cache off flushes it; turning it back on starts an empty one.
    let tcache = b"thread.tcache.enabled\0".name();
    if tcache.read() == Ok(true) {
        let _ = tcache.write(false);
        let _ = tcache.write(true);
    }
    // Setting an arena's decay time to 0 purges its dirty pages at once; the configured
    // time is restored after. Serialized, so no thread restores another's 0.
    static PURGE: Mutex<()> = Mutex::new(());
    let _one = PURGE.lock().unwrap_or_else(PoisonError::into_inner);
    let (Ok(narenas), Ok(decay), Ok(mut mib)) = (
        tikv_jemalloc_ctl::arenas::narenas::read(),
        b"opt.dirty_decay_ms\0".name().read(),
        b"arena.0.dirty_decay_ms\0".name().mib::<[usize; 3]>(),
    ) else {
        return;
    };
    let decay: isize = decay;
    for arena in 0..narenas as usize {
        mib[1] = arena;
        // Arenas never used (no thread assigned yet) answer with an error: skip them.
        if mib.write(0isize).is_ok() {
            let _ = mib.write(decay);
        }
    }
}

/// Bytes the allocator has handed out and bytes it keeps resident, or `None` if the
/// statistics cannot be read.
pub fn usage() -> Option<(u64, u64)> {
    tikv_jemalloc_ctl::epoch::advance().ok()?;
    let allocated = tikv_jemalloc_ctl::stats::allocated::read().ok()?;
    let resident = tikv_jemalloc_ctl::stats::resident::read().ok()?;
    Some((allocated as u64, resident as u64))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    /// Tests reading the process-wide figures or counting trims run one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    #[test]
    fn usage_tracks_allocations() {
        let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        // The figure is process-wide and other tests run on other threads, freeing as they
        // go (one drops a 10 MiB buffer): a 64 MiB block must show, within 4 MiB of what
        // the others may free meanwhile, in at least one of a few tries. A figure that does
        // not follow allocations fails every try.
        let mut seen = Vec::new();
        for _ in 0..8 {
            let (before, _) = super::usage().unwrap();
            let block = vec![1u8; 64 << 20];
            let (during, resident) = super::usage().unwrap();
            drop(std::hint::black_box(block));
            if during + (4 << 20) >= before + (64 << 20) {
                assert!(
                    resident >= during / 2,
                    "resident {resident}, allocated {during}"
                );
                return;
            }
            seen.push(format!("{before} -> {during}"));
        }
        panic!("a 64 MiB block never showed: {seen:?}");
    }

    #[test]
    fn release_hands_freed_pages_back_at_once() {
        let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        // 16 MiB in 4 KiB blocks, freed: without a release, jemalloc keeps the pages
        // resident for its decay time (10 s).
        let blocks: Vec<Vec<u8>> = (0..4096).map(|i| vec![i as u8; 4096]).collect();
        let (_, peak) = super::usage().unwrap();
        drop(blocks);
        super::release();
        let (_, after) = super::usage().unwrap();
        assert!(
            after + (12 << 20) < peak,
            "resident {peak} -> {after}: less than 12 MiB released"
        );
    }

    #[test]
    fn on_park_releases_once_per_trim() {
        let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        super::trim();
        let wanted = super::TRIMS.load(std::sync::atomic::Ordering::Relaxed);
        super::on_park();
        assert_eq!(super::TRIMMED.with(std::cell::Cell::get), wanted);
    }
}
