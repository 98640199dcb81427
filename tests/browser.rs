//! The browser client in a real browser: Debian's Chromium driven by playwright-core
//! (pinned in clients/js/package.json) against the real binary on 127.0.0.1. Each test
//! starts the daemon, then `node clients/js/test/browser/<scenario>.mjs <url>`, which opens
//! the daemon's own /demo page and prints JSON lines: `{"step": ...}` when the test must act
//! (signals), `{"result": {...}}` at the end. Every wait is bounded; nothing sleeps.
//!
//! Needs /usr/bin/chromium (or HEARTWIRE_CHROMIUM), node and `npm ci` in clients/js.
//! Without them the tests fail saying how to install them; HEARTWIRE_SKIP_BROWSER=1 skips
//! them on purpose, except under CI (CI set), where nothing is skipped.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_heartwire");
const JS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/js");
/// Upper bound of any single wait: the machine is shared and Chromium starts slowly.
const T: Duration = Duration::from_secs(30);

/// The json-gzip route every scenario uses (200 ms pings, dead after 2 missed), and a
/// route with protocol pings, invisible to the page.
const HB: &str = r#"
[admin]
enabled = false
[log]
format = "json"
[client]
enabled = true
demo = true
[heartbeat.hb]
strategy = "json-gzip"
ping_interval = "200ms"
max_missed = 2
[[route]]
path = "/hb"
heartbeat = "hb"
[heartbeat.pp]
strategy = "protocol"
ping_interval = "200ms"
ping_timeout = "600ms"
[[route]]
path = "/pp"
heartbeat = "pp"
"#;
const INTERVAL_MS: f64 = 200.0;
const MAX_MISSED: f64 = 2.0;

/// Whether the browser tests can run; fails with the way to install what is missing.
fn browser_ready() -> bool {
    let chromium =
        std::env::var("HEARTWIRE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let mut missing = Vec::new();
    if !Path::new(&chromium).exists() {
        missing.push(format!("{chromium} (apt-get install chromium)"));
    }
    if Command::new("node").arg("--version").output().is_err() {
        missing.push("node (apt-get install nodejs npm)".into());
    }
    if !Path::new(JS)
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        missing.push("playwright-core (cd clients/js && npm ci)".into());
    }
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "browser tests need: {}. .ci/run installs them all; HEARTWIRE_SKIP_BROWSER=1 skips these tests (ignored under CI)",
        missing.join(", ")
    );
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    if !ci && std::env::var("HEARTWIRE_SKIP_BROWSER").is_ok_and(|v| v == "1") {
        eprintln!("skipped: {why}");
        return false;
    }
    panic!("{why}");
}

/// The real binary on a temp config, its JSON log lines on a channel.
struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts heartwire on [`HB`] plus `server` keys, listening on `listen`; waits for its
    /// `listening` line.
    fn start(server: &str, listen: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("heartwire.toml");
        let toml =
            format!("[server]\nlisten = \"{listen}\"\nshutdown_grace = \"2s\"\n{server}\n{HB}");
        std::fs::write(&config, toml).unwrap();
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run heartwire");
        let lines = lines_of(child.stderr.take().expect("piped stderr"));
        let mut d = Daemon {
            child,
            lines,
            addr: "127.0.0.1:0".parse().unwrap(),
            _dir: dir,
        };
        let deadline = Instant::now() + T;
        d.addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = d
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no `listening` log line ({e})"));
            let v: Value = serde_json::from_str(&line).unwrap_or_default();
            if v["fields"]["message"] == "listening" {
                break v["fields"]["addr"].as_str().unwrap().parse().unwrap();
            }
        };
        d
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends `sig` to this daemon only, by its pid.
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit (its stderr closes first).
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + T;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("heartwire did not exit"),
            }
        }
        self.child.wait().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Only this test's own child, by its handle; a stopped one must continue to die.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn lines_of(out: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
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

/// One browser scenario: node driving Chromium, JSON lines both ways.
struct Scenario {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    name: String,
}

impl Scenario {
    fn start(name: &str, url: &str) -> Scenario {
        let script: PathBuf = [JS, "test/browser", &format!("{name}.mjs")]
            .iter()
            .collect();
        let mut child = Command::new("node")
            .arg(&script)
            .arg(url)
            .current_dir(JS)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run node");
        let stdin = child.stdin.take().expect("piped stdin");
        let lines = lines_of(child.stdout.take().expect("piped stdout"));
        Scenario {
            child,
            stdin,
            lines,
            name: name.into(),
        }
    }

    /// The next `{"step"}` or `{"result"}` line; fails on `{"error"}` or a page error.
    fn next(&mut self) -> Value {
        let line = self
            .lines
            .recv_timeout(T * 2)
            .unwrap_or_else(|e| panic!("{}: no output from the scenario ({e})", self.name));
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("{}: not JSON: {line}", self.name));
        if let Some(err) = v.get("error").or(v.get("pageerror")) {
            panic!("{}: {}", self.name, err.as_str().unwrap_or_default());
        }
        v
    }

    fn step(&mut self, want: &str) {
        let v = self.next();
        assert_eq!(v["step"], want, "{}: {v}", self.name);
    }

    fn tell(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn result(&mut self) -> Value {
        let v = self.next();
        let result = v
            .get("result")
            .cloned()
            .unwrap_or_else(|| panic!("{}: {v}", self.name));
        eprintln!("{}: {result}", self.name);
        result
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` missing in {v}"))
}

#[test]
fn the_page_answers_json_gzip_pings_pings_protocol_routes_itself_and_measures_its_rtt() {
    if !browser_ready() {
        return;
    }
    let d = Daemon::start("", "127.0.0.1:0");
    let mut s = Scenario::start("heartbeat", &d.url());
    let r = s.result();
    assert!(num(&r, "pings") >= 20.0, "{r}");
    assert_eq!(
        (num(&r, "connects"), num(&r, "disconnects")),
        (1.0, 0.0),
        "never closed: {r}"
    );
    let rtt = num(&r, "rtt");
    assert!(rtt > 0.0 && rtt < 1000.0, "rtt {rtt} ms");
    let interval = num(&r, "interval");
    assert!(
        (150.0..=1000.0).contains(&interval),
        "learned interval {interval} ms"
    );
    assert_eq!(r["shown"], "connected");
    // The protocol route: the page's own pings are answered (never echoed as messages).
    let p = &r["protocol"];
    assert_eq!(num(p, "pings"), 0.0, "no json-gzip pings there: {p}");
    assert_eq!(num(p, "disconnects"), 0.0, "{p}");
    assert_eq!(num(p, "messages"), 0.0, "pongs are not messages: {p}");
    let rtts: Vec<f64> = p["rtts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    assert!(rtts.len() >= 5, "{p}");
    assert!(rtts.iter().all(|&rtt| rtt > 0.0 && rtt < 1000.0), "{p}");
}

#[test]
fn a_stopped_server_is_found_dead_within_the_bound_and_rejoined_when_it_continues() {
    if !browser_ready() {
        return;
    }
    let d = Daemon::start("", "127.0.0.1:0");
    let mut s = Scenario::start("dead-server", &d.url());
    s.step("connected");
    d.signal("STOP");
    s.tell("stopped");
    s.step("disconnected");
    d.signal("CONT");
    s.tell("continued");
    let r = s.result();
    assert_eq!(r["code"], 4000, "{r}");
    // The page's bound: interval x (max_missed + 1) + margin (300 ms in dead-server.mjs),
    // with the interval learned from the pings.
    let interval = num(&r, "interval");
    assert!(
        (150.0..=1000.0).contains(&interval),
        "learned interval {interval} ms"
    );
    let bound = num(&r, "dead_after");
    assert!(
        (bound - (interval * (MAX_MISSED + 1.0) + 300.0)).abs() < 0.01,
        "{r}"
    );
    // Never before the bound after the last ping it answered (a few ms: the ping is
    // recorded after it is inflated, the silence counted from its arrival) ...
    let silence = num(&r, "silence_ms");
    assert!(
        silence >= bound - 50.0,
        "declared dead after {silence} ms of silence, bound {bound}"
    );
    // ... and soon after the stop: the bound from the configured interval, plus slack for
    // a shared machine.
    let nominal = INTERVAL_MS * (MAX_MISSED + 1.0) + 300.0;
    let detected = num(&r, "detected_ms");
    assert!(
        detected <= nominal + 4000.0,
        "found dead {detected} ms after the stop"
    );
    assert!(num(&r, "reconnected_ms") < 15_000.0, "{r}");
}

#[test]
fn a_drained_page_waits_its_hint_and_rejoins_the_restarted_daemon() {
    if !browser_ready() {
        return;
    }
    let drain = "drain_period = \"300ms\"\nreconnect_jitter = \"1500ms\"";
    let mut first = Daemon::start(drain, "127.0.0.1:0");
    let addr = first.addr;
    let mut s = Scenario::start("drain", &first.url());
    s.step("connected");
    first.signal("TERM");
    assert!(first.wait_exit().success(), "the drained daemon exits 0");
    // The next daemon on the same port, as a restart would.
    let _second = Daemon::start(drain, &addr.to_string());
    let r = s.result();
    assert_eq!(r["code"], 1001, "{r}");
    let reason = r["reason"].as_str().unwrap_or_default();
    let hint: f64 = reason
        .strip_prefix("server shutting down; reconnect in ")
        .and_then(|rest| rest.strip_suffix(" ms"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no hint in {reason:?}"));
    assert!(
        (0.0..=1500.0).contains(&hint),
        "hint {hint} within reconnect_jitter"
    );
    assert_eq!(
        num(&r, "reconnect_in"),
        hint,
        "the page plans the hinted delay"
    );
    let waited = num(&r, "waited_ms");
    assert!(
        waited >= hint,
        "next attempt {waited} ms after the close, hint {hint} ms"
    );
    assert!(
        waited <= hint + 2000.0,
        "next attempt {waited} ms after the close, hint {hint} ms"
    );
    assert!(num(&r, "reconnected_ms") < 20_000.0, "{r}");
}
