//! `fanout` (and `reload`): M publishes at rate R through the HTTP endpoint, each
//! carrying its send time; per-delivery latency, time until the last client has each
//! message, loss, duplicates and order. With `--hups`, SIGHUPs the server meanwhile.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::time::{sleep, sleep_until};

use super::{Common, Driven, paths};
use crate::client::{Dialer, Shared, connect_all, fanout_payload};
use crate::procstat::{Proc, cpu_delta};
use crate::publisher::Publisher;
use crate::stats::{dump_quantiles, ms_summary, now_ns, pct, round3};

/// Settings of `fanout`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Receiving clients.
    #[arg(long, default_value_t = 10_000)]
    pub clients: usize,
    /// Route the receivers connect to.
    #[arg(long, default_value = "/news")]
    pub path: String,
    /// Channel published to ("" for every route).
    #[arg(long, default_value = "news")]
    pub channel: String,
    /// Extra connections that stay connected and receive nothing of this run.
    #[arg(long, default_value_t = 0)]
    pub bystanders: usize,
    /// Route of the bystanders.
    #[arg(long, default_value = "/news")]
    pub bystander_path: String,
    /// Publishes.
    #[arg(long, default_value_t = 20)]
    pub count: usize,
    /// Publishes per second.
    #[arg(long, default_value_t = 5.0)]
    pub rate: f64,
    /// Message size in bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Seconds to wait after the last publish for missing deliveries.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    /// Hard limit on the publishing phase, seconds.
    #[arg(long, default_value_t = 120.0)]
    pub max_secs: f64,
    /// SIGHUPs sent to --pid, spread over the run (the `reload` scenario).
    #[arg(long, default_value_t = 0)]
    pub hups: usize,
    /// Write latency quantiles (ms) as a JSON array here, for the plot.
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// A second node (loopback) sharing a broker with --server: half the receivers
    /// connect there; publishes still go to --server.
    #[arg(long)]
    pub also: Option<SocketAddr>,
    /// The second node's process id: its CPU counts into the figures.
    #[arg(long)]
    pub also_pid: Option<u32>,
    /// The broker's process id (redis-server): its CPU is reported apart.
    #[arg(long)]
    pub broker_pid: Option<u32>,
}

/// Runs `fanout` (named `reload` in the summary when `--hups` > 0).
pub async fn run(c: &Common, a: &Args) -> anyhow::Result<Value> {
    let proc = c.proc();
    let dialer = c.dialer();
    let bystanders = connect_all(
        &dialer,
        a.bystanders,
        &paths(&a.bystander_path),
        c.concurrency,
    )
    .await;
    let here = match a.also {
        Some(_) => a.clients.div_ceil(2),
        None => a.clients,
    };
    let mut opened = connect_all(&dialer, here, std::slice::from_ref(&a.path), c.concurrency).await;
    if let Some(also) = a.also {
        anyhow::ensure!(
            also.ip().is_loopback(),
            "--also must be a loopback address, got {also}"
        );
        let other = Arc::new(Dialer::new(also, c.sources, dialer.tls()));
        let there = connect_all(
            &other,
            a.clients - here,
            std::slice::from_ref(&a.path),
            c.concurrency,
        )
        .await;
        opened.conns.extend(there.conns);
        opened.failures += there.failures;
        opened.first_error = opened.first_error.or(there.first_error);
        opened.elapsed += there.elapsed;
    }
    let receivers = opened.conns.len();
    let (also_proc, broker_proc) = (Proc(a.also_pid), Proc(a.broker_pid));
    let shared = Shared::new(a.count);
    let quiet = Shared::new(0);
    let idle = Driven::start(bystanders.conns, &quiet).await;
    let driven = Driven::start(opened.conns, &shared).await;

    let channel = (!a.channel.is_empty()).then_some(a.channel.as_str());
    let mut publisher = Publisher::new(dialer.server(), &c.publish_path, channel, dialer.tls());
    let mut req_us: Vec<u32> = Vec::with_capacity(a.count);
    let mut errors = 0usize;
    let mut first_error = None;
    let mut queued_short = 0usize;
    let mut hups_sent = 0usize;
    let cpu0 = proc.cpu_secs();
    let (also0, broker0) = (also_proc.cpu_secs(), broker_proc.cpu_secs());
    let start = Instant::now();
    let first_ns = now_ns();
    let limit = start + Duration::from_secs_f64(a.max_secs);
    let mut published = 0usize;
    for seq in 0..a.count {
        if Instant::now() > limit {
            break;
        }
        if a.hups > 0 && seq == (hups_sent + 1) * a.count / (a.hups + 1) && proc.sighup() {
            hups_sent += 1;
        }
        sleep_until((start + Duration::from_secs_f64(seq as f64 / a.rate)).into()).await;
        let body = fanout_payload(seq, a.size);
        match publisher.post("text/plain", body.as_bytes()).await {
            Ok(p) => {
                req_us.push(u32::try_from(p.latency.as_micros()).unwrap_or(u32::MAX));
                if p.queued.is_some_and(|q| (q as usize) < receivers) {
                    queued_short += 1;
                }
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
        published += 1;
    }
    let publish_s = start.elapsed().as_secs_f64();
    let expected = (receivers * published) as u64;
    let drain_until = Instant::now() + Duration::from_secs_f64(a.drain);
    while shared.delivered.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
        sleep(Duration::from_millis(5)).await;
    }
    let cpu_here = cpu_delta(cpu0, proc.cpu_secs());
    let cpu_also = cpu_delta(also0, also_proc.cpu_secs());
    let cpu_broker = cpu_delta(broker0, broker_proc.cpu_secs());
    // Every node's CPU: the fan-out is split between them.
    let cpu = match (cpu_here, a.also_pid) {
        (Some(h), Some(_)) => cpu_also.map(|o| h + o),
        (h, _) => h,
    };
    let reports = driven.finish().await;
    let bystander_reports = idle.finish().await;

    let mut lat: Vec<u32> = Vec::with_capacity(expected as usize);
    let (mut unique, mut dups, mut ooo, mut dropped) = (0u64, 0u64, 0u64, 0u64);
    let (mut frame_bytes, mut positions) = (0u64, 0u64);
    let mut closes: Vec<u16> = Vec::new();
    for (_, r) in &reports {
        lat.extend_from_slice(&r.lat_us);
        frame_bytes += r.frame_bytes;
        positions += r.positions;
        unique += r.unique;
        dups += r.dups;
        ooo += r.out_of_order;
        dropped += u64::from(r.dropped);
        closes.extend(r.close_code);
    }
    dropped += bystander_reports.iter().filter(|(_, r)| r.dropped).count() as u64;
    lat.sort_unstable();
    req_us.sort_unstable();
    if let Some(path) = &a.dump {
        dump_quantiles(path, &lat, 200)?;
    }
    let mut last: Vec<f64> = shared.last_by_seq[..published]
        .iter()
        .map(|v| v.load(Ordering::Relaxed) as f64 / 1e6)
        .filter(|&v| v > 0.0)
        .collect();
    last.sort_by(f64::total_cmp);
    let delivered = shared.delivered.load(Ordering::Relaxed);
    let span_s = (shared
        .last_arrival
        .load(Ordering::Relaxed)
        .saturating_sub(first_ns)) as f64
        / 1e9;
    closes.sort_unstable();
    closes.dedup();
    Ok(json!({
        "scenario": if a.hups > 0 { "reload" } else { "fanout" },
        "server": c.label,
        "clients": a.clients,
        "receivers": receivers,
        "bystanders": a.bystanders,
        "connect_failures": opened.failures + bystanders.failures,
        "connect_error": opened.first_error.or(bystanders.first_error),
        "connect_s": round3(opened.elapsed.as_secs_f64()),
        "count": a.count,
        "published": published,
        "rate": a.rate,
        "achieved_rate": round3(published as f64 / publish_s.max(1e-9)),
        "size": a.size,
        "publish_errors": errors,
        "publish_error": first_error,
        "queued_short": queued_short,
        "publish_req_ms": ms_summary(&req_us),
        "latency_ms": ms_summary(&lat),
        "last_client_ms": {
            "p50": pct(&last, 50.0).map(round3),
            "p99": pct(&last, 99.0).map(round3),
            "max": pct(&last, 100.0).map(round3),
        },
        "expected": expected,
        "delivered": delivered,
        "lost": expected.saturating_sub(unique),
        "duplicated": dups,
        "out_of_order": ooo,
        "dropped": dropped,
        "close_codes": closes,
        "bytes_per_frame": (delivered > 0).then(|| round3(frame_bytes as f64 / delivered as f64)),
        "position_frames": positions,
        "deliveries_per_s": round3(delivered as f64 / span_s.max(1e-9)),
        "cpu_s": cpu.map(round3),
        "cpu_us_per_delivery": cpu.filter(|_| delivered > 0).map(|s| round3(s * 1e6 / delivered as f64)),
        "nodes": 1 + usize::from(a.also.is_some()),
        "broker_cpu_s": cpu_broker.map(round3),
        "broker_cpu_us_per_publish": cpu_broker.filter(|_| published > 0).map(|s| round3(s * 1e6 / published as f64)),
        "sighups": hups_sent,
    }))
}
