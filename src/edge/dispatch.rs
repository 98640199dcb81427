//! Which handler answers an HTTP request: the publish endpoint, a WebSocket route, a
//! static page, the browser client's files, or 404. Decided here and only here, by path.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use super::state::Edge;
use super::{assets, disconnect, forwarded, handshake, publish};
use crate::http::{self, Body};

/// Answers one request that came over a connection from `peer` (the address its PROXY
/// header named, when there was one).
pub(super) async fn dispatch(
    edge: &Arc<Edge>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let config = edge.config.borrow().clone();
    let path = req.uri().path();
    if path == config.publish.path {
        let publisher = publish::Publisher {
            broker: edge.broker.as_ref(),
            hub: &edge.hub,
            config: &config.publish,
            limit: &edge.publish_limit,
            body_timeout: config.server.handshake_timeout,
        };
        let res = publish::handle(publisher, req).await;
        edge.metrics.published(res.status().as_u16());
        return res;
    }
    if path.strip_prefix(config.publish.path.as_str()) == Some(disconnect::SUFFIX) {
        return disconnect::handle(
            edge.broker.as_ref(),
            &config.publish,
            &edge.publish_limit,
            &req,
        )
        .await;
    }
    if let Some((route, params)) = edge.hub.find(path) {
        let client = forwarded::client(peer, req.headers(), &config.server.trusted_proxies);
        return match handshake::upgrade(edge, &config, &route, params, client, req).await {
            Ok(res) => res,
            Err(refused) => {
                edge.metrics.rejected(refused.why);
                refused.refusal.into_response()
            }
        };
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
    if let Some(res) = assets::serve(&config.client, path, req.method(), req.headers()) {
        return res;
    }
    http::error(StatusCode::NOT_FOUND, format!("nothing at {path}"))
}
