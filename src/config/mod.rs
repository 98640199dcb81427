//! The config file: what ops write, and what the daemon runs on.
//!
//! [`raw`] mirrors the TOML; [`validate`] turns it into a [`Config`] whose fields cannot be
//! wrong, reporting every problem it finds, with `log_filter` (`[log] level`),
//! `writable_dir` (`log.dir`, `history.dir`), `token_file` (`publish.token_file`, systemd credentials) and
//! `tls` (`[server.tls]`: the certificate and key, loaded and checked) for their keys;
//! [`load`] reads the file and the `HEARTWIRE_*` environment; `effective` writes the
//! config back out for `check --print`; `bounded` reads the files a config names only up
//! to a limit. Loading is pure (no side effects beyond reading files and asking whether
//! the log and history directories are writable) and every error names the file (or the environment
//! variable), the key and the fix.

mod bounded;
mod effective;
mod load;
mod log_filter;
pub mod origin;
mod proxies;
mod raw;
mod tls;
mod token_file;
mod types;
mod validate;
mod writable_dir;

pub(crate) use bounded::read_bounded;
pub use effective::effective_toml;
pub use load::{from_toml, load, provenance};
pub use proxies::{MAX_TRUSTED_PROXIES, TrustedProxies, trusted_proxies};
pub use raw::RawConfig;
pub use tls::{TlsConfig, provider as tls_provider};
pub use types::*;
