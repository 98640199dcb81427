//! Who a verified token says its holder is: the subject, when the connection must close,
//! the string claims channel templates may use, and the channels it may hold.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use super::channels::ChannelClaim;
use super::error::AuthError;

/// At most this many string claims are kept (besides `sub`); the rest are ignored.
pub const MAX_CLAIMS: usize = 64;
/// A string claim whose name or value is longer than this (bytes) is ignored.
pub const MAX_CLAIM_LEN: usize = 256;

/// A verified token's holder. Holds no part of the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The `sub` claim, when the token has one.
    pub sub: Option<String>,
    /// `exp` plus the leeway: when the daemon closes the connection unless the token is
    /// refreshed. `None` for a token without `exp` (only with `require_exp = false`).
    pub expires: Option<SystemTime>,
    /// Top-level string claims other than `sub`, for channel templates: at most
    /// [`MAX_CLAIMS`] (the first by name), names and values at most [`MAX_CLAIM_LEN`]
    /// bytes; claims of other types and longer ones are ignored.
    pub claims: BTreeMap<String, String>,
    /// The `channels` claim; `None` when the token has none (every channel allowed).
    pub channels: Option<ChannelClaim>,
}

impl Identity {
    /// The string claim `name` (`sub` included), for a `{name}` template.
    pub fn claim(&self, name: &str) -> Option<&str> {
        if name == "sub" {
            return self.sub.as_deref();
        }
        self.claims.get(name).map(String::as_str)
    }

    /// How long from now until [`expires`](Self::expires) (zero when past); `None`
    /// without `exp`.
    pub fn remaining(&self) -> Option<Duration> {
        self.expires
            .map(|at| at.duration_since(SystemTime::now()).unwrap_or_default())
    }

    /// Whether the token lets its holder subscribe to `channel`: always, without a
    /// `channels` claim.
    pub fn allows(&self, channel: &str) -> bool {
        self.channels.as_ref().is_none_or(|c| c.allows(channel))
    }

    /// [`allows`](Self::allows) as a refusal naming the channel.
    pub fn authorize(&self, channel: &str) -> Result<(), AuthError> {
        if self.allows(channel) {
            Ok(())
        } else {
            Err(AuthError::ChannelNotAllowed(channel.to_owned()))
        }
    }

    /// The identity in a payload whose signature and registered claims were verified.
    pub(super) fn from_claims(
        claims: &Map<String, Value>,
        leeway: Duration,
    ) -> Result<Self, AuthError> {
        let sub = match claims.get("sub") {
            None => None,
            Some(Value::String(sub)) => Some(sub.clone()),
            Some(_) => return Err(AuthError::Malformed("the sub claim is not a string")),
        };
        let expires = match claims.get("exp") {
            None => None,
            Some(exp) => Some(expiry(exp, leeway)?),
        };
        let channels = claims
            .get("channels")
            .map(ChannelClaim::parse)
            .transpose()?;
        let mut strings: BTreeMap<String, String> = claims
            .iter()
            .filter(|(name, _)| name.as_str() != "sub" && name.len() <= MAX_CLAIM_LEN)
            .filter_map(|(name, value)| match value {
                Value::String(v) if v.len() <= MAX_CLAIM_LEN => Some((name.clone(), v.clone())),
                _ => None,
            })
            .collect();
        // Bounded by the token's size already; this keeps an identity's memory small and
        // the kept set independent of the JSON's order.
        while strings.len() > MAX_CLAIMS {
            strings.pop_last();
        }
        Ok(Self {
            sub,
            expires,
            claims: strings,
            channels,
        })
    }
}

/// `exp` (seconds since the epoch, read as the verifier read it: an integer, or a
/// non-negative number rounded) plus `leeway`.
fn expiry(exp: &Value, leeway: Duration) -> Result<SystemTime, AuthError> {
    const BAD: AuthError = AuthError::Malformed("the exp claim is not a time in seconds");
    let secs = match exp.as_u64() {
        Some(secs) => secs,
        None => match exp.as_f64() {
            // The range check makes the cast exact enough: a second, and no wrap.
            Some(x) if x.is_finite() && x >= 0.0 && x < u64::MAX as f64 => x.round() as u64,
            _ => return Err(BAD),
        },
    };
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .and_then(|t| t.checked_add(leeway))
        .ok_or(BAD)
}
