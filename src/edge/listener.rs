//! The accept loop and one TCP connection's HTTP: bounded by `server.max_http_connections`
//! and `handshake_timeout`, served by hyper until it ends or becomes a WebSocket. With
//! `server.proxy_protocol`, the connection's PROXY header is read first; with
//! `[server.tls]`, the TLS handshake comes next, and hyper (then the WebSocket) runs over
//! the TLS stream.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::dispatch::dispatch;
use super::limits::HttpSlot;
use super::proxy_protocol::{self, Prefixed};
use super::state::Edge;
use crate::metrics::Rejection;

/// How long, at shutdown, a request already being received may take to finish.
const IN_FLIGHT_ON_SHUTDOWN: Duration = Duration::from_secs(1);

/// How often, at most, a full `server.max_http_connections` is logged.
const FULL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Accepts on `listener` until shutdown, one task per connection.
pub async fn accept_loop(edge: Arc<Edge>, listener: TcpListener) {
    let mut last_full_log: Option<Instant> = None;
    loop {
        let max = || edge.config.borrow().server.max_http_connections;
        let slot = match edge.http.try_claim(max()) {
            Some(slot) => slot,
            None => {
                // Full: stop accepting until one ends (each ends within handshake_timeout
                // when idle); new clients wait in the kernel's listen queue meanwhile.
                edge.metrics.http_full();
                if last_full_log.is_none_or(|at| at.elapsed() >= FULL_LOG_EVERY) {
                    last_full_log = Some(Instant::now());
                    warn!(
                        open = edge.http.open(),
                        "server.max_http_connections reached: not accepting until a connection ends"
                    );
                }
                tokio::select! {
                    () = edge.shutdown.cancelled() => return,
                    slot = edge.http.claim(max) => slot,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            () = edge.shutdown.cancelled() => return,
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
        let edge2 = edge.clone();
        let (proxied, timeout) = {
            let config = edge.config.borrow();
            (
                config.server.proxy_protocol,
                config.server.handshake_timeout,
            )
        };
        // The PROXY header and the TLS handshake share one handshake_timeout from here.
        let deadline = Instant::now() + timeout;
        if proxied {
            edge.tracker
                .spawn(serve_proxied(edge2, stream, peer, slot, deadline));
        } else {
            edge.tracker
                .spawn(serve_secured(edge2, stream, peer, slot, deadline));
        }
    }
}

/// Reads a connection's PROXY header (by `deadline` and within
/// [`proxy_protocol::MAX_HEADER`] bytes), then serves it as coming from the address the
/// header names. Closed without a word when the peer may not speak for others (outside a
/// non-empty `server.trusted_proxies`) or its header is missing or invalid: whatever it
/// sent is not HTTP we could answer.
async fn serve_proxied(
    edge: Arc<Edge>,
    mut stream: TcpStream,
    peer: SocketAddr,
    slot: HttpSlot,
    deadline: Instant,
) {
    let trusted = {
        let config = edge.config.borrow();
        let server = &config.server;
        server.trusted_proxies.is_empty() || server.trusted_proxies.contains(peer.ip())
    };
    if !trusted {
        edge.metrics.rejected(Rejection::UntrustedProxy);
        debug!(
            %peer,
            "connection closed: server.proxy_protocol is on and the peer is not in server.trusted_proxies"
        );
        return;
    }
    let header = tokio::select! {
        () = edge.shutdown.cancelled() => return,
        read = tokio::time::timeout_at(deadline, proxy_protocol::read_header(&mut stream)) => read,
    };
    let header = match header {
        Ok(Ok(header)) => header,
        Ok(Err(err)) => {
            edge.metrics.rejected(Rejection::ProxyHeader);
            debug!(%peer, error = %err, "connection closed");
            return;
        }
        Err(_) => {
            edge.metrics.rejected(Rejection::ProxyHeader);
            debug!(
                %peer,
                "connection closed: no PROXY header within server.handshake_timeout"
            );
            return;
        }
    };
    let client = header.source.unwrap_or(peer);
    serve_secured(
        edge,
        Prefixed::new(header.rest, stream),
        client,
        slot,
        deadline,
    )
    .await;
}

/// Runs the TLS handshake when the listener has TLS (done by `deadline`, holding the
/// connection's HTTP slot), then serves the connection. A peer that does not complete it
/// (plain HTTP, garbage, silence) is closed, a plain HTTP request with a 400 first.
async fn serve_secured<S>(
    edge: Arc<Edge>,
    stream: S,
    peer: SocketAddr,
    slot: HttpSlot,
    deadline: Instant,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(tls) = &edge.tls else {
        return serve_connection(edge, stream, peer, slot).await;
    };
    let accepted = tokio::select! {
        () = edge.shutdown.cancelled() => return,
        accepted = tls.accept(stream, deadline) => accepted,
    };
    match accepted {
        Ok(stream) => serve_connection(edge, stream, peer, slot).await,
        Err(err) => {
            edge.metrics.rejected(Rejection::TlsHandshake);
            debug!(%peer, error = %err, "connection closed");
        }
    }
}

/// Serves one connection's HTTP, holding its place in `server.max_http_connections`
/// until it ends or becomes a WebSocket (hyper hands the socket over and returns). `peer`
/// is the client's address (the PROXY header's when there was one).
async fn serve_connection<S>(edge: Arc<Edge>, stream: S, peer: SocketAddr, _slot: HttpSlot)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeout = edge.config.borrow().server.handshake_timeout;
    let svc_edge = edge.clone();
    let service = service_fn(move |req| {
        let edge = svc_edge.clone();
        async move { Ok::<_, Infallible>(dispatch(&edge, peer, req).await) }
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
        () = edge.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            // Idle keep-alives close at once; a request in flight gets a moment to finish,
            // and one that never will (half-sent headers) does not hold up the exit.
            match tokio::time::timeout(IN_FLIGHT_ON_SHUTDOWN, conn).await {
                Ok(r) => r,
                Err(_) => {
                    debug!(%peer, "request unfinished at shutdown; connection dropped");
                    return;
                }
            }
        }
    };
    if let Err(err) = result {
        debug!(%peer, error = %err, "http connection ended with an error");
    }
}
