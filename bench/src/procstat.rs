//! Server resource readings from `/proc/PID/status` (RSS) and `/proc/PID/stat` (CPU).

use std::fs;

/// Kernel clock ticks per second for `/proc/PID/stat` times. USER_HZ is 100 on every
/// Linux architecture this runs on; reading it with sysconf would need `unsafe`.
const CLK_TCK: f64 = 100.0;

/// A process to watch; every reading is `None` when there is no such process.
#[derive(Debug, Clone, Copy)]
pub struct Proc(pub Option<u32>);

impl Proc {
    /// Resident set size in KiB (`VmRSS`).
    pub fn rss_kib(self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.0?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// User + system CPU seconds used so far.
    pub fn cpu_secs(self) -> Option<f64> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.0?)).ok()?;
        // The command name may hold spaces and parentheses: fields start after the last ')'.
        let rest = &stat[stat.rfind(')')? + 1..];
        let mut fields = rest.split_whitespace();
        // Fields 14 and 15 of stat(5): utime and stime; `rest` starts at field 3.
        let utime: f64 = fields.nth(11)?.parse().ok()?;
        let stime: f64 = fields.next()?.parse().ok()?;
        Some((utime + stime) / CLK_TCK)
    }

    /// Sends SIGHUP with kill(1) (no `unsafe` libc call needed).
    pub fn sighup(self) -> bool {
        let Some(pid) = self.0 else { return false };
        std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }
}

/// CPU seconds spent between two readings.
pub fn cpu_delta(before: Option<f64>, after: Option<f64>) -> Option<f64> {
    Some(after? - before?)
}
