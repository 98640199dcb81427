//! Which channels a new connection holds: its route's templates filled in from the
//! request path, the query string and its verified token. Decided here and only here.

use std::sync::Arc;

use hyper::StatusCode;

use super::form;
use crate::auth::{AuthError, Identity};
use crate::channels::{Params, Source};
use crate::config::RouteConfig;
use crate::fanout::Subscriber;
use crate::http::Refusal;

/// Why a connection may not hold the channels it asked for.
pub(super) enum Unsubscribable {
    /// A template could not be filled in, or made an invalid name (400).
    BadRequest(Refusal),
    /// The token lacks a claim a template needs, or does not allow a channel (403).
    NotAllowed(AuthError),
}

/// The channels of a connection to `route` (path parameters `params`, query `query`,
/// verified token `identity` when the route requires one), each once, in template order.
pub(super) fn resolve(
    route: &RouteConfig,
    params: &Params,
    query: Option<&str>,
    identity: Option<&Identity>,
) -> Result<Subscriber, Unsubscribable> {
    // A claim a template needs is the token's fault (403), not the request's (400).
    for source in route.channels.iter().flat_map(|t| t.sources()) {
        if let Source::Claim(name) = source {
            if identity.and_then(|id| id.claim(name)).is_none() {
                return Err(Unsubscribable::NotAllowed(AuthError::MissingClaim(
                    name.clone(),
                )));
            }
        }
    }
    let mut values: Vec<(Source, String)> = params
        .iter()
        .map(|(k, v)| (Source::Path(k.clone()), v.clone()))
        .collect();
    let wanted = |name: &str| {
        route
            .channels
            .iter()
            .flat_map(|t| t.sources())
            .any(|s| matches!(s, Source::Query(q) if q == name))
    };
    for (k, v) in form::pairs(query.unwrap_or_default().as_bytes()) {
        let Ok(name) = std::str::from_utf8(&k) else {
            continue;
        };
        if !wanted(name) {
            continue;
        }
        let value = form::decode(v).map_err(|_| {
            Unsubscribable::BadRequest(Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("query parameter `{name}` is not valid UTF-8 once percent-decoded"),
            ))
        })?;
        // The last of each wins, as for publish.
        values.retain(|(s, _)| !matches!(s, Source::Query(q) if q == name));
        values.push((Source::Query(name.to_owned()), value));
    }
    let lookup = |s: &Source| match s {
        Source::Claim(name) => identity.and_then(|id| id.claim(name)),
        other => values
            .iter()
            .find(|(have, _)| have == other)
            .map(|(_, v)| v.as_str()),
    };
    let mut channels: Vec<Arc<str>> = Vec::with_capacity(route.channels.len());
    for template in &route.channels {
        let name = template.render(lookup).map_err(|why| {
            Unsubscribable::BadRequest(Refusal::new(StatusCode::BAD_REQUEST, why))
        })?;
        if let Some(id) = identity {
            id.authorize(&name).map_err(Unsubscribable::NotAllowed)?;
        }
        if !channels.iter().any(|c| **c == *name) {
            channels.push(name.into());
        }
    }
    Ok(Subscriber {
        user: identity.and_then(|id| id.sub.as_deref()).map(Arc::from),
        channels,
    })
}
