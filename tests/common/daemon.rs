//! The real binary as a child process: its stderr as parsed JSON lines, the addresses it
//! reported, signals by its pid, and bounded waits for log lines and for its exit.
//! Configs given to [`start`] and [`launch`] set `[log] format = "json"`: the addresses
//! and messages are read from the JSON fields.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use serde_json::Value;

use super::{T, http};

pub const BIN: &str = env!("CARGO_BIN_EXE_heartwire");

/// The binary, its stderr as parsed JSON lines, and the addresses it reported.
pub struct Daemon {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    /// Every line read so far (non-JSON lines as strings).
    pub log: Vec<Value>,
    pub config: PathBuf,
    pub public: SocketAddr,
    pub admin: Option<SocketAddr>,
    _dir: tempfile::TempDir,
}

/// Writes `toml` to a fresh directory and runs `heartwire --config` on it.
pub fn start(toml: &str, env: &[(&str, &str)]) -> Daemon {
    launch(toml, env, |config| {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config").arg(config);
        cmd
    })
}

/// Writes `toml` to a fresh directory, runs `command(config_path)`, waits for `listening`.
pub fn launch(toml: &str, env: &[(&str, &str)], command: impl FnOnce(&Path) -> Command) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("heartwire.toml");
    std::fs::write(&config, toml).unwrap();
    let mut d = spawn(command(&config), env, dir, config);
    d.public = d.addr_of("listening");
    d
}

pub fn spawn(
    mut cmd: Command,
    env: &[(&str, &str)],
    dir: tempfile::TempDir,
    config: PathBuf,
) -> Daemon {
    cmd.env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run heartwire");
    let lines = lines_of(child.stderr.take().expect("piped stderr"));
    Daemon {
        child,
        lines,
        log: Vec::new(),
        config,
        public: "0.0.0.0:0".parse().unwrap(),
        admin: None,
        _dir: dir,
    }
}

/// `systemd-socket-activate` listening on `listen` (`ip:port`), running heartwire on `toml`
/// when the first connection arrives. Required in CI; elsewhere a missing tool skips,
/// visibly (`None`).
pub fn activated_at(listen: &str, toml: &str) -> Option<Daemon> {
    let Some(activate) = which("systemd-socket-activate") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-socket-activate is not installed (Debian: apt-get install systemd)"
        );
        eprintln!(
            "SKIPPED: systemd-socket-activate is not installed (Debian: apt-get install systemd)"
        );
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("heartwire.toml");
    std::fs::write(&config, toml).unwrap();
    let mut cmd = Command::new(activate);
    cmd.arg(format!("--listen={listen}"))
        .arg(BIN)
        .arg("--config")
        .arg(&config);
    let mut d = spawn(cmd, &[], dir, config);
    d.wait_log("systemd-socket-activate listening", |v| {
        v.as_str().is_some_and(|l| l.starts_with("Listening on"))
    });
    Some(d)
}

/// `name` found on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The lines `out` yields, read on a thread of their own (the channel closes at EOF).
pub fn lines_of(out: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The `message` field of a JSON log line.
pub fn message(v: &Value) -> &str {
    v["fields"]["message"].as_str().unwrap_or_default()
}

impl Daemon {
    /// Waits for a log line matching `pred` (looking at lines already read first).
    pub fn wait_log(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.log.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let deadline = Instant::now() + T;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(line) => line,
                Err(err) => panic!("no log line `{what}` ({err}); log so far:\n{:#?}", self.log),
            };
            let v = serde_json::from_str::<Value>(&line).unwrap_or(Value::String(line));
            self.log.push(v.clone());
            if pred(&v) {
                return v;
            }
        }
    }

    pub fn wait_message(&mut self, text: &str) -> Value {
        self.wait_log(text, |v| message(v).contains(text))
    }

    pub fn addr_of(&mut self, msg: &str) -> SocketAddr {
        let v = self.wait_log(msg, |v| message(v) == msg);
        v["fields"]["addr"].as_str().unwrap().parse().unwrap()
    }

    pub fn admin(&mut self) -> SocketAddr {
        if self.admin.is_none() {
            self.admin = Some(self.addr_of("admin listening"));
        }
        self.admin.unwrap()
    }

    pub fn signal(&self, sig: &str) {
        signal(&self.child, sig);
    }

    /// Waits for the process to exit (its stderr closes first), reading the rest of the log.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + T;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let v = serde_json::from_str::<Value>(&line).unwrap_or(Value::String(line));
                    self.log.push(v);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("heartwire did not exit"),
            }
        }
        self.child.wait().unwrap()
    }

    pub async fn metrics(&mut self) -> String {
        let (status, body) = http(self.admin(), "GET", "/metrics", &[], b"").await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        end(&mut self.child);
    }
}

/// Sends `sig` (TERM, STOP, ...) to `child`, a test's own child, by its pid.
pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {} failed", child.id());
}

/// Kills `child` if it is still running, and reaps it: only a test's own child, by its
/// handle.
pub fn end(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
        let _ = child.wait();
    }
}
