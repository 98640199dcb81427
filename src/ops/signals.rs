//! Unix signals: SIGHUP reloads the config; SIGTERM, SIGINT and SIGQUIT shut down.

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook_tokio::Signals;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{Ops, reload};
use crate::config::{Config, Served};

/// Registers the handlers. Call before serving, so no signal is missed.
pub fn register() -> std::io::Result<Signals> {
    Signals::new([SIGHUP, SIGTERM, SIGINT, SIGQUIT])
}

/// Turns signals into actions until shutdown. `on_reload` runs after each accepted reload;
/// every reload, accepted or refused, is counted and notified through `ops`.
pub async fn handle(
    mut signals: Signals,
    path: PathBuf,
    served: Served,
    config_tx: watch::Sender<Arc<Config>>,
    shutdown: CancellationToken,
    on_reload: impl Fn(&Config),
    ops: Ops,
) {
    loop {
        let signal = tokio::select! {
            () = shutdown.cancelled() => return,
            s = signals.next() => match s {
                Some(s) => s,
                None => return,
            },
        };
        if signal == SIGHUP {
            info!(file = %path.display(), "SIGHUP: reloading config");
            ops.reload_started();
            let ok = reload::reload(&path, &served, &config_tx);
            if ok {
                on_reload(&config_tx.borrow());
            }
            ops.reload_finished(ok);
        } else {
            info!(signal, "shutdown requested");
            shutdown.cancel();
            return;
        }
    }
}
