//! The real binary under real signals: SIGHUP reloads (or refuses a bad file and keeps
//! serving), SIGTERM closes every client with 1001 and exits 0.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use common::*;

struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
    addr: SocketAddr,
}

impl Daemon {
    fn start(config: &std::path::Path) -> Daemon {
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
    fn wait_for(&self, needle: &str) -> String {
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

    fn signal(&self, name: &str) {
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

fn write_config(path: &std::path::Path, welcome: &str) {
    let text = format!(
        // The admin listener on port 0 too: its default, 9090, may be taken (say, by a
        // `cargo run` of the shipped config on the same machine).
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"3s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[route]]\npath = \"/a\"\nwelcome = {welcome}\n"
    );
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn sighup_reloads_or_refuses_and_sigterm_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heartwire.toml");
    write_config(&path, "\"v1\"");
    let mut d = Daemon::start(&path);
    let mut first = connect(d.addr, "/a", None).await.unwrap();
    assert_eq!(recv_text(&mut first).await, "v1");

    write_config(&path, "\"v2\"");
    d.signal("HUP");
    d.wait_for("config reloaded");
    let mut second = connect(d.addr, "/a", None).await.unwrap();
    assert_eq!(recv_text(&mut second).await, "v2");

    write_config(&path, "5");
    d.signal("HUP");
    let refused = d.wait_for("reload refused");
    assert!(
        refused.contains("route[0].welcome") && refused.contains("heartwire.toml"),
        "{refused}"
    );
    let mut third = connect(d.addr, "/a", None).await.unwrap();
    assert_eq!(recv_text(&mut third).await, "v2");
    send_text(&mut first, "still connected").await;
    assert_eq!(recv_text(&mut first).await, "still connected");

    d.signal("TERM");
    for ws in [&mut first, &mut second, &mut third] {
        assert_eq!(u16::from(recv_close(ws).await.code), 1001);
    }
    let status = tokio::task::spawn_blocking(move || d.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
