//! `echo`: C clients, each doing K sequential round trips through an echo route.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::Common;
use crate::client::{Ws, connect_all};
use crate::procstat::cpu_delta;
use crate::stats::{ms_summary, round3};

/// Settings of `echo`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Clients.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Round trips per client.
    #[arg(long, default_value_t = 200)]
    pub round_trips: usize,
    /// Echo route.
    #[arg(long, default_value = "/echo")]
    pub path: String,
    /// Message size in bytes.
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// Hard limit on the whole exchange, seconds.
    #[arg(long, default_value_t = 60.0)]
    pub max_secs: f64,
}

/// How long one reply may take before the client gives up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

async fn client(mut ws: Ws, id: usize, k: usize, size: usize, until: Instant) -> (Vec<u32>, usize) {
    let mut rtts = Vec::with_capacity(k);
    for seq in 0..k {
        if Instant::now() > until {
            break;
        }
        let mut text = format!("E {id} {seq} ");
        while text.len() < size {
            text.push('x');
        }
        let sent = Instant::now();
        if ws.send(Message::text(text.as_str())).await.is_err() {
            return (rtts, k - seq);
        }
        let reply = tokio::time::timeout(REPLY_TIMEOUT, async {
            while let Some(Ok(m)) = ws.next().await {
                if let Message::Text(t) = &m
                    && t.as_str().ends_with(text.as_str())
                {
                    return true;
                }
            }
            false
        })
        .await;
        if reply != Ok(true) {
            return (rtts, k - seq);
        }
        rtts.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    (rtts, 0)
}

/// Runs `echo`.
pub async fn run(c: &Common, a: &Args) -> anyhow::Result<Value> {
    let proc = c.proc();
    let opened = connect_all(
        &c.dialer(),
        a.clients,
        std::slice::from_ref(&a.path),
        c.concurrency,
    )
    .await;
    let cpu0 = proc.cpu_secs();
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(a.max_secs);
    let tasks: Vec<_> = opened
        .conns
        .into_iter()
        .enumerate()
        .map(|(id, (_, ws))| tokio::spawn(client(ws, id, a.round_trips, a.size, until)))
        .collect();
    let mut rtts = Vec::new();
    let mut failed = 0;
    for t in tasks {
        if let Ok((r, f)) = t.await {
            rtts.extend(r);
            failed += f;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_delta(cpu0, proc.cpu_secs());
    rtts.sort_unstable();
    Ok(json!({
        "scenario": "echo",
        "server": c.label,
        "clients": a.clients,
        "round_trips": a.round_trips,
        "connect_failures": opened.failures,
        "completed": rtts.len(),
        "failed": failed,
        "elapsed_s": round3(elapsed),
        "msgs_per_s": round3(rtts.len() as f64 / elapsed.max(1e-9)),
        "rtt_ms": ms_summary(&rtts),
        "cpu_s": cpu.map(round3),
        "cpu_us_per_round_trip": cpu.filter(|_| !rtts.is_empty()).map(|s| round3(s * 1e6 / rtts.len() as f64)),
    }))
}
