//! Which channels a new connection holds: its route's templates filled in from the
//! request path, the query string and its verified token. Decided here and only here.

use std::sync::Arc;

use hyper::StatusCode;

use super::form;
use crate::channels::{Params, Source};
use crate::config::RouteConfig;
use crate::fanout::Subscriber;
use crate::http::Refusal;

/// What a verified token says about the connection, as far as channels care.
pub(super) trait Claims {
    /// A string claim (`sub` included).
    fn claim(&self, name: &str) -> Option<&str>;
    /// Whether the token's `channels` claim (if any) allows `channel`.
    fn allows(&self, channel: &str) -> bool;
}

/// Why a connection may not hold the channels it asked for.
pub(super) enum Unsubscribable {
    /// A template could not be filled in, or made an invalid name (400).
    BadRequest(Refusal),
    /// The token does not allow a channel (403).
    NotAllowed(Refusal),
}

/// The channels of a connection to `route` (path parameters `params`, query `query`,
/// token `claims` when the route requires one), each once, in template order.
pub(super) fn resolve(
    route: &RouteConfig,
    params: &Params,
    query: Option<&str>,
    claims: Option<&dyn Claims>,
) -> Result<Subscriber, Unsubscribable> {
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
        Source::Claim(name) => claims.and_then(|c| c.claim(name)),
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
        if claims.is_some_and(|c| !c.allows(&name)) {
            return Err(Unsubscribable::NotAllowed(Refusal::new(
                StatusCode::FORBIDDEN,
                format!(
                    "the token's `channels` claim does not allow channel `{name}`: mint the token with it, or connect to a route that does not resolve to it"
                ),
            )));
        }
        if !channels.iter().any(|c| **c == *name) {
            channels.push(name.into());
        }
    }
    Ok(Subscriber {
        user: claims.and_then(|c| c.claim("sub")).map(Arc::from),
        channels,
    })
}
