//! Why a subscriber's token was refused: the HTTP status, the metrics label and a message
//! that says what is wrong and how to fix it, never quoting the token or any key.

use crate::close;

/// The longest token verified, in bytes (8 KiB, as the issue asks): a longer one is
/// refused as [`AuthError::TooLarge`] before any decoding. Room for a few hundred
/// channel names (the handshake's own header limits apply first).
pub const MAX_TOKEN_LEN: usize = 8192;

/// How many characters of a value taken from a token (a `kid`, a claim name, a channel)
/// a message quotes: enough to recognise it, too few to flood a log line.
const SHOWN: usize = 64;

/// A refused token. Built by [`Verifier::verify`](super::Verifier::verify), and by the
/// caller for what only it can decide (a missing token, a claim its templates need, a
/// channel the token does not allow). A value taken from a token (kid, claim name,
/// channel) is shown quoted, escaped and cut to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token at all (or an empty one).
    #[error("no token: this route requires a signed JWT; send one with the connection")]
    Missing,
    /// Longer than [`MAX_TOKEN_LEN`]; refused before any decoding.
    #[error(
        "token is {len} bytes, more than the {MAX_TOKEN_LEN} allowed: keep its claims small (a `prefix.*` pattern instead of a long channel list)"
    )]
    TooLarge {
        /// The token's length in bytes.
        len: usize,
    },
    /// Not a JWS compact token: bad base64, bad JSON, wrong shape or a claim of the wrong type.
    #[error(
        "malformed token ({0}): send a signed JWT in compact form, three base64url parts joined by dots"
    )]
    Malformed(&'static str),
    /// The header names a `kid` no configured key has.
    #[error(
        "no key has kid {}: the token was signed with a key heartwire does not know; add it as an [[auth.key]] with that kid, or mint with a configured one",
        shown(.0)
    )]
    UnknownKey(String),
    /// The header's `alg` is `none`, unknown, or not the algorithm pinned for its key.
    #[error("{0}")]
    Algorithm(String),
    /// The signature does not verify against any key the token may use.
    #[error(
        "the signature does not verify against the configured keys: the token was signed with another key, or altered"
    )]
    BadSignature,
    /// `exp` is past, beyond the leeway.
    #[error("the token expired (its exp is past, beyond the leeway): mint a fresh one")]
    Expired,
    /// `nbf` is in the future, beyond the leeway.
    #[error(
        "the token is not valid yet (its nbf is in the future, beyond the leeway): check the clocks of the minting backend and of heartwire"
    )]
    NotYetValid,
    /// `iss` missing or not `auth.issuer`.
    #[error("the token's iss is missing or is not auth.issuer: mint tokens with that issuer")]
    Issuer,
    /// `aud` missing or not `auth.audience` (or present while no audience is configured).
    #[error(
        "the token's aud does not match auth.audience: mint tokens for that audience (a token that names an audience is refused while auth.audience is unset)"
    )]
    Audience,
    /// A claim the route needs is absent (`exp`, or `sub` for a `{sub}` template).
    #[error(
        "the token has no {} claim, which this route requires: mint tokens with it",
        shown(.0)
    )]
    MissingClaim(String),
    /// A refreshed token names another `sub` than the connection's.
    #[error(
        "the new token's sub is not the connection's: a refresh keeps the user; reconnect to change users"
    )]
    SubjectChanged,
    /// The token's `channels` claim does not allow this channel.
    #[error(
        "channel {} is not allowed by the token's channels claim: mint a token that lists it (a name, or a `prefix.*` pattern)",
        shown(.0)
    )]
    ChannelNotAllowed(String),
}

impl AuthError {
    /// Every [`label`](Self::label), so metrics can export each at 0 from the start.
    pub const ALL_LABELS: [&'static str; 8] = [
        "missing",
        "too_large",
        "invalid",
        "expired",
        "not_yet_valid",
        "issuer",
        "audience",
        "channel",
    ];

    /// The HTTP status a handshake answers: 401 when there was no token to judge (the
    /// client should authenticate), 403 when the token was judged and refused.
    pub fn status(&self) -> u16 {
        match self {
            Self::Missing => 401,
            _ => 403,
        }
    }

    /// The close for this refusal, wherever a token is refused on a WebSocket (a handshake
    /// answered with a close, a refresh): 4001 when it expired (a fresh token fixes it),
    /// 4003 otherwise, and the reason `token refused (<label>): <message>`, `message` being
    /// the refusal's text as the HTTP answer's `error` says it.
    pub fn close(&self, message: &str) -> (u16, String) {
        let code = match self {
            Self::Expired => close::TOKEN_EXPIRED,
            _ => close::REFUSED,
        };
        (code, format!("token refused ({}): {message}", self.label()))
    }

    /// The metrics label: one of [`ALL_LABELS`](Self::ALL_LABELS). Every way a token can
    /// be forged or broken is `invalid`: the log line says which.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::TooLarge { .. } => "too_large",
            Self::Malformed(_)
            | Self::UnknownKey(_)
            | Self::Algorithm(_)
            | Self::BadSignature
            | Self::MissingClaim(_)
            | Self::SubjectChanged => "invalid",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Issuer => "issuer",
            Self::Audience => "audience",
            Self::ChannelNotAllowed(_) => "channel",
        }
    }
}

/// `text` quoted with escapes (no control character reaches a log line), cut to [`SHOWN`]
/// characters with `...` after the closing quote when cut.
pub(super) fn shown(text: &str) -> String {
    let mut cut = text.chars();
    let head: String = cut.by_ref().take(SHOWN).collect();
    let more = if cut.next().is_some() { "..." } else { "" };
    format!("\"{}\"{more}", head.escape_debug())
}
