//! `[server.tls]`: the certificate chain and private key the public listener serves,
//! read and checked whole (parsed, the key matching the certificate, within its validity)
//! so that a bad pair is refused like any invalid value, at start and on reload.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};

use super::bounded::read_bounded;
use super::token_file;

/// Largest `server.tls.cert_file` read: a chain of a few certificates is a few KiB.
pub const MAX_CERT_FILE: u64 = 1024 * 1024;
/// Largest `server.tls.key_file` read.
pub const MAX_KEY_FILE: u64 = 64 * 1024;
/// Most certificates in a chain: the leaf and its intermediates.
pub const MAX_CHAIN: usize = 16;

/// `[server.tls]` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert_file: PathBuf,
    pub(super) key_file: PathBuf,
}

/// `[server.tls]`: the pair, loaded and checked.
#[derive(Clone)]
pub struct TlsConfig {
    /// The PEM certificate chain, leaf first (as resolved: relative to the config file).
    pub cert_file: PathBuf,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// The chain and the key, ready to serve.
    pub key: Arc<CertifiedKey>,
    /// When the leaf certificate expires, in seconds since the Unix epoch.
    pub not_after: i64,
}

impl TlsConfig {
    /// Whole days from `now` until the certificate expires (0 on its last day).
    pub fn days_left(&self, now: SystemTime) -> i64 {
        (self.not_after - unix_seconds(now)).div_euclid(86_400)
    }

    /// The expiry as `YYYY-MM-DD HH:MM:SS UTC`.
    pub fn expires(&self) -> String {
        format_time(self.not_after)
    }
}

impl PartialEq for TlsConfig {
    /// The same files holding the same chain: the key matched it, so it is the same key.
    fn eq(&self, other: &Self) -> bool {
        self.cert_file == other.cert_file
            && self.key_file == other.key_file
            && self.key.cert == other.key.cert
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("TlsConfig")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("certificates", &self.key.cert.len())
            .field("not_after", &self.expires())
            .finish()
    }
}

/// The crypto the listener uses (ring), also used here to load the key, so a key that
/// loads here is one the listener can sign with.
pub fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Which key a problem is about, and why.
pub(super) type TlsProblem = (&'static str, String);

/// Reads and checks the pair `raw` names (relative paths from the config at `source`),
/// as of `now`.
pub(super) fn load(raw: &RawTls, source: &Path, now: SystemTime) -> Result<TlsConfig, TlsProblem> {
    const CERT: &str = "server.tls.cert_file";
    const KEY: &str = "server.tls.key_file";
    let cert_file = token_file::resolve_here(&raw.cert_file, source).map_err(|e| (CERT, e))?;
    let key_file = token_file::resolve_here(&raw.key_file, source).map_err(|e| (KEY, e))?;
    let chain = read_chain(&cert_file).map_err(|e| (CERT, e))?;
    let key = read_key(&key_file).map_err(|e| (KEY, e))?;
    let not_after = validity(&cert_file, &chain[0], now).map_err(|e| (CERT, e))?;
    let signing = provider().key_provider.load_private_key(key).map_err(|e| {
        (
            KEY,
            format!(
                "`{}`: the key cannot be used ({e}): use an RSA (2048 bits or more), ECDSA P-256/P-384 or Ed25519 key",
                key_file.display()
            ),
        )
    })?;
    let key = CertifiedKey::new(chain, signing);
    match key.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err((
                KEY,
                format!(
                    "`{}` does not match the certificate in `{}`: is it the key of that certificate (the first one in the file)?",
                    key_file.display(),
                    cert_file.display()
                ),
            ));
        }
        Err(e) => {
            return Err((
                CERT,
                format!("`{}`: the certificate is invalid: {e}", cert_file.display()),
            ));
        }
    }
    Ok(TlsConfig {
        cert_file,
        key_file,
        key: Arc::new(key),
        not_after,
    })
}

/// The certificates of a PEM file, leaf first.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = read_bounded(path, MAX_CERT_FILE)?;
    let mut chain = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&text) {
        let cert = cert.map_err(|e| format!("`{}` is not valid PEM: {e}", path.display()))?;
        if chain.len() == MAX_CHAIN {
            return Err(format!(
                "`{}` holds more than {MAX_CHAIN} certificates: it should hold the certificate and its intermediates",
                path.display()
            ));
        }
        chain.push(cert);
    }
    if chain.is_empty() {
        return Err(format!(
            "`{}` holds no PEM certificate (-----BEGIN CERTIFICATE-----): give the certificate chain, e.g. certbot's fullchain.pem",
            path.display()
        ));
    }
    Ok(chain)
}

/// The private key of a PEM file.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let text = read_bounded(path, MAX_KEY_FILE)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| match e {
        pem::Error::NoItemsFound => format!(
            "`{}` holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC): give the key, e.g. certbot's privkey.pem",
            path.display()
        ),
        e => format!("`{}` is not valid PEM: {e}", path.display()),
    })
}

/// The leaf's expiry (seconds since the epoch), or why it is not valid at `now`.
fn validity(path: &Path, leaf: &CertificateDer<'_>, now: SystemTime) -> Result<i64, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|e| {
        format!(
            "`{}`: the first certificate cannot be read: {e}",
            path.display()
        )
    })?;
    let validity = cert.validity();
    let (not_before, not_after) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    let now = unix_seconds(now);
    if now > not_after {
        return Err(format!(
            "`{}`: the certificate expired on {}: renew it",
            path.display(),
            format_time(not_after)
        ));
    }
    if now < not_before {
        return Err(format!(
            "`{}`: the certificate is not valid before {} (is the clock right?)",
            path.display(),
            format_time(not_before)
        ));
    }
    Ok(not_after)
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// `secs` since the epoch as `YYYY-MM-DD HH:MM:SS UTC` (proleptic Gregorian).
fn format_time(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times() {
        for (secs, want) in [
            (0, "1970-01-01 00:00:00 UTC"),
            (951_782_400, "2000-02-29 00:00:00 UTC"),
            (1_767_225_599, "2025-12-31 23:59:59 UTC"),
            (-86_400, "1969-12-31 00:00:00 UTC"),
        ] {
            assert_eq!(format_time(secs), want, "{secs}");
        }
    }
}
