//! The WebSocket upgrade: validate the request, check origin and limits, answer 101,
//! then hand the upgraded socket to the supervisor.
//!
//! Every refusal happens here, before a connection exists, with a status and a
//! one-line reason that says how to fix the request. Two kinds are told differently: a
//! refused token or origin, to a client that offered the `heartwire` subprotocol, gets a
//! 101 and at once a close frame with the same reason (4001 or 4003, [`AuthError::close`];
//! 4003 for an origin), because a browser never sees the status of a refused handshake and
//! could not tell a refusal that a retry repeats from a network failure. That socket is
//! never registered nor subscribed.

use std::any::Any;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio::time::{self, Instant};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tracing::{Instrument, debug, debug_span, error};

use super::bearer;
use super::limits::{Full, Slot};
use super::state::Edge;
use super::subscribe::{self, Unsubscribable};
use crate::auth::{AuthError, Identity};
use crate::channels::Params;
use crate::close;
use crate::config::{Config, RouteConfig, TokenAuth};
use crate::conn::{self, Session};
use crate::fanout::{Hold, Limits, Registration, Route};
use crate::heartbeat::Pulse;
use crate::http::{Body, Refusal};
use crate::metrics::{Metrics, Rejection};

/// The only WebSocket version there is (RFC 6455).
const VERSION: &str = "13";

/// Longest a socket opened only to be closed for its token may last (each of the upgrade
/// and the close handshake), and less when `shutdown_grace` is shorter, down to
/// [`REFUSED_MIN`].
const REFUSED_WAIT: Duration = Duration::from_secs(1);
/// Room for the close frame to go out even when `shutdown_grace` is 0.
const REFUSED_MIN: Duration = Duration::from_millis(100);

/// A refused handshake: the answer, and why (for metrics).
pub(super) struct Refused {
    /// The reason, as counted.
    pub why: Rejection,
    /// The answer the client gets.
    pub refusal: Refusal,
}

fn refuse<T>(why: Rejection, refusal: Refusal) -> Result<T, Refused> {
    Err(Refused { why, refusal })
}

/// Answers an HTTP request for the WebSocket route `live` from `peer` (the client's
/// address, as trusted proxies tell it): 101 and a connection task, or a refusal saying
/// how to fix the request.
pub(super) async fn upgrade(
    edge: &Arc<Edge>,
    config: &Config,
    live: &Arc<Route>,
    params: Params,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Refused> {
    let route = live.settings();
    let headers = req.headers();
    if req.method() != Method::GET {
        return refuse(
            Rejection::BadHandshake,
            Refusal::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!(
                    "{} is a WebSocket endpoint: open it with GET and Upgrade: websocket",
                    route.path
                ),
            ),
        );
    }
    if !has_token(headers, header::CONNECTION, "upgrade")
        || !has_token(headers, header::UPGRADE, "websocket")
    {
        return refuse(
            Rejection::BadHandshake,
            Refusal::new(
                StatusCode::UPGRADE_REQUIRED,
                format!(
                    "{} is a WebSocket endpoint: connect with a WebSocket client (Connection: Upgrade, Upgrade: websocket)",
                    route.path
                ),
            )
            .with_header(header::UPGRADE, HeaderValue::from_static("websocket")),
        );
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(VERSION.as_bytes())
    {
        return refuse(
            Rejection::BadHandshake,
            Refusal::new(
                StatusCode::UPGRADE_REQUIRED,
                "unsupported Sec-WebSocket-Version: this server speaks version 13 (RFC 6455)",
            )
            .with_header(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static(VERSION),
            ),
        );
    }
    let Some(key) = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|k| k.len() == 24)
    else {
        return refuse(
            Rejection::BadHandshake,
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "missing or malformed Sec-WebSocket-Key (24 base64 characters)",
            ),
        );
    };
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if !route.origins.allows(origin, host) {
        let origin = origin.unwrap_or_default();
        debug!(%peer, route = %route.path, origin, "origin refused");
        let told = origin_refused(origin, &route.path, close::MAX_REASON);
        let refusal = Refusal::new(
            StatusCode::FORBIDDEN,
            origin_refused(origin, &route.path, usize::MAX),
        );
        return match close_instead(edge, config, peer, &route, close::REFUSED, told, req) {
            Some(res) => {
                edge.metrics.rejected(Rejection::Origin);
                Ok(res)
            }
            None => refuse(Rejection::Origin, refusal),
        };
    }
    let query = req.uri().query();
    let identity = match &route.auth {
        None => None,
        Some(auth) => match authenticate(auth, headers, query) {
            Ok(identity) => Some(identity),
            Err(e) => return refuse_token(edge, config, &route, peer, e, req),
        },
    };
    let who = match subscribe::resolve(&route, &params, query, identity.as_ref()) {
        Ok(who) => who,
        Err(Unsubscribable::BadRequest(refusal)) => return refuse(Rejection::Channel, refusal),
        Err(Unsubscribable::NotAllowed(e)) => {
            return refuse_token(edge, config, &route, peer, e, req);
        }
    };
    let protocol = bearer::selected(headers).and_then(|p| HeaderValue::from_str(p).ok());
    let server = &config.server;
    let slot = match edge.slots.try_claim(
        peer.ip(),
        server.max_connections,
        server.max_connections_per_ip,
    ) {
        Ok(slot) => slot,
        Err(full) => {
            let reason = match full {
                Full::Server => format!(
                    "server full: {} connections (server.max_connections); retry later",
                    server.max_connections
                ),
                Full::Ip => format!(
                    "too many connections from {}: {} (server.max_connections_per_ip); close some or retry later",
                    peer.ip(),
                    server.max_connections_per_ip
                ),
            };
            return refuse(
                Rejection::Limit,
                Refusal::new(StatusCode::SERVICE_UNAVAILABLE, reason)
                    .with_header(header::RETRY_AFTER, HeaderValue::from_static("5")),
            );
        }
    };

    let accept = derive_accept_key(key.as_bytes());
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(config.server.max_message_size))
        .max_frame_size(Some(config.server.max_frame_size))
        // Allocated up front for every connection, yet clients mostly send pongs: start small;
        // tungstenite reserves room for a larger frame when one arrives.
        .read_buffer_size(512)
        .write_buffer_size(0)
        .max_write_buffer_size(
            config
                .server
                .max_message_size
                .max(config.publish.max_body_size)
                * 2
                + 4096,
        );
    // Subscribe now, before the client can see its 101: a publish it triggers must reach it.
    let pulse = live.pulse.subscribe();
    let limits = Limits {
        policy: route.slow_consumer,
        messages: server.outbound_queue,
        bytes: server.outbound_queue_bytes,
    };
    // Subscribed on the bus (and its history there read) before the 101, like locally.
    let hold = match edge.broker.prepare(&who.channels, &who.resume).await {
        Ok(hold) => hold,
        Err(err) => {
            return refuse(
                Rejection::Broker,
                Refusal::new(StatusCode::SERVICE_UNAVAILABLE, err.to_string())
                    .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")),
            );
        }
    };
    let (conn, registration) = edge.hub.register(live, peer, who, limits);
    let mut session = Session::new(
        conn,
        live.clone(),
        config,
        edge.broker.clone(),
        edge.shutdown.clone(),
    );
    session.expires = identity
        .and_then(|id| id.remaining())
        .map(|left| Instant::now().into_std() + left);
    let user = session.conn.user.clone();
    let span = debug_span!("conn", id = session.conn.id, %peer, route = %route.path, user = user.as_deref());
    let opening = Box::new(Opening {
        req,
        ws_config,
        session,
        pulse,
        hold,
    });
    let metrics = edge.metrics.clone();
    edge.tracker
        .spawn(connection(opening, slot, registration, metrics).instrument(span));

    Ok(switching(&accept, protocol))
}

/// The 101 that completes a handshake.
fn switching(accept: &str, protocol: Option<HeaderValue>) -> Response<Body> {
    let mut res = Response::new(Body::default());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(protocol) = protocol {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    res
}

/// Who the request's token says its holder is, on a route that requires one.
fn authenticate(
    auth: &TokenAuth,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Identity, AuthError> {
    let token = bearer::token(headers, query, auth.cookie.as_deref()).ok_or(AuthError::Missing)?;
    auth.verifier.verify(&token)
}

/// A refused token: 401 with `WWW-Authenticate` when there was none, else 403; the body
/// says which rule (`"auth": "expired"`), never quoting the token. A client that offered
/// `heartwire` instead gets a 101 and a close with the same reason (while a connection
/// slot is free for that moment; else the HTTP answer). Counted as refused either way.
fn refuse_token(
    edge: &Arc<Edge>,
    config: &Config,
    route: &RouteConfig,
    peer: SocketAddr,
    e: AuthError,
    req: Request<Incoming>,
) -> Result<Response<Body>, Refused> {
    edge.metrics.auth_refused(e.label());
    debug!(%peer, route = %route.path, reason = e.label(), "token refused: {e}");
    let reason = match (&e, &route.auth) {
        (AuthError::Missing, Some(auth)) => format!(
            "{e}: offer subprotocols [\"{}\", \"{}<token>\"], or add ?{}=<token>{}",
            bearer::PROTOCOL,
            bearer::BEARER,
            bearer::QUERY,
            auth.cookie
                .as_deref()
                .map(|c| format!(", or set cookie `{c}`"))
                .unwrap_or_default()
        ),
        _ => e.to_string(),
    };
    let (code, told) = e.close(&reason);
    if let Some(res) = close_instead(edge, config, peer, route, code, told, req) {
        edge.metrics.rejected(Rejection::Auth);
        return Ok(res);
    }
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::FORBIDDEN);
    let mut refusal = Refusal::new(status, reason).with_field("auth", e.label());
    if status == StatusCode::UNAUTHORIZED {
        refusal = refusal.with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"heartwire\""),
        );
    }
    refuse(Rejection::Auth, refusal)
}

/// Why `origin` may not connect to `path` and how to fix it, in at most `max` bytes: a
/// long origin is shortened (with `...`), never the fix.
fn origin_refused(origin: &str, path: &str, max: usize) -> String {
    let fix = format!("` may not connect to {path}: add it to `origins` of this [[route]]");
    let room = max.saturating_sub("origin `".len() + fix.len());
    if origin.len() <= room {
        return format!("origin `{origin}{fix}");
    }
    let mut end = room.saturating_sub(3);
    while !origin.is_char_boundary(end) {
        end -= 1;
    }
    format!("origin `{}...{fix}", &origin[..end])
}

/// For a client that offered `heartwire`: a 101 whose socket only carries the close
/// `code` with `reason`, then ends (while a connection slot is free for that moment; else
/// `None`, and the caller answers with the HTTP refusal). Never registered nor subscribed.
fn close_instead(
    edge: &Arc<Edge>,
    config: &Config,
    peer: SocketAddr,
    route: &RouteConfig,
    code: u16,
    reason: String,
    req: Request<Incoming>,
) -> Option<Response<Body>> {
    let server = &config.server;
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY)?;
    if !bearer::offers_heartwire(req.headers()) {
        return None;
    }
    // Held only while the close goes out: the socket counts against the limits it uses.
    let slot = edge
        .slots
        .try_claim(
            peer.ip(),
            server.max_connections,
            server.max_connections_per_ip,
        )
        .ok()?;
    let accept = derive_accept_key(key.as_bytes());
    let wait = REFUSED_WAIT.min(server.shutdown_grace).max(REFUSED_MIN);
    let span = debug_span!("refused", %peer, route = %route.path);
    let upgrade = hyper::upgrade::on(req);
    edge.tracker
        .spawn(close_refused(upgrade, code, reason, wait, slot).instrument(span));
    Some(switching(
        &accept,
        Some(HeaderValue::from_static(bearer::PROTOCOL)),
    ))
}

/// The task of a socket upgraded only to say why it was refused: the close frame,
/// then the end, each bounded by `wait`. It holds `slot` until then and nothing else.
async fn close_refused(
    upgrade: hyper::upgrade::OnUpgrade,
    code: u16,
    reason: String,
    wait: Duration,
    slot: Slot,
) {
    match time::timeout(wait, upgrade).await {
        Ok(Ok(upgraded)) => {
            let config = WebSocketConfig::default()
                .read_buffer_size(512)
                .max_message_size(Some(4096))
                .max_frame_size(Some(4096));
            let mut ws = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(config),
            )
            .await;
            conn::close_with(&mut ws, code, &reason, wait).await;
            debug!(code, "closed as refused");
            // Before the socket ends: a client that reconnects once it sees the end
            // finds the slot free.
            drop(slot);
        }
        Ok(Err(err)) => debug!(error = %err, "upgrade failed"),
        Err(_) => debug!("upgrade timed out"),
    }
}

/// What a connection's task needs only until its WebSocket is open. Boxed and consumed
/// there, so that the task, which lives as long as the connection, does not keep room for
/// it (the request alone is 248 bytes).
struct Opening {
    req: Request<Incoming>,
    ws_config: WebSocketConfig,
    session: Session,
    pulse: watch::Receiver<Pulse>,
    /// This node's subscriptions on the bus for the connection's channels.
    hold: Hold,
}

/// A connection's task: finish the upgrade, then supervise. A plain function around an
/// `async move` block so that the slot and registration it holds to the end are stored
/// once (an `async fn` would keep each argument twice).
#[allow(clippy::manual_async_fn)] // on purpose: see above
fn connection(
    opening: Box<Opening>,
    slot: Slot,
    registration: Registration,
    metrics: Arc<Metrics>,
) -> impl Future<Output = ()> {
    async move {
        let Opening {
            req,
            ws_config,
            session,
            pulse,
            hold,
        } = *opening;
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(err) => {
                debug!(error = %err, "upgrade failed");
                return;
            }
        };
        // Boxed: a one-off state as large as everything else in the task.
        let ws = Box::pin(WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            Some(ws_config),
        ))
        .await;
        debug!(channels = ?session.conn.channels, "open");
        // A bug in one connection must not take others down: contain and report it.
        // Boxed once: a large future moved into the wrapper would otherwise take its
        // space twice in every connection's task.
        match contained(Box::pin(conn::supervise(ws, session, pulse))).await {
            Ok(ended) => debug!(code = ended.code, reason = %ended.reason, "closed"),
            Err(panic) => {
                metrics.panicked();
                error!(panic, "connection task panicked; connection dropped");
            }
        }
        // Held to the end: the connection's place in the limits and in the registry.
        drop((registration, slot, hold));
    }
}

/// Whether a comma-separated header holds `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Runs `fut`, turning a panic inside it into `Err(message)` instead of unwinding further.
pub async fn contained<F: Future>(fut: F) -> Result<F::Output, String> {
    AssertUnwindSafe(fut).catch_unwind().await.map_err(|panic| {
        let panic: &(dyn Any + Send) = &*panic;
        panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-string panic)".into())
    })
}

#[cfg(test)]
mod tests {
    use super::{contained, origin_refused};

    #[test]
    fn an_origin_refusal_fits_a_close_frame_and_keeps_its_fix() {
        let fix = "` may not connect to /app: add it to `origins` of this [[route]]";
        assert_eq!(
            origin_refused("https://x.example", "/app", 123),
            format!("origin `https://x.example{fix}")
        );
        for origin in ["https://".to_owned() + &"a".repeat(300), "é".repeat(100)] {
            let told = origin_refused(&origin, "/app", 123);
            assert!(told.len() <= 123, "{} bytes: {told}", told.len());
            assert!(told.ends_with(&format!("...{fix}")), "{told}");
            assert!(origin.starts_with(&told["origin `".len()..told.len() - fix.len() - 3]));
        }
        // Unbounded (the HTTP body): the whole origin.
        let long = "https://".to_owned() + &"a".repeat(300);
        assert!(origin_refused(&long, "/app", usize::MAX).contains(&long));
    }

    #[tokio::test]
    async fn a_panicking_connection_is_contained() {
        let id = 7;
        let err = contained(async move {
            if id == 7 {
                panic!("bug in connection {id}");
            }
        })
        .await
        .unwrap_err();
        assert_eq!(err, "bug in connection 7");
        assert_eq!(contained(async { 5 }).await, Ok(5));
    }
}
