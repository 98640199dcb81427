//! The optional `channels` claim: which channels a token lets its holder subscribe to.
//!
//! The claim is a JSON array of strings, each one of:
//! - a channel name, matched exactly: `"user.42"`;
//! - `prefix.*`: every channel below `prefix.` (one segment or more): `"room.*"` matches
//!   `room.7` and `room.7.typing`, not `room` nor `roomy.1`;
//! - `*` alone: every channel (the same as leaving the claim out, said explicitly).
//!
//! `*` anywhere else (`user.*.inbox`, `room*`, `*.x`) is refused, and so is an empty
//! entry, an empty segment before the `*` (`a..*`), one over [`MAX_ENTRY_LEN`] bytes, or
//! one with whitespace or control characters: the token is then invalid as a whole,
//! since a backend that mints a pattern heartwire cannot read has a bug worth seeing. An
//! empty list allows no channel. Entries are not checked against the channel-name
//! charset: a name no channel can have simply matches nothing.

use std::collections::BTreeSet;

use serde_json::Value;

use super::error::AuthError;

/// The longest entry of a `channels` claim, in bytes.
pub const MAX_ENTRY_LEN: usize = 256;

/// A token's `channels` claim, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelClaim {
    /// `*` alone was listed.
    any: bool,
    /// Names matched exactly.
    names: BTreeSet<String>,
    /// Patterns without their `*`, each ending in a dot (`room.`).
    prefixes: BTreeSet<String>,
}

impl ChannelClaim {
    /// Whether this claim lets a subscriber hold `channel`.
    pub fn allows(&self, channel: &str) -> bool {
        self.any
            || self.names.contains(channel)
            || self
                .prefixes
                .iter()
                .any(|p| channel.len() > p.len() && channel.starts_with(p.as_str()))
    }

    /// The claim's value as the token carries it: an array of names and patterns.
    pub(super) fn parse(value: &Value) -> Result<Self, AuthError> {
        let Value::Array(entries) = value else {
            return Err(AuthError::Malformed(
                "the channels claim is not a list of strings",
            ));
        };
        let mut claim = Self::default();
        for entry in entries {
            let Value::String(entry) = entry else {
                return Err(AuthError::Malformed(
                    "the channels claim is not a list of strings",
                ));
            };
            claim.add(entry)?;
        }
        Ok(claim)
    }

    fn add(&mut self, entry: &str) -> Result<(), AuthError> {
        if entry.is_empty() || entry.len() > MAX_ENTRY_LEN {
            return Err(AuthError::Malformed(
                "a channels entry is empty or longer than 256 bytes",
            ));
        }
        if entry.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(AuthError::Malformed(
                "a channels entry holds whitespace or a control character",
            ));
        }
        if entry == "*" {
            self.any = true;
            return Ok(());
        }
        let star =
            "a channels entry has a `*` that is not the whole last segment (write `prefix.*`)";
        match entry.strip_suffix('*') {
            Some(prefix) => {
                let stem = prefix.strip_suffix('.').ok_or(AuthError::Malformed(star))?;
                if stem.is_empty() || stem.ends_with('.') || stem.contains('*') {
                    return Err(AuthError::Malformed(star));
                }
                self.prefixes.insert(prefix.to_owned());
            }
            None if entry.contains('*') => return Err(AuthError::Malformed(star)),
            None => {
                self.names.insert(entry.to_owned());
            }
        }
        Ok(())
    }
}
