//! Which channels a new connection holds: its route's templates filled in from the
//! request path, the query string and its verified token. Decided here and only here.

use std::sync::Arc;

use hyper::StatusCode;

use super::form;
use crate::auth::{AuthError, Identity};
use crate::channels::{Params, Source, check_channel};
use crate::config::{MAX_ROUTE_CHANNELS, RouteConfig, RouteFormat};
use crate::fanout::{Resume, Subscriber, is_epoch};
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
        if let Source::Claim(name) = source
            && identity.and_then(|id| id.claim(name)).is_none()
        {
            return Err(Unsubscribable::NotAllowed(AuthError::MissingClaim(
                name.clone(),
            )));
        }
    }
    let resume = resume(route, query)
        .map_err(|why| Unsubscribable::BadRequest(Refusal::new(StatusCode::BAD_REQUEST, why)))?;
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
        resume,
    })
}

/// The positions a reconnecting client names: `recover=CHANNEL:OFFSET:EPOCH`, once per
/// channel (a channel name may hold `:`, so the string is split from the right).
fn resume(route: &RouteConfig, query: Option<&str>) -> Result<Vec<Resume>, String> {
    let mut resume: Vec<Resume> = Vec::new();
    for (k, v) in form::pairs(query.unwrap_or_default().as_bytes()) {
        if *k != *b"recover" {
            continue;
        }
        if route.format != RouteFormat::Envelope {
            return Err(format!(
                "recover= needs a route with format = \"envelope\" ({} sends raw messages, without offsets)",
                route.path
            ));
        }
        if resume.len() == MAX_ROUTE_CHANNELS {
            return Err(format!(
                "more than {MAX_ROUTE_CHANNELS} recover= parameters: name each channel held once"
            ));
        }
        let bad = |why: &str| {
            format!(
                "recover=`{}`: {why}; expected CHANNEL:OFFSET:EPOCH, e.g. news:41:k3j9x2ab, as the last message or position frame said",
                String::from_utf8_lossy(v)
            )
        };
        let text = form::decode(v).map_err(|_| bad("not UTF-8"))?;
        let mut parts = text.rsplitn(3, ':');
        let (Some(epoch), Some(offset), Some(channel)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("not three parts"));
        };
        check_channel(channel).map_err(|why| bad(&why))?;
        let offset: u64 = offset
            .parse()
            .map_err(|_| bad("the offset is not a number"))?;
        if !is_epoch(epoch) {
            return Err(bad("the epoch is not one this server gives"));
        }
        if resume.iter().any(|r| r.channel == channel) {
            return Err(bad("channel named twice"));
        }
        resume.push(Resume {
            channel: channel.to_owned(),
            offset,
            epoch: epoch.to_owned(),
        });
    }
    Ok(resume)
}
