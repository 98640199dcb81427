//! Percentiles, heartbeat tick grouping and the clock shared by publisher and clients.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// Nanoseconds since the Unix epoch: publisher and receivers may be different
/// processes on this machine, so latencies use the wall clock, not `Instant`.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The `p`-th percentile (0..=100) of sorted samples, nearest rank.
pub fn pct<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// p50/p90/p99/max of sorted microsecond samples, in milliseconds.
pub fn ms_summary(sorted_us: &[u32]) -> Value {
    let ms = |p: f64| pct(sorted_us, p).map(|v| round3(f64::from(v) / 1e3));
    json!({ "p50": ms(50.0), "p90": ms(90.0), "p99": ms(99.0), "max": ms(100.0), "n": sorted_us.len() })
}

/// Rounds to three decimals for readable JSON.
pub fn round3(v: f64) -> f64 {
    (v * 1e3).round() / 1e3
}

/// One observed ping: the tick token it carried (ms since the epoch, 0 if none) and
/// when it arrived (ns since the epoch).
#[derive(Debug, Clone, Copy)]
pub struct PingSeen {
    /// Token from the payload, 0 when the ping carried none.
    pub token_ms: u64,
    /// Arrival time.
    pub at_ns: u64,
}

/// Groups pings by token into ticks and summarises the ticks at least `min_share` of
/// the connections saw: first-to-last arrival spread and token-to-last-arrival time.
pub fn ticks(pings: &[PingSeen], conns: usize, min_share: f64) -> Value {
    let mut by_token: HashMap<u64, (u64, u64, usize)> = HashMap::new();
    for p in pings.iter().filter(|p| p.token_ms != 0) {
        let e = by_token.entry(p.token_ms).or_insert((u64::MAX, 0, 0));
        e.0 = e.0.min(p.at_ns);
        e.1 = e.1.max(p.at_ns);
        e.2 += 1;
    }
    let need = (conns as f64 * min_share).ceil() as usize;
    let mut spread: Vec<f64> = Vec::new();
    let mut last: Vec<f64> = Vec::new();
    for (token, (first, lastp, n)) in by_token {
        if n >= need.max(1) {
            spread.push((lastp - first) as f64 / 1e6);
            last.push(lastp as f64 / 1e6 - token as f64);
        }
    }
    spread.sort_by(f64::total_cmp);
    last.sort_by(f64::total_cmp);
    json!({
        "ticks": spread.len(),
        "spread_ms_median": pct(&spread, 50.0).map(round3),
        "token_to_last_ms_median": pct(&last, 50.0).map(round3),
        "token_to_last_ms_max": pct(&last, 100.0).map(round3),
    })
}

/// Writes `points` quantiles (in ms) of sorted microsecond samples to `path` for the plot.
pub fn dump_quantiles(
    path: &std::path::Path,
    sorted_us: &[u32],
    points: usize,
) -> std::io::Result<()> {
    let q: Vec<f64> = (0..=points)
        .filter_map(|i| pct(sorted_us, 100.0 * i as f64 / points as f64))
        .map(|v| f64::from(v) / 1e3)
        .collect();
    std::fs::write(path, serde_json::to_string(&q).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(pct(&v, 50.0), Some(50));
        assert_eq!(pct(&v, 99.0), Some(99));
        assert_eq!(pct(&v, 100.0), Some(100));
        assert_eq!(pct(&v, 0.0), Some(1));
        assert_eq!(pct::<u32>(&[], 50.0), None);
    }

    #[test]
    fn ticks_need_enough_connections() {
        let pings = [
            PingSeen {
                token_ms: 1000,
                at_ns: 1_001_000_000,
            },
            PingSeen {
                token_ms: 1000,
                at_ns: 1_003_000_000,
            },
            PingSeen {
                token_ms: 2000,
                at_ns: 2_001_000_000,
            },
        ];
        let t = ticks(&pings, 2, 0.9);
        assert_eq!(t["ticks"], 1);
        assert_eq!(t["spread_ms_median"], 2.0);
        assert_eq!(t["token_to_last_ms_median"], 3.0);
    }
}
