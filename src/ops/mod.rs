//! What operators touch: signals and reload, the admin listener (health, metrics,
//! connections), logging, systemd (notify, socket activation), the allocator, the
//! open-file limit. [`Ops`] is what a running daemon shares with them: the metrics, the
//! service manager's notify socket, and the status line both report.

pub mod activation;
pub(crate) mod admin;
pub mod allocator;
pub mod logging;
pub(crate) mod notify;
pub(crate) mod open_files;
pub mod reload;
pub mod signals;

use std::sync::Arc;

use crate::fanout::Hub;
use crate::metrics::Metrics;
use notify::Notifier;

/// Metrics and notifications, created by `main` and shared by the server, the signal
/// handler and the admin listener.
#[derive(Clone, Default)]
pub struct Ops {
    /// Every counter `/metrics` shows.
    pub metrics: Arc<Metrics>,
    /// systemd's notify socket (a no-op outside systemd).
    pub notifier: Notifier,
}

impl Ops {
    /// Metrics plus a notifier from the environment (`NOTIFY_SOCKET`, `WATCHDOG_USEC`).
    pub fn from_env() -> Self {
        Self {
            metrics: Arc::default(),
            notifier: Notifier::from_env(),
        }
    }

    /// A SIGHUP reload is starting.
    pub fn reload_started(&self) {
        self.notifier.reloading();
    }

    /// A SIGHUP reload was applied (`true`) or refused.
    pub fn reload_finished(&self, ok: bool) {
        self.metrics.reloaded(ok);
        self.notifier.reloaded();
    }

    /// The `STATUS=` line: live counts, and a refused reload until the next good one.
    pub fn status(&self, hub: &Hub, draining: bool) -> String {
        let routes = hub.routes();
        let conns: usize = routes.iter().map(|r| r.len()).sum();
        let mut line = format!(
            "{} {conns} connection{} on {} route{}",
            if draining { "draining" } else { "serving" },
            if conns == 1 { "" } else { "s" },
            routes.len(),
            if routes.len() == 1 { "" } else { "s" },
        );
        if !self.metrics.last_reload_ok() {
            line.push_str("; last reload failed: invalid config, still running the previous one (see the journal)");
        }
        line
    }
}
