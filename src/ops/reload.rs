//! Live reload: re-read the config file, validate it fully, and swap it in whole.
//!
//! An invalid file changes nothing. What applies when:
//! - heartbeat policies: existing connections, from their next tick;
//! - routes added or removed: at once (removed routes close their clients with 1001);
//! - origins, welcome, prefixes, on_message: new handshakes;
//! - publish token and limits, connection limits: the next request or handshake;
//! - `server.outbound_queue_bytes`, `write_timeout`, message sizes: new connections;
//! - `server.listen`, `server.outbound_queue`, `[admin]` and `[log] dir`: only after a restart.

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
    if old.server.listen != new.server.listen {
        warn!("server.listen changed: restart heartwire to listen on the new address(es)");
    }
    if old.admin != new.admin {
        warn!("[admin] changed: restart heartwire to move the admin listener");
    }
    if old.server.outbound_queue != new.server.outbound_queue {
        warn!(
            "server.outbound_queue changed: applies to routes added from now on; restart for the rest"
        );
    }
}
