//! `histmem`: memory per message stored in channel history. Publishes M messages of S
//! bytes spread over C channels with history, then reads the server's RSS and the admin
//! /metrics (`heartwire_history_bytes`, `heartwire_history_messages`) against the same
//! readings before: bytes per stored message, and their overhead over the payload.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::time::sleep;

use super::{Common, Driven};
use crate::admin;
use crate::client::{Shared, connect_all, fanout_payload};
use crate::publisher::Publisher;
use crate::stats::round3;

/// Settings of `histmem`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Channel names, `{i}` replaced by 0..channels (`hm.{i}`; a name without `{i}` with
    /// `--channels 1`).
    #[arg(long, default_value = "hm.{i}")]
    pub names: String,
    /// Channels published to, round robin.
    #[arg(long, default_value_t = 1000)]
    pub channels: usize,
    /// Messages published.
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Keep-alive publish connections.
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
    /// One subscriber here (e.g. `/hm?c=0`), to read the size of a stored envelope frame.
    #[arg(long)]
    pub subscribe: Option<String>,
    /// The admin listener, for /metrics.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin: SocketAddr,
    /// Seconds to wait after the last publish before the readings.
    #[arg(long, default_value_t = 1.0)]
    pub settle: f64,
    /// Hard limit on the publishing, seconds.
    #[arg(long, default_value_t = 60.0)]
    pub max_secs: f64,
}

/// The history metrics read at one moment.
struct Reading {
    rss_kib: Option<u64>,
    messages: Option<f64>,
    bytes: Option<f64>,
    channels: Option<f64>,
    evicted: Option<f64>,
}

async fn reading(c: &Common, admin: SocketAddr) -> anyhow::Result<Reading> {
    let text = admin::metrics(admin).await?;
    Ok(Reading {
        rss_kib: c.proc().rss_kib(),
        messages: admin::sum(&text, "heartwire_history_messages"),
        bytes: admin::sum(&text, "heartwire_history_bytes"),
        channels: admin::sum(&text, "heartwire_history_channels"),
        evicted: admin::sum(&text, "heartwire_history_evicted_total"),
    })
}

fn delta(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(b? - a?)
}

/// Runs `histmem`.
pub async fn run(c: &Common, a: &Args) -> anyhow::Result<Value> {
    let dialer = c.dialer();
    let subs = match &a.subscribe {
        Some(path) => {
            connect_all(&dialer, 1, std::slice::from_ref(path), 1)
                .await
                .conns
        }
        None => Vec::new(),
    };
    let shared = Shared::new(0);
    let sub = Driven::start(subs, &shared).await;
    let before = reading(c, a.admin).await?;

    let names: Vec<String> = (0..a.channels.max(1))
        .map(|i| a.names.replace("{i}", &i.to_string()))
        .collect();
    let start = Instant::now();
    let limit = start + Duration::from_secs_f64(a.max_secs);
    let workers = a.publishers.max(1);
    let results = futures_util::future::join_all((0..workers).map(|w| {
        let names = &names;
        let dialer = dialer.clone();
        async move {
            let mut p = Publisher::new(dialer.server(), &c.publish_path, None, dialer.tls());
            let (mut ok, mut errors, mut first_error) = (0usize, 0usize, None);
            for k in (w..a.messages).step_by(workers) {
                if Instant::now() > limit {
                    break;
                }
                p.set_channel(&c.publish_path, &names[k % names.len()]);
                match p
                    .post("text/plain", fanout_payload(k, a.size).as_bytes())
                    .await
                {
                    Ok(_) => ok += 1,
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            (ok, errors, first_error)
        }
    }))
    .await;
    let publish_s = start.elapsed().as_secs_f64();
    let published: usize = results.iter().map(|r| r.0).sum();
    let errors: usize = results.iter().map(|r| r.1).sum();
    let first_error = results.iter().find_map(|r| r.2.clone());
    sleep(Duration::from_secs_f64(a.settle)).await;
    let after = reading(c, a.admin).await?;
    let frames = shared.delivered.load(Ordering::Relaxed);
    let reports = sub.finish().await;
    let frame_bytes: u64 = reports.iter().map(|(_, r)| r.frame_bytes).sum();

    let stored = delta(before.messages, after.messages);
    let per = |d: Option<f64>| {
        d.zip(stored)
            .filter(|&(_, n)| n > 0.0)
            .map(|(d, n)| round3(d / n))
    };
    let rss_delta = after
        .rss_kib
        .zip(before.rss_kib)
        .map(|(b, a)| b as f64 - a as f64);
    let rss_per = per(rss_delta.map(|k| k * 1024.0));
    let hist_per = per(delta(before.bytes, after.bytes));
    let frame = (frames > 0).then(|| round3(frame_bytes as f64 / frames as f64));
    Ok(json!({
        "scenario": "histmem",
        "server": c.label,
        "channels": names.len(),
        "names": a.names,
        "messages": a.messages,
        "size": a.size,
        "published": published,
        "publish_errors": errors,
        "publish_error": first_error,
        "publishes_per_s": round3(published as f64 / publish_s.max(1e-9)),
        "stored": stored,
        "history_channels": delta(before.channels, after.channels),
        "evicted": delta(before.evicted, after.evicted),
        "rss_before_kib": before.rss_kib,
        "rss_after_kib": after.rss_kib,
        "rss_delta_kib": rss_delta,
        "history_bytes_before": before.bytes,
        "history_bytes_after": after.bytes,
        "rss_bytes_per_msg": rss_per,
        "history_bytes_per_msg": hist_per,
        "frame_bytes": frame,
        "frames_seen": frames,
        "rss_overhead_per_msg": rss_per.map(|v| round3(v - a.size as f64)),
        "history_overhead_per_msg": hist_per.map(|v| round3(v - a.size as f64)),
        "history_over_frame_per_msg": hist_per.zip(frame).map(|(h, f)| round3(h - f)),
    }))
}
