//! The public listener: accept loop, HTTP dispatch (publish, static pages, WebSocket
//! upgrades on one port), config changes, and graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::broker::{Broker, LocalBroker};
use crate::config::Config;
use crate::heartbeat::{Pulse, Schedule};
use crate::http::{self, Body};
use crate::hub::Hub;
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
    /// Cancelled when the daemon shuts down.
    pub shutdown: CancellationToken,
}

/// Counts open WebSocket connections against `server.max_connections`.
#[derive(Debug, Default)]
pub struct Slots {
    open: AtomicUsize,
}

/// One claimed slot, released on drop.
pub struct Slot(Arc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Slots {
    /// Claims a slot if fewer than `max` are open (`max` is read per call, so a reload applies at once).
    pub fn try_claim(self: &Arc<Self>, max: usize) -> Option<Slot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }

    /// Open WebSocket connections.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// Serves `listeners` with the config from `config` until `shutdown` is cancelled,
/// then closes every WebSocket with 1001 and waits up to `server.shutdown_grace`.
/// Sending a new config on the `watch` applies it live (see [`crate::reload`]).
pub async fn run(
    listeners: Vec<TcpListener>,
    mut config: watch::Receiver<Arc<Config>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let hub = Arc::new(Hub::default());
    let state = Arc::new(State {
        config: config.clone(),
        hub: hub.clone(),
        broker: Arc::new(LocalBroker::new(hub.clone())),
        tracker: TaskTracker::new(),
        slots: Arc::default(),
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
    accept.wait().await;
    let open = state.slots.open();
    info!(connections = open, grace = ?current.server.shutdown_grace, "shutting down");
    for route in hub.routes() {
        route.closing.cancel();
    }
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
    schedule.apply(wanted, Arc::new(|_| {}));
}

async fn accept_loop(state: Arc<State>, listener: TcpListener) {
    loop {
        let (stream, peer) = tokio::select! {
            () = state.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    warn!(error = %err, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let state2 = state.clone();
        state.tracker.spawn(serve_connection(state2, stream, peer));
    }
}

async fn serve_connection(state: Arc<State>, stream: tokio::net::TcpStream, peer: SocketAddr) {
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
        return publish::handle(state.broker.as_ref(), &config.publish, timeout, req).await;
    }
    if let Some(route) = config.route(path) {
        let route = route.clone();
        return handshake::upgrade(state, &config, &route, peer, req);
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
