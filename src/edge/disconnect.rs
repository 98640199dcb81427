//! The backend's kick: `POST <publish path>/disconnect?user=SUB` (or `?channel=NAME`),
//! with the publish token, closes the matching connections with 4009 (logout, ban).

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::form;
use super::publish::{authorize, throttle, unavailable};
use super::rate_limit::RateLimit;
use crate::channels::check_channel;
use crate::config::PublishConfig;
use crate::fanout::{Broker, Kick, MAX_KICK_USER};
use crate::http::{self, Body, Refusal};

/// The path under `publish.path` that kicks.
pub(super) const SUFFIX: &str = "/disconnect";
/// Longest close reason a backend may give (a close frame holds 123 bytes).
const MAX_REASON: usize = 100;
/// What a kicked client is told when the backend gives no reason.
const DEFAULT_REASON: &str = "disconnected by the server";

/// Handles one kick request: every node closes the connections it names.
pub(super) async fn handle(
    broker: &dyn Broker,
    config: &PublishConfig,
    limit: &RateLimit,
    req: &Request<Incoming>,
) -> Response<Body> {
    let done = match kick(config, limit, req) {
        Ok((who, reason)) => broker.kick(&who, &reason).await.map_err(unavailable),
        Err(refusal) => Err(refusal),
    };
    match done {
        Ok(n) => http::json(StatusCode::OK, &serde_json::json!({ "disconnected": n })),
        Err(refusal) => refusal.into_response(),
    }
}

/// Whom the request kicks, and the reason they are told.
fn kick(
    config: &PublishConfig,
    limit: &RateLimit,
    req: &Request<Incoming>,
) -> Result<(Kick, String), Refusal> {
    if req.method() != Method::POST {
        return Err(Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "disconnect with POST <publish path>/disconnect?user=SUB (or ?channel=NAME)",
        )
        .with_header(header::ALLOW, HeaderValue::from_static("POST")));
    }
    authorize(config, req.headers())?;
    throttle(config, limit)?;
    let bad = |why: &str| Refusal::new(StatusCode::BAD_REQUEST, why.to_owned());
    let (mut user, mut channel, mut reason) = (None, None, None);
    for (k, v) in form::pairs(req.uri().query().unwrap_or_default().as_bytes()) {
        let slot = match &*k {
            b"user" => &mut user,
            b"channel" => &mut channel,
            b"reason" => &mut reason,
            _ => continue,
        };
        let value = form::decode(v)
            .map_err(|_| bad("a parameter is not valid UTF-8 once percent-decoded"))?;
        *slot = Some(value);
    }
    let reason = reason.unwrap_or_else(|| DEFAULT_REASON.into());
    if reason.len() > MAX_REASON {
        return Err(bad("`reason` is longer than 100 bytes: shorten it"));
    }
    match (user, channel) {
        (Some(user), None) if !user.is_empty() && user.len() <= MAX_KICK_USER => {
            Ok((Kick::User(user), reason))
        }
        (None, Some(channel)) => {
            check_channel(&channel).map_err(|why| bad(&why))?;
            Ok((Kick::Channel(channel), reason))
        }
        _ => Err(bad(
            "name exactly one of `user` (a token's sub, 1 to 256 bytes) or `channel`",
        )),
    }
}
