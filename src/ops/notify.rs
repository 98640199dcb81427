//! systemd's notify protocol (`Type=notify`) through the sd-notify crate.
//!
//! Sequence: `READY=1` once listening; `STATUS=` lines with live counts; around a SIGHUP
//! reload `RELOADING=1` + `MONOTONIC_USEC=` then `READY=1`; `STOPPING=1` on shutdown;
//! `WATCHDOG=1` every half `WATCHDOG_USEC` from a task on the runtime, so a wedged
//! runtime stops the pings and systemd restarts the service. Without `NOTIFY_SOCKET`
//! every call is a no-op.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::Notify;
use tokio::time::{self, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// How often the status line is recomputed (it is sent only when it changed).
pub const STATUS_EVERY: Duration = Duration::from_secs(1);

/// A handle on the service manager's notify socket. Clones share it.
#[derive(Clone, Default)]
pub struct Notifier {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    watchdog: Option<Duration>,
    nudge: Notify,
    warned: AtomicBool,
}

impl Notifier {
    /// Enabled when `NOTIFY_SOCKET` is set; the watchdog when `WATCHDOG_USEC` is (and
    /// `WATCHDOG_PID`, if set, is this process).
    pub fn from_env() -> Self {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            return Self::default();
        }
        Self {
            inner: Some(Arc::new(Inner {
                watchdog: sd_notify::watchdog_enabled(),
                nudge: Notify::new(),
                warned: AtomicBool::new(false),
            })),
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// `RELOADING=1` with `MONOTONIC_USEC` (systemd 253+ requires it; 252 ignores it).
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    /// `READY=1` after a reload, applied or refused; the status task follows with a
    /// fresh `STATUS=` at once.
    pub fn reloaded(&self) {
        self.send(&[NotifyState::Ready]);
        if let Some(inner) = &self.inner {
            inner.nudge.notify_one();
        }
    }

    /// `STOPPING=1` with a status line.
    pub fn stopping(&self, status: &str) {
        self.send(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }

    /// Sends `STATUS=status()` whenever it changes (checked every [`STATUS_EVERY`] and
    /// after each reload) and `WATCHDOG=1` every half `WATCHDOG_USEC`, until `stop`.
    pub async fn run(&self, status: impl Fn() -> String, stop: CancellationToken) {
        let Some(inner) = &self.inner else { return };
        let mut status_tick = time::interval(STATUS_EVERY);
        status_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Without a watchdog this interval never fires often enough to matter.
        let every = inner.watchdog.map_or(Duration::from_secs(3600), |d| {
            (d / 2).max(Duration::from_millis(1))
        });
        let mut watchdog = time::interval(every);
        watchdog.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last = String::new();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = watchdog.tick() => {
                    if inner.watchdog.is_some() {
                        self.send(&[NotifyState::Watchdog]);
                    }
                    continue;
                }
                _ = status_tick.tick() => {}
                () = inner.nudge.notified() => {}
            }
            let now = status();
            if now != last {
                self.send(&[NotifyState::Status(&now)]);
                last = now;
            }
        }
    }

    fn send(&self, state: &[NotifyState<'_>]) {
        let Some(inner) = &self.inner else { return };
        if let Err(err) = sd_notify::notify(state) {
            // Once at warn: a broken notify socket repeats on every status line.
            if inner.warned.swap(true, Ordering::Relaxed) {
                debug!(error = %err, "sd_notify failed");
            } else {
                warn!(error = %err, "cannot notify the service manager (NOTIFY_SOCKET)");
            }
        }
    }
}
