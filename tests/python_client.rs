//! clients/python/heartwire_client.py, the README's Python example, against the real binary
//! on an envelope route with history: it answers json-gzip pings, waits out a drain's hint,
//! and across two restarts on the same port prints every published message once, in order,
//! saying it recovered; after a third that lost the history it says the app must reload.
//! Every wait is on the script's output or the daemon's, bounded.
//!
//! It needs a Python with websocket-client: see `tests/common/python.rs`.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::daemon::{self, Daemon, lines_of};
use serde_json::Value;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/clients/python/heartwire_client.py"
);
/// Upper bound of a wait on the script: after a restart it may be in a backoff of seconds.
const T: Duration = Duration::from_secs(30);
const PONGS: &str = r#"heartwire_heartbeat_pongs_received_total{policy="hb",strategy="json-gzip"}"#;

/// 200 ms json-gzip pings, forgiving 5 missed (the machine is shared); `/live` keeps the
/// history of `news` in `dir`, across restarts.
fn config(listen: &str, dir: &Path) -> String {
    format!(
        r#"
[server]
listen = "{listen}"
drain_period = "300ms"
reconnect_jitter = "500ms"
shutdown_grace = "1s"
[admin]
listen = "127.0.0.1:0"
[log]
format = "json"
[history]
dir = "{}"
[heartbeat.hb]
strategy = "json-gzip"
ping_interval = "200ms"
max_missed = 5
[[route]]
path = "/live"
format = "envelope"
channel = "news"
history_size = 1000
heartbeat = "hb"
"#,
        dir.display()
    )
}

/// The script, its stdout (messages) and stderr (what it does) read line by line.
struct Script {
    child: Child,
    rx: mpsc::Receiver<(usize, String)>,
    /// Every line so far, by stream (OUT, ERR), and how far each wait has looked.
    lines: [Vec<String>; 2],
    seen: [usize; 2],
}

const OUT: usize = 0;
const ERR: usize = 1;

impl Script {
    fn start(python: &str, url: &str) -> Script {
        let mut child = Command::new(python)
            .args(["-u", SCRIPT, "--envelope", url])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run `{python} {SCRIPT}`: {err}"));
        let (tx, rx) = mpsc::channel();
        for (stream, lines) in [
            (OUT, lines_of(child.stdout.take().unwrap())),
            (ERR, lines_of(child.stderr.take().unwrap())),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in lines {
                    if tx.send((stream, line)).is_err() {
                        return;
                    }
                }
            });
        }
        Script {
            child,
            rx,
            lines: [Vec::new(), Vec::new()],
            seen: [0, 0],
        }
    }

    /// The next line of `stream` (after those earlier waits looked at) matching `pred`.
    fn wait(&mut self, stream: usize, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + T;
        loop {
            while self.seen[stream] < self.lines[stream].len() {
                let line = &self.lines[stream][self.seen[stream]];
                self.seen[stream] += 1;
                if pred(line) {
                    return line.clone();
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((s, line)) => self.lines[s].push(line),
                Err(err) => panic!(
                    "the script printed no {what} ({err}):\n{}",
                    self.transcript()
                ),
            }
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status();
        assert!(status.unwrap().success(), "kill -{sig} {pid}");
    }

    /// Ends the script and reads what it printed to the end.
    fn finish(&mut self) {
        daemon::end(&mut self.child);
        while let Ok((s, line)) = self.rx.recv_timeout(T) {
            self.lines[s].push(line);
        }
    }

    fn transcript(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.lines[OUT].join("\n"),
            self.lines[ERR].join("\n")
        )
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        daemon::end(&mut self.child);
    }
}

/// `n` of a message line `{"channel": "news", ..., "data": {"n": n}}`.
fn n_of(line: &str) -> Option<u64> {
    let v: Value = serde_json::from_str(line).ok()?;
    (v["channel"] == "news").then(|| v["data"]["n"].as_u64())?
}

/// Publishes `{"n": ...}` to `news`, the next `count` numbers after `*n`, each answered 200.
async fn publish(d: &Daemon, n: &mut u64, count: u64) {
    for _ in 0..count {
        *n += 1;
        let body = format!("{{\"n\":{n}}}");
        let (status, text) = common::http(
            d.public,
            "POST",
            "/publish?channel=news",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .await;
        assert_eq!(status, 200, "publish {n}: {text}");
    }
}

/// A fresh daemon on `listen` once it has read back the history the last one saved.
fn restart(listen: &str, dir: &Path) -> Daemon {
    let mut d = daemon::start(&config(listen, dir), &[]);
    d.wait_message("history restored");
    d
}

/// SIGTERM: the drain closes the script with 1001, then the history is written.
fn drain(d: &mut Daemon) {
    d.signal("TERM");
    assert!(d.wait_exit().success(), "the drained daemon exits 0");
}

/// The `replayed` count of a line `news: recovered, N replayed`.
fn replayed(line: &str) -> u64 {
    let n = line.strip_prefix("news: recovered, ");
    let n = n.and_then(|rest| rest.strip_suffix(" replayed"));
    n.and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a recovery: {line:?}"))
}

/// N of `... reconnect in N ms ...` after `prefix`.
fn ms_after(line: &str, prefix: &str) -> u64 {
    let rest = line.split(prefix).nth(1).unwrap_or_default();
    let n = rest.split(' ').next().unwrap_or_default();
    n.parse()
        .unwrap_or_else(|_| panic!("no `{prefix}N` in {line:?}"))
}

#[tokio::test]
async fn the_python_example_answers_pings_waits_the_drain_hint_and_recovers_every_message_once() {
    let Some(python) = common::python::python("websocket") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut d = daemon::start(&config("127.0.0.1:0", dir.path()), &[]);
    let listen = d.public.to_string();
    let mut s = Script::start(&python, &format!("ws://{listen}/live"));
    s.wait(ERR, "position", |l| l.starts_with("news: at offset 0 "));
    let mut n = 0;
    publish(&d, &mut n, 3).await;
    s.wait(OUT, "message 3", |l| n_of(l) == Some(3));

    // It answers json-gzip pings: the daemon counts its pongs (and, max_missed = 5, would
    // have closed it 4000 by now otherwise).
    let deadline = Instant::now() + T;
    while common::metric(&d.metrics().await, PONGS) < 3.0 {
        assert!(Instant::now() < deadline, "no pongs from the script");
        tokio::task::yield_now().await;
    }

    // A restart: the script plans the drain's hinted delay, then comes back to the next
    // daemon on the same port (retrying with backoff until it listens).
    drain(&mut d);
    let close = s.wait(ERR, "the drain's close", |l| {
        l.starts_with("disconnected (")
    });
    assert!(close.starts_with("disconnected (1001 "), "{close}");
    let hint = ms_after(&close, "reconnect in ");
    assert!(
        hint <= 500,
        "hint {hint} ms within reconnect_jitter: {close}"
    );
    assert_eq!(ms_after(&close, "reconnecting in "), hint, "{close}");
    d = restart(&listen, dir.path());
    s.wait(ERR, "a recovery", |l| l.starts_with("news: recovered, "));
    publish(&d, &mut n, 3).await;
    s.wait(OUT, "message 6", |l| n_of(l) == Some(6));

    // Away (stopped, like a laptop asleep) while messages are published, a restart and
    // more messages: whatever closes its connection meanwhile, the next daemon replays
    // what it missed, at least the 5 published to that daemon.
    s.signal("STOP");
    publish(&d, &mut n, 3).await;
    drain(&mut d);
    d = restart(&listen, dir.path());
    publish(&d, &mut n, 5).await;
    s.signal("CONT");
    let line = s.wait(ERR, "a recovery", |l| l.starts_with("news: recovered, "));
    assert!(replayed(&line) >= 5, "{line}\n{}", s.transcript());
    publish(&d, &mut n, 3).await;
    s.wait(OUT, "message", |l| n_of(l) == Some(n));

    // A restart that lost the history (another dir): nothing can be replayed, the script
    // says the app must reload, and goes on with the new epoch's messages.
    drain(&mut d);
    let elsewhere = tempfile::tempdir().unwrap();
    let d = daemon::start(&config(&listen, elsewhere.path()), &[]);
    let line = s.wait(ERR, "the loss", |l| l.starts_with("news: not recovered"));
    assert_eq!(
        line,
        "news: not recovered (epoch_changed): the app must reload its state"
    );
    publish(&d, &mut n, 2).await;
    s.wait(OUT, "the last message", |l| n_of(l) == Some(n));

    s.finish();
    let ns: Vec<u64> = s.lines[OUT].iter().filter_map(|l| n_of(l)).collect();
    assert_eq!(ns, (1..=n).collect::<Vec<_>>(), "{}", s.transcript());
    let verdicts = s.lines[ERR]
        .iter()
        .filter(|l| l.contains("recovered"))
        .count();
    assert_eq!(verdicts, 3, "{}", s.transcript());
}
