//! `heartwire-soak`: a bounded soak run against a running heartwire (see `scripts/soak`).
//!
//! Thousands of loopback clients connect, churn, answer or ignore heartbeats, or stop
//! reading, under numbered publish traffic and two SIGHUP reloads. It prints one JSON
//! summary line and exits 1 on any failure: a panic in the daemon's log, a publish missed,
//! repeated or reordered by a client that stayed for the whole run, a silent client not
//! closed with 4000, a slow client not cut off, RSS not back within tolerance of its
//! baseline once every client has left, or file descriptors not back to their baseline.

#![forbid(unsafe_code)]

mod cast;
mod daemon;
mod http;
mod tally;
mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use clap::Parser;
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep, sleep_until, timeout_at};
use tokio_util::sync::CancellationToken;

use cast::{Cast, Kind, Phase, Timing};
use daemon::Daemon;
use tally::Tally;
use wire::Stream;

/// Most clients, so client and daemon stay well inside RLIMIT_NOFILE (20 000 here).
const MAX_CLIENTS: usize = 15_000;
/// How long the initial connects may take altogether.
const CONNECT_PHASE_LIMIT: Duration = Duration::from_secs(90);
/// How long the daemon may take to count zero connections once every client is done.
const EMPTY_LIMIT: Duration = Duration::from_secs(30);
/// How long its descriptors may take to settle back after that.
const FD_SETTLE_LIMIT: Duration = Duration::from_secs(5);
/// How long freed memory may take to be returned to the system after every client left.
const RSS_SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// How long RSS is watched once it has come down; the highest reading is the result.
const RSS_HOLD: Duration = Duration::from_secs(10);
/// How long a reload may take to show in the metrics.
const RELOAD_LIMIT: Duration = Duration::from_secs(5);
/// How often RSS and descriptors are sampled for the peak figures.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// Poll period while waiting for the daemon to settle.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// A bounded soak run against a running heartwire daemon (loopback only).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The daemon's public address (WebSocket routes /feed, /app, /bulk and /publish).
    #[arg(long)]
    addr: SocketAddr,
    /// The daemon's admin address, for /metrics (reload counts, server-side figures).
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// The daemon's process id, for /proc readings and SIGHUP.
    #[arg(long)]
    pid: u32,
    /// The daemon's config file; the reloads rewrite its `# soak:reload` lines.
    #[arg(long)]
    config: PathBuf,
    /// The daemon's stderr log, scanned for panics.
    #[arg(long)]
    daemon_log: Option<PathBuf>,
    /// Clients in all (shared among the kinds).
    #[arg(long, default_value_t = 3000)]
    clients: usize,
    /// Seconds of publish traffic.
    #[arg(long, default_value_t = 90.0)]
    duration: f64,
    /// Publishes per second on the `soak` stream (/feed and /app).
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Bytes per `soak` message.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Publishes per second on the `bulk` stream (/bulk).
    #[arg(long, default_value_t = 10.0)]
    bulk_rate: f64,
    /// Bytes per `bulk` message.
    #[arg(long, default_value_t = 32 * 1024)]
    bulk_size: usize,
    /// Value the first reload gives the `# soak:reload` lines (the second restores them).
    #[arg(long, default_value = "2s")]
    reload_value: String,
    /// Initial connects in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Largest accepted growth of RSS over its baseline once every client has left.
    #[arg(long, default_value_t = 0.10)]
    rss_tolerance: f64,
    /// Seconds of traffic a slow (stalled or trickle) session needs; none starts with less left.
    #[arg(long, default_value_t = 35.0)]
    stall: f64,
    /// Messages a slow client must be behind before checking it was cut off
    /// [default: (tcp_wmem max + tcp_rmem default) / bulk-size + 64, over what the kernel buffers].
    #[arg(long)]
    lag: Option<u64>,
    /// Seconds within which a silent client must be closed with 4000.
    #[arg(long, default_value_t = 15.0)]
    silent_limit: f64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("heartwire-soak: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(summary) => {
            match serde_json::to_string(&summary) {
                Ok(line) => println!("{line}"),
                Err(err) => {
                    eprintln!("heartwire-soak: cannot encode the summary: {err}");
                    return ExitCode::FAILURE;
                }
            }
            if summary.ok {
                ExitCode::SUCCESS
            } else {
                for f in &summary.failure_samples {
                    eprintln!("heartwire-soak: FAIL: {f}");
                }
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            eprintln!("heartwire-soak: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The JSON summary line.
#[derive(Debug, Serialize)]
struct Summary {
    ok: bool,
    failures: u64,
    failure_samples: Vec<String>,
    duration_s: f64,
    connect_s: f64,
    traffic_s: f64,
    clients: usize,
    kinds: BTreeMap<Kind, Tally>,
    publishes: BTreeMap<&'static str, Published>,
    deliveries_checked: u64,
    full_run_clients: u64,
    full_run_complete: u64,
    closes: BTreeMap<String, u64>,
    reloads: u32,
    panics: usize,
    rss_kib: Rss,
    /// Allocator figures before the clients and after they all left.
    allocator: Option<[Allocator; 2]>,
    fds: Fds,
    server: Option<ServerFigures>,
    timing: Timing,
}

/// The daemon allocator's own figures (from /metrics): a leak grows `allocated`;
/// memory held after a peak shows as `resident` above it.
#[derive(Debug, Clone, Copy, Serialize)]
struct Allocator {
    allocated_kib: u64,
    resident_kib: u64,
}

impl Allocator {
    fn read(m: &daemon::Metrics) -> Self {
        let kib = |name| (m.sum(name, &[]) / 1024.0) as u64;
        Self {
            allocated_kib: kib("heartwire_allocator_allocated_bytes"),
            resident_kib: kib("heartwire_allocator_resident_bytes"),
        }
    }
}

#[derive(Debug, Serialize)]
struct Rss {
    baseline: u64,
    peak: u64,
    after: u64,
    ratio: f64,
}

#[derive(Debug, Serialize)]
struct Fds {
    baseline: usize,
    peak: usize,
    after: usize,
}

/// The daemon's own counters at the end of the run.
#[derive(Debug, Serialize)]
struct ServerFigures {
    accepted: f64,
    open: f64,
    heartbeat_timeouts: f64,
    /// Slow-consumer actions in this round, by action (`heartwire_slow_consumers_total`).
    slow_consumers: BTreeMap<&'static str, f64>,
    reloads_ok: f64,
    reloads_error: f64,
}

/// One stream's publishing.
#[derive(Debug, Default, Serialize)]
struct Published {
    count: u64,
    rate: f64,
    size: usize,
    /// Sum of the `queued` answers: deliveries the daemon accepted to make.
    queued: u64,
    max_latency_ms: u64,
    #[serde(skip)]
    failures: Vec<String>,
}

async fn run(args: Args) -> anyhow::Result<Summary> {
    ensure!(
        args.addr.ip().is_loopback() && args.admin.is_none_or(|a| a.ip().is_loopback()),
        "the soak runs on loopback only"
    );
    ensure!(
        (1..=MAX_CLIENTS).contains(&args.clients),
        "--clients must be 1..={MAX_CLIENTS}"
    );
    ensure!(
        args.duration > 0.0 && args.duration <= 600.0,
        "--duration must be in (0, 600] seconds"
    );
    let timing = Timing {
        welcome: Duration::from_secs(10),
        idle: Duration::from_secs(10),
        finish: Duration::from_secs(20),
        churn_min: Duration::from_millis(1500),
        churn_max: Duration::from_secs(8),
        silent_limit: Duration::from_secs_f64(args.silent_limit),
        stall: Duration::from_secs_f64(args.stall),
        lag: args.lag.unwrap_or_else(|| default_lag(args.bulk_size)),
        settle: Duration::from_secs(2),
        trickle_pause: Duration::from_secs(1),
        drain: Duration::from_secs(10),
    };
    let daemon = Daemon {
        pid: args.pid,
        config: args.config.clone(),
        log: args.daemon_log.clone(),
        admin: args.admin,
    };
    let started = Instant::now();
    let mut failures: Vec<String> = Vec::new();

    // Baseline: no client yet. One publish first, so the publish path is warm.
    let queued = probe(args.addr).await?;
    ensure!(
        queued == 0,
        "the daemon already serves {queued} connections"
    );
    let rss0 = daemon.rss_kib()?;
    let fds0 = daemon.fds()?;
    let (reloads0, alloc0, slow0) = match daemon.metrics().await? {
        Some(m) => (
            m.sum("heartwire_config_reloads_total", &["result=\"ok\""]),
            Some(Allocator::read(&m)),
            slow_consumers(&m),
        ),
        None => (0.0, None, BTreeMap::new()),
    };
    let stop_sampling = CancellationToken::new();
    let sampler = tokio::spawn(sample(daemon.clone(), stop_sampling.clone()));

    // The cast connects; publishing waits until every first session is subscribed.
    let counts = mix(args.clients);
    let (phase_tx, phase_rx) = watch::channel(Phase::Warmup);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let bulk_published = Arc::new(AtomicU64::new(0));
    let cast = Cast {
        addr: args.addr,
        timing,
        phase: phase_rx,
        gate: Arc::new(Semaphore::new(args.concurrency.max(1))),
        ready: ready_tx,
        published: bulk_published.clone(),
    };
    let mut clients = JoinSet::new();
    for &(kind, n) in &counts {
        for i in 0..n {
            let cast = cast.clone();
            clients.spawn(async move { (kind, cast::play(cast, kind, i).await) });
        }
    }
    drop(cast);
    let connect_by = Instant::now() + CONNECT_PHASE_LIMIT;
    let mut answered = 0;
    while answered < args.clients {
        match timeout_at(connect_by, ready_rx.recv()).await {
            Ok(Some(_)) => answered += 1,
            Ok(None) => break,
            Err(_) => {
                failures.push(format!(
                    "only {answered} of {} clients connected within {CONNECT_PHASE_LIMIT:?}",
                    args.clients
                ));
                break;
            }
        }
    }
    let connect_s = started.elapsed().as_secs_f64();

    // Traffic: two numbered streams and two reloads.
    let traffic_start = Instant::now();
    let until = traffic_start + Duration::from_secs_f64(args.duration);
    phase_tx.send_replace(Phase::Traffic { until });
    let soak_pub = tokio::spawn(publish(
        args.addr,
        Stream::Soak,
        args.rate,
        args.size,
        until,
        Arc::new(AtomicU64::new(0)),
    ));
    let bulk_pub = tokio::spawn(publish(
        args.addr,
        Stream::Bulk,
        args.bulk_rate,
        args.bulk_size,
        until,
        bulk_published,
    ));
    let reloader = tokio::spawn(reload_twice(
        daemon.clone(),
        traffic_start,
        until,
        args.reload_value.clone(),
        reloads0,
    ));
    let soak = soak_pub.await.context("the soak publisher failed")?;
    let bulk = bulk_pub.await.context("the bulk publisher failed")?;
    let traffic_s = traffic_start.elapsed().as_secs_f64();
    phase_tx.send_replace(Phase::Done {
        soak: soak.count,
        bulk: bulk.count,
    });
    failures.extend(soak.failures.iter().cloned());
    failures.extend(bulk.failures.iter().cloned());
    let (reloads, reload_failures) = reloader.await.context("the reloader failed")?;
    failures.extend(reload_failures);

    // Every client ends by its own bounds; this one only guards against a hang.
    let clients_by = Instant::now()
        + timing.finish
        + timing.silent_limit
        + timing.stall
        + timing.drain
        + Duration::from_secs(10);
    let mut kinds: BTreeMap<Kind, Tally> =
        Kind::ALL.iter().map(|&k| (k, Tally::default())).collect();
    loop {
        match timeout_at(clients_by, clients.join_next()).await {
            Ok(Some(Ok((kind, tally)))) => kinds.entry(kind).or_default().add(tally),
            Ok(Some(Err(err))) => failures.push(format!("a client task failed: {err}")),
            Ok(None) => break,
            Err(_) => {
                failures.push(format!(
                    "{} clients still running at the deadline",
                    clients.len()
                ));
                clients.abort_all();
                while clients.join_next().await.is_some() {}
                break;
            }
        }
    }
    drop(phase_tx);

    // After: the daemon must come back to where it started.
    let empty_by = Instant::now() + EMPTY_LIMIT;
    let mut left = probe(args.addr).await?;
    while left > 0 && Instant::now() < empty_by {
        sleep(POLL_EVERY).await;
        left = probe(args.addr).await?;
    }
    if left > 0 {
        failures.push(format!(
            "the daemon still counts {left} connections {EMPTY_LIMIT:?} after every client left"
        ));
    }
    let settle_by = Instant::now() + FD_SETTLE_LIMIT;
    let mut fds1 = daemon.fds()?;
    while fds1 > fds0 && Instant::now() < settle_by {
        sleep(POLL_EVERY).await;
        fds1 = daemon.fds()?;
    }
    // The allocator hands freed pages back on its own schedule (jemalloc purges after
    // about 10 s), so wait for RSS to come down, within a bound.
    let settle_by = Instant::now() + RSS_SETTLE_LIMIT;
    let within = (rss0 as f64 * (1.0 + args.rss_tolerance)) as u64;
    let mut rss1 = daemon.rss_kib()?;
    while rss1 > within && Instant::now() < settle_by {
        sleep(POLL_EVERY).await;
        rss1 = daemon.rss_kib()?;
    }
    // Then it must stay there: the figure is the highest over a hold period, so a dip
    // (caches just flushed, about to refill on the next tick) does not pass for the level.
    let hold_until = Instant::now() + RSS_HOLD;
    while Instant::now() < hold_until {
        sleep(POLL_EVERY).await;
        rss1 = rss1.max(daemon.rss_kib()?);
    }
    stop_sampling.cancel();
    let (rss_peak, fds_peak) = sampler.await.unwrap_or((0, 0));
    let metrics1 = daemon.metrics().await?;
    let allocator = alloc0
        .zip(metrics1.as_ref().map(Allocator::read))
        .map(|(a, b)| [a, b]);
    let server = metrics1.map(|m| ServerFigures {
        accepted: m.sum("heartwire_connections_accepted_total", &[]),
        open: m.sum("heartwire_connections_open", &[]),
        heartbeat_timeouts: m.sum("heartwire_heartbeat_timeouts_total", &[]),
        slow_consumers: slow_consumers(&m)
            .into_iter()
            .map(|(action, n)| (action, n - slow0.get(action).copied().unwrap_or(0.0)))
            .collect(),
        reloads_ok: m.sum("heartwire_config_reloads_total", &["result=\"ok\""]),
        reloads_error: m.sum("heartwire_config_reloads_total", &["result=\"error\""]),
    });
    let panics = daemon.panics()?;

    // Verdict.
    for line in panics.iter().take(5) {
        failures.push(format!("daemon panic: {line}"));
    }
    let ratio = rss1 as f64 / rss0.max(1) as f64;
    if ratio > 1.0 + args.rss_tolerance {
        let held = allocator.map_or(String::new(), |[a, b]| {
            format!(
                "; allocator: allocated {} -> {} KiB, resident {} -> {} KiB",
                a.allocated_kib, b.allocated_kib, a.resident_kib, b.resident_kib
            )
        });
        failures.push(format!(
            "RSS {rss1} KiB after every client left, {ratio:.3}x its baseline {rss0} KiB \
             (tolerance {:.0}%){held}",
            args.rss_tolerance * 100.0
        ));
    }
    if fds1 > fds0 {
        failures.push(format!(
            "{fds1} file descriptors after every client left, baseline {fds0}"
        ));
    }
    let full: [Kind; 3] = [Kind::Feed, Kind::App, Kind::Bulk];
    let full_run_clients = full.iter().map(|k| kinds[k].clients).sum();
    let full_run_complete = full.iter().map(|k| kinds[k].complete).sum();
    if kinds[&Kind::Silent].clients > 0 && !kinds[&Kind::Silent].endings.contains_key("4000") {
        failures.push("no silent client was closed with 4000".into());
    }
    let slow_cut: u64 = [Kind::Stalled, Kind::Trickle]
        .iter()
        .flat_map(|k| kinds[k].endings.iter())
        .filter(|(end, _)| *end == "1008" || *end == "dropped")
        .map(|(_, n)| n)
        .sum();
    if kinds[&Kind::Stalled].clients + kinds[&Kind::Trickle].clients > 0 && slow_cut == 0 {
        failures.push("no slow client was cut off".into());
    }
    // Only the slow kinds may be cut off, so the daemon's count must be theirs exactly.
    let counted = server
        .as_ref()
        .map(|f| f.slow_consumers.values().sum::<f64>() as u64);
    if let Some(counted) = counted.filter(|&n| n != slow_cut) {
        failures.push(format!(
            "the daemon counted {counted} slow consumers (heartwire_slow_consumers_total), \
             the clients saw {slow_cut} cut off"
        ));
    }
    let mut closes = BTreeMap::new();
    let mut failure_count = failures.len() as u64;
    let mut samples = failures;
    for t in kinds.values() {
        for (k, v) in &t.endings {
            *closes.entry(k.clone()).or_default() += v;
        }
        failure_count += t.failures;
        samples.extend(t.failure_samples.iter().take(5).cloned());
    }
    samples.truncate(30);
    let mut publishes = BTreeMap::new();
    publishes.insert("soak", soak);
    publishes.insert("bulk", bulk);
    Ok(Summary {
        ok: failure_count == 0,
        failures: failure_count,
        failure_samples: samples,
        duration_s: started.elapsed().as_secs_f64(),
        connect_s,
        traffic_s,
        clients: args.clients,
        deliveries_checked: kinds.values().map(|t| t.checked).sum(),
        full_run_clients,
        full_run_complete,
        kinds,
        publishes,
        closes,
        reloads,
        panics: panics.len(),
        allocator,
        rss_kib: Rss {
            baseline: rss0,
            peak: rss_peak,
            after: rss1,
            ratio,
        },
        fds: Fds {
            baseline: fds0,
            peak: fds_peak,
            after: fds1,
        },
        server,
        timing,
    })
}

/// `heartwire_slow_consumers_total` summed over routes, by action.
fn slow_consumers(m: &daemon::Metrics) -> BTreeMap<&'static str, f64> {
    ["disconnect", "skip", "write_timeout"]
        .into_iter()
        .map(|action| {
            let label = format!("action=\"{action}\"");
            (
                action,
                m.sum("heartwire_slow_consumers_total", &[label.as_str()]),
            )
        })
        .collect()
}

/// How many clients of each kind: each kind's share, the rest to `Feed`.
fn mix(total: usize) -> Vec<(Kind, usize)> {
    let mut counts: Vec<(Kind, usize)> = Kind::ALL
        .iter()
        .map(|&k| (k, total * k.share() / 1000))
        .collect();
    let others: usize = counts
        .iter()
        .filter(|(k, _)| *k != Kind::Feed)
        .map(|(_, n)| n)
        .sum();
    for (k, n) in &mut counts {
        if *k == Kind::Feed {
            *n = total - others;
        }
    }
    counts
}

/// Messages of `size` bytes that more than fill what the kernel can buffer for a client
/// that does not read: the daemon's send buffer (autotuned up to `tcp_wmem` max) plus the
/// client's receive buffer (`tcp_rmem` default), with room for the route's ring.
fn default_lag(size: usize) -> u64 {
    let field = |file: &str, i: usize, fallback: u64| {
        std::fs::read_to_string(file)
            .ok()
            .and_then(|t| t.split_whitespace().nth(i)?.parse().ok())
            .unwrap_or(fallback)
    };
    let wmem_max = field("/proc/sys/net/ipv4/tcp_wmem", 2, 4 << 20);
    let rmem_default = field("/proc/sys/net/ipv4/tcp_rmem", 1, 128 << 10);
    (wmem_max + rmem_default) / size.max(1) as u64 + 64
}

/// Publishes to every route (no channel) and returns `queued`: the daemon's live
/// connection count.
async fn probe(addr: SocketAddr) -> anyhow::Result<u64> {
    let (status, body) = http::request(addr, "POST", "/publish", b"soak-probe").await?;
    ensure!(status == 200, "probe publish answered {status}: {body}");
    http::queued(&body).with_context(|| format!("probe publish answered {body:?}"))
}

/// Publishes `stream` at `rate` per second until `until`, one request at a time so the
/// numbers go out in order. Stops at the first failure: after it, delivery is ambiguous.
async fn publish(
    addr: SocketAddr,
    stream: Stream,
    rate: f64,
    size: usize,
    until: Instant,
    published: Arc<AtomicU64>,
) -> Published {
    let mut out = Published {
        rate,
        size,
        ..Published::default()
    };
    if rate <= 0.0 {
        return out;
    }
    let target = format!("/publish?channel={}", stream.channel());
    let mut tick = interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if Instant::now() >= until {
            break;
        }
        let body = stream.body(out.count, size);
        let sent = Instant::now();
        match http::request(addr, "POST", &target, body.as_bytes()).await {
            Ok((200, answer)) => {
                out.max_latency_ms = out.max_latency_ms.max(sent.elapsed().as_millis() as u64);
                out.queued += http::queued(&answer).unwrap_or(0);
                out.count += 1;
                published.store(out.count, Ordering::Relaxed);
            }
            Ok((status, answer)) => {
                out.failures.push(format!(
                    "publish {} #{} answered {status}: {answer}",
                    stream.channel(),
                    out.count
                ));
                break;
            }
            Err(err) => {
                out.failures.push(format!(
                    "publish {} #{}: {err:#}",
                    stream.channel(),
                    out.count
                ));
                break;
            }
        }
    }
    out
}

/// At one third of the traffic phase rewrites the marked config lines and sends SIGHUP;
/// at two thirds restores the file and sends SIGHUP again. Each reload must show in the
/// daemon's `config_reloads_total{result="ok"}`. Returns the reloads confirmed.
async fn reload_twice(
    daemon: Daemon,
    start: Instant,
    until: Instant,
    value: String,
    before: f64,
) -> (u32, Vec<String>) {
    let mut failures = Vec::new();
    let original = match daemon.read_config() {
        Ok(text) => text,
        Err(err) => return (0, vec![format!("reload: {err:#}")]),
    };
    let changed = match daemon::rewrite_marked(&original, &value) {
        Ok(text) => text,
        Err(err) => return (0, vec![format!("reload: {err:#}")]),
    };
    let third = (until - start) / 3;
    let mut done = 0;
    for (i, (at, text)) in [(start + third, &changed), (start + 2 * third, &original)]
        .into_iter()
        .enumerate()
    {
        sleep_until(at).await;
        if let Err(err) = daemon.write_config(text).and_then(|()| daemon.sighup()) {
            failures.push(format!("reload {}: {err:#}", i + 1));
            break;
        }
        match confirm_reload(&daemon, before + i as f64 + 1.0).await {
            Ok(true) => done += 1,
            Ok(false) => failures.push(format!(
                "reload {} not counted as ok by the daemon within {RELOAD_LIMIT:?}",
                i + 1
            )),
            Err(err) => failures.push(format!("reload {}: {err:#}", i + 1)),
        }
    }
    // Leave the file as the daemon started with it, whatever happened.
    if let Err(err) = daemon.write_config(&original) {
        failures.push(format!("restoring the config: {err:#}"));
    }
    (done, failures)
}

/// Whether the daemon's ok-reload count reaches `want` within [`RELOAD_LIMIT`]
/// (always true without an admin address: nothing to check against).
async fn confirm_reload(daemon: &Daemon, want: f64) -> anyhow::Result<bool> {
    let by = Instant::now() + RELOAD_LIMIT;
    loop {
        let Some(m) = daemon.metrics().await? else {
            return Ok(true);
        };
        if m.sum("heartwire_config_reloads_total", &["result=\"ok\""]) >= want {
            return Ok(true);
        }
        if Instant::now() >= by {
            return Ok(false);
        }
        sleep(POLL_EVERY).await;
    }
}

/// Samples RSS and descriptors until `stop`; returns their peaks.
async fn sample(daemon: Daemon, stop: CancellationToken) -> (u64, usize) {
    let mut peak = (0, 0);
    let mut tick = interval(SAMPLE_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {
                if let (Ok(rss), Ok(fds)) = (daemon.rss_kib(), daemon.fds()) {
                    peak = (peak.0.max(rss), peak.1.max(fds));
                }
            }
        }
    }
    peak
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_adds_up_and_gives_every_kind_some_clients() {
        for total in [1, 7, 100, 3000, 15_000] {
            let counts = mix(total);
            assert_eq!(counts.iter().map(|(_, n)| n).sum::<usize>(), total);
        }
        assert!(mix(3000).iter().all(|(_, n)| *n > 0));
    }

    #[test]
    fn the_default_lag_exceeds_the_kernel_buffers() {
        assert!(default_lag(32 * 1024) > (4 << 20) / (32 * 1024));
        assert!(default_lag(0) > 0);
    }

    #[test]
    fn the_arguments_parse() {
        Args::try_parse_from([
            "heartwire-soak",
            "--addr",
            "127.0.0.1:1",
            "--pid",
            "1",
            "--config",
            "x.toml",
        ])
        .unwrap();
    }
}
