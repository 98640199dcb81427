//! The browser client in a real browser: Debian's Chromium driven by playwright-core
//! (pinned in clients/js/package.json) against the real binary on 127.0.0.1. Each test
//! starts the daemon, then `node clients/js/test/browser/<scenario>.mjs <url>`, which opens
//! the daemon's own /demo page (or, for tokens, a page that imports its /heartwire.js with
//! a getToken minting HS256 tokens in node) and prints JSON lines: `{"step": ...}` when the test must act
//! (signals), `{"result": {...}}` at the end. Every wait is bounded; nothing sleeps.
//!
//! Needs Chromium at `CHROMIUM_PATH` (default /usr/bin/chromium), node 18 or newer and
//! `npm ci` in clients/js. Without them the tests fail saying how to install them: a test
//! that did not run never reports `ok`. `SKIP_BROWSER_TESTS=1` skips them on purpose,
//! except under CI (`CI` set), which always runs them. (Not `HEARTWIRE_*`: the daemon
//! refuses variables with its prefix that name no config key.)

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::daemon::{self, Daemon, lines_of};
use common::publisher::Publisher;
use serde_json::Value;

const JS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/js");
/// Upper bound of any single wait: the machine is shared and Chromium starts slowly.
const T: Duration = Duration::from_secs(30);

/// The json-gzip route every scenario uses (200 ms pings), and a route with protocol pings,
/// invisible to the page. The server forgives 5 missed pings: a page on a loaded machine
/// may answer late, and the server's own verdict is tested in tests/heartbeat.rs; the
/// page's verdict (dead-server.mjs) counts [`PAGE_MAX_MISSED`].
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
max_missed = 5
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
/// The page's `maxMissed` in dead-server.mjs.
const PAGE_MAX_MISSED: f64 = 2.0;

/// How to get what the browser tests need, for the failure message.
const INSTALL: &str = "\
tests/browser.rs drives Debian's Chromium with node and the pinned playwright-core
(which downloads no browser). On Debian, as root:
    apt-get install chromium nodejs npm
    (cd clients/js && npm ci --ignore-scripts)
Another Chromium: CHROMIUM_PATH=/path/to/chromium. .ci/run does all this.
To skip these tests instead, set SKIP_BROWSER_TESTS=1; CI (env CI set) always runs them.";

/// The Chromium the scenarios launch: `CHROMIUM_PATH`, else Debian's.
fn chromium() -> String {
    std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// What is missing to run the scenarios, or `None` when nothing is.
fn missing() -> Option<String> {
    let mut missing = Vec::new();
    let chromium = chromium();
    if !Path::new(&chromium).is_file() {
        missing.push(format!("no Chromium at {chromium}"));
    }
    match Command::new("node").arg("--version").output() {
        Err(err) => missing.push(format!("cannot run `node`: {err}")),
        Ok(out) => {
            let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let major: u32 = version
                .trim_start_matches('v')
                .split('.')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            if major < 18 {
                missing.push(format!("node {version:?} is older than 18"));
            }
        }
    }
    let pinned = package_version(&Path::new(JS).join("package.json"), "devDependencies");
    let installed = package_version(
        &Path::new(JS).join("node_modules/playwright-core/package.json"),
        "version",
    );
    if installed.is_none() || installed != pinned {
        missing.push(format!(
            "playwright-core {} in clients/js/node_modules (found {})",
            pinned.as_deref().unwrap_or("?"),
            installed.as_deref().unwrap_or("none")
        ));
    }
    (!missing.is_empty()).then(|| missing.join("; "))
}

/// `version` of a package.json, or its pinned playwright-core under `devDependencies`.
fn package_version(path: &Path, key: &str) -> Option<String> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    let field = match key {
        "devDependencies" => &v[key]["playwright-core"],
        _ => &v[key],
    };
    field.as_str().map(str::to_owned)
}

/// Whether the browser tests should run; panics with the way to install what is missing.
fn browser_ready() -> bool {
    let ci = std::env::var_os("CI").is_some();
    if !ci && std::env::var("SKIP_BROWSER_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("skipped: SKIP_BROWSER_TESTS=1");
        return false;
    }
    if let Some(why) = missing() {
        panic!("{why}\n{INSTALL}");
    }
    true
}

/// The real binary on [`HB`] plus `server` keys, listening on `listen`.
fn start(server: &str, listen: &str) -> Daemon {
    start_with(server, listen, "")
}

/// [`start`], with `more` config after [`HB`].
fn start_with(server: &str, listen: &str, more: &str) -> Daemon {
    let toml =
        format!("[server]\nlisten = \"{listen}\"\nshutdown_grace = \"2s\"\n{server}\n{HB}\n{more}");
    daemon::start(&toml, &[])
}

/// A route whose subscribers need an HS256 token signed with tests/keys/hs.secret (the
/// scenarios mint them in node), with no leeway so that a token a few seconds long
/// really runs out, on the json-gzip heartbeat.
fn auth_config() -> String {
    format!(
        r#"
[auth]
leeway = "0s"
[[auth.key]]
algorithm = "HS256"
file = "{}/tests/keys/hs.secret"
[[route]]
path = "/me"
auth = "jwt"
channels = ["news", "user.{{sub}}"]
heartbeat = "hb"
"#,
        env!("CARGO_MANIFEST_DIR")
    )
}

fn url(d: &Daemon) -> String {
    format!("http://{}", d.public)
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
            .env("CHROMIUM_PATH", chromium())
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
        daemon::end(&mut self.child);
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
    let d = start("", "127.0.0.1:0");
    let mut s = Scenario::start("heartbeat", &url(&d));
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
    let d = start("", "127.0.0.1:0");
    let mut s = Scenario::start("dead-server", &url(&d));
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
        (bound - (interval * (PAGE_MAX_MISSED + 1.0) + 300.0)).abs() < 0.01,
        "{r}"
    );
    // Never before the bound: by the client's own clock (rounded), and by the page's,
    // which starts a little later (the ping is shown once inflated) ...
    let silence = num(&r, "client_silence_ms");
    assert!(
        silence >= bound.floor(),
        "declared dead after {silence} ms of silence, bound {bound}"
    );
    let shown = num(&r, "silence_ms");
    assert!(
        shown >= bound - 100.0,
        "declared dead {shown} ms after the last ping shown, bound {bound}"
    );
    // ... and soon after the stop: the bound from the configured interval, plus slack for
    // a shared machine.
    let nominal = INTERVAL_MS * (PAGE_MAX_MISSED + 1.0) + 300.0;
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
    let mut first = start(drain, "127.0.0.1:0");
    let addr = first.public;
    let mut s = Scenario::start("drain", &url(&first));
    s.step("connected");
    first.signal("TERM");
    assert!(first.wait_exit().success(), "the drained daemon exits 0");
    // The next daemon on the same port, as a restart would.
    let _second = start(drain, &addr.to_string());
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

#[test]
fn an_expiring_token_is_refreshed_through_get_token_and_the_socket_stays_open() {
    if !browser_ready() {
        return;
    }
    let d = start_with("", "127.0.0.1:0", &auth_config());
    let mut s = Scenario::start("token-refresh", &url(&d));
    let r = s.result();
    // The first token had expired: the handshake closed with 4001, which the page can
    // read, and the client fetched a fresh token and retried at once (no backoff).
    let down = r["disconnects"].as_array().unwrap();
    assert_eq!(down.len(), 1, "one close, at the start: {r}");
    assert_eq!(down[0]["code"], 4001, "{r}");
    assert!(
        down[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("token refused (expired): "),
        "{r}"
    );
    assert_eq!(down[0]["reconnectIn"], 0, "{r}");
    assert!(num(&r, "retry_ms") < 2000.0, "{r}");
    // Then one socket, never reopened, refreshed over the open socket (the token for
    // the retry, then at least one refresh) and still delivering after its first exp.
    assert_eq!(num(&r, "connects"), 2.0, "{r}");
    assert!(num(&r, "calls") >= 3.0, "{r}");
    assert!(num(&r, "message_after_exp_ms") > 1000.0, "{r}");
    assert_eq!(r["state"], "connected", "{r}");
    assert_eq!(r["errors"].as_array().map(Vec::len), Some(0), "{r}");
}

/// A scenario's result after a close the page must not retry (`stopped` in lib.mjs): one
/// attempt over the window, one `error` with `code` and the close's reason, no reconnect
/// planned. Returns the reason.
fn assert_stopped(r: &Value, code: u16) -> String {
    assert_eq!(r["retried"], false, "{r}");
    assert_eq!((num(r, "attempts"), num(r, "errors")), (1.0, 1.0), "{r}");
    assert_eq!(r["code"], code, "{r}");
    let reason = r["reason"].as_str().unwrap_or_default();
    assert!(
        r["message"].as_str().unwrap_or_default().contains(reason),
        "{r}"
    );
    assert_eq!(r["reconnect_in"], Value::Null, "{r}");
    assert_eq!(r["state"], "disconnected", "{r}");
    reason.to_owned()
}

#[test]
fn a_token_for_a_forbidden_channel_ends_in_one_attempt_and_a_terminal_error() {
    if !browser_ready() {
        return;
    }
    let d = start_with("", "127.0.0.1:0", &auth_config());
    let mut s = Scenario::start("token-refused", &url(&d));
    let r = s.result();
    let reason = assert_stopped(&r, 4003);
    assert_eq!(num(&r, "calls"), 1.0, "{r}");
    assert!(
        reason.starts_with("token refused (channel): channel \"user.alice\" is not allowed"),
        "{r}"
    );
}

#[test]
fn a_page_kicked_by_the_backend_reads_4009_and_does_not_come_back() {
    if !browser_ready() {
        return;
    }
    let room = "[[route]]\npath = \"/room\"\nchannel = \"lobby\"\nheartbeat = \"hb\"";
    let d = start_with("", "127.0.0.1:0", room);
    let mut s = Scenario::start("kicked", &url(&d));
    let r = s.result();
    assert_eq!(r["kick"]["status"], 200, "{r}");
    assert_eq!(r["kick"]["body"]["disconnected"], 1, "{r}");
    assert_eq!(assert_stopped(&r, 4009), "logged out");
}

#[test]
fn a_page_from_a_refused_origin_reads_4003_naming_it_and_stops() {
    if !browser_ready() {
        return;
    }
    let strict = "[[route]]\npath = \"/strict\"\norigins = [\"https://app.example.com\"]\nheartbeat = \"hb\"";
    let d = start_with("", "127.0.0.1:0", strict);
    let mut s = Scenario::start("origin-refused", &url(&d));
    let r = s.result();
    // A browser that saw only the 403 would report 1006 and retry at the backoff's pace.
    let reason = assert_stopped(&r, 4003);
    let origin = r["origin"].as_str().unwrap_or_default();
    assert_eq!(origin, url(&d), "{r}");
    assert_eq!(
        reason,
        format!(
            "origin `{origin}` may not connect to /strict: add it to `origins` of this [[route]]"
        )
    );
}

#[test]
fn the_demo_page_takes_a_pasted_jwt_or_a_token_url_on_a_jwt_route() {
    if !browser_ready() {
        return;
    }
    let d = start_with("", "127.0.0.1:0", &auth_config());
    let mut s = Scenario::start("demo-token", &url(&d));
    let r = s.result();
    // Without a token: refused (4003 missing), and the form is shown.
    assert_eq!(r["refused"]["code"], 4003, "{r}");
    assert!(
        r["refused"]["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("token refused (missing): "),
        "{r}"
    );
    assert_eq!(r["form_shown"], true, "{r}");
    assert_eq!(r["pasted"], "connected", "{r}");
    assert_eq!(r["from_endpoint"], "connected", "{r}");
    assert!(num(&r, "served") >= 1.0, "the token URL was asked: {r}");
    assert_eq!(num(&r, "errors"), 1.0, "only the first refusal: {r}");
    assert_eq!(num(&r, "other_closes"), 0.0, "{r}");
}

#[test]
fn a_page_offline_across_a_restart_recovers_every_message_once_in_order() {
    if !browser_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let live = format!(
        "[history]\ndir = \"{}\"\n[[route]]\npath = \"/live\"\nformat = \"envelope\"\nchannel = \"news\"\nhistory_size = 1000\nheartbeat = \"hb\"",
        dir.path().display()
    );
    let drain = "drain_period = \"300ms\"\nreconnect_jitter = \"500ms\"";
    let mut first = start_with(drain, "127.0.0.1:0", &live);
    let addr = first.public;
    let mut s = Scenario::start("recovery", &url(&first));
    s.step("connected");
    let mut publisher = Publisher::start(vec![addr], "news", Duration::from_millis(20));
    publisher.accepted(5);
    // Offline: no attempt until online, whatever closes meanwhile.
    s.tell("offline");
    s.step("offline");
    publisher.accepted(5);
    first.signal("TERM");
    assert!(first.wait_exit().success(), "the drained daemon exits 0");
    let mut second = start_with(drain, &addr.to_string(), &live);
    second.wait_message("history restored");
    // Published to the restarted daemon while the page is still away.
    let restarted = publisher.mark();
    publisher.accepted_after(restarted, 5);
    s.tell("online");
    s.step("recovered");
    publisher.accepted(5);
    publisher.finish();
    let last = *publisher.ok.last().unwrap();
    s.tell(&last.to_string());
    let r = s.result();
    let ns: Vec<u64> = r["ns"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert!(
        ns.windows(2).all(|w| w[0] < w[1]),
        "in order, none twice: {ns:?}"
    );
    let missing: Vec<&u64> = publisher.ok.iter().filter(|n| !ns.contains(n)).collect();
    assert!(missing.is_empty(), "missed {missing:?}: {r}");
    assert!(
        ns.iter()
            .all(|n| publisher.ok.contains(n) || publisher.unanswered.contains(n)),
        "a message never published: {r}"
    );
    // The first position asked nothing; the one after the restart replayed what the page
    // missed (at least the 5 published to the second daemon before it came back).
    let p = r["positions"].as_array().unwrap();
    assert_eq!(p.len(), 2, "{r}");
    assert_eq!(p[0].get("recovered"), None, "{r}");
    assert_eq!(p[1]["recovered"], true, "{r}");
    assert!(num(&p[1], "replayed") >= 5.0, "{r}");
    assert_eq!(
        p[0]["epoch"], p[1]["epoch"],
        "the epoch survived the restart: {r}"
    );
}
