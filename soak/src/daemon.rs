//! The daemon under test, seen from outside: `/proc` readings, SIGHUP, its config file,
//! its log and its admin metrics.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};

use crate::http;

/// Marks the config lines the reloads rewrite: `ping_interval = "1s"  # soak:reload`.
pub const RELOAD_MARKER: &str = "soak:reload";

/// The running heartwire process.
#[derive(Debug, Clone)]
pub struct Daemon {
    /// Its process id.
    pub pid: u32,
    /// Its config file, rewritten by the reloads.
    pub config: PathBuf,
    /// Where its stderr goes, scanned for panics.
    pub log: Option<PathBuf>,
    /// Its admin listener, for `/metrics`.
    pub admin: Option<SocketAddr>,
}

impl Daemon {
    /// Resident set size in KiB (`VmRSS` in `/proc/PID/status`).
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let path = format!("/proc/{}/status", self.pid);
        let status = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no VmRSS in {path}"))
    }

    /// Open file descriptors (entries of `/proc/PID/fd`).
    pub fn fds(&self) -> anyhow::Result<usize> {
        let path = format!("/proc/{}/fd", self.pid);
        Ok(fs::read_dir(&path)
            .with_context(|| format!("listing {path}"))?
            .count())
    }

    /// Sends SIGHUP with kill(1), so no `unsafe` libc call is needed.
    pub fn sighup(&self) -> anyhow::Result<()> {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &self.pid.to_string()])
            .status()
            .context("running kill -HUP")?;
        ensure!(status.success(), "kill -HUP {} failed: {status}", self.pid);
        Ok(())
    }

    /// The config file's text.
    pub fn read_config(&self) -> anyhow::Result<String> {
        fs::read_to_string(&self.config)
            .with_context(|| format!("reading {}", self.config.display()))
    }

    /// Replaces the config file atomically (write a sibling, then rename over it), so a
    /// reload never reads a half-written file.
    pub fn write_config(&self, text: &str) -> anyhow::Result<()> {
        let tmp = sibling(&self.config, ".soak-next");
        fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &self.config)
            .with_context(|| format!("renaming {} over {}", tmp.display(), self.config.display()))
    }

    /// Lines of the daemon's log that report a panic.
    pub fn panics(&self) -> anyhow::Result<Vec<String>> {
        let Some(log) = &self.log else {
            return Ok(Vec::new());
        };
        let bytes = fs::read(log).with_context(|| format!("reading {}", log.display()))?;
        Ok(String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| l.contains("panicked"))
            .map(str::to_owned)
            .collect())
    }

    /// The admin `/metrics` page, when an admin address was given.
    pub async fn metrics(&self) -> anyhow::Result<Option<Metrics>> {
        let Some(admin) = self.admin else {
            return Ok(None);
        };
        let (status, body) = http::request(admin, "GET", "/metrics", b"").await?;
        ensure!(status == 200, "GET /metrics answered {status}");
        Ok(Some(Metrics(body)))
    }
}

/// A Prometheus text page.
#[derive(Debug, Clone)]
pub struct Metrics(String);

impl Metrics {
    /// Sum of every sample of `name` whose labels contain all of `labels` (`key="value"`).
    pub fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (metric, tags) = match series.split_once('{') {
                    Some((m, t)) => (m, t),
                    None => (series, ""),
                };
                (metric == name && labels.iter().all(|want| tags.contains(want)))
                    .then(|| value.parse::<f64>().ok())
                    .flatten()
            })
            .sum()
    }
}

/// `text` with the value of every [`RELOAD_MARKER`] line replaced by `value`:
/// `ping_interval = "1s"  # soak:reload` becomes `ping_interval = "2s"  # soak:reload`.
pub fn rewrite_marked(text: &str, value: &str) -> anyhow::Result<String> {
    let mut hits = 0;
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.lines() {
        match (line.contains(RELOAD_MARKER), line.split_once('=')) {
            (true, Some((key, rest))) => {
                let comment = rest.find('#').map_or("", |i| &rest[i..]);
                out.push_str(&format!("{}= \"{value}\"  {comment}", key));
                hits += 1;
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    if hits == 0 {
        bail!("no line of the config is marked `# {RELOAD_MARKER}`");
    }
    Ok(out)
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_lines_get_the_new_value_and_keep_their_marker() {
        let text = "[heartbeat.app]\nping_interval = \"1s\"  # soak:reload\nmax_missed = 2\n";
        let out = rewrite_marked(text, "2s").unwrap();
        assert_eq!(
            out,
            "[heartbeat.app]\nping_interval = \"2s\"  # soak:reload\nmax_missed = 2\n"
        );
        assert_eq!(rewrite_marked(&out, "1s").unwrap(), text);
        assert!(rewrite_marked("a = 1\n", "2s").is_err());
    }

    #[test]
    fn metrics_are_summed_by_name_and_labels() {
        let m = Metrics(
            "# HELP x y\nconfig_reloads_total{result=\"ok\"} 2\nconfig_reloads_total{result=\"error\"} 1\n\
             heartbeat_timeouts_total{policy=\"app\",strategy=\"json-gzip\"} 7\nother 3\n"
                .into(),
        );
        assert_eq!(m.sum("config_reloads_total", &["result=\"ok\""]), 2.0);
        assert_eq!(m.sum("config_reloads_total", &[]), 3.0);
        assert_eq!(m.sum("heartbeat_timeouts_total", &["policy=\"app\""]), 7.0);
        assert_eq!(m.sum("other", &[]), 3.0);
        assert_eq!(m.sum("missing", &[]), 0.0);
    }
}
