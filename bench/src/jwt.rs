//! Subscriber tokens for routes with `auth = "jwt"`: one token per connection, `sub` the
//! connection's index, signed with a test key (tests/keys/) the daemon is configured with.

use std::path::PathBuf;

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde::Serialize;

/// The signing algorithm of `--jwt-alg`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// No token (`{jwt}` in a path is left empty).
    None,
    /// HMAC-SHA256 with a shared secret file.
    Hs256,
    /// ECDSA P-256 with a PKCS#8 PEM private key.
    Es256,
    /// RSA PKCS#1 v1.5 SHA-256 with a PEM private key.
    Rs256,
}

/// Token settings every scenario shares.
#[derive(clap::Args, Debug, Clone)]
pub struct JwtArgs {
    /// Algorithm of the tokens put where a path says `{jwt}`.
    #[arg(long, value_enum, default_value = "none")]
    pub jwt_alg: Alg,
    /// Signing key: the HS256 secret file or the PEM private key.
    #[arg(long)]
    pub jwt_key: Option<PathBuf>,
    /// Token lifetime, seconds.
    #[arg(long, default_value_t = 3600)]
    pub jwt_ttl: u64,
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
}

/// Signs one token per connection.
pub struct Minter {
    header: Header,
    key: EncodingKey,
    exp: u64,
}

impl Minter {
    /// The minter `args` ask for, `None` for `--jwt-alg none`.
    pub fn from_args(args: &JwtArgs) -> anyhow::Result<Option<Self>> {
        let alg = match args.jwt_alg {
            Alg::None => return Ok(None),
            Alg::Hs256 => Algorithm::HS256,
            Alg::Es256 => Algorithm::ES256,
            Alg::Rs256 => Algorithm::RS256,
        };
        let path = args.jwt_key.as_ref().context("--jwt-alg needs --jwt-key")?;
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let key = match args.jwt_alg {
            // The daemon uses the file's bytes less one trailing newline.
            Alg::Hs256 => EncodingKey::from_secret(bytes.strip_suffix(b"\n").unwrap_or(&bytes)),
            Alg::Es256 => EncodingKey::from_ec_pem(&bytes)?,
            Alg::Rs256 => EncodingKey::from_rsa_pem(&bytes)?,
            Alg::None => return Ok(None),
        };
        let now = crate::stats::now_ns() / 1_000_000_000;
        Ok(Some(Self {
            header: Header::new(alg),
            key,
            exp: now + args.jwt_ttl,
        }))
    }

    /// A token with `sub` = `sub`.
    pub fn mint(&self, sub: &str) -> anyhow::Result<String> {
        let claims = Claims { sub, exp: self.exp };
        encode(&self.header, &claims, &self.key).context("signing a token")
    }
}

/// `path` with `{i}` replaced by the connection index and `{jwt}` by a token whose `sub`
/// is that index.
pub fn expand(path: &str, i: usize, minter: Option<&Minter>) -> anyhow::Result<String> {
    let mut out = path.replace("{i}", &i.to_string());
    if out.contains("{jwt}") {
        let token = match minter {
            Some(m) => m.mint(&i.to_string())?,
            None => String::new(),
        };
        out = out.replace("{jwt}", &token);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_get_index_and_token() {
        assert_eq!(expand("/u?u={i}", 7, None).unwrap(), "/u?u=7");
        let args = JwtArgs {
            jwt_alg: Alg::Hs256,
            jwt_key: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/keys/hs.secret").into()),
            jwt_ttl: 60,
        };
        let m = Minter::from_args(&args).unwrap().unwrap();
        let p = expand("/me?token={jwt}", 3, Some(&m)).unwrap();
        assert_eq!(p.matches('.').count(), 2, "{p}");
        assert!(!p.contains("{jwt}"));
    }
}
