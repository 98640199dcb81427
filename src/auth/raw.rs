//! `[auth]` as written, and its validation into a [`Verifier`]: every problem at once,
//! each naming its key (`auth.key[1].file`), the value, and how to fix it.
//!
//! ```toml
//! [auth]
//! issuer = "https://app.example"   # optional: tokens must carry this iss
//! audience = "heartwire"           # optional: one audience; tokens must list it in aud
//! leeway = "30s"                   # clock skew allowed on exp and nbf (at most 5m)
//! require_exp = true               # refuse tokens without exp
//!
//! [[auth.key]]
//! kid = "2025-06"                  # optional: matched against the token header's kid
//! algorithm = "ES256"
//! file = "keys/app.pub"            # PEM public key, or the HS* secret itself
//! ```
//!
//! Keys need no `kid`, even several: a token without `kid` is tried against every key
//! whose algorithm is the header's `alg` (HS256 rotation without kids works), and a token
//! with a `kid` is verified with that key only. Kids, when given, are distinct.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::key::{Key, parse_algorithm};
use super::verifier::Verifier;
use crate::duration::HumanDuration;

/// Default `auth.leeway`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// The longest `auth.leeway`: skew beyond this is a clock to fix, not to tolerate.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);
/// The largest key file read, in bytes: a secret or one PEM public key is far smaller.
pub const MAX_KEY_FILE: usize = 64 * 1024;
/// The most `[[auth.key]]` entries: a token without `kid` may be tried against each.
pub const MAX_KEYS: usize = 16;
/// The longest `kid`, in bytes.
pub const MAX_KID_LEN: usize = 256;

/// `[auth]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    /// The `iss` every token must carry, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The one audience heartwire answers to, when set: a token's `aud` (a string, or a
    /// list) must contain it. Unset, a token that names any audience is refused (RFC 7519
    /// §4.1.3: a recipient not named in `aud` rejects the token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, whole seconds, at most [`MAX_LEEWAY`].
    pub leeway: HumanDuration,
    /// Whether a token without `exp` is refused.
    pub require_exp: bool,
    /// `[[auth.key]]`: the keys tokens may be signed with. None: no verifier.
    #[serde(rename = "key", skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<RawKey>,
}

/// One `[[auth.key]]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// Matched against a token header's `kid`; optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The one algorithm this key verifies, as JWT spells it (`HS256`, `ES256`, `EdDSA`).
    pub algorithm: String,
    /// The file holding the HS* secret or the PEM public key, as written; the caller's
    /// `resolve` finds it.
    pub file: PathBuf,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            leeway: DEFAULT_LEEWAY.into(),
            require_exp: true,
            keys: Vec::new(),
        }
    }
}

impl RawAuth {
    /// The verifier this section describes (`None` when it configures no key), or every
    /// problem as (dotted key, what is wrong and how to fix it). `resolve` maps a key's
    /// `file` as written to the path to read, or says why it cannot.
    pub fn validate(
        &self,
        resolve: &dyn Fn(&Path) -> Result<PathBuf, String>,
    ) -> Result<Option<Verifier>, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let mut refuse = |key: String, reason: String| problems.push((key, reason));
        let leeway = self.leeway.get();
        if leeway > MAX_LEEWAY {
            refuse(
                "auth.leeway".into(),
                format!(
                    "`{}` is longer than the 5m allowed: leeway absorbs clock skew, and more keeps expired tokens alive; synchronise the clocks (NTP) instead",
                    self.leeway
                ),
            );
        } else if leeway.subsec_nanos() != 0 {
            refuse(
                "auth.leeway".into(),
                format!(
                    "`{}` is not a whole number of seconds, and JWT times count in seconds: write e.g. \"30s\"",
                    self.leeway
                ),
            );
        }
        for (name, value, example) in [
            ("issuer", &self.issuer, "\"https://app.example\""),
            ("audience", &self.audience, "\"heartwire\""),
        ] {
            if value.as_ref().is_some_and(|v| v.trim().is_empty()) {
                refuse(
                    format!("auth.{name}"),
                    format!(
                        "is empty: set the value your tokens carry (e.g. {example}), or remove the line"
                    ),
                );
            }
        }
        if self.keys.is_empty() {
            if self.issuer.is_some() || self.audience.is_some() {
                refuse(
                    "auth.key".into(),
                    "[auth] sets issuer or audience but no [[auth.key]]: add the keys tokens are signed with (algorithm and file), or remove [auth]".into(),
                );
            }
            return if problems.is_empty() {
                Ok(None)
            } else {
                Err(problems)
            };
        }
        if self.keys.len() > MAX_KEYS {
            refuse(
                "auth.key".into(),
                format!(
                    "{} keys, more than the {MAX_KEYS} allowed (a token without kid may be tried against each): rotation needs two or three; remove retired keys",
                    self.keys.len()
                ),
            );
        }
        let mut keys = Vec::with_capacity(self.keys.len());
        for (i, raw) in self.keys.iter().enumerate() {
            let at = |field: &str| format!("auth.key[{i}].{field}");
            if let Some(kid) = &raw.kid {
                if let Err(reason) = check_kid(kid) {
                    refuse(at("kid"), reason);
                } else if let Some(j) = self.keys[..i]
                    .iter()
                    .position(|k| k.kid.as_ref() == Some(kid))
                {
                    refuse(
                        at("kid"),
                        format!(
                            "`{kid}` is already the kid of auth.key[{j}]: give each key its own kid (e.g. the date it was made)"
                        ),
                    );
                }
            }
            let algorithm = parse_algorithm(&raw.algorithm)
                .map_err(|reason| refuse(at("algorithm"), reason))
                .ok();
            let bytes = read(&raw.file, resolve)
                .map_err(|reason| refuse(at("file"), reason))
                .ok();
            if let (Some(algorithm), Some(bytes)) = (algorithm, bytes) {
                match Key::from_bytes(raw.kid.clone(), algorithm, &bytes) {
                    Ok(key) => keys.push(key),
                    Err(reason) => {
                        refuse(at("file"), format!("`{}` {reason}", raw.file.display()));
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Some(Verifier::new(
            keys,
            self.issuer.clone(),
            self.audience.clone(),
            leeway,
            self.require_exp,
        )))
    }
}

/// Why `kid` cannot be a key id, if it cannot.
fn check_kid(kid: &str) -> Result<(), String> {
    if kid.trim().is_empty() {
        return Err("is empty: set the kid your tokens' header carries, or remove the line".into());
    }
    if kid.len() > MAX_KID_LEN || kid.chars().any(char::is_control) || kid.trim() != kid {
        return Err(format!(
            "`{}` is not a usable kid: at most {MAX_KID_LEN} bytes, no control characters, no spaces around it",
            kid.escape_debug()
        ));
    }
    Ok(())
}

/// The content of the key file `written`, read to at most [`MAX_KEY_FILE`] bytes.
fn read(
    written: &Path,
    resolve: &dyn Fn(&Path) -> Result<PathBuf, String>,
) -> Result<Vec<u8>, String> {
    let quoted = format!("`{}`", written.display());
    let path = resolve(written).map_err(|why| {
        if why.contains(&quoted) {
            why
        } else {
            format!("{quoted} {why}")
        }
    })?;
    let shown = if path == written {
        quoted
    } else {
        format!("{quoted} ({})", path.display())
    };
    let fix = "check the path, and that heartwire's user may read it";
    // A FIFO or a device would block or never end: only a regular file is read.
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => return Err(format!("{shown} is not a regular file: {fix}")),
        Err(err) => return Err(format!("{shown} cannot be read ({err}): {fix}")),
    }
    let mut bytes = Vec::new();
    File::open(&path)
        .and_then(|file| file.take(MAX_KEY_FILE as u64 + 1).read_to_end(&mut bytes))
        .map_err(|err| format!("{shown} cannot be read ({err}): {fix}"))?;
    if bytes.len() > MAX_KEY_FILE {
        return Err(format!(
            "{shown} is larger than {} KiB: a key file holds one secret or one PEM public key; {fix}",
            MAX_KEY_FILE / 1024
        ));
    }
    Ok(bytes)
}
