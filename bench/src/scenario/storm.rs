//! `storm`: a reconnect storm on an envelope route with history. N clients connect and
//! note their position (the `{"type":"position",...}` frame), all disconnect, M messages
//! are published to their channel, then all reconnect at once with
//! `?recover=CHANNEL:OFFSET:EPOCH`: time until every one is live again (its
//! `"recovered":true,"replayed":M` position frame and its M replayed messages, checked in
//! order), and meanwhile the publish and delivery latency of other clients on another
//! channel, against the same figures without a storm measured just before.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::time::{sleep, timeout_at};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{Common, Driven};
use crate::client::{
    Dialer, Frame, Shared, Ws, connect_all, drive, fanout_payload, frame, json_u64, parse_fanout,
};
use crate::procstat::cpu_delta;
use crate::publisher::Publisher;
use crate::stats::{ms_summary, pct, round3};

/// Settings of `storm`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Clients that disconnect and recover.
    #[arg(long, default_value_t = 10_000)]
    pub clients: usize,
    /// Their route (envelope, with history on `--channel`).
    #[arg(long, default_value = "/hist")]
    pub path: String,
    /// The channel with history they hold.
    #[arg(long, default_value = "hist")]
    pub channel: String,
    /// Messages published while they are away (each client recovers these).
    #[arg(long, default_value_t = 50)]
    pub missed: usize,
    /// Other clients, connected throughout, receiving publishes during the storm.
    #[arg(long, default_value_t = 100)]
    pub others: usize,
    /// Route of the other clients.
    #[arg(long, default_value = "/news")]
    pub others_path: String,
    /// Channel published to for the other clients.
    #[arg(long, default_value = "news")]
    pub others_channel: String,
    /// Publishes per second to the other clients (without and during the storm).
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Seconds of publishes to the other clients before the storm (the reference).
    #[arg(long, default_value_t = 3.0)]
    pub baseline_secs: f64,
    /// Reconnections in flight at once during the storm (TCP + WebSocket handshake).
    #[arg(long, default_value_t = 128)]
    pub storm_concurrency: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Hard limit on the storm, seconds (clients not live by then count as failed).
    #[arg(long, default_value_t = 60.0)]
    pub max_secs: f64,
    /// Seconds to wait for missing deliveries to the other clients after each phase.
    #[arg(long, default_value_t = 3.0)]
    pub drain: f64,
}

/// A channel's position as a position frame gave it.
#[derive(Debug, Clone)]
struct Position {
    epoch: String,
    offset: u64,
}

/// How one reconnection went.
#[derive(Debug, Default)]
struct Recovered {
    /// Handshake done, seconds after the storm began.
    connected_s: Option<f64>,
    /// Position frame and every replayed message in, seconds after the storm began.
    live_s: Option<f64>,
    /// The position frame said `"recovered":true` with the expected `replayed`.
    recovered_ok: bool,
    /// Replayed messages received before going live.
    replayed: usize,
    /// Message frames after going live (nothing is published to the channel then).
    extras: u64,
    /// What went wrong, if anything.
    problem: Option<String>,
}

/// The string after `key` (e.g. `"epoch":"`) up to the next quote.
fn json_str<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text.find(key)? + key.len();
    text[at..].find('"').map(|end| &text[at..at + end])
}

/// Reads until the first position frame; returns it whole.
async fn next_position(ws: &mut Ws, until: Instant) -> anyhow::Result<String> {
    loop {
        match timeout_at(until.into(), ws.next()).await {
            Err(_) => bail!("no position frame in time"),
            Ok(None) => bail!("closed before the position frame"),
            Ok(Some(Err(e))) => bail!("read error before the position frame: {e}"),
            Ok(Some(Ok(Message::Text(t)))) if frame(t.as_str()) == Frame::Position => {
                return Ok(t.as_str().to_owned());
            }
            Ok(Some(Ok(Message::Close(f)))) => bail!("closed: {f:?}"),
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// What every reconnection shares.
struct Storm {
    dialer: Arc<Dialer>,
    /// Messages each must recover.
    missed: usize,
    /// Bounds the handshakes in flight.
    gate: Semaphore,
    /// When the storm began.
    t0: Instant,
    /// When it gives up.
    until: Instant,
    /// Reconnections live or failed.
    done: AtomicUsize,
    /// Ends the reading after going live.
    stop: CancellationToken,
    /// Counters of that reading.
    after: Arc<Shared>,
}

/// One reconnection: connects with `recover=`, checks the position frame and the replay,
/// marks itself live, then counts stray messages until `stop`.
async fn recover(s: Arc<Storm>, path: String, pos: Position) -> Recovered {
    let Storm {
        ref dialer,
        missed,
        ref gate,
        t0,
        until,
        ref done,
        ref stop,
        ..
    } = *s;
    let mut r = Recovered::default();
    let ws = async {
        let _permit = gate.acquire().await.ok();
        dialer.connect(&path).await
    };
    let mut ws = match timeout_at(until.into(), ws).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            r.problem = Some(format!("reconnect: {e:#}"));
            done.fetch_add(1, Ordering::Relaxed);
            return r;
        }
        Err(_) => {
            r.problem = Some("reconnect: not connected by --max-secs".into());
            done.fetch_add(1, Ordering::Relaxed);
            return r;
        }
    };
    r.connected_s = Some(t0.elapsed().as_secs_f64());
    let replay = async {
        let p = next_position(&mut ws, until).await?;
        if !p.contains(r#""recovered":true"#) {
            bail!("not recovered: {p}");
        }
        let n = json_u64(&p, r#","replayed":"#).context("no replayed count")?;
        if n != missed as u64 {
            bail!("replayed {n}, expected {missed}: {p}");
        }
        r.recovered_ok = true;
        while r.replayed < missed {
            let msg = match timeout_at(until.into(), ws.next()).await {
                Err(_) => bail!("{} of {missed} replayed by --max-secs", r.replayed),
                Ok(None | Some(Err(_))) => {
                    bail!("closed after {} of {missed} replayed", r.replayed)
                }
                Ok(Some(Ok(m))) => m,
            };
            let Message::Text(t) = msg else { continue };
            let Frame::Message { offset, data } = frame(t.as_str()) else {
                continue;
            };
            let want = pos.offset + r.replayed as u64 + 1;
            if offset != Some(want) {
                bail!("replayed offset {offset:?}, expected {want}");
            }
            if parse_fanout(data).map(|(seq, _)| seq) != Some(r.replayed) {
                bail!("replayed message {} out of order: {data}", r.replayed);
            }
            r.replayed += 1;
        }
        anyhow::Ok(())
    };
    let outcome = replay.await;
    done.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = outcome {
        r.problem = Some(format!("{e:#}"));
        return r;
    }
    r.live_s = Some(t0.elapsed().as_secs_f64());
    // Nothing is published to the channel now: every message read is one too many.
    let after = drive(ws, s.after.clone(), stop.clone()).await;
    r.extras = (after.lat_us.len() + after.lat_late_us.len()) as u64;
    if after.dropped {
        r.problem = Some(format!("closed after going live ({:?})", after.close_code));
    }
    r
}

/// Publishes `seqs` to `publisher` at `rate`/s from `start`, until `halt` says so;
/// returns the request latencies (us) and errors.
async fn paced(
    publisher: &mut Publisher,
    seqs: std::ops::Range<usize>,
    rate: f64,
    size: usize,
    halt: impl Fn() -> bool,
) -> (Vec<u32>, usize, usize) {
    let start = Instant::now();
    let first = seqs.start;
    let mut req_us = Vec::with_capacity(seqs.len());
    let (mut errors, mut published) = (0, 0);
    for seq in seqs {
        if halt() {
            break;
        }
        let at = start + Duration::from_secs_f64((seq - first) as f64 / rate);
        tokio::time::sleep_until(at.into()).await;
        let body = fanout_payload(seq, size);
        match publisher.post("text/plain", body.as_bytes()).await {
            Ok(p) => req_us.push(u32::try_from(p.latency.as_micros()).unwrap_or(u32::MAX)),
            Err(_) => errors += 1,
        }
        published += 1;
    }
    req_us.sort_unstable();
    (req_us, errors, published)
}

/// Waits until `shared` has `expected` deliveries or `secs` pass.
async fn drain(shared: &Shared, expected: u64, secs: f64) {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    while shared.delivered.load(Ordering::Relaxed) < expected && Instant::now() < until {
        sleep(Duration::from_millis(5)).await;
    }
}

/// Runs `storm`.
pub async fn run(c: &Common, a: &Args) -> anyhow::Result<Value> {
    let proc = c.proc();
    let dialer = c.dialer();
    anyhow::ensure!(a.rate > 0.0, "--rate must be above 0");

    // The storm clients connect and note their positions.
    let t = Instant::now();
    let until = t + Duration::from_secs_f64(a.max_secs);
    let first: Vec<anyhow::Result<(Ws, Position)>> = futures_util::stream::iter(0..a.clients)
        .map(|_| {
            let dialer = dialer.clone();
            let path = a.path.clone();
            async move {
                let mut ws = dialer.connect(&path).await?;
                let p = next_position(&mut ws, until).await?;
                let pos = Position {
                    epoch: json_str(&p, r#""epoch":""#).context("no epoch")?.to_owned(),
                    offset: json_u64(&p, r#","offset":"#).context("no offset")?,
                };
                anyhow::Ok((ws, pos))
            }
        })
        .buffer_unordered(c.concurrency.max(1))
        .collect()
        .await;
    let connect_s = t.elapsed().as_secs_f64();
    let mut held = Vec::with_capacity(a.clients);
    let mut first_failures = 0;
    let mut first_error = None;
    for r in first {
        match r {
            Ok(x) => held.push(x),
            Err(e) => {
                first_failures += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }

    // The other clients, and publishes to them without a storm.
    let opened = connect_all(
        &dialer,
        a.others,
        std::slice::from_ref(&a.others_path),
        c.concurrency,
    )
    .await;
    let receivers = opened.conns.len() as u64;
    let n_base = (a.rate * a.baseline_secs).ceil() as usize;
    let n_storm = (a.rate * a.max_secs).ceil() as usize;
    let shared = Shared::with_split(n_base + n_storm, n_base);
    let others = Driven::start(opened.conns, &shared).await;
    let mut publisher = Publisher::new(
        dialer.server(),
        &c.publish_path,
        Some(&a.others_channel),
        dialer.tls(),
    );
    let (base_req, base_errors, base_published) =
        paced(&mut publisher, 0..n_base, a.rate, a.size, || false).await;
    drain(&shared, receivers * base_published as u64, a.drain).await;

    // Everyone away; the messages they will miss.
    let positions: Vec<Position> = held.iter().map(|(_, p)| p.clone()).collect();
    drop(held);
    sleep(Duration::from_secs(1)).await;
    let mut away = Publisher::new(
        dialer.server(),
        &c.publish_path,
        Some(&a.channel),
        dialer.tls(),
    );
    let (mut missed_published, mut queued_while_away, mut missed_errors) = (0usize, 0u64, 0usize);
    for seq in 0..a.missed {
        match away
            .post("text/plain", fanout_payload(seq, a.size).as_bytes())
            .await
        {
            Ok(p) => {
                missed_published += 1;
                queued_while_away += p.queued.unwrap_or(0);
            }
            Err(_) => missed_errors += 1,
        }
    }

    // The storm, with publishes to the others meanwhile.
    let sep = if a.path.contains('?') { '&' } else { '?' };
    let cpu0 = proc.cpu_secs();
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs_f64(a.max_secs);
    let storm = Arc::new(Storm {
        dialer: dialer.clone(),
        missed: a.missed,
        gate: Semaphore::new(a.storm_concurrency.max(1)),
        t0,
        until,
        done: AtomicUsize::new(0),
        stop: CancellationToken::new(),
        after: Shared::new(0),
    });
    let tasks: Vec<_> = positions
        .iter()
        .map(|p| {
            let path = format!(
                "{}{sep}recover={}:{}:{}",
                a.path, a.channel, p.offset, p.epoch
            );
            tokio::spawn(recover(storm.clone(), path, p.clone()))
        })
        .collect();
    let total = tasks.len();
    let done = || storm.done.load(Ordering::Relaxed);
    let (storm_req, storm_errors, storm_published) = paced(
        &mut publisher,
        n_base..n_base + n_storm,
        a.rate,
        a.size,
        || done() >= total || Instant::now() > until,
    )
    .await;
    // Bounded by `until`: the publishes stop then, so does every recovery.
    while done() < total && Instant::now() < until {
        sleep(Duration::from_millis(5)).await;
    }
    let storm_wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_delta(cpu0, proc.cpu_secs());
    drain(
        &shared,
        receivers * (base_published + storm_published) as u64,
        a.drain,
    )
    .await;
    sleep(Duration::from_millis(300)).await;
    storm.stop.cancel();
    let mut rec = Vec::with_capacity(total);
    for t in tasks {
        if let Ok(r) = t.await {
            rec.push(r);
        }
    }
    let other_reports = others.finish().await;

    let (mut base_lat, mut storm_lat) = (Vec::new(), Vec::new());
    let (mut unique, mut dups, mut dropped) = (0u64, 0u64, 0u64);
    for (_, r) in &other_reports {
        base_lat.extend_from_slice(&r.lat_us);
        storm_lat.extend_from_slice(&r.lat_late_us);
        unique += r.unique;
        dups += r.dups;
        dropped += u64::from(r.dropped);
    }
    base_lat.sort_unstable();
    storm_lat.sort_unstable();
    let mut live: Vec<f64> = rec.iter().filter_map(|r| r.live_s).collect();
    live.sort_by(f64::total_cmp);
    let mut connected: Vec<f64> = rec.iter().filter_map(|r| r.connected_s).collect();
    connected.sort_by(f64::total_cmp);
    let exact = rec
        .iter()
        .filter(|r| r.live_s.is_some() && r.replayed == a.missed)
        .count();
    let problems = rec.iter().filter(|r| r.problem.is_some()).count();
    let replayed: u64 = rec.iter().map(|r| r.replayed as u64).sum();
    let expected_others = receivers * (base_published + storm_published) as u64;
    let secs = |v: &[f64], p: f64| pct(v, p).map(round3);
    Ok(json!({
        "scenario": "storm",
        "server": c.label,
        "clients": a.clients,
        "connected": positions.len(),
        "connect_failures": first_failures,
        "connect_error": first_error,
        "connect_s": round3(connect_s),
        "missed": a.missed,
        "missed_published": missed_published,
        "missed_errors": missed_errors,
        "queued_while_away": queued_while_away,
        "storm": {
            "concurrency": a.storm_concurrency,
            "reconnected": connected.len(),
            "recovered_true": rec.iter().filter(|r| r.recovered_ok).count(),
            "live": live.len(),
            "exact": exact,
            "problems": problems,
            "first_problem": rec.iter().find_map(|r| r.problem.clone()),
            "extras": rec.iter().map(|r| r.extras).sum::<u64>(),
            "all_connected_s": secs(&connected, 100.0),
            "all_live_s": (live.len() == total && total > 0).then(|| secs(&live, 100.0)).flatten(),
            "live_s": { "p50": secs(&live, 50.0), "p99": secs(&live, 99.0), "max": secs(&live, 100.0) },
            "wall_s": round3(storm_wall),
            "replayed": replayed,
            "cpu_s": cpu.map(round3),
            "cpu_us_per_replayed": cpu.filter(|_| replayed > 0).map(|s| round3(s * 1e6 / replayed as f64)),
        },
        "others": {
            "clients": a.others,
            "receivers": receivers,
            "rate": a.rate,
            "baseline": {
                "published": base_published,
                "publish_errors": base_errors,
                "publish_req_ms": ms_summary(&base_req),
                "latency_ms": ms_summary(&base_lat),
            },
            "storm": {
                "published": storm_published,
                "publish_errors": storm_errors,
                "publish_req_ms": ms_summary(&storm_req),
                "latency_ms": ms_summary(&storm_lat),
            },
            "lost": expected_others.saturating_sub(unique),
            "duplicated": dups,
            "dropped": dropped,
        },
    }))
}
