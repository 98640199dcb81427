//! `handshake`: N short connections (TCP, TLS with `--tls`, WebSocket upgrade), each
//! closed once open; handshakes per second, their latency, and server CPU per handshake.

use std::time::Instant;

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::Common;
use crate::procstat::cpu_delta;
use crate::stats::{ms_summary, round3};

/// Settings of `handshake`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Connections to open and close.
    #[arg(long, default_value_t = 2_000)]
    pub conns: usize,
    /// Route to connect to.
    #[arg(long, default_value = "/quiet")]
    pub path: String,
}

/// Runs `handshake`.
pub async fn run(c: &Common, a: &Args) -> anyhow::Result<Value> {
    let proc = c.proc();
    let dialer = c.dialer();
    let cpu0 = proc.cpu_secs();
    let start = Instant::now();
    let results: Vec<Result<u32, String>> = futures_util::stream::iter(0..a.conns)
        .map(|_| {
            let dialer = dialer.clone();
            let path = a.path.clone();
            async move {
                let began = Instant::now();
                let ws = dialer.connect(&path).await.map_err(|e| format!("{e:#}"))?;
                let took = u32::try_from(began.elapsed().as_micros()).unwrap_or(u32::MAX);
                // Closed without a close frame: the handshake is what is measured.
                drop(ws);
                Ok(took)
            }
        })
        .buffer_unordered(c.concurrency.max(1))
        .collect()
        .await;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_delta(cpu0, proc.cpu_secs());
    let mut lat_us: Vec<u32> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    lat_us.sort_unstable();
    let ok = lat_us.len();
    let first_error = results.iter().find_map(|r| r.as_ref().err().cloned());
    Ok(json!({
        "scenario": "handshake",
        "server": c.label,
        "tls": c.tls,
        "conns": a.conns,
        "completed": ok,
        "failures": a.conns - ok,
        "first_error": first_error,
        "elapsed_s": round3(elapsed),
        "handshakes_per_s": round3(ok as f64 / elapsed.max(1e-9)),
        "latency_ms": ms_summary(&lat_us),
        "server_cpu_s": cpu.map(round3),
        "server_cpu_us_per_handshake": cpu.filter(|_| ok > 0).map(|s| round3(s * 1e6 / ok as f64)),
    }))
}
