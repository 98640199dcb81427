//! `personal`: N connections, each on its own channel (`user.<i>` from a template),
//! M publishes at rate R each to one user picked at random, from P keep-alive
//! publishers: publish-to-delivery latency, loss, publish request time, server CPU.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::time::{sleep, sleep_until};

use super::{Common, Driven};
use crate::client::{Shared, connect_all, fanout_payload};
use crate::procstat::{Proc, cpu_delta};
use crate::publisher::Publisher;
use crate::stats::{ms_summary, round3};

/// Settings of `personal`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Connections, one user each (`{i}` in --path is the user).
    #[arg(long, default_value_t = 19_000)]
    pub clients: usize,
    /// Route and query; `{i}` becomes the connection index, `{jwt}` a token for sub i.
    #[arg(long, default_value = "/user?u={i}")]
    pub path: String,
    /// Channel published to for user i: this prefix, then i.
    #[arg(long, default_value = "user.")]
    pub prefix: String,
    /// Publishes in all (each to one user).
    #[arg(long, default_value_t = 30_000)]
    pub count: usize,
    /// Publishes per second, all publishers together.
    #[arg(long, default_value_t = 10_000.0)]
    pub rate: f64,
    /// Keep-alive publish connections sharing the schedule.
    #[arg(long, default_value_t = 8)]
    pub publishers: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Seconds to wait after the last publish for missing deliveries.
    #[arg(long, default_value_t = 3.0)]
    pub drain: f64,
    /// Hard limit on the publishing phase, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub max_secs: f64,
    /// The broker's process id (redis-server): its CPU is reported apart.
    #[arg(long)]
    pub broker_pid: Option<u32>,
}

/// User of publish `seq`: a fixed pseudo-random pick (the same in every run).
fn user_of(seq: usize, users: usize) -> usize {
    let h = (seq as u64 ^ 0x5bd1_e995).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((h >> 32) % users.max(1) as u64) as usize
}

#[derive(Default)]
struct PubReport {
    req_us: Vec<u32>,
    published: usize,
    queued: u64,
    queued_zero: usize,
    errors: usize,
    first_error: Option<String>,
}

/// Runs `personal`.
pub async fn run(c: &Common, a: &Args) -> anyhow::Result<Value> {
    let proc = c.proc();
    let dialer = c.dialer();
    let opened = connect_all(
        &dialer,
        a.clients,
        std::slice::from_ref(&a.path),
        c.concurrency,
    )
    .await;
    let receivers = opened.conns.len();
    let shared = Shared::new(a.count);
    let driven = Driven::start(opened.conns, &shared).await;

    let cpu0 = proc.cpu_secs();
    let broker = Proc(a.broker_pid);
    let broker0 = broker.cpu_secs();
    let start = Instant::now();
    let limit = start + Duration::from_secs_f64(a.max_secs);
    let pubs = a.publishers.max(1);
    let mut tasks = Vec::with_capacity(pubs);
    for k in 0..pubs {
        let (server, path, prefix) = (dialer.server(), c.publish_path.clone(), a.prefix.clone());
        let tls = dialer.tls();
        let (count, rate, size, users) = (a.count, a.rate, a.size, a.clients);
        tasks.push(tokio::spawn(async move {
            let mut publisher = Publisher::new(server, &path, None, tls);
            let mut r = PubReport::default();
            for seq in (k..count).step_by(pubs) {
                if Instant::now() > limit {
                    break;
                }
                sleep_until((start + Duration::from_secs_f64(seq as f64 / rate)).into()).await;
                publisher.set_channel(&path, &format!("{prefix}{}", user_of(seq, users)));
                let body = fanout_payload(seq, size);
                match publisher.post("text/plain", body.as_bytes()).await {
                    Ok(p) => {
                        r.req_us
                            .push(u32::try_from(p.latency.as_micros()).unwrap_or(u32::MAX));
                        let q = p.queued.unwrap_or(0);
                        r.queued += q;
                        r.queued_zero += usize::from(q == 0);
                    }
                    Err(e) => {
                        r.errors += 1;
                        r.first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
                r.published += 1;
            }
            r
        }));
    }
    let mut all = PubReport::default();
    for t in tasks {
        let r = t.await?;
        all.req_us.extend(r.req_us);
        all.published += r.published;
        all.queued += r.queued;
        all.queued_zero += r.queued_zero;
        all.errors += r.errors;
        if all.first_error.is_none() {
            all.first_error = r.first_error;
        }
    }
    let publish_s = start.elapsed().as_secs_f64();
    let expected = all.queued;
    let drain_until = Instant::now() + Duration::from_secs_f64(a.drain);
    while shared.delivered.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
        sleep(Duration::from_millis(5)).await;
    }
    let cpu = cpu_delta(cpu0, proc.cpu_secs());
    let broker_cpu = cpu_delta(broker0, broker.cpu_secs());
    let reports = driven.finish().await;

    let mut lat: Vec<u32> = Vec::with_capacity(expected as usize);
    let (mut unique, mut dups, mut dropped) = (0u64, 0u64, 0u64);
    for (_, r) in &reports {
        lat.extend_from_slice(&r.lat_us);
        unique += r.unique;
        dups += r.dups;
        dropped += u64::from(r.dropped);
    }
    lat.sort_unstable();
    all.req_us.sort_unstable();
    let delivered = shared.delivered.load(Ordering::Relaxed);
    Ok(json!({
        "scenario": "personal",
        "server": c.label,
        "clients": a.clients,
        "receivers": receivers,
        "connect_failures": opened.failures,
        "connect_error": opened.first_error,
        "connect_s": round3(opened.elapsed.as_secs_f64()),
        "count": a.count,
        "published": all.published,
        "publishers": pubs,
        "rate": a.rate,
        "achieved_rate": round3(all.published as f64 / publish_s.max(1e-9)),
        "publish_s": round3(publish_s),
        "size": a.size,
        "publish_errors": all.errors,
        "publish_error": all.first_error,
        "queued_zero": all.queued_zero,
        "publish_req_ms": ms_summary(&all.req_us),
        "latency_ms": ms_summary(&lat),
        "expected": expected,
        "delivered": delivered,
        "lost": expected.saturating_sub(unique),
        "duplicated": dups,
        "dropped": dropped,
        "cpu_s": cpu.map(round3),
        "cpu_us_per_publish": cpu.filter(|_| all.published > 0).map(|s| round3(s * 1e6 / all.published as f64)),
        "broker_cpu_s": broker_cpu.map(round3),
        "broker_cpu_us_per_publish": broker_cpu.filter(|_| all.published > 0).map(|s| round3(s * 1e6 / all.published as f64)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_spread() {
        let mut hit = vec![0u32; 100];
        for seq in 0..10_000 {
            hit[user_of(seq, 100)] += 1;
        }
        assert!(hit.iter().all(|&n| (50..=150).contains(&n)), "{hit:?}");
    }
}
