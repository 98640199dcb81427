//! `heartwire check --print`: the config the daemon would run, file plus environment, with
//! every default written out, as TOML that loads back to the same config. The publish
//! token is redacted.

use std::path::Path;

use super::load::raw;
use super::raw::RawConfig;
use super::token_file;
use super::types::*;
use crate::heartbeat::Policy;

/// What `token` is printed as.
pub const REDACTED: &str = "<redacted>";

/// The effective config of `path` (file plus `HEARTWIRE_*` environment) as TOML, every
/// default written out and the publish token redacted. Keys that have no default value
/// (TOML cannot write "none") are listed in a comment at the top.
pub fn effective_toml(path: &Path) -> Result<String, ConfigError> {
    let raw = raw(path)?;
    let config = Config::from_raw(raw.clone(), path)?;
    let (raw, unset) = fill(raw, &config, path);
    let body = toml::to_string_pretty(&raw)
        .map_err(|e| ConfigError::Parse(vec![format!("{}: {e}", path.display())]))?;
    let mut out = format!(
        "# The effective config of {}:\n# the file plus the HEARTWIRE_* environment, every default written out,\n# the publish token redacted.\n",
        path.display()
    );
    if !unset.is_empty() {
        out.push_str("# Not set (these have no value to write):\n");
        for line in unset {
            out.push_str(&format!("#   {line}\n"));
        }
    }
    out.push('\n');
    out.push_str(&body);
    Ok(out)
}

/// `file` (as written in the config at `path`) made absolute, so the printed config reads
/// the same file wherever it is saved; `%credentials%` paths stay as they are.
fn absolute(file: &mut std::path::PathBuf, path: &Path) {
    if let Ok(None) = token_file::credential(file)
        && let Ok(resolved) = token_file::resolve(file, path, None)
    {
        *file = std::path::absolute(&resolved).unwrap_or(resolved);
    }
}

/// `raw` with every default the validated `config` applied written in, and the keys left
/// unset, each with what that means.
fn fill(mut raw: RawConfig, config: &Config, path: &Path) -> (RawConfig, Vec<String>) {
    let mut unset = Vec::new();
    raw.server.max_frame_size = Some(config.server.max_frame_size);
    raw.log.level.clone_from(&config.log.level);
    if raw.log.dir.is_none() {
        unset.push("log.dir: logs go to stderr only".to_owned());
    }

    if let (Some(tls), Some(loaded)) = (&mut raw.server.tls, &config.server.tls) {
        // Absolute, as resolved: the printed config reads the same files wherever it is
        // saved (a `%credentials%` path stays as written).
        for (written, resolved) in [
            (&mut tls.cert_file, &loaded.cert_file),
            (&mut tls.key_file, &loaded.key_file),
        ] {
            if let Ok(None) = token_file::credential(written) {
                *written = std::path::absolute(resolved).unwrap_or_else(|_| resolved.clone());
            }
        }
    }

    if raw.history.dir.is_none() {
        unset.push("history.dir: history lives in memory only; a restart loses it".to_owned());
    }

    let publish = &mut raw.publish;
    publish.max_body_size = Some(config.publish.max_body_size);
    if publish.token.is_some() {
        publish.token = Some(REDACTED.into());
    }
    if let Some(file) = &mut publish.token_file {
        absolute(file, path);
    }
    for key in &mut raw.auth.keys {
        absolute(&mut key.file, path);
    }
    if publish.token.is_none() && publish.token_file.is_none() {
        unset.push("publish.token, publish.token_file: publishing needs no token".to_owned());
    }
    match config.publish.rate {
        Some(rate) => {
            publish.rate_limit = Some(rate.per_second.get());
            publish.rate_burst = Some(rate.burst.get());
        }
        // 0 is off, as absent is.
        None => publish.rate_limit = Some(0),
    }

    for (name, policy) in &mut raw.heartbeat {
        match config.heartbeats.get(name) {
            Some(Some(Policy::Protocol { interval, timeout })) => {
                policy
                    .ping_interval
                    .get_or_insert_with(|| (*interval).into());
                policy.ping_timeout.get_or_insert_with(|| (*timeout).into());
            }
            Some(Some(Policy::JsonGzip {
                interval,
                max_missed,
            })) => {
                policy
                    .ping_interval
                    .get_or_insert_with(|| (*interval).into());
                policy.max_missed = Some(max_missed.get());
            }
            Some(None) | None => {}
        }
    }

    for (i, (raw, route)) in raw.routes.iter_mut().zip(&config.routes).enumerate() {
        if raw.channels.is_none() {
            raw.channels = Some(route.channels.iter().map(ToString::to_string).collect());
            raw.channel = None;
        }
        if let Some(history) = route.history {
            raw.history_ttl = Some(history.ttl.into());
        }
        if raw.origins.is_none() {
            unset.push(format!(
                "route[{i}].origins: same origin only (Origin host = Host)"
            ));
        }
        if raw.welcome.is_none() {
            unset.push(format!("route[{i}].welcome: no welcome message"));
        }
        if raw.heartbeat.is_none() {
            unset.push(format!("route[{i}].heartbeat: no heartbeat"));
        }
    }
    (raw, unset)
}
