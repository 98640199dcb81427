//! The keys of `[auth]` and the rules a token must meet: one `verify` call answers who
//! its holder is, or why the token is refused.
//!
//! Choosing the key: a token whose header has a `kid` is verified with the key of that
//! kid only (none: [`AuthError::UnknownKey`]); a token without `kid` is tried against
//! every key whose pinned algorithm is the header's `alg`. Either way the header's `alg`
//! must equal the key's pinned algorithm, so `none` and HS/RS confusion (an HS256 token
//! "signed" with an RSA public key's bytes) never reach a signature check.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::{AuthError, MAX_TOKEN_LEN, shown};
use super::identity::Identity;
use super::key::Key;

/// Verifies subscriber tokens against the configured keys. Cheap to clone (one `Arc`);
/// equal when the keys (kid, algorithm, material) and the rules are, so a reload can
/// tell whether `[auth]` changed.
#[derive(Clone)]
pub struct Verifier(Arc<Inner>);

struct Inner {
    /// Each key with the validation rules for its algorithm, built once.
    keys: Vec<(Key, Validation)>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    require_exp: bool,
}

/// The JOSE header fields heartwire reads before choosing a key.
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    /// RFC 7515 §4.1.11: extensions the verifier must understand; heartwire knows none.
    #[serde(default)]
    crit: Option<Value>,
}

impl Verifier {
    /// A verifier over `keys` (at least one, kids distinct: [`RawAuth::validate`]
    /// checks that) with these rules. `leeway` counts in whole seconds.
    ///
    /// [`RawAuth::validate`]: super::RawAuth::validate
    pub(super) fn new(
        keys: Vec<Key>,
        issuer: Option<String>,
        audience: Option<String>,
        leeway: Duration,
        require_exp: bool,
    ) -> Self {
        let keys = keys
            .into_iter()
            .map(|key| {
                let mut rules = Validation::new(key.algorithm());
                rules.leeway = leeway.as_secs();
                rules.validate_exp = true;
                rules.validate_nbf = true;
                // iss and aud are checked by `claimed_for_us`, in a fixed order: jsonwebtoken
                // checks its required claims in a hash set's order, so a token missing
                // both exp and iss would get either refusal.
                rules.validate_aud = false;
                let required: &[&str] = if require_exp { &["exp"] } else { &[] };
                rules.set_required_spec_claims(required);
                (key, rules)
            })
            .collect();
        Self(Arc::new(Inner {
            keys,
            issuer,
            audience,
            leeway,
            require_exp,
        }))
    }

    /// How far `exp` and `nbf` may be off (clock skew); a connection stays open until
    /// its token's `exp` plus this.
    pub fn leeway(&self) -> Duration {
        self.0.leeway
    }

    /// The configured keys, in config order.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.0.keys.iter().map(|(key, _)| key)
    }

    /// Who `token` (a JWS compact token, as sent) says its holder is, or why it is
    /// refused. Tokens over [`MAX_TOKEN_LEN`] bytes are refused before any decoding.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::TooLarge { len: token.len() });
        }
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let header = header(token)?;
        let alg = algorithm(&header.alg)?;
        let candidates: Vec<&(Key, Validation)> = match &header.kid {
            Some(kid) => {
                let Some(found) = self
                    .0
                    .keys
                    .iter()
                    .find(|(k, _)| k.kid() == Some(kid.as_str()))
                else {
                    return Err(AuthError::UnknownKey(kid.clone()));
                };
                if found.0.algorithm() != alg {
                    return Err(AuthError::Algorithm(format!(
                        "the token's alg {alg:?} is not the {:?} pinned for kid {}: sign with the key's algorithm",
                        found.0.algorithm(),
                        shown(kid)
                    )));
                }
                vec![found]
            }
            None => self
                .0
                .keys
                .iter()
                .filter(|(k, _)| k.algorithm() == alg)
                .collect(),
        };
        if candidates.is_empty() {
            return Err(AuthError::Algorithm(format!(
                "no configured key verifies alg {alg:?}: sign with a configured key (with its kid in the header), or add the key to [[auth.key]]"
            )));
        }
        for (key, rules) in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, key.decoding(), rules) {
                Ok(data) => {
                    self.claimed_for_us(&data.claims)?;
                    return Identity::from_claims(&data.claims, self.0.leeway);
                }
                // Another key of the same algorithm may have signed it (rotation).
                Err(err) if matches!(err.kind(), ErrorKind::InvalidSignature) => {}
                Err(err) => return Err(refusal(err.kind())),
            }
        }
        Err(AuthError::BadSignature)
    }

    /// Whether a signed token's `iss` is `auth.issuer` (when set) and its `aud` names
    /// `auth.audience`: a string equal to it, or a list holding it. Without a configured
    /// audience a token that names one is refused (RFC 7519 §4.1.3); an empty list names
    /// none.
    fn claimed_for_us(&self, claims: &Map<String, Value>) -> Result<(), AuthError> {
        if let Some(issuer) = &self.0.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
        {
            return Err(AuthError::Issuer);
        }
        let ours = |aud: &Value| self.0.audience.as_deref().is_some_and(|a| aud == a);
        let accepted = match claims.get("aud") {
            None => self.0.audience.is_none(),
            Some(Value::Array(list)) if list.is_empty() => self.0.audience.is_none(),
            Some(Value::Array(list)) => list.iter().any(ours),
            Some(aud) => ours(aud),
        };
        if accepted {
            Ok(())
        } else {
            Err(AuthError::Audience)
        }
    }
}

/// The token's header, read before any key is chosen.
fn header(token: &str) -> Result<Header, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("not three parts joined by dots"));
    };
    let json = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthError::Malformed("the header is not base64url"))?;
    let header: Header = serde_json::from_slice(&json)
        .map_err(|_| AuthError::Malformed("the header is not a JSON object with an alg"))?;
    if header.crit.is_some() {
        return Err(AuthError::Malformed(
            "the header has crit extensions heartwire does not implement",
        ));
    }
    Ok(header)
}

/// The header's `alg`, refusing `none` and what heartwire does not verify.
fn algorithm(alg: &str) -> Result<Algorithm, AuthError> {
    if alg.eq_ignore_ascii_case("none") {
        return Err(AuthError::Algorithm(
            "the token's alg is `none` (unsigned), which heartwire never accepts: sign it with a configured key".to_owned(),
        ));
    }
    alg.parse().map_err(|_| {
        AuthError::Algorithm(format!(
            "the token's alg {} is not one heartwire verifies: sign with a configured key's algorithm",
            shown(alg)
        ))
    })
}

/// What a `jsonwebtoken` refusal means here.
fn refusal(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::Issuer,
        ErrorKind::InvalidAudience => AuthError::Audience,
        ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim.clone()),
        ErrorKind::InvalidClaimFormat(_) => {
            AuthError::Malformed("exp or nbf is not a time in seconds")
        }
        ErrorKind::InvalidAlgorithm => {
            AuthError::Algorithm("the token's alg is not its key's algorithm".to_owned())
        }
        ErrorKind::Base64(_) => AuthError::Malformed("a part is not base64url"),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            AuthError::Malformed("the payload is not a JSON object")
        }
        // The key was checked when loaded; a signature the key cannot even read (e.g.
        // an ECDSA signature of the wrong length) is a bad signature.
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidEddsaKey | ErrorKind::InvalidRsaKey(_) => {
            AuthError::BadSignature
        }
        _ => AuthError::Malformed("not a JWS compact token"),
    }
}

/// Never key material: the kids and algorithms, and the rules.
impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys().collect::<Vec<_>>())
            .field("issuer", &self.0.issuer)
            .field("audience", &self.0.audience)
            .field("leeway", &self.0.leeway)
            .field("require_exp", &self.0.require_exp)
            .finish()
    }
}

impl PartialEq for Verifier {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (&*self.0, &*other.0);
        Arc::ptr_eq(&self.0, &other.0)
            || (a.keys.len() == b.keys.len()
                && a.keys.iter().zip(&b.keys).all(|(x, y)| x.0 == y.0)
                && a.issuer == b.issuer
                && a.audience == b.audience
                && a.leeway == b.leeway
                && a.require_exp == b.require_exp)
    }
}

impl Eq for Verifier {}
