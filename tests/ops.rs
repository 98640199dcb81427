//! Operations, against the real binary over real sockets: sd_notify sequence, metrics
//! after a scripted scenario, /healthz while draining, the drain spread, socket activation,
//! a refused reload. The daemon logs JSON (one object per line) to stderr; tests learn its
//! addresses from the `listening` / `admin listening` lines (`fields.addr`) and wait on
//! log lines and notify datagrams, each wait bounded by a timeout.

mod common;

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::{BIN, Daemon, activated_at, launch, message, start};
use common::{T, connect, http, metric, recv_close, recv_text, send_text};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// Like [`start`], with the open-file limit (soft and hard) lowered to `nofile` by the
/// shell that then becomes heartwire.
fn start_with_nofile(nofile: u32, toml: &str) -> Daemon {
    launch(toml, &[], |config| {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!(r#"ulimit -n {nofile} && exec "$0" "$@""#))
            .arg(BIN)
            .arg("--config")
            .arg(config);
        cmd
    })
}

/// A unix datagram socket standing in for systemd's notify socket.
struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
    /// Every datagram received so far.
    seen: Vec<String>,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    fn bind() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        Self {
            sock,
            path,
            seen: Vec::new(),
            _dir: dir,
        }
    }

    fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Waits for a datagram matching `pred`; returns it.
    fn wait(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + T;
        let mut buf = vec![0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no notify message `{what}`; got {:#?}",
                self.seen
            );
            self.sock.set_read_timeout(Some(left)).unwrap();
            let Ok(n) = self.sock.recv(&mut buf) else {
                continue;
            };
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.seen.push(msg.clone());
            if pred(&msg) {
                return msg;
            }
        }
    }
}

fn has_line(msg: &str, line: &str) -> bool {
    msg.lines().any(|l| l == line)
}

const OPS_CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
drain_period = "0s"
shutdown_grace = "2s"
[admin]
listen = "127.0.0.1:0"
[log]
format = "json"
level = "info"
[[route]]
path = "/news"
channel = "news"
on_message = "echo"
"#;

#[test]
fn notify_sequence_ready_watchdog_reload_stopping() {
    let mut notify = NotifySocket::bind();
    let mut d = start(
        OPS_CONFIG,
        &[
            ("NOTIFY_SOCKET", notify.path()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let ready = notify.wait("READY=1", |m| has_line(m, "READY=1"));
    assert!(
        has_line(&ready, "STATUS=serving 0 connections on 1 route"),
        "{ready:?}"
    );
    // WATCHDOG_USEC = 200 ms: pings every 100 ms from the runtime.
    notify.wait("WATCHDOG=1", |m| has_line(m, "WATCHDOG=1"));
    notify.wait("WATCHDOG=1 again", |m| has_line(m, "WATCHDOG=1"));

    d.signal("HUP");
    let reloading = notify.wait("RELOADING=1", |m| has_line(m, "RELOADING=1"));
    let usec = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"));
    assert!(usec.parse::<u64>().unwrap() > 0);
    notify.wait("READY=1 after the reload", |m| has_line(m, "READY=1"));

    d.signal("TERM");
    let stopping = notify.wait("STOPPING=1", |m| has_line(m, "STOPPING=1"));
    assert!(stopping.contains("STATUS=draining"), "{stopping:?}");
    assert!(d.wait_exit().success());

    // The order, ignoring watchdog pings and status updates.
    let order: Vec<&str> = notify
        .seen
        .iter()
        .filter_map(|m| {
            ["READY=1", "RELOADING=1", "STOPPING=1"]
                .into_iter()
                .find(|k| has_line(m, k))
        })
        .collect();
    assert_eq!(order, ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reload_shows_in_metrics_and_status() {
    let mut notify = NotifySocket::bind();
    let mut d = start(OPS_CONFIG, &[("NOTIFY_SOCKET", notify.path())]);
    notify.wait("READY=1", |m| has_line(m, "READY=1"));
    let before = d.metrics().await;
    assert_eq!(
        metric(&before, "heartwire_config_last_reload_successful"),
        1.0
    );

    std::fs::write(&d.config, "[server]\nmax_connections = 0\n").unwrap();
    d.signal("HUP");
    d.wait_message("reload refused");
    notify.wait("READY=1 after the refused reload", |m| {
        has_line(m, "READY=1")
    });
    let status = notify.wait("STATUS with the failure", |m| {
        m.contains("last reload failed")
    });
    assert!(
        status.starts_with("STATUS=serving 0 connections on 1 route;"),
        "{status:?}"
    );

    let after = d.metrics().await;
    assert_eq!(
        metric(&after, r#"heartwire_config_reloads_total{result="error"}"#),
        1.0
    );
    assert_eq!(
        metric(&after, "heartwire_config_last_reload_successful"),
        0.0
    );
    // The running config still serves.
    let (status, _) = http(d.public, "GET", "/publish?msg=x", &[], b"").await;
    assert_eq!(status, 200);
    d.signal("TERM");
    assert!(d.wait_exit().success());
}

const SCENARIO: &str = r#"
[server]
listen = "127.0.0.1:0"
max_connections = 3
drain_period = "0s"
shutdown_grace = "2s"
[admin]
listen = "127.0.0.1:0"
[log]
format = "json"
level = "info"
[heartbeat.quick]
strategy = "json-gzip"
ping_interval = "150ms"
max_missed = 1
[[route]]
path = "/news"
channel = "news"
on_message = "echo"
[[route]]
path = "/beat"
heartbeat = "quick"
on_message = "ignore"
[[route]]
path = "/strict"
origins = ["https://ok.example"]
"#;

/// N = 3 connects (+1 after the reload), M = 2 publishes, one heartbeat timeout, one reload
/// (which also raises the log level): every counter exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_reflect_a_scripted_scenario() {
    let mut d = start(SCENARIO, &[]);
    let (public, admin) = (d.public, d.admin());

    // Refusals: no upgrade headers (426), a foreign origin (403).
    assert_eq!(http(public, "GET", "/news", &[], b"").await.0, 426);
    assert!(
        connect(public, "/strict", Some("https://evil.example"))
            .await
            .is_err()
    );

    // N = 3 clients fill max_connections; a 4th is refused (503).
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connect(public, "/news", None).await.unwrap());
    }
    assert!(connect(public, "/news", None).await.is_err());

    // One message from each client, echoed back: counted, and proof that each
    // connection's loop runs (so it receives the publishes below).
    for c in &mut clients {
        send_text(c, "hi").await;
        assert_eq!(recv_text(c).await, "hi");
    }

    // M = 2 publishes to the route's channel, each received by all 3; one to no channel (404).
    for body in ["m1", "m2"] {
        let (status, _) = http(
            public,
            "POST",
            "/publish?channel=news",
            &[],
            body.as_bytes(),
        )
        .await;
        assert_eq!(status, 200);
    }
    for c in &mut clients {
        assert_eq!(recv_text(c).await, "m1");
        assert_eq!(recv_text(c).await, "m2");
    }
    assert_eq!(
        http(public, "POST", "/publish?channel=nope", &[], b"x")
            .await
            .0,
        404
    );

    // One reload: room for one more connection, and debug logging from now on.
    let grown = SCENARIO
        .replace("max_connections = 3", "max_connections = 4")
        .replace("level = \"info\"", "level = \"debug\"");
    std::fs::write(&d.config, grown).unwrap();
    d.signal("HUP");
    d.wait_message("config reloaded");

    // One heartbeat timeout: a client that never answers the gzip pings.
    let mut silent = connect(public, "/beat", None).await.unwrap();
    let frame = recv_close(&mut silent).await;
    assert_eq!(u16::from(frame.code), 4000);

    // The new level applies: the silent client's connection logged at debug, as JSON
    // with its span's structured fields.
    let open = d.wait_log("debug `open` with span fields", |v| {
        message(v) == "open" && v["span"]["route"] == "/beat"
    });
    assert_eq!(open["level"], "DEBUG");
    assert!(
        open["span"]["id"].is_u64() && open["span"]["peer"].is_string(),
        "{open}"
    );

    let m = d.metrics().await;
    let cases: &[(&str, f64)] = &[
        (
            r#"heartwire_connections_accepted_total{route="/news"}"#,
            3.0,
        ),
        (
            r#"heartwire_connections_accepted_total{route="/beat"}"#,
            1.0,
        ),
        (
            r#"heartwire_connections_rejected_total{reason="bad_handshake"}"#,
            1.0,
        ),
        (
            r#"heartwire_connections_rejected_total{reason="origin"}"#,
            1.0,
        ),
        (
            r#"heartwire_connections_rejected_total{reason="limit"}"#,
            1.0,
        ),
        (r#"heartwire_connections_open{route="/news"}"#, 3.0),
        (
            r#"heartwire_messages_sent_total{route="/news",kind="text"}"#,
            9.0,
        ),
        (
            r#"heartwire_messages_received_total{route="/news",kind="text"}"#,
            3.0,
        ),
        (r#"heartwire_bytes_out_total{route="/news"}"#, 18.0),
        (r#"heartwire_publish_requests_total{status="200"}"#, 2.0),
        (r#"heartwire_publish_requests_total{status="404"}"#, 1.0),
        (
            r#"heartwire_heartbeat_pings_sent_total{policy="quick",strategy="json-gzip"}"#,
            1.0,
        ),
        (
            r#"heartwire_heartbeat_pongs_received_total{policy="quick",strategy="json-gzip"}"#,
            0.0,
        ),
        (
            r#"heartwire_heartbeat_timeouts_total{policy="quick",strategy="json-gzip"}"#,
            1.0,
        ),
        (r#"heartwire_config_reloads_total{result="ok"}"#, 1.0),
        ("heartwire_config_last_reload_successful", 1.0),
        ("heartwire_routes", 3.0),
        ("heartwire_draining", 0.0),
    ];
    for (series, want) in cases {
        assert_eq!(metric(&m, series), *want, "{series}");
    }
    // The ticker built one payload per tick (at least the two the silent client saw),
    // not one per connection.
    assert!(
        metric(
            &m,
            r#"heartwire_heartbeat_ping_payloads_built_total{policy="quick"}"#
        ) >= 2.0
    );
    assert!(m.contains(&format!(
        "heartwire_build_info{{version=\"{}\",revision=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        env!("BUILD_GIT_REVISION")
    )));

    // /connections lists the three live clients.
    let (status, body) = http(admin, "GET", "/connections", &[], b"").await;
    assert_eq!(status, 200);
    let list: Vec<Value> = serde_json::from_str(&body).unwrap();
    let news: Vec<&Value> = list.iter().filter(|c| c["route"] == "/news").collect();
    assert_eq!(news.len(), 3, "{body}");
    for c in news {
        assert!(
            c["id"].is_u64() && c["peer"].is_string() && c["since"].is_string(),
            "{c}"
        );
        assert_eq!(
            (c["policy"].clone(), c["missed"].clone()),
            (Value::Null, 0.into())
        );
        assert!(
            c["queue_depth"].is_u64() && c.get("last_rtt_ms").is_some(),
            "{c}"
        );
    }

    d.signal("TERM");
    for c in &mut clients {
        assert_eq!(u16::from(recv_close(c).await.code), 1001);
    }
    assert!(d.wait_exit().success());
    // Every line the daemon wrote was one JSON object.
    let bad: Vec<&Value> = d.log.iter().filter(|v| !v.is_object()).collect();
    assert!(bad.is_empty(), "non-JSON log lines: {bad:#?}");
}

/// Before any event, every label set known at start is exported at 0, so `absent()` and
/// `rate()` alerts see the series from the first scrape; and so are the process metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_daemon_exports_every_known_series_at_zero() {
    let mut d = start(SCENARIO, &[]);
    let m = d.metrics().await;
    let mut zeros: Vec<String> = [
        "origin",
        "limit",
        "bad_handshake",
        "proxy_header",
        "untrusted_proxy",
        "tls_handshake",
    ]
    .iter()
    .map(|r| format!(r#"heartwire_connections_rejected_total{{reason="{r}"}}"#))
    .collect();
    zeros.extend(
        [200, 400, 401, 403, 404, 405, 408, 413, 415, 429, 503]
            .iter()
            .map(|s| format!(r#"heartwire_publish_requests_total{{status="{s}"}}"#)),
    );
    zeros.extend(
        ["ok", "error"]
            .iter()
            .map(|r| format!(r#"heartwire_config_reloads_total{{result="{r}"}}"#)),
    );
    let policy = r#"policy="quick",strategy="json-gzip""#;
    zeros.extend([
        format!("heartwire_heartbeat_pings_sent_total{{{policy}}}"),
        format!("heartwire_heartbeat_pongs_received_total{{{policy}}}"),
        format!("heartwire_heartbeat_timeouts_total{{{policy}}}"),
        r#"heartwire_heartbeat_rtt_seconds_count{policy="quick"}"#.to_owned(),
        r#"heartwire_connections_accepted_total{route="/beat"}"#.to_owned(),
        r#"heartwire_slow_consumers_total{route="/beat",action="skip"}"#.to_owned(),
    ]);
    for series in &zeros {
        assert_eq!(metric(&m, series), 0.0, "{series}");
    }
    // Ticks run without clients; the series exists whether or not one has happened yet.
    assert!(
        metric(
            &m,
            r#"heartwire_heartbeat_ping_payloads_built_total{policy="quick"}"#
        ) >= 0.0
    );

    // The standard process metrics, with plausible values.
    let open = metric(&m, "process_open_fds");
    let max = metric(&m, "process_max_fds");
    assert!(open > 0.0 && open <= max, "open fds {open}, max {max}");
    let resident = metric(&m, "process_resident_memory_bytes");
    let virt = metric(&m, "process_virtual_memory_bytes");
    assert!(
        resident > 0.0 && virt >= resident,
        "rss {resident}, vsz {virt}"
    );
    assert!(metric(&m, "process_cpu_seconds_total") >= 0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = metric(&m, "process_start_time_seconds");
    assert!(
        started <= now + 1.0 && now - started < 3600.0,
        "started {started}, now {now}"
    );
    d.signal("TERM");
    assert!(d.wait_exit().success());
}

const WITHIN_256: &str = r#"
[server]
listen = "127.0.0.1:0"
max_connections = 100
max_http_connections = 100
[log]
format = "json"
level = "info"
[[route]]
path = "/news"
"#;

/// Connection limits above the open-file limit are reported at start and on a reload that
/// raises them, naming the keys, their values, the limit and the fix; limits within it are not.
#[test]
fn connection_limits_above_the_open_file_limit_are_reported() {
    const WARNING: &str = "server.max_connections (10000) + server.max_http_connections (1024) \
                           exceed the open-file limit (256): ";
    let above = WITHIN_256
        .replace("max_connections = 100", "max_connections = 10000")
        .replace("max_http_connections = 100", "max_http_connections = 1024");
    let about_the_limit = |d: &Daemon| {
        d.log
            .iter()
            .filter(|v| message(v).contains("open-file limit"))
            .count()
    };

    // Within the limit: nothing (the check runs before the listeners are reported).
    let mut d = start_with_nofile(256, WITHIN_256);
    assert_eq!(about_the_limit(&d), 0, "{:#?}", d.log);
    // A reload that raises the limits above it: a warning, with the fix.
    std::fs::write(&d.config, &above).unwrap();
    d.signal("HUP");
    let warning = d.wait_message(WARNING);
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert!(
        message(&warning).contains(
            "raise LimitNOFILE= (the shipped heartwire.service sets 262144; `systemctl edit \
             heartwire` overrides it) or ulimit -n above 11024"
        ),
        "{warning}"
    );
    assert_eq!(warning["fields"]["open_file_limit"], 256, "{warning}");
    d.signal("TERM");
    assert!(d.wait_exit().success());
    assert_eq!(about_the_limit(&d), 1, "{:#?}", d.log);

    // Above it at start: warned before serving.
    let mut d = start_with_nofile(256, &above);
    assert_eq!(about_the_limit(&d), 1, "{:#?}", d.log);
    d.signal("TERM");
    assert!(d.wait_exit().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_503_while_draining() {
    let toml = OPS_CONFIG.replace("shutdown_grace = \"2s\"", "shutdown_grace = \"5s\"");
    let mut d = start(&toml, &[]);
    let admin = d.admin();
    assert_eq!(
        http(admin, "GET", "/healthz", &[], b"").await,
        (200, "ok\n".into())
    );
    assert_eq!(http(admin, "POST", "/healthz", &[], b"").await.0, 405);
    assert_eq!(http(admin, "GET", "/nope", &[], b"").await.0, 404);
    // A client that does not answer the close holds the shutdown in its grace period.
    let mut held = connect(d.public, "/news", None).await.unwrap();
    d.signal("TERM");
    d.wait_message("shutting down");
    assert_eq!(
        http(admin, "GET", "/healthz", &[], b"").await,
        (503, "draining\n".into())
    );
    let m = d.metrics().await;
    assert_eq!(metric(&m, "heartwire_draining"), 1.0);
    assert_eq!(u16::from(recv_close(&mut held).await.code), 1001);
    assert!(d.wait_exit().success());
}

/// With a drain period, close times spread across it, and every client gets 1001 with a
/// reconnect hint within `reconnect_jitter`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_spreads_closes_over_the_period() {
    const CLIENTS: usize = 20;
    let period = Duration::from_secs(2);
    let toml = OPS_CONFIG.replace(
        "drain_period = \"0s\"",
        "drain_period = \"2s\"\nreconnect_jitter = \"1500ms\"",
    );
    let mut d = start(&toml, &[]);
    let mut tasks = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(CLIENTS);
    let (go_tx, _) = tokio::sync::broadcast::channel::<Instant>(1);
    for _ in 0..CLIENTS {
        let mut ws = connect(d.public, "/news", None).await.unwrap();
        // An echo proves the connection's loop runs.
        send_text(&mut ws, "ping").await;
        assert_eq!(recv_text(&mut ws).await, "ping");
        let ready_tx = ready_tx.clone();
        let mut go = go_tx.subscribe();
        tasks.push(tokio::spawn(async move {
            ready_tx.send(()).await.unwrap();
            let started = go.recv().await.unwrap();
            loop {
                match tokio::time::timeout(T, ws.next())
                    .await
                    .expect("no close in time")
                {
                    Some(Ok(Message::Close(Some(frame)))) => {
                        return (
                            started.elapsed(),
                            u16::from(frame.code),
                            frame.reason.to_string(),
                        );
                    }
                    Some(Ok(_)) => continue,
                    other => panic!("ended without a close frame: {other:?}"),
                }
            }
        }));
    }
    for _ in 0..CLIENTS {
        ready_rx.recv().await.unwrap();
    }
    go_tx.send(Instant::now()).unwrap();
    d.signal("TERM");
    let mut times = Vec::new();
    for t in tasks {
        let (at, code, reason) = t.await.unwrap();
        assert_eq!(code, 1001);
        let hint = reason
            .strip_prefix("server shutting down; reconnect in ")
            .and_then(|r| r.strip_suffix(" ms"))
            .unwrap_or_else(|| panic!("reason {reason:?}"));
        assert!(hint.parse::<u64>().unwrap() <= 1500, "{reason}");
        times.push(at);
    }
    times.sort();
    let (first, last) = (times[0], times[CLIENTS - 1]);
    // 20 batches, 100 ms apart: the first at once, the last at 1.9 s.
    assert!(
        first < Duration::from_millis(600),
        "first close at {first:?}"
    );
    assert!(last >= period * 3 / 4, "last close at {last:?}: not spread");
    assert!(
        last < period + Duration::from_secs(2),
        "last close at {last:?}"
    );
    let early = times.iter().filter(|t| **t < period / 2).count();
    assert!(
        (5..=15).contains(&early),
        "{early} of {CLIENTS} closed in the first half: {times:?}"
    );
    assert!(d.wait_exit().success());
}

/// `systemd-socket-activate` listening on `ip` and a free port, running heartwire on
/// `toml` when the first connection arrives (see [`activated_at`]).
fn activated(ip: &str, toml: &str) -> Option<(Daemon, u16)> {
    // systemd-socket-activate cannot bind port 0: take a free port, release it, pass it.
    let port = std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    Some((activated_at(&format!("{ip}:{port}"), toml)?, port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_activation_serves_the_inherited_listener() {
    // server.listen names a port that is not served: the inherited socket is.
    let toml = OPS_CONFIG.replace("127.0.0.1:0\"\ndrain", "127.0.0.1:1\"\ndrain");
    let Some((mut d, port)) = activated("127.0.0.1", &toml) else {
        return;
    };
    // It starts the daemon on the first connection, which the kernel queues meanwhile:
    // this connect completes once the daemon has started and accepted it.
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut ws = connect(addr, "/news", None).await.unwrap();
    // An echo proves the connection's loop runs (and so receives publishes).
    send_text(&mut ws, "ping").await;
    assert_eq!(recv_text(&mut ws).await, "ping");
    let inherited = d.wait_message("socket activation");
    assert_eq!(inherited["fields"]["sockets"], 1);
    assert_eq!(d.addr_of("listening"), addr);
    let (status, body) = http(addr, "GET", "/publish?msg=hello&channel=news", &[], b"").await;
    assert_eq!(
        (status, body.as_str()),
        (200, "{\"channels\":{\"news\":1},\"queued\":1}\n")
    );
    assert_eq!(recv_text(&mut ws).await, "hello");
    d.signal("TERM");
    assert_eq!(u16::from(recv_close(&mut ws).await.code), 1001);
    assert!(d.wait_exit().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inherited_public_socket_without_a_publish_token_is_refused() {
    // server.listen is loopback, so the file alone passes `check`; the socket is not.
    let Some((mut d, port)) = activated("0.0.0.0", OPS_CONFIG) else {
        return;
    };
    // The first connection starts the daemon, which must refuse to serve it.
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = "GET /publish?msg=hello&channel=news HTTP/1.1\r\nHost: x\r\n\r\n";
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(T, stream.read_to_end(&mut answer)).await;
    assert!(answer.is_empty(), "the daemon answered: {answer:?}");
    let exit = d.wait_exit();
    assert_eq!(exit.code(), Some(2), "{:#?}", d.log);
    let why = d
        .log
        .iter()
        .filter_map(Value::as_str)
        .find(|l| l.contains("refusing to serve"))
        .unwrap_or_else(|| panic!("no refusal in {:#?}", d.log))
        .to_owned();
    for part in [
        "publish.token",
        "inherited from systemd",
        "0.0.0.0",
        "heartwire.toml",
    ] {
        assert!(why.contains(part), "{why}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_cannot_drop_the_token_of_an_inherited_public_socket() {
    let with_token = format!("{OPS_CONFIG}[publish]\ntoken = \"s3cret\"\n");
    let Some((mut d, port)) = activated("0.0.0.0", &with_token) else {
        return;
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut ws = connect(addr, "/news", None).await.unwrap();
    send_text(&mut ws, "ping").await;
    assert_eq!(recv_text(&mut ws).await, "ping");
    // The same file without the token: valid on its own (server.listen is loopback).
    std::fs::write(&d.config, OPS_CONFIG).unwrap();
    d.signal("HUP");
    let refused = d.wait_message("reload refused");
    assert!(
        message(&refused).contains("inherited from systemd"),
        "{refused}"
    );
    let (status, _) = http(addr, "GET", "/publish?msg=x&channel=news", &[], b"").await;
    assert_eq!(status, 401, "the token must still be required");
    let auth = [("Authorization", "Bearer s3cret")];
    let (status, _) = http(addr, "GET", "/publish?msg=hello&channel=news", &auth, b"").await;
    assert_eq!(status, 200);
    assert_eq!(recv_text(&mut ws).await, "hello");
}

/// SIGTERM under socket activation, with no WebSocket client: the HTTP connections left
/// over from activation (the one that started the daemon, an idle keep-alive, one that
/// never sent a byte, one with half-sent headers) must not hold up the exit. drain_period and shutdown_grace are long
/// (10 s, 5 s) and handshake_timeout longer still (30 s), so a shutdown that waited for any
/// of those connections would log "shutdown grace ran out" and take >= 5 s; a clean one
/// exits well before. No bound depends on machine speed: the lower bounds are event order
/// (the keep-alive is still open and the daemon still running when SIGTERM is sent), the
/// upper bound is the configured grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_socket_activation_does_not_wait_for_idle_or_stalled_http_connections() {
    const GRACE: Duration = Duration::from_secs(5);
    let toml = r#"
[server]
listen = "127.0.0.1:1"
drain_period = "10s"
shutdown_grace = "5s"
handshake_timeout = "30s"
[admin]
listen = "127.0.0.1:0"
[log]
format = "json"
level = "info"
[[route]]
path = "/news"
channel = "news"
on_message = "echo"
[[static]]
path = "/index"
body = "hi"
"#;
    let Some((mut d, port)) = activated("127.0.0.1", toml) else {
        return;
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // As an operator's `curl http://.../nothing`: starts the daemon, gets 404, closes.
    let (status, _) = http(addr, "GET", "/nothing", &[], b"").await;
    assert_eq!(status, 404);
    assert_eq!(d.addr_of("listening"), addr);

    // An idle keep-alive: one request answered, the connection left open.
    let mut keep_alive = tokio::net::TcpStream::connect(addr).await.unwrap();
    keep_alive
        .write_all(b"GET /index HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&head).ends_with("\r\n\r\nhi") {
        let n = tokio::time::timeout(T, keep_alive.read(&mut buf))
            .await
            .expect("no answer on the keep-alive")
            .unwrap();
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&head));
        head.extend_from_slice(&buf[..n]);
    }
    // A connection that never sends a byte (a pre-connecting browser, a TCP probe).
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    // One that sent half its headers and stalls: it must not hold the exit until
    // handshake_timeout (30 s) or shutdown_grace (5 s).
    let mut partial = tokio::net::TcpStream::connect(addr).await.unwrap();
    partial
        .write_all(b"GET /index HTTP/1.1\r\nHo")
        .await
        .unwrap();

    // Lower bound: the keep-alive is still open before the signal (the server holds it).
    assert!(
        tokio::time::timeout(Duration::from_millis(200), keep_alive.read(&mut buf))
            .await
            .is_err(),
        "the server closed the idle keep-alive before SIGTERM"
    );
    assert!(
        matches!(d.child.try_wait(), Ok(None)),
        "exited before SIGTERM"
    );

    let sent = Instant::now();
    d.signal("TERM");
    // Both leftover connections are closed by the server (EOF); if shutdown waited for
    // them, that happens only when the grace runs out, and the asserts below say so.
    for (name, conn) in [
        ("keep-alive", &mut keep_alive),
        ("silent", &mut silent),
        ("partial", &mut partial),
    ] {
        let mut rest = Vec::new();
        tokio::time::timeout(T, conn.read_to_end(&mut rest))
            .await
            .unwrap_or_else(|_| panic!("the {name} connection was not closed on SIGTERM"))
            .ok();
    }
    let exit = d.wait_exit();
    let took = sent.elapsed();
    assert!(exit.success(), "{exit:?}\n{:#?}", d.log);
    // Event order: requested, then shutting down with no WebSocket open, then exit.
    let pos = |text: &str| {
        d.log
            .iter()
            .position(|v| message(v).contains(text))
            .unwrap_or_else(|| panic!("no `{text}` in {:#?}", d.log))
    };
    assert!(pos("shutdown requested") < pos("shutting down"));
    let shutting = &d.log[pos("shutting down")];
    assert_eq!(shutting["fields"]["connections"], 0, "{shutting}");
    assert!(
        !d.log
            .iter()
            .any(|v| message(v).contains("shutdown grace ran out")),
        "shutdown waited out the grace for a connection: {:#?}",
        d.log
    );
    // Upper bound: the configured grace, far above any scheduling jitter.
    assert!(
        took < GRACE,
        "exit took {took:?}, not under shutdown_grace {GRACE:?}"
    );
}

/// A client that vanishes without a close frame is logged as having left, with no close
/// code: not as a protocol error it did not commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_vanishes_is_logged_as_gone_not_as_a_protocol_error() {
    let mut d = start(
        &OPS_CONFIG.replace("level = \"info\"", "level = \"heartwire=debug\""),
        &[],
    );
    let public = d.public;
    let closed = |v: &Value, id: &Value| message(v) == "closed" && v["span"]["id"] == *id;

    // Upgrades, then ends the TCP stream (FIN) without a close frame.
    let eof = common::Raw::connect(public, "/news").await;
    let opened = d.wait_log("open", |v| message(v) == "open");
    drop(eof);
    let id = opened["span"]["id"].clone();
    let line = d.wait_log("closed after EOF", |v| closed(v, &id));
    assert_eq!(
        line["fields"]["reason"], "closed without a close frame",
        "{line}"
    );
    assert!(line["fields"].get("code").is_none(), "{line}");

    // Upgrades, then resets the connection (SO_LINGER 0 sends RST on close).
    let rst = common::Raw::connect(public, "/news").await;
    rst.stream.set_zero_linger().unwrap();
    let opened = d.wait_log("a second open", |v| {
        message(v) == "open" && v["span"]["id"] != id
    });
    drop(rst);
    let id = opened["span"]["id"].clone();
    let line = d.wait_log("closed after RST", |v| closed(v, &id));
    assert_eq!(
        line["fields"]["reason"], "connection reset, no close frame",
        "{line}"
    );
    assert!(line["fields"].get("code").is_none(), "{line}");

    d.signal("TERM");
    assert!(d.wait_exit().success());
}
