//! A real `redis-server` (Debian's package) on a free loopback port with persistence off,
//! started by the test and ended by its pid when dropped.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use super::T;
use super::daemon::{end, signal, which};

const INSTALL: &str = "redis-server is not installed: apt-get install redis-server (.ci/run does)";

/// A running redis-server.
pub struct Redis {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
    tls: bool,
}

impl Redis {
    /// Starts one on a free port.
    pub fn start() -> Redis {
        Self::start_with(&[], false)
    }

    /// Starts one on a free port with more `args`; with `tls`, that port speaks only TLS
    /// with tests/fixtures/tls/redis.crt (signed by redis-ca.crt, the CA key thrown away).
    pub fn start_with(args: &[&str], tls: bool) -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        if tls {
            let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
            args.extend(["--tls-cert-file".into(), format!("{fixtures}/redis.crt")]);
            args.extend(["--tls-key-file".into(), format!("{fixtures}/redis.key")]);
            args.extend(["--tls-auth-clients".into(), "no".into()]);
        }
        let child = spawn(port, dir.path(), &args, tls);
        Redis {
            child,
            port,
            dir,
            args,
            tls,
        }
    }

    pub fn url(&self) -> String {
        match self.tls {
            true => format!("rediss://127.0.0.1:{}", self.port),
            false => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Sends `sig` (STOP, CONT, ...) to this redis-server.
    pub fn signal(&self, sig: &str) {
        signal(&self.child, sig);
    }

    /// SIGKILL, then a fresh redis-server (empty: no persistence) on the same port.
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(self.port, self.dir.path(), &self.args, self.tls);
    }
}

/// Runs redis-server on `port` (TLS only with `tls`) in `dir` with more `args`; waits
/// until it accepts connections.
fn spawn(port: u16, dir: &Path, args: &[String], tls: bool) -> Child {
    let bin = which("redis-server").unwrap_or_else(|| panic!("{INSTALL}"));
    let port = port.to_string();
    let ports = match tls {
        true => ["--port", "0", "--tls-port", &port],
        false => ["--port", &port, "--tls-port", "0"],
    };
    let mut child = Command::new(bin)
        .args(ports)
        .args(["--bind", "127.0.0.1"])
        .args(args)
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(["--logfile", "", "--dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run redis-server ({e}); {INSTALL}"));
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains("Ready to accept connections") {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(T).is_err() {
        end(&mut child);
        panic!("redis-server on port {port} did not become ready (args {args:?})");
    }
    child
}

impl Drop for Redis {
    fn drop(&mut self) {
        // A stopped process is continued, so that it dies at once.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        end(&mut self.child);
    }
}
