//! `handshake`: N connections that open (TCP connect, TLS with `--tls`, WebSocket upgrade,
//! the token verified by the server when the path carries one) and close again, at most C
//! in flight: handshakes per second, handshake time, server CPU per handshake. Tokens are
//! signed before the clock starts, so the client's signing is not in the figures.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::time::timeout;

use super::Common;
use crate::procstat::cpu_delta;
use crate::stats::{ms_summary, round3};

/// Settings of `handshake`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Connections to open and close.
    #[arg(long, alias = "conns", default_value_t = 2_000)]
    pub count: usize,
    /// Route; `{i}` becomes the connection index, `{jwt}` a token for sub i.
    #[arg(long, default_value = "/quiet")]
    pub path: String,
    /// Handshakes in flight at once (1: sequential); default `--concurrency`.
    #[arg(long)]
    pub in_flight: Option<usize>,
    /// Drop each connection once open, without a Close frame (only the opening is
    /// measured). By default a Close frame is sent and the server's answer (or EOF)
    /// awaited, at most 5 s.
    #[arg(long)]
    pub drop: bool,
    /// Hard limit on the whole run, seconds.
    #[arg(long, default_value_t = 60.0)]
    pub max_secs: f64,
}

/// Runs `handshake`.
pub async fn run(c: &Common, a: &Args) -> anyhow::Result<Value> {
    let proc = c.proc();
    let dialer = c.dialer();
    let in_flight = a.in_flight.unwrap_or(c.concurrency).max(1);
    let mint_start = Instant::now();
    let paths = (0..a.count)
        .map(|i| dialer.path_for(&a.path, i))
        .collect::<anyhow::Result<Vec<String>>>()?;
    let mint_s = mint_start.elapsed().as_secs_f64();

    let cpu0 = proc.cpu_secs();
    let start = Instant::now();
    let limit = start + Duration::from_secs_f64(a.max_secs);
    let results: Vec<Result<u32, String>> = futures_util::stream::iter(paths)
        .map(|path| {
            let dialer = dialer.clone();
            async move {
                if Instant::now() > limit {
                    return Err("time limit".to_owned());
                }
                let t = Instant::now();
                let mut ws = dialer.connect(&path).await.map_err(|e| format!("{e:#}"))?;
                let us = u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX);
                if !a.drop {
                    // Close and wait for the server's answer (or EOF), bounded.
                    let _ = ws.close(None).await;
                    let _ = timeout(Duration::from_secs(5), async {
                        while let Some(Ok(_)) = ws.next().await {}
                    })
                    .await;
                }
                Ok(us)
            }
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_delta(cpu0, proc.cpu_secs());
    let mut lat: Vec<u32> = Vec::with_capacity(results.len());
    let mut failures = 0usize;
    let mut first_error = None;
    for r in results {
        match r {
            Ok(us) => lat.push(us),
            Err(e) => {
                failures += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    lat.sort_unstable();
    let ok = lat.len();
    Ok(json!({
        "scenario": "handshake",
        "server": c.label,
        "tls": c.tls,
        "path": a.path.replace("{jwt}", "<jwt>"),
        "jwt_alg": format!("{:?}", c.jwt.jwt_alg).to_lowercase(),
        "count": a.count,
        "in_flight": in_flight,
        "close": if a.drop { "drop" } else { "close frame" },
        "completed": ok,
        "failures": failures,
        "first_error": first_error,
        "elapsed_s": round3(elapsed),
        "handshakes_per_s": round3(ok as f64 / elapsed.max(1e-9)),
        "handshake_ms": ms_summary(&lat),
        "cpu_s": cpu.map(round3),
        "cpu_us_per_handshake": cpu.filter(|_| ok > 0).map(|s| round3(s * 1e6 / ok as f64)),
        "client_mint_us_per_token": round3(mint_s * 1e6 / a.count.max(1) as f64),
    }))
}
