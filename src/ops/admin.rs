//! The admin listener (`[admin] listen`, loopback by default), separate from the public
//! port so probes and scrapes never compete with clients and are never exposed with them:
//!
//! - `GET /healthz`: 200 `ok` while serving, 503 `draining` once shutdown has begun, 503
//!   `broker down: ...` while a shared broker cannot reach every node (connected clients
//!   stay connected; load balancers send new ones elsewhere);
//! - `GET /metrics`: Prometheus (OpenMetrics) text;
//! - `GET /connections`: a JSON array of live connections, oldest first.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{ALLOW, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::{Ops, allocator};
use crate::fanout::{Broker, Hub};
use crate::http::{self, Body};
use crate::metrics::{self, Metrics};

/// How long an admin client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the admin endpoints read.
pub struct Admin {
    /// Routes and connections.
    pub hub: Arc<Hub>,
    /// Metrics.
    pub ops: Ops,
    /// Cancelled when shutdown begins: `/healthz` answers 503 from then on.
    pub draining: CancellationToken,
    /// Whether publishes reach every node (`/healthz` says not ready while not).
    pub broker: Arc<dyn Broker>,
}

/// Serves `listener` until `stop` is cancelled (after the public side has drained, so
/// `/healthz` shows 503 throughout the drain).
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, stop: CancellationToken) {
    let tracker = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    warn!(error = %err, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let admin = admin.clone();
        let stop = stop.clone();
        tracker.spawn(async move {
            let service = service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(respond(&admin, &req)) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(err) = result {
                debug!(%peer, error = %err, "admin connection ended with an error");
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// Answers one admin request.
pub fn respond(admin: &Admin, req: &Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    if !matches!(path, "/healthz" | "/metrics" | "/connections") {
        return http::error(
            StatusCode::NOT_FOUND,
            format!(
                "nothing at {path}: the admin listener serves /healthz, /metrics and /connections"
            ),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut res = http::error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{path} answers GET only"),
        );
        res.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return res;
    }
    match path {
        "/healthz" if admin.draining.is_cancelled() => {
            text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
        }
        "/healthz" => match admin.broker.ready() {
            Ok(()) => text(StatusCode::OK, "ok\n"),
            Err(why) => http::text(
                StatusCode::SERVICE_UNAVAILABLE,
                Bytes::from(format!("broker down: {why}\n")),
                "text/plain; charset=utf-8",
            ),
        },
        "/metrics" => http::text(
            StatusCode::OK,
            Bytes::from(render(&admin.ops.metrics)),
            metrics::CONTENT_TYPE,
        ),
        _ => http::json(StatusCode::OK, &connections(&admin.hub)),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    http::text(
        status,
        Bytes::from_static(body.as_bytes()),
        "text/plain; charset=utf-8",
    )
}

/// Every live connection, oldest first.
pub fn connections(hub: &Hub) -> serde_json::Value {
    let mut rows: Vec<(u64, serde_json::Value)> = Vec::new();
    for route in hub.routes() {
        for conn in route.conns() {
            let v = conn.vitals.snapshot();
            let since_ms = conn
                .since
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            rows.push((
                conn.id,
                json!({
                    "id": conn.id,
                    "route": route.path,
                    "peer": conn.peer.to_string(),
                    "user": conn.user.as_deref(),
                    "channels": conn.channels.iter().map(|c| &**c).collect::<Vec<&str>>(),
                    "since": humantime::format_rfc3339_millis(conn.since).to_string(),
                    "since_unix_ms": since_ms,
                    "policy": v.policy,
                    "strategy": v.strategy.map(|s| s.as_str()),
                    "last_rtt_ms": v.last_rtt.map(|d| d.as_secs_f64() * 1e3),
                    "missed": v.missed,
                    "queue_depth": v.queue_depth,
                }),
            ));
        }
    }
    rows.sort_by_key(|(id, _)| *id);
    serde_json::Value::Array(rows.into_iter().map(|(_, v)| v).collect())
}

/// The scrape: figures that are read rather than counted are taken now.
fn render(metrics: &Metrics) -> String {
    if let Some((allocated, resident)) = allocator::usage() {
        metrics.set_allocator(allocated, resident);
    }
    metrics.render()
}
