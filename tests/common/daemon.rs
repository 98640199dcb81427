//! The real binary in a child process: its stderr lines, its address, signals to it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use super::T;

/// `heartwire` run as a child process, killed when dropped.
pub struct Daemon {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// The public listener's address, from its `listening` log line.
    pub addr: SocketAddr,
}

impl Daemon {
    /// Runs `heartwire --config CONFIG` and waits for it to listen.
    pub fn start(config: &std::path::Path) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_heartwire"))
            .arg("--config")
            .arg(config)
            .env_remove("RUST_LOG")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut d = Daemon {
            child,
            lines,
            addr: "0.0.0.0:0".parse().unwrap(),
        };
        let line = d.wait_for("listening");
        let addr = line
            .split("addr=")
            .nth(1)
            .and_then(|a| a.split_whitespace().next())
            .expect("addr= in the log line");
        d.addr = addr.parse().unwrap();
        d
    }

    /// The next stderr line containing `needle` (bounded wait).
    pub fn wait_for(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + T;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => continue,
                Err(e) => panic!("no log line with {needle:?}: {e}"),
            }
        }
    }

    /// Sends signal `name` (`HUP`, `TERM`) to the daemon.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
