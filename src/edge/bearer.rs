//! Where a connection's token travels, and the subprotocol answered for it.
//!
//! Browsers cannot set `Authorization` on a WebSocket, so the token comes, in this order
//! of preference, as a subprotocol `heartwire.bearer.<token>` (offered with `heartwire`,
//! which the server then selects: the token is never echoed), as the `token` query
//! parameter, or in the route's `token_cookie`. Decided here and only here.

use std::borrow::Cow;

use hyper::header::{self, HeaderMap};

use super::form;

/// The subprotocol a client offers beside its bearer token; selected when offered.
pub(super) const PROTOCOL: &str = "heartwire";
/// The prefix of the subprotocol that carries a token.
pub(super) const BEARER: &str = "heartwire.bearer.";
/// The query parameter that carries a token.
pub(super) const QUERY: &str = "token";

/// The token a request presents, if any (empty ones count as none).
pub(super) fn token<'a>(
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    cookie: Option<&str>,
) -> Option<Cow<'a, str>> {
    if let Some(t) = offered(headers).find_map(|p| p.strip_prefix(BEARER)) {
        return Some(Cow::Borrowed(t)).filter(|t| !t.is_empty());
    }
    let from_query = form::pairs(query.unwrap_or_default().as_bytes())
        .filter(|(k, _)| &k[..] == QUERY.as_bytes())
        .last();
    if let Some((_, v)) = from_query {
        // A token is base64url and dots: a value that does not decode is no token.
        return form::decode(v)
            .ok()
            .filter(|t| !t.is_empty())
            .map(Cow::Owned);
    }
    let name = cookie?;
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| Cow::Borrowed(v.trim_matches('"')))
        .filter(|t| !t.is_empty())
}

/// The subprotocol to answer with: `heartwire` when offered, else the bearer protocol the
/// client offered alone (a browser fails a handshake whose answer it did not offer).
pub(super) fn selected(headers: &HeaderMap) -> Option<&str> {
    let mut bearer = None;
    for p in offered(headers) {
        if p == PROTOCOL {
            return Some(p);
        }
        if bearer.is_none() && p.starts_with(BEARER) {
            bearer = Some(p);
        }
    }
    bearer
}

/// Whether the client offered `heartwire`: it then reads a refused token from a close
/// frame (a browser never sees an HTTP status of a refused handshake).
pub(super) fn offers_heartwire(headers: &HeaderMap) -> bool {
    offered(headers).any(|p| p == PROTOCOL)
}

/// Every subprotocol the client offered, in order.
fn offered(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_subprotocol_wins_then_the_query_then_the_cookie() {
        let h = headers(&[
            (
                header::SEC_WEBSOCKET_PROTOCOL,
                "heartwire, heartwire.bearer.a.b.c",
            ),
            (header::COOKIE, "x=1; t=cookie.tok"),
        ]);
        assert_eq!(
            token(&h, Some("token=q.tok"), Some("t")).as_deref(),
            Some("a.b.c")
        );
        assert_eq!(selected(&h), Some("heartwire"));
        assert!(offers_heartwire(&h));

        let h = headers(&[(header::COOKIE, "x=1; t=cookie.tok")]);
        assert_eq!(
            token(&h, Some("a=1&token=q%2Etok"), Some("t")).as_deref(),
            Some("q.tok")
        );
        assert_eq!(
            token(&h, Some("a=1"), Some("t")).as_deref(),
            Some("cookie.tok")
        );
        // A cookie is read only when the route names one.
        assert_eq!(token(&h, None, None), None);
        assert_eq!(selected(&h), None);
    }

    #[test]
    fn a_bearer_offered_alone_is_selected_and_empty_tokens_are_none() {
        let h = headers(&[(header::SEC_WEBSOCKET_PROTOCOL, "heartwire.bearer.x")]);
        assert_eq!(selected(&h), Some("heartwire.bearer.x"));
        assert!(!offers_heartwire(&h));
        let h = headers(&[(header::SEC_WEBSOCKET_PROTOCOL, "heartwire.bearer.")]);
        assert_eq!(token(&h, Some("token=q"), None), None);
        assert_eq!(token(&HeaderMap::new(), Some("token="), None), None);
        assert_eq!(token(&HeaderMap::new(), Some("token=%FF"), None), None);
    }
}
