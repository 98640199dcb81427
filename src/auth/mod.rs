//! Subscriber authentication: JWTs verified against the keys of `[auth]`.
//!
//! [`RawAuth`] mirrors `[auth]` and validates into a [`Verifier`] (every problem at once,
//! like [`RawPolicy`](crate::heartbeat::RawPolicy)); [`Verifier::verify`] turns a token
//! into an [`Identity`] (subject, expiry, string claims, allowed channels) or an
//! [`AuthError`] that carries its HTTP status and metrics label. One [`Key`] per
//! `[[auth.key]]`, its algorithm pinned. No I/O beyond reading key files at validation.

mod channels;
mod error;
mod identity;
mod key;
mod raw;
mod verifier;

#[cfg(test)]
mod tests;

pub use channels::{ChannelClaim, MAX_ENTRY_LEN};
pub use error::{AuthError, MAX_TOKEN_LEN};
pub use identity::{Identity, MAX_CLAIM_LEN, MAX_CLAIMS};
pub use key::{ALGORITHMS, Key};
pub use raw::{DEFAULT_LEEWAY, MAX_KEY_FILE, MAX_KEYS, MAX_KID_LEN, MAX_LEEWAY, RawAuth, RawKey};
pub use verifier::Verifier;
