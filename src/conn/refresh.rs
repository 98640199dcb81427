//! A token refresh: on a route that requires tokens, the text message `{"token": "..."}`
//! replaces the connection's token before it expires. Consumed like a pong: the route's
//! `on_message` never sees it.
//!
//! Each refresh costs a signature check (ES256: about 300 us), so a connection's refreshes
//! are rate limited: a burst of [`REFRESH_BURST`], then one per [`REFRESH_EVERY`]. One
//! over that is refused (4003) before any check.

use std::time::{Duration, Instant as StdInstant};

use serde::Deserialize;
use tokio::time::Instant;

use super::rate::admit;
use super::session::Session;
use crate::auth::AuthError;

/// What a client message was, as a refresh.
pub(super) enum Refresh {
    /// Not a refresh (or the connection holds no token): the route's action applies.
    NotOne,
    /// Accepted: the connection now runs out at this instant (`None`: never).
    Renewed(Option<StdInstant>),
    /// Refused: close as [`AuthError::close`] says.
    Refused(AuthError),
    /// Over the rate limit: refused, unchecked.
    TooSoon,
}

/// One refresh per this, sustained. Clients refresh once per token, shortly before it
/// expires, and tokens live minutes: only a client stuck in a loop comes near it.
pub(super) const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// Refreshes allowed at once, above the sustained rate.
pub(super) const REFRESH_BURST: u32 = 10;

/// A connection's token times, on the runtime's clock.
#[derive(Debug, Default)]
pub(super) struct TokenClock {
    /// When the token runs out (`exp` plus leeway); `None` without one.
    pub expires: Option<StdInstant>,
    /// The refresh rate limit's state (see [`admit`]).
    pub refresh_limit: Option<StdInstant>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Message<'a> {
    #[serde(borrow)]
    token: std::borrow::Cow<'a, str>,
}

/// Reads `text` as a refresh of the connection `s`, checked with its route's keys as
/// they are now (a reload may have rotated them): same `sub`, every channel still allowed.
/// `limit` is its rate limit's state (see [`admit`]).
pub(super) fn refresh(s: &Session, text: &str, limit: &mut Option<StdInstant>) -> Refresh {
    // Only connections that hold a token refresh it, and only this exact shape is one.
    if s.settings.auth.is_none() || !text.trim_start().starts_with('{') {
        return Refresh::NotOne;
    }
    let Ok(Message { token }) = serde_json::from_str::<Message>(text) else {
        return Refresh::NotOne;
    };
    let now = Instant::now().into_std();
    if !admit(limit, now, REFRESH_EVERY, REFRESH_BURST) {
        return Refresh::TooSoon;
    }
    let Some(auth) = s.route.settings().auth.clone() else {
        // The route no longer requires tokens: nothing left to expire.
        return Refresh::Renewed(None);
    };
    let identity = match auth.verifier.verify(&token) {
        Ok(identity) => identity,
        Err(e) => return Refresh::Refused(e),
    };
    if identity.sub.as_deref() != s.conn.user.as_deref() {
        return Refresh::Refused(AuthError::SubjectChanged);
    }
    if let Some(e) = s
        .conn
        .channels
        .iter()
        .find_map(|c| identity.authorize(c).err())
    {
        return Refresh::Refused(e);
    }
    Refresh::Renewed(identity.remaining().map(|left| now + left))
}
