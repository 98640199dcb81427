//! One verification key as loaded from its file: its `kid`, the one algorithm it verifies
//! (pinned: a token's header never chooses it), the key itself and a fingerprint.
//!
//! What a file must hold:
//! - HS256/HS384/HS512: the secret's bytes as they are (not base64-decoded), less one
//!   trailing newline; at least as long as the hash (32, 48, 64 bytes: RFC 7518 §3.2);
//! - RS*/PS* (RSA, 2048 to 4096 bits), ES256 (P-256), ES384 (P-384), EdDSA (Ed25519): one
//!   PEM public key (`BEGIN PUBLIC KEY`, or `BEGIN RSA PUBLIC KEY` for RSA).

use std::fmt;
use std::str::FromStr;

use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};

/// Every algorithm heartwire verifies, spelled as JWT spells them.
pub const ALGORITHMS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

/// The shortest RSA modulus accepted, in bits.
const MIN_RSA_BITS: usize = 2048;

/// How to turn a private key file into the public key heartwire wants.
const PUBOUT: &str = "`openssl pkey -in private.pem -pubout -out public.pem`";

/// A loaded key. Equal keys have the same kid, algorithm and key material.
#[derive(Clone)]
pub struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    decoding: DecodingKey,
    /// SHA-256 of the key material (the secret, or the public key's DER, so re-wrapping a
    /// PEM file does not count as a new key).
    fingerprint: [u8; 32],
}

impl Key {
    /// The key `bytes` (a file's content) hold for `algorithm`, or what is wrong with them,
    /// as a phrase to follow the file's name ("holds 12 bytes, fewer than ...").
    pub fn from_bytes(
        kid: Option<String>,
        algorithm: Algorithm,
        bytes: &[u8],
    ) -> Result<Self, String> {
        let decoding = match family(algorithm) {
            AlgorithmFamily::Hmac => DecodingKey::from_secret(secret(algorithm, bytes)?),
            family => public_key(algorithm, family, bytes)?,
        };
        let fingerprint = match decoding.kind() {
            DecodingKeyKind::SecretOrDer(material) => Sha256::digest(material),
            DecodingKeyKind::RsaModulusExponent { n, e } => {
                Sha256::new().chain_update(n).chain_update(e).finalize()
            }
        }
        .into();
        Ok(Self {
            kid,
            algorithm,
            decoding,
            fingerprint,
        })
    }

    /// Its `kid`, if configured.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The one algorithm it verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The key for `jsonwebtoken::decode`.
    pub(super) fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.kid == other.kid
            && self.algorithm == other.algorithm
            && self.fingerprint == other.fingerprint
    }
}

impl Eq for Key {}

/// Never the key material, nor its fingerprint (for a secret, a hash is still a lead).
impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The algorithm `written` names, or why it is not one heartwire verifies.
pub fn parse_algorithm(written: &str) -> Result<Algorithm, String> {
    if written.eq_ignore_ascii_case("none") {
        return Err(format!(
            "`{written}` means unsigned tokens, which anyone can forge: heartwire never accepts them; choose a signing algorithm, e.g. \"ES256\" (key pair) or \"HS256\" (shared secret)"
        ));
    }
    if let Ok(algorithm) = Algorithm::from_str(written) {
        return Ok(algorithm);
    }
    let list = ALGORITHMS.join(", ");
    match ALGORITHMS.iter().find(|a| a.eq_ignore_ascii_case(written)) {
        Some(name) => Err(format!(
            "`{written}`: algorithm names are case-sensitive, as in a JWT header: write \"{name}\""
        )),
        None => Err(format!(
            "`{}` is not an algorithm heartwire verifies: write one of {list}",
            written.escape_debug()
        )),
    }
}

/// An HMAC secret: the bytes less one trailing newline, at least as long as the hash.
fn secret(algorithm: Algorithm, bytes: &[u8]) -> Result<&[u8], String> {
    let secret = bytes
        .strip_suffix(b"\r\n")
        .or_else(|| bytes.strip_suffix(b"\n"))
        .unwrap_or(bytes);
    if contains(secret, b"-----BEGIN") {
        return Err(format!(
            "is a PEM file, but {algorithm:?} takes a shared secret: a public key used as an HMAC secret lets anyone who has it mint tokens; for a key pair set the key pair's algorithm (e.g. \"RS256\", \"ES256\", \"EdDSA\")"
        ));
    }
    let min = match algorithm {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    };
    if secret.len() < min {
        return Err(format!(
            "holds {} bytes (less one trailing newline), fewer than the {min} {algorithm:?} needs: a secret shorter than the hash can be guessed offline from one token (RFC 7518 §3.2); make one with `openssl rand -base64 48 > FILE`",
            secret.len()
        ));
    }
    Ok(secret)
}

/// A PEM public key for `algorithm`, with a reason naming what the file holds instead.
fn public_key(
    algorithm: Algorithm,
    family: AlgorithmFamily,
    bytes: &[u8],
) -> Result<DecodingKey, String> {
    let labels = pem_labels(bytes);
    let want = match family {
        AlgorithmFamily::Rsa => "an RSA public key",
        AlgorithmFamily::Ec if algorithm == Algorithm::ES384 => "a P-384 EC public key",
        AlgorithmFamily::Ec => "a P-256 EC public key",
        _ => "an Ed25519 public key",
    };
    if let Some(private) = labels.iter().find(|l| l.contains("PRIVATE KEY")) {
        return Err(format!(
            "is a private key (BEGIN {private}): give heartwire only the public key, made with {PUBOUT}; the private key stays with the backend that mints tokens"
        ));
    }
    match labels.as_slice() {
        [] => {
            return Err(format!(
                "is not PEM (no -----BEGIN PUBLIC KEY----- line): {algorithm:?} takes {want} in PEM, e.g. made with {PUBOUT}"
            ));
        }
        [label] if label == "CERTIFICATE" => {
            return Err(
                "is a certificate: give its public key, made with `openssl x509 -in cert.pem -pubkey -noout > public.pem`".to_owned()
            );
        }
        [label] if label == "PUBLIC KEY" || label == "RSA PUBLIC KEY" => {}
        [label] => {
            return Err(format!(
                "is a PEM {label}, not a public key: {algorithm:?} takes {want} (BEGIN PUBLIC KEY)"
            ));
        }
        more => {
            return Err(format!(
                "holds {} PEM blocks: give exactly one public key per [[auth.key]]",
                more.len()
            ));
        }
    }
    let parsed = match family {
        AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(bytes),
        AlgorithmFamily::Ec => DecodingKey::from_ec_pem(bytes),
        _ => DecodingKey::from_ed_pem(bytes),
    };
    let mismatch = || match other_family(bytes, family) {
        Some(other) => format!(
            "is {other}, not {want}: set the algorithm that matches the key, or give the key that matches {algorithm:?}"
        ),
        None => format!("is not {want} that heartwire can read ({algorithm:?} needs one)"),
    };
    let key = parsed.map_err(|_| mismatch())?;
    match (family, key.kind()) {
        (AlgorithmFamily::Rsa, DecodingKeyKind::SecretOrDer(der)) => {
            // The verifier parses the key per token and fails every token on a key it
            // cannot use (e.g. over 4096 bits): find that out now, with the reason.
            let rsa = rsa::RsaPublicKey::from_pkcs1_der(der)
                .map_err(|err| format!("is not an RSA public key heartwire can use ({err})"))?;
            let bits = rsa.size() * 8;
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "is a {bits}-bit RSA key: keys under {MIN_RSA_BITS} bits can be factored; use a key of {MIN_RSA_BITS} bits or more"
                ));
            }
        }
        _ => {
            // EC and Ed keys are parsed when a verifier is built: build one (the probe
            // signature is wrong, so only a key error makes this fail). For ES256 this
            // is what refuses a P-384 key, and the other way round.
            if jsonwebtoken::crypto::verify("AA", b"probe", &key, algorithm).is_err() {
                return Err(mismatch());
            }
        }
    }
    Ok(key)
}

/// What kind of public key `bytes` hold, when it is not `family`.
fn other_family(bytes: &[u8], family: AlgorithmFamily) -> Option<&'static str> {
    [
        (AlgorithmFamily::Rsa, "an RSA public key (RS*, PS*)"),
        (AlgorithmFamily::Ec, "an EC public key (ES256, ES384)"),
        (AlgorithmFamily::Ed, "an Ed25519 public key (EdDSA)"),
    ]
    .into_iter()
    .filter(|(f, _)| *f != family)
    .find(|(f, _)| match f {
        AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(bytes).is_ok(),
        AlgorithmFamily::Ec => DecodingKey::from_ec_pem(bytes).is_ok(),
        _ => DecodingKey::from_ed_pem(bytes).is_ok(),
    })
    .map(|(_, name)| name)
}

/// The kind of key `algorithm` takes (jsonwebtoken keeps its own mapping private).
fn family(algorithm: Algorithm) -> AlgorithmFamily {
    match algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => AlgorithmFamily::Hmac,
        Algorithm::ES256 | Algorithm::ES384 => AlgorithmFamily::Ec,
        Algorithm::EdDSA => AlgorithmFamily::Ed,
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => AlgorithmFamily::Rsa,
    }
}

/// The labels of the PEM blocks in `bytes` (`PUBLIC KEY` for `-----BEGIN PUBLIC KEY-----`).
fn pem_labels(bytes: &[u8]) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN ";
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|line| line.trim().strip_prefix(BEGIN)?.strip_suffix("-----"))
        .map(str::to_owned)
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
