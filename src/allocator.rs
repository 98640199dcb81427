//! The memory allocator, and what it reports about itself.
//!
//! jemalloc, chosen by measurement (scripts/soak, 1 500 clients then none; RSS against the
//! pre-client baseline): glibc malloc kept 3.0x, mimalloc 2.7x, jemalloc with its
//! background purge thread 1.3x. Its counters tell a leak (allocated bytes grow) from
//! memory the allocator holds after a peak (resident minus allocated); /metrics exports both.

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    #[test]
    fn usage_tracks_allocations() {
        let (before, _) = super::usage().unwrap();
        let block = vec![1u8; 8 << 20];
        let (during, resident) = super::usage().unwrap();
        assert!(during >= before + (8 << 20), "{before} -> {during}");
        assert!(resident >= during / 2);
        drop(block);
    }
}
