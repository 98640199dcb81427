//! The daemon's life: start the broker, tickers and listeners, follow config changes,
//! then shut down in order (stop accepting, drain, wait out the grace, stop the broker).

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::edge::{self, Edge};
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
    let first = config.borrow_and_update().clone();
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
        });
        ops_tasks.spawn(ops::admin::serve(listener, admin, ops_stop.clone()));
    }
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
    ops_stop.cancel();
    ops_tasks.wait().await;
    Ok(())
}

/// Makes routes and heartbeat tickers match `config`.
fn apply(hub: &Hub, config: &Config) {
    let changes = hub.apply(config);
    if !changes.added.is_empty() || !changes.removed.is_empty() {
        debug!(added = ?changes.added, removed = ?changes.removed, "routes changed");
    }
}
