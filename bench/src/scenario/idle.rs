//! `idle`: N connections held with heartbeats on; memory, CPU, drops, one big broadcast.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::time::sleep;

use super::{Common, Driven, paths};
use crate::client::{Shared, connect_all};
use crate::procstat::cpu_delta;
use crate::publisher::Publisher;
use crate::stats::{PingSeen, now_ns, round3, ticks};

/// Settings of `idle`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Connections to hold.
    #[arg(long, default_value_t = 19_000)]
    pub conns: usize,
    /// Routes, used round robin (one per heartbeat strategy).
    #[arg(long, default_value = "/news,/app")]
    pub paths: String,
    /// Seconds to wait after connecting before measuring.
    #[arg(long, default_value_t = 1.0)]
    pub settle: f64,
    /// Seconds to hold the connections.
    #[arg(long, default_value_t = 20.0)]
    pub hold: f64,
    /// Size of the broadcast sent to every connection after the hold (0: none).
    #[arg(long, default_value_t = 65_536)]
    pub big: usize,
    /// Seconds after every client has the broadcast before reading RSS again.
    #[arg(long, default_value_t = 5.0)]
    pub after_big: f64,
}

/// Runs `idle`.
pub async fn run(c: &Common, a: &Args) -> anyhow::Result<Value> {
    let proc = c.proc();
    let rss_before = proc.rss_kib();
    let dialer = c.dialer();
    let opened = connect_all(&dialer, a.conns, &paths(&a.paths), c.concurrency).await;
    let established = opened.conns.len();
    let shared = Shared::new(0);
    let driven = Driven::start(opened.conns, &shared).await;

    sleep(Duration::from_secs_f64(a.settle)).await;
    let rss_full = proc.rss_kib();
    let dropped_before_hold = shared.dropped.load(Ordering::Relaxed);
    let cpu0 = proc.cpu_secs();
    let hold_from = now_ns();
    sleep(Duration::from_secs_f64(a.hold)).await;
    let hold_to = now_ns();
    let cpu_hold = cpu_delta(cpu0, proc.cpu_secs());
    let rss_hold_end = proc.rss_kib();
    let dropped_in_hold = shared.dropped.load(Ordering::Relaxed) - dropped_before_hold;

    let mut big = json!(null);
    if a.big > 0 {
        let live = established as u64 - shared.dropped.load(Ordering::Relaxed);
        let mut publisher = Publisher::new(dialer.server(), &c.publish_path, None, dialer.tls());
        let body = vec![b'b'; a.big];
        let sent = Instant::now();
        let res = publisher.post("application/octet-stream", &body).await;
        let deadline = sent + Duration::from_secs(30);
        while shared.big.load(Ordering::Relaxed) < live && Instant::now() < deadline {
            sleep(Duration::from_millis(5)).await;
        }
        let all_in = sent.elapsed();
        let received = shared.big.load(Ordering::Relaxed);
        sleep(Duration::from_secs_f64(a.after_big)).await;
        let rss_after = proc.rss_kib();
        big = json!({
            "bytes": a.big,
            "publish_error": res.as_ref().err().map(|e| format!("{e:#}")),
            "received": received,
            "expected": live,
            "all_received_ms": round3(all_in.as_secs_f64() * 1e3),
            "rss_after_kib": rss_after,
            "rss_after_over_idle": rss_after.zip(rss_full).map(|(x, y)| round3(x as f64 / y as f64)),
        });
    }

    let reports = driven.finish().await;
    let hold_pings: Vec<PingSeen> = reports
        .iter()
        .flat_map(|(_, r)| r.pings.iter().copied())
        .filter(|p| p.at_ns >= hold_from && p.at_ns <= hold_to)
        .collect();
    let mut tick_by_path = serde_json::Map::new();
    for (i, path) in paths(&a.paths).iter().enumerate() {
        let pings: Vec<PingSeen> = reports
            .iter()
            .filter(|(p, _)| *p == i)
            .flat_map(|(_, r)| r.pings.iter().copied())
            .collect();
        let n = reports.iter().filter(|(p, _)| *p == i).count();
        tick_by_path.insert(path.clone(), ticks(&pings, n, 0.9));
    }
    let per_conn = rss_full
        .zip(rss_before)
        .map(|(f, b)| round3((f as f64 - b as f64) / established.max(1) as f64));
    Ok(json!({
        "scenario": "idle",
        "server": c.label,
        "conns": a.conns,
        "established": established,
        "connect_failures": opened.failures,
        "connect_error": opened.first_error,
        "connect_s": round3(opened.elapsed.as_secs_f64()),
        "rss_before_kib": rss_before,
        "rss_full_kib": rss_full,
        "rss_hold_end_kib": rss_hold_end,
        "kib_per_conn": per_conn,
        "hold_s": a.hold,
        "cpu_hold_s": cpu_hold.map(round3),
        "cpu_pct_of_core": cpu_hold.map(|s| round3(100.0 * s / a.hold)),
        "pings_in_hold": hold_pings.len(),
        "cpu_us_per_ping": cpu_hold.filter(|_| !hold_pings.is_empty()).map(|s| round3(s * 1e6 / hold_pings.len() as f64)),
        "dropped_in_hold": dropped_in_hold,
        "dropped_total": shared.dropped.load(Ordering::Relaxed),
        "ticks": tick_by_path,
        "big": big,
    }))
}
