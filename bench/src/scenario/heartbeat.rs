//! `heartbeat`: how fast each strategy detects silent peers, and what a tick costs.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::time::sleep;

use super::{Common, Driven, paths};
use crate::client::{Shared, connect_all, silent};
use crate::procstat::cpu_delta;
use crate::stats::{PingSeen, pct, round3, ticks};

/// Settings of `heartbeat`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Answering connections, round robin over the paths.
    #[arg(long, default_value_t = 2_000)]
    pub conns: usize,
    /// Silent connections per path.
    #[arg(long, default_value_t = 50)]
    pub silent: usize,
    /// Routes, one per heartbeat strategy.
    #[arg(long, default_value = "/news,/app")]
    pub paths: String,
    /// Seconds to watch.
    #[arg(long, default_value_t = 12.0)]
    pub window: f64,
}

/// Runs `heartbeat`.
pub async fn run(c: &Common, a: &Args) -> anyhow::Result<Value> {
    let proc = c.proc();
    let dialer = c.dialer();
    let routes = paths(&a.paths);
    let opened = connect_all(&dialer, a.conns, &routes, c.concurrency).await;
    let shared = Shared::new(0);
    let driven = Driven::start(opened.conns, &shared).await;

    let mut failures = opened.failures;
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(a.window);
    let mut watchers = Vec::new();
    for (i, path) in routes.iter().enumerate() {
        let quiet = connect_all(&dialer, a.silent, std::slice::from_ref(path), c.concurrency).await;
        failures += quiet.failures;
        for (_, ws) in quiet.conns {
            let since = Instant::now();
            watchers.push((i, tokio::spawn(silent(ws, since, until))));
        }
    }
    let cpu0 = proc.cpu_secs();
    let measured_from = Instant::now();
    sleep(until.saturating_duration_since(Instant::now())).await;
    let cpu = cpu_delta(cpu0, proc.cpu_secs());
    let measured_s = measured_from.elapsed().as_secs_f64();
    let mut detect: Vec<Vec<f64>> = vec![Vec::new(); routes.len()];
    let mut undetected = vec![0usize; routes.len()];
    for (i, w) in watchers {
        match w.await {
            Ok(Some(d)) => detect[i].push(d.as_secs_f64()),
            _ => undetected[i] += 1,
        }
    }
    let dropped = shared.dropped.load(Ordering::Relaxed);
    let reports = driven.finish().await;
    let all_pings: usize = reports.iter().map(|(_, r)| r.pings.len()).sum();

    let mut per_path = Map::new();
    for (i, path) in routes.iter().enumerate() {
        detect[i].sort_by(f64::total_cmp);
        let pings: Vec<PingSeen> = reports
            .iter()
            .filter(|(p, _)| *p == i)
            .flat_map(|(_, r)| r.pings.iter().copied())
            .collect();
        let n = reports.iter().filter(|(p, _)| *p == i).count();
        per_path.insert(
            path.clone(),
            json!({
                "detect_s_p50": pct(&detect[i], 50.0).map(round3),
                "detect_s_max": pct(&detect[i], 100.0).map(round3),
                "detected": detect[i].len(),
                "undetected": undetected[i],
                "pings": pings.len(),
                "ticks": ticks(&pings, n, 0.9),
            }),
        );
    }
    let per_ping = cpu
        .filter(|_| all_pings > 0)
        .map(|s| s * 1e6 / all_pings as f64);
    Ok(json!({
        "scenario": "heartbeat",
        "server": c.label,
        "conns": a.conns,
        "silent_per_path": a.silent,
        "connect_failures": failures,
        "window_s": a.window,
        "cpu_s": cpu.map(round3),
        "cpu_pct_of_core": cpu.map(|s| round3(100.0 * s / measured_s.max(1e-9))),
        "pings": all_pings,
        "cpu_us_per_ping": per_ping.map(round3),
        "answering_dropped": dropped,
        "paths": per_path,
    }))
}
