//! The public listener: accept loop, HTTP dispatch (publish, static pages, WebSocket
//! upgrades on one port), config changes, and graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::broker::{Broker, LocalBroker};
use crate::config::Config;
use crate::heartbeat::{Pulse, Schedule};
use crate::http::{self, Body};
use crate::hub::Hub;
use crate::limits::{HttpSlot, HttpSlots, Slots};
use crate::metrics::Rejection;
use crate::ops::Ops;
use crate::rate_limit::RateLimit;
use crate::{handshake, publish};

/// What every connection and request shares.
pub struct State {
    /// The config in force (replaced whole on reload).
    pub config: watch::Receiver<Arc<Config>>,
    /// Routes and connections.
    pub hub: Arc<Hub>,
    /// Where publishes and relays go.
    pub broker: Arc<dyn Broker>,
    /// Every connection task, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// WebSocket connection slots.
    pub slots: Arc<Slots>,
    /// Connections still speaking HTTP.
    pub http: Arc<HttpSlots>,
    /// The publish rate limit's bucket.
    pub publish_limit: RateLimit,
    /// Cancelled when the daemon shuts down.
    pub shutdown: CancellationToken,
}

/// Serves `listeners` with the config from `config` until `shutdown` is cancelled,
/// then closes every WebSocket with 1001 (in batches over `server.drain_period`, see
/// [`crate::drain`]) and waits up to `server.shutdown_grace`.
/// Sending a new config on the `watch` applies it live (see [`crate::reload`]).
pub async fn run(
    listeners: Vec<TcpListener>,
    config: watch::Receiver<Arc<Config>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with(listeners, None, config, shutdown, Ops::default()).await
}

/// [`run`], plus what operators see: the admin listener on `admin` (health, metrics,
/// connections, see [`crate::admin`]), the counters in `ops.metrics`, and systemd
/// notifications through `ops.notifier` (READY, STATUS, WATCHDOG, STOPPING).
pub async fn run_with(
    listeners: Vec<TcpListener>,
    admin: Option<TcpListener>,
    mut config: watch::Receiver<Arc<Config>>,
    shutdown: CancellationToken,
    ops: Ops,
) -> anyhow::Result<()> {
    let hub = Arc::new(Hub::new(ops.metrics.clone()));
    let state = Arc::new(State {
        config: config.clone(),
        hub: hub.clone(),
        broker: Arc::new(LocalBroker::new(hub.clone())),
        tracker: TaskTracker::new(),
        slots: Arc::default(),
        http: Arc::new(HttpSlots::new(ops.metrics.http_gauge())),
        publish_limit: RateLimit::default(),
        shutdown: shutdown.clone(),
    });
    let mut schedule = Schedule::default();
    let first = config.borrow_and_update().clone();
    apply(&state, &mut schedule, &first);
    let accept = TaskTracker::new();
    for listener in listeners {
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "listening");
        }
        accept.spawn(accept_loop(state.clone(), listener));
    }
    accept.close();
    // Stopped only after the drain and the grace, so probes see 503 throughout.
    let ops_stop = CancellationToken::new();
    let ops_tasks = TaskTracker::new();
    if let Some(listener) = admin {
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "admin listening");
        }
        let admin = Arc::new(crate::admin::Admin {
            hub: hub.clone(),
            ops: ops.clone(),
            draining: shutdown.clone(),
        });
        ops_tasks.spawn(crate::admin::serve(listener, admin, ops_stop.clone()));
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
                crate::reload::log_changes(&current, &next);
                apply(&state, &mut schedule, &next);
                current = next;
            }
        }
    }

    shutdown.cancel();
    ops.metrics.set_draining();
    ops.notifier.stopping(&ops.status(&hub, true));
    accept.wait().await;
    let open = state.slots.open();
    info!(
        connections = open,
        drain = ?current.server.drain_period,
        grace = ?current.server.shutdown_grace,
        "shutting down"
    );
    let server = &current.server;
    crate::drain::drain(&hub, server.drain_period, server.reconnect_jitter).await;
    // Heartbeats ran through the drain (its clients were still connected).
    drop(schedule);
    state.tracker.close();
    if tokio::time::timeout(current.server.shutdown_grace, state.tracker.wait())
        .await
        .is_err()
    {
        warn!(
            left = state.slots.open(),
            "shutdown grace ran out; dropping the remaining connections"
        );
    }
    ops_stop.cancel();
    ops_tasks.wait().await;
    Ok(())
}

/// Makes routes and heartbeat tickers match `config`.
fn apply(state: &State, schedule: &mut Schedule, config: &Config) {
    let changes = state.hub.apply(config);
    if !changes.added.is_empty() || !changes.removed.is_empty() {
        debug!(added = ?changes.added, removed = ?changes.removed, "routes changed");
    }
    let mut wanted = Vec::new();
    for policy in config.heartbeats.values() {
        let routes: Vec<_> = config
            .routes
            .iter()
            .filter(|r| r.heartbeat.as_deref() == Some(policy.name.as_str()))
            .filter_map(|r| {
                state
                    .hub
                    .route(&r.path)
                    .map(|live| (r.path.clone(), live.pulse.clone()))
            })
            .collect();
        if !routes.is_empty() {
            wanted.push((policy.clone(), routes));
        }
    }
    // Routes without a policy stop heartbeating.
    for r in config.routes.iter().filter(|r| r.heartbeat.is_none()) {
        if let Some(live) = state.hub.route(&r.path) {
            live.pulse.send_if_modified(|p| {
                let had = p.policy.is_some();
                *p = Pulse::default();
                had
            });
        }
    }
    let metrics = state.hub.metrics().clone();
    schedule.apply(
        wanted,
        Arc::new(move |policy: &crate::config::Policy| metrics.payload_built(&policy.name)),
    );
}

/// How often, at most, a full `server.max_http_connections` is logged.
const FULL_LOG_EVERY: Duration = Duration::from_secs(10);

async fn accept_loop(state: Arc<State>, listener: TcpListener) {
    let mut last_full_log: Option<Instant> = None;
    loop {
        let max = || state.config.borrow().server.max_http_connections;
        let slot = match state.http.try_claim(max()) {
            Some(slot) => slot,
            None => {
                // Full: stop accepting until one ends (each ends within handshake_timeout
                // when idle); new clients wait in the kernel's listen queue meanwhile.
                state.hub.metrics().http_full();
                if last_full_log.is_none_or(|at| at.elapsed() >= FULL_LOG_EVERY) {
                    last_full_log = Some(Instant::now());
                    warn!(
                        open = state.http.open(),
                        "server.max_http_connections reached: not accepting until a connection ends"
                    );
                }
                tokio::select! {
                    () = state.shutdown.cancelled() => return,
                    slot = state.http.claim(max) => slot,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            () = state.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let state2 = state.clone();
        state
            .tracker
            .spawn(serve_connection(state2, stream, peer, slot));
    }
}

/// Serves one TCP connection's HTTP, holding its place in `server.max_http_connections`
/// until it ends or becomes a WebSocket (hyper hands the socket over and returns).
async fn serve_connection(
    state: Arc<State>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    _slot: HttpSlot,
) {
    let timeout = state.config.borrow().server.handshake_timeout;
    let svc_state = state.clone();
    let service = service_fn(move |req| {
        let state = svc_state.clone();
        async move { Ok::<_, Infallible>(dispatch(&state, peer, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(16 * 1024)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = state.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        debug!(%peer, error = %err, "http connection ended with an error");
    }
}

async fn dispatch(state: &Arc<State>, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let config = state.config.borrow().clone();
    let path = req.uri().path();
    if path == config.publish.path {
        let timeout = config.server.handshake_timeout;
        let res = publish::handle(
            state.broker.as_ref(),
            &config.publish,
            &state.publish_limit,
            timeout,
            req,
        )
        .await;
        state.hub.metrics().published(res.status().as_u16());
        return res;
    }
    if let Some(route) = config.route(path) {
        let route = route.clone();
        let res = handshake::upgrade(state, &config, &route, peer, req);
        if let Some(why) = Rejection::of(res.status()) {
            state.hub.metrics().rejected(why);
        }
        return res;
    }
    if let Some(page) = config.statics.iter().find(|s| s.path == path) {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return http::error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{path} answers GET only"),
            );
        }
        return http::text(
            StatusCode::OK,
            Bytes::from(page.body.clone()),
            &page.content_type,
        );
    }
    http::error(StatusCode::NOT_FOUND, format!("nothing at {path}"))
}
