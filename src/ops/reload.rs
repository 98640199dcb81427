//! Live reload: re-read the config file, validate it fully, and swap it in whole.
//!
//! An invalid file changes nothing. What applies when:
//! - heartbeat policies: existing connections, from their next tick;
//! - routes added or removed: at once (removed routes close their clients with 1001);
//! - origins, welcome, prefixes, on_message: new handshakes;
//! - publish token and limits, connection limits, `server.trusted_proxies`: the next
//!   request or handshake;
//! - `server.outbound_queue`, `outbound_queue_bytes`, `write_timeout`, message sizes,
//!   `proxy_protocol`: new connections (each connection's mailbox keeps its bounds);
//! - the `[server.tls]` certificate and key: new handshakes (a pair that does not load,
//!   match or is expired makes the reload invalid, and the running pair stays);
//! - `server.listen`, adding or removing `[server.tls]`, `[admin]` and `[log]` `format`, `dir` and
//!   `rotation`: only after a restart (a reload logs a warning for each).

use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::{self, Config, Served};

/// Reloads `path` into `config_tx`, holding it to the same rules as at start against the
/// sockets actually `served`. Returns whether the new config was taken.
pub fn reload(path: &Path, served: &Served, config_tx: &watch::Sender<Arc<Config>>) -> bool {
    let next = config::load(path).and_then(|next| {
        next.check_exposure(served)?;
        Ok(next)
    });
    match next {
        Ok(next) => {
            config_tx.send_replace(Arc::new(next));
            true
        }
        Err(err) => {
            // One event per problem: each stays one line in the journal.
            for line in err.lines() {
                error!("reload refused, keeping the running config: {line}");
            }
            false
        }
    }
}

/// Logs a one-line summary of what a reload changes.
pub fn log_changes(old: &Config, new: &Config) {
    let mut changed = Vec::new();
    let old_routes: Vec<&str> = old.routes.iter().map(|r| r.path.as_str()).collect();
    let new_routes: Vec<&str> = new.routes.iter().map(|r| r.path.as_str()).collect();
    let added: Vec<&str> = new_routes
        .iter()
        .copied()
        .filter(|p| !old_routes.contains(p))
        .collect();
    let removed: Vec<&str> = old_routes
        .iter()
        .copied()
        .filter(|p| !new_routes.contains(p))
        .collect();
    if !added.is_empty() {
        changed.push(format!("routes added: {}", added.join(", ")));
    }
    if !removed.is_empty() {
        changed.push(format!("routes removed: {}", removed.join(", ")));
    }
    let edited: Vec<&str> = new
        .routes
        .iter()
        .filter(|r| old.route(&r.path).is_some_and(|o| o != *r))
        .map(|r| r.path.as_str())
        .collect();
    if !edited.is_empty() {
        changed.push(format!("routes changed: {}", edited.join(", ")));
    }
    let policies: Vec<&str> = new
        .heartbeats
        .iter()
        .filter(|(name, p)| old.heartbeats.get(*name) != Some(*p))
        .map(|(name, _)| name.as_str())
        .chain(
            old.heartbeats
                .keys()
                .filter(|n| !new.heartbeats.contains_key(*n))
                .map(String::as_str),
        )
        .collect();
    if !policies.is_empty() {
        changed.push(format!("heartbeat policies: {}", policies.join(", ")));
    }
    if old.publish != new.publish {
        changed.push("publish".into());
    }
    if old.server != new.server {
        changed.push("server limits".into());
    }
    if let (Some(before), Some(after)) = (&old.server.tls, &new.server.tls)
        && before != after
    {
        info!(
            cert_file = %after.cert_file.display(),
            expires = %after.expires(),
            days_left = after.days_left(std::time::SystemTime::now()),
            "TLS certificate reloaded: new handshakes use it"
        );
    }
    if old.statics != new.statics {
        changed.push("static pages".into());
    }
    if old.log != new.log {
        changed.push("log".into());
    }
    let summary = if changed.is_empty() {
        "nothing".to_owned()
    } else {
        changed.join("; ")
    };
    info!(file = %new.source.display(), "config reloaded: {summary}");
    for line in needs_restart(old, new) {
        warn!("{line}");
    }
    super::open_files::recheck(&old.server, &new.server);
}

/// What changed that the running daemon keeps as it was until a restart, one line each.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut lines = Vec::new();
    if old.server.listen != new.server.listen {
        lines.push("server.listen changed: restart heartwire to listen on the new address(es)");
    }
    match (&old.server.tls, &new.server.tls) {
        (None, Some(_)) => lines.push(
            "[server.tls] added: restart heartwire to serve TLS; the listener stays plain until then",
        ),
        (Some(_), None) => lines.push(
            "[server.tls] removed: restart heartwire to serve plain HTTP; the listener keeps TLS with the last certificate until then",
        ),
        _ => {}
    }
    if old.broker != new.broker {
        lines.push("[broker] changed: restart heartwire to apply it; publishes go on through the running broker");
    }
    if old.admin != new.admin {
        lines.push("[admin] changed: restart heartwire to move the admin listener");
    }
    // The logger is built once at start; only its level follows a reload.
    if old.log.format != new.log.format {
        lines.push(
            "log.format changed: restart heartwire to apply it; logging goes on in the old format",
        );
    }
    if old.log.dir != new.log.dir {
        lines.push(
            "log.dir changed: restart heartwire to apply it; log files go on in the old place",
        );
    }
    if old.log.rotation != new.log.rotation {
        lines
            .push("log.rotation changed: restart heartwire to apply it; files roll over as before");
    }
    lines
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::Path;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// What `log_changes` logs going from `old` to `new` (TOML texts).
    fn logged(old: &str, new: &str) -> String {
        let parse = |text| config::from_toml(text, Path::new("h.toml")).unwrap();
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Capture(writer.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || log_changes(&parse(old), &parse(new)));
        let bytes = buf.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8(bytes).unwrap()
    }

    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(data);
            Ok(data.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn log_format_dir_and_rotation_need_a_restart() {
        let dir = std::env::temp_dir();
        let new = format!(
            "[log]\nformat = \"json\"\ndir = \"{}\"\nrotation = \"hourly\"\nlevel = \"debug\"\n",
            dir.display()
        );
        let out = logged("", &new);
        for line in [
            "config reloaded: log",
            "WARN heartwire::ops::reload: log.format changed: restart heartwire to apply it",
            "WARN heartwire::ops::reload: log.dir changed: restart heartwire to apply it",
            "WARN heartwire::ops::reload: log.rotation changed: restart heartwire to apply it",
        ] {
            assert!(out.contains(line), "no `{line}` in:\n{out}");
        }
        // The level alone applies at once: nothing to restart for.
        let out = logged("", "[log]\nlevel = \"debug\"\n");
        assert!(out.contains("config reloaded: log"), "{out}");
        assert!(!out.contains("WARN"), "{out}");
    }
}
