//! Draining on shutdown without a reconnect storm.
//!
//! Rather than closing every client in the same millisecond (and having them all
//! reconnect to the next instance at once), the live connections are closed in batches
//! spread evenly over `server.drain_period`, each with 1001 and a reason carrying a
//! jittered reconnect hint: `server shutting down; reconnect in 2345 ms`, the delay drawn
//! uniformly from `[0, server.reconnect_jitter]` per client.

use std::time::Duration;

use tokio::time::{self, Instant};

use super::{Conn, Hub};

/// Time between batches when draining over a period: small enough that close times are
/// spread nearly continuously, large enough that a batch is worth a wakeup.
pub const BATCH_EVERY: Duration = Duration::from_millis(100);

/// The close reason a drained client gets: `server shutting down; reconnect in N ms`.
pub fn reason(hint: Duration) -> String {
    format!("server shutting down; reconnect in {} ms", hint.as_millis())
}

/// A reconnect hint drawn uniformly from `[0, jitter]`.
pub fn hint(jitter: Duration) -> Duration {
    let max = u64::try_from(jitter.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(fastrand::u64(0..=max))
}

/// When each batch closes, as an offset from the drain's start, and how many it closes.
/// Batches are `BATCH_EVERY` apart (fewer when there are fewer connections), the first at
/// 0 and the last before `period`; `period` zero gives one batch with everyone.
pub fn plan(connections: usize, period: Duration) -> Vec<(Duration, usize)> {
    if connections == 0 {
        return Vec::new();
    }
    let slots = period.as_nanos() / BATCH_EVERY.as_nanos().max(1);
    let batches = usize::try_from(slots)
        .unwrap_or(usize::MAX)
        .clamp(1, connections);
    let batches = batches.min(u32::MAX as usize);
    let whole = u32::try_from(batches).unwrap_or(u32::MAX);
    (0..whole)
        .map(|i| {
            // Spread the remainder over the first batches: sizes differ by at most one.
            let index = i as usize;
            let size = connections / batches + usize::from(index < connections % batches);
            let at = period.checked_mul(i).map_or(period, |d| d / whole);
            (at, size)
        })
        .collect()
}

/// Closes every live connection of `hub` in batches over `period` (see [`plan`]), each
/// with 1001 and a reconnect hint within `jitter`. Returns once the last batch is told.
pub async fn drain(hub: &Hub, period: Duration, jitter: Duration) {
    let mut conns: Vec<Conn> = hub.routes().iter().flat_map(|r| r.conns()).collect();
    // Oldest first: the longest-lived clients have had the most use of this instance.
    conns.sort_by_key(|c| c.id);
    let start = Instant::now();
    let mut rest = conns.as_slice();
    for (at, size) in plan(conns.len(), period) {
        time::sleep_until(start + at).await;
        let (batch, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        for conn in batch {
            conn.vitals.set_farewell(reason(hint(jitter)));
            conn.token.cancel();
        }
    }
    // Connections whose handshake completed after the list was taken; and every route's
    // token, so a handshake still in flight closes as soon as it registers.
    for route in hub.routes() {
        for conn in route.conns().iter().filter(|c| !c.token.is_cancelled()) {
            conn.vitals.set_farewell(reason(hint(jitter)));
            conn.token.cancel();
        }
        route.closing.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn plan_table() {
        type Plan = Vec<(Duration, usize)>;
        let cases: Vec<(usize, Duration, Plan)> = vec![
            (0, 10 * BATCH_EVERY, vec![]),
            (5, Duration::ZERO, vec![(Duration::ZERO, 5)]),
            (
                3,
                9 * BATCH_EVERY,
                vec![(Duration::ZERO, 1), (300 * MS, 1), (600 * MS, 1)],
            ),
            (
                7,
                3 * BATCH_EVERY,
                vec![(Duration::ZERO, 3), (100 * MS, 2), (200 * MS, 2)],
            ),
            (4, 50 * MS, vec![(Duration::ZERO, 4)]),
        ];
        for (n, period, want) in cases {
            assert_eq!(plan(n, period), want, "{n} over {period:?}");
        }
    }

    #[test]
    fn plan_covers_everyone_within_the_period() {
        for n in [1, 2, 99, 100, 101, 100_000] {
            let p = plan(n, Duration::from_secs(10));
            assert_eq!(p.iter().map(|(_, s)| s).sum::<usize>(), n);
            assert!(p.iter().all(|(at, _)| *at < Duration::from_secs(10)));
            assert!(p.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }

    #[test]
    fn reason_and_hint() {
        assert_eq!(
            reason(2345 * MS),
            "server shutting down; reconnect in 2345 ms"
        );
        for _ in 0..100 {
            assert!(hint(50 * MS) <= 50 * MS);
        }
        assert_eq!(hint(Duration::ZERO), Duration::ZERO);
    }
}
