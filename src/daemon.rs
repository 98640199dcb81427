//! The daemon's life: start the broker, tickers and listeners, follow config changes,
//! then shut down in order (stop accepting, drain, wait out the grace, stop the broker).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::config::{BrokerConfig, Config};
use crate::edge::{self, Edge};
use crate::fanout::history_file::{self, Loaded};
use crate::fanout::{Broker, Hub, drain};
use crate::ops::{self, Ops};

/// Serves `listeners` with the config from `config` until `shutdown` is cancelled, then
/// closes every WebSocket with 1001 (in batches over `server.drain_period`, see
/// [`crate::fanout::drain`]) and waits up to `server.shutdown_grace`. Sending a new config
/// on the `watch` applies it live. `admin` serves health, metrics and connections;
/// `ops` carries the metrics and systemd notifications; `broker` carries publishes (the
/// embedded [`crate::fanout::MemoryBroker`] for one node).
pub async fn run_with(
    listeners: Vec<TcpListener>,
    admin: Option<TcpListener>,
    mut config: watch::Receiver<Arc<Config>>,
    shutdown: CancellationToken,
    ops: Ops,
    broker: Arc<dyn Broker>,
) -> anyhow::Result<()> {
    let hub = Arc::new(Hub::new(ops.metrics.clone()));
    let first = config.borrow_and_update().clone();
    broker
        .start(hub.clone())
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the broker: {e}"))?;
    let edge = Arc::new(
        Edge::new(
            config.clone(),
            hub.clone(),
            broker.clone(),
            shutdown.clone(),
            ops.metrics.clone(),
            // Memory freed by a wave of disconnects goes back to the kernel.
            Box::new(ops::allocator::trim),
        )
        .map_err(|e| anyhow::anyhow!("cannot set up TLS with [server.tls]: {e}"))?,
    );
    if let Some(tls) = &first.server.tls {
        info!(
            cert_file = %tls.cert_file.display(),
            expires = %tls.expires(),
            days_left = tls.days_left(std::time::SystemTime::now()),
            "TLS on: wss:// and https:// on the public listener"
        );
    }
    ops::open_files::check(&first.server);
    apply(&hub, &first);
    // Before any listener accepts: the first recovering client finds it.
    restore_history(&hub, &first);
    let accept = TaskTracker::new();
    for listener in listeners {
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "listening");
        }
        accept.spawn(edge::accept_loop(edge.clone(), listener));
    }
    accept.close();
    // Stopped only after the drain and the grace, so probes see 503 throughout.
    let ops_stop = CancellationToken::new();
    let ops_tasks = TaskTracker::new();
    if let Some(listener) = admin {
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "admin listening");
        }
        let admin = Arc::new(ops::admin::Admin {
            hub: hub.clone(),
            ops: ops.clone(),
            draining: shutdown.clone(),
            broker: broker.clone(),
        });
        ops_tasks.spawn(ops::admin::serve(listener, admin, ops_stop.clone()));
    }
    let sweeper = hub.clone();
    let sweep_stop = ops_stop.clone();
    ops_tasks.spawn(async move {
        let mut every = tokio::time::interval(HISTORY_SWEEP);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = sweep_stop.cancelled() => break,
                _ = every.tick() => sweeper.history().sweep(Instant::now()),
            }
        }
    });
    ops.notifier.ready(&ops.status(&hub, false));
    let status_ops = ops.clone();
    let status_hub = hub.clone();
    let status_shutdown = shutdown.clone();
    let notifier = ops.notifier.clone();
    let status_stop = ops_stop.clone();
    ops_tasks.spawn(async move {
        let status = || status_ops.status(&status_hub, status_shutdown.is_cancelled());
        notifier.run(status, status_stop).await;
    });
    ops_tasks.close();

    let mut current = first;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = config.changed() => {
                if changed.is_err() {
                    break;
                }
                let next = config.borrow_and_update().clone();
                ops::reload::log_changes(&current, &next);
                apply(&hub, &next);
                edge.config_changed(&next);
                current = next;
            }
        }
    }

    shutdown.cancel();
    ops.metrics.set_draining();
    ops.notifier.stopping(&ops.status(&hub, true));
    accept.wait().await;
    info!(
        connections = edge.slots.open(),
        drain = ?current.server.drain_period,
        grace = ?current.server.shutdown_grace,
        "shutting down"
    );
    let server = &current.server;
    drain::drain(&hub, server.drain_period, server.reconnect_jitter).await;
    // Heartbeats ran through the drain (its clients were still connected).
    hub.stop_heartbeats();
    edge.tracker.close();
    if tokio::time::timeout(current.server.shutdown_grace, edge.tracker.wait())
        .await
        .is_err()
    {
        warn!(
            left = edge.tracker.len(),
            "shutdown grace ran out; dropping the remaining connections"
        );
    }
    broker.stop().await;
    // No publish can arrive now: what history holds is final.
    save_history(&hub, &current);
    ops_stop.cancel();
    ops_tasks.wait().await;
    Ok(())
}

/// How often expired history is dropped.
const HISTORY_SWEEP: Duration = Duration::from_secs(1);

/// Loads the history the last shutdown saved in `history.dir`, if any.
fn restore_history(hub: &Hub, config: &Config) {
    let Some(dir) = &config.history.dir else {
        return;
    };
    if config.broker != BrokerConfig::Memory {
        info!("history lives in Redis with [broker] kind = \"redis\": history.dir is not read");
        return;
    }
    let file = history_file::path(dir);
    let now = Instant::now();
    match history_file::take(dir, config.history.max_bytes, now) {
        Ok(Loaded::Nothing) => info!(file = %file.display(), "no saved history: starting empty"),
        Ok(Loaded::Streams(streams)) => {
            let channels = streams.len();
            hub.history().restore(streams, now);
            info!(
                file = %file.display(),
                channels,
                messages = hub.history().len(),
                "history restored: reconnecting clients recover what they missed"
            );
        }
        Err(why) => warn!(
            file = %file.display(),
            "saved history unusable, starting empty (recovering clients are told epoch_changed): {why}"
        ),
    }
}

/// Writes history to `history.dir` for the next start.
fn save_history(hub: &Hub, config: &Config) {
    let Some(dir) = &config.history.dir else {
        return;
    };
    if config.broker != BrokerConfig::Memory {
        return;
    }
    let now = Instant::now();
    let streams = hub.history().snapshot(now);
    let messages: usize = streams.iter().map(|s| s.entries.len()).sum();
    match history_file::save(dir, &streams, now) {
        Ok(bytes) => info!(
            file = %history_file::path(dir).display(),
            channels = streams.len(),
            messages,
            bytes,
            "history saved"
        ),
        Err(e) => error!(
            dir = %dir.display(),
            "cannot save history ({e}): after this restart recovering clients are told epoch_changed"
        ),
    }
}

/// Makes routes and heartbeat tickers match `config`.
fn apply(hub: &Hub, config: &Config) {
    let changes = hub.apply(config);
    if !changes.added.is_empty() || !changes.removed.is_empty() {
        debug!(added = ?changes.added, removed = ?changes.removed, "routes changed");
    }
}
