//! History and recovery end to end: envelope frames, publish positions, Idempotency-Key,
//! recovery after a disconnect, after a stall, and across a restart of the daemon (with
//! `history.dir`, also under socket activation), with real clients over real sockets.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::daemon::{BIN, Daemon, activated_at, launch, which};
use common::{Server, T, connect, http, http_with_head, recv_text};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

const CONFIG: &str = r#"
[[route]]
path = "/h"
format = "envelope"
channels = ["news", "user.{query.u}"]
history_size = 100
history_ttl = "1m"
welcome = "hi"

[[route]]
path = "/raw"
channel = "news"
"#;

async fn json(ws: &mut common::Ws) -> Value {
    serde_json::from_str(&recv_text(ws).await).unwrap()
}

/// Publishes `body` as text to `channel`; the answer as JSON.
async fn publish(s: &Server, channel: &str, body: &str) -> Value {
    let (status, answer) = s
        .publish(&format!("/publish?channel={channel}"), body)
        .await;
    assert_eq!(status, 200, "{answer}");
    serde_json::from_str(&answer).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reconnects_gets_exactly_what_it_missed() {
    let s = Server::start(CONFIG).await;
    let mut ws = s.ws("/h?u=7").await;
    assert_eq!(
        json(&mut ws).await,
        serde_json::json!({"type": "message", "data": "hi"})
    );
    let position = json(&mut ws).await;
    assert_eq!(position["type"], "position");
    let epoch = position["epoch"].as_str().unwrap().to_owned();
    assert_eq!(position["offset"], 0);
    // The personal channel has its own position.
    let user = json(&mut ws).await;
    assert_eq!(
        (user["channel"].as_str(), user["offset"].as_u64()),
        (Some("user.7"), Some(0))
    );
    let mut raw = s.ws("/raw").await;

    let answer = publish(&s, "news", "one").await;
    assert_eq!(answer["channels"]["news"], 2);
    assert_eq!(
        answer["positions"]["news"],
        serde_json::json!({"epoch": epoch, "offset": 1})
    );
    let one = json(&mut ws).await;
    assert_eq!(
        one,
        serde_json::json!({"type": "message", "channel": "news", "offset": 1, "epoch": epoch, "data": "one"})
    );
    assert_eq!(
        recv_text(&mut raw).await,
        "one",
        "raw routes see the bare message"
    );
    // JSON stays JSON, inline.
    let (status, _) = s
        .http(
            "POST",
            "/publish?channel=news",
            &[("Content-Type", "application/json")],
            br#"{"n": 2}"#,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(json(&mut ws).await["data"], serde_json::json!({"n": 2}));
    drop(ws);

    for text in ["three", "four", "five"] {
        publish(&s, "news", text).await;
    }
    let mut back = s.ws(&format!("/h?u=7&recover=news:2:{epoch}")).await;
    assert_eq!(json(&mut back).await["data"], "hi");
    let pos = json(&mut back).await;
    assert_eq!(
        (
            pos["channel"].as_str(),
            pos["recovered"].as_bool(),
            pos["replayed"].as_u64(),
            pos["offset"].as_u64()
        ),
        (Some("news"), Some(true), Some(3), Some(5)),
        "{pos}"
    );
    for (offset, text) in [(3, "three"), (4, "four"), (5, "five")] {
        let m = json(&mut back).await;
        assert_eq!(
            (m["offset"].as_u64(), m["data"].as_str()),
            (Some(offset), Some(text))
        );
    }
    assert_eq!(
        json(&mut back).await["channel"],
        "user.7",
        "then the other channel's position"
    );
    publish(&s, "news", "six").await;
    assert_eq!(json(&mut back).await["offset"], 6, "then live, no gap");

    // A position from another epoch, or one history no longer covers: told, not replayed.
    let mut lost = s.ws("/h?u=7&recover=news:5:aaaaaaaa").await;
    json(&mut lost).await;
    let pos = json(&mut lost).await;
    assert_eq!(
        (pos["recovered"].as_bool(), pos["reason"].as_str()),
        (Some(false), Some("epoch_changed"))
    );
    assert_eq!(
        s.metric("heartwire_recoveries_total{result=\"recovered\"}")
            .await,
        1.0
    );
    assert_eq!(
        s.metric("heartwire_recoveries_total{result=\"epoch_changed\"}")
            .await,
        1.0
    );
    assert_eq!(s.metric("heartwire_history_messages").await, 6.0);

    // A malformed position is refused with the form expected.
    let err = connect(s.addr, "/h?u=7&recover=news:x:y", None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("400"), "{err}");
    let (status, body) = http(
        s.addr,
        "GET",
        "/raw?recover=news:1:aaaaaaaa",
        &[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        b"",
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("format = \\\"envelope\\\""), "{body}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_makes_a_retry_answer_the_same_and_publish_once() {
    let s = Server::start(CONFIG).await;
    let mut ws = s.ws("/h?u=1").await;
    for _ in 0..3 {
        json(&mut ws).await;
    }
    let keyed = |key: &'static str, body: &'static [u8]| {
        let headers = [("Content-Type", "text/plain"), ("Idempotency-Key", key)];
        async move { http_with_head(s.addr, "POST", "/publish?channel=news", &headers, body).await }
    };
    let (status, head, first) = keyed("order-42-shipped", b"shipped").await;
    assert_eq!(status, 200, "{first}");
    assert!(!head.to_ascii_lowercase().contains("idempotent-replayed"));
    let (status, head, again) = keyed("order-42-shipped", b"shipped").await;
    assert_eq!((status, &again), (200, &first));
    assert!(
        head.to_ascii_lowercase()
            .contains("idempotent-replayed: true"),
        "{head}"
    );
    // Another key publishes: the client sees offsets 1 and 2, not the retry.
    let (status, _, _) = keyed("order-43", b"next").await;
    assert_eq!(status, 200);
    assert_eq!(json(&mut ws).await["offset"], 1);
    let next = json(&mut ws).await;
    assert_eq!(
        (next["offset"].as_u64(), next["data"].as_str()),
        (Some(2), Some("next"))
    );
    assert_eq!(
        s.metric("heartwire_publish_idempotent_replays_total").await,
        1.0
    );
    let bad = [("Idempotency-Key", "has space")];
    let (status, body) = s.http("POST", "/publish?channel=news", &bad, b"x").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Idempotency-Key"), "{body}");
    s.stop().await;
}

/// One client that follows channel `news` of `/h` through closes and restarts: it keeps
/// its position, reconnects after the hinted delay with `recover=`, and records each
/// message's payload. Every recovery must succeed; offsets must run on without a gap.
#[derive(Default)]
struct Follower {
    epoch: Option<String>,
    offset: u64,
    got: Vec<u64>,
    connects: u32,
}

fn check_frame(f: &mut Follower, v: &Value) {
    match v["type"].as_str() {
        Some("position") => {
            if f.epoch.is_some() {
                assert_eq!(v["recovered"], true, "a recovery failed: {v}");
            }
            let epoch = v["epoch"].as_str().unwrap().to_owned();
            f.epoch = Some(epoch);
            // A replay follows: offsets continue from ours, so keep ours.
            if v["recovered"] != true {
                f.offset = v["offset"].as_u64().unwrap();
            }
        }
        Some("message") => {
            let offset = v["offset"].as_u64().unwrap();
            assert_eq!(Some(v["epoch"].as_str().unwrap()), f.epoch.as_deref());
            assert_eq!(offset, f.offset + 1, "gap or duplicate");
            f.offset = offset;
            f.got.push(v["data"].as_str().unwrap().parse().unwrap());
        }
        _ => panic!("unexpected frame {v}"),
    }
}

/// Runs a follower until `until` says its offset is enough; `stall` makes it stop reading
/// for 3 s once, after its first message.
async fn follow(
    addr: SocketAddr,
    me: Arc<Mutex<Follower>>,
    until: Arc<Mutex<Option<u64>>>,
    stall: bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut stalled = !stall;
    loop {
        let path = {
            let f = me.lock().unwrap();
            match &f.epoch {
                Some(e) => format!("/h?recover=news:{}:{e}", f.offset),
                None => "/h".to_owned(),
            }
        };
        let mut ws = loop {
            assert!(Instant::now() < deadline, "could not reconnect");
            match connect(addr, &path, None).await {
                Ok(ws) => break ws,
                // Down between two runs: retry soon.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        me.lock().unwrap().connects += 1;
        let mut wait = Duration::from_millis(20);
        loop {
            if let Some(last) = *until.lock().unwrap()
                && me.lock().unwrap().offset >= last
            {
                return;
            }
            let next = match timeout(Duration::from_millis(200), ws.next()).await {
                Err(_) => continue,
                Ok(next) => next,
            };
            match next {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    check_frame(&mut me.lock().unwrap(), &v);
                    if !stalled && v["type"] == "message" {
                        stalled = true;
                        // The stall itself, not a wait for something: a peer that stops reading.
                        tokio::time::sleep(Duration::from_secs(3)).await;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                    if let Some(ms) = reason
                        .split("reconnect in ")
                        .nth(1)
                        .and_then(|r| r.trim_end_matches(" ms").parse::<u64>().ok())
                    {
                        wait = Duration::from_millis(ms);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
        tokio::time::sleep(wait).await;
    }
}

/// A publisher at about 200/s: each body its sequence number. Returns those answered 200,
/// and those that got no answer at all (which may or may not have been published).
async fn publish_until(addr: SocketAddr, stop: Arc<Mutex<bool>>) -> (Vec<u64>, HashSet<u64>, u64) {
    let mut ok = Vec::new();
    let mut unanswered = HashSet::new();
    let mut last_offset = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    for seq in 1..=20_000u64 {
        if *stop.lock().unwrap() {
            break;
        }
        tick.tick().await;
        match timeout(Duration::from_secs(3), post(addr, seq)).await {
            Ok(Some((200, body))) => {
                let v: Value = serde_json::from_str(&body).unwrap();
                last_offset = v["positions"]["news"]["offset"].as_u64().unwrap();
                ok.push(seq);
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                unanswered.insert(seq);
            }
        }
    }
    (ok, unanswered, last_offset)
}

/// One publish that may fail: `None` when the daemon did not answer.
async fn post(addr: SocketAddr, seq: u64) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let body = seq.to_string();
    let req = format!(
        "POST /publish?channel=news HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.ok()?;
    let text = String::from_utf8(out).ok()?;
    let status = text.get(9..12)?.parse().ok()?;
    Some((status, text.split_once("\r\n\r\n")?.1.to_owned()))
}

/// Waits up to `limit` until `done` holds, looking every 20 ms.
async fn until(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < limit, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Followers of `/h`, each on a task of its own.
struct Crowd {
    followers: Vec<Arc<Mutex<Follower>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    last: Arc<Mutex<Option<u64>>>,
}

impl Crowd {
    /// `n` followers of the daemon at `addr` (the first stalls once if `stall`), once each
    /// has its position.
    async fn start(addr: SocketAddr, n: usize, stall: bool) -> Crowd {
        let last = Arc::new(Mutex::new(None));
        let followers: Vec<Arc<Mutex<Follower>>> = (0..n).map(|_| Arc::default()).collect();
        let tasks = followers
            .iter()
            .enumerate()
            .map(|(i, f)| tokio::spawn(follow(addr, f.clone(), last.clone(), stall && i == 0)))
            .collect();
        let crowd = Crowd {
            followers,
            tasks,
            last,
        };
        until("clients did not all connect", T, || {
            crowd
                .followers
                .iter()
                .all(|f| f.lock().unwrap().epoch.is_some())
        })
        .await;
        crowd
    }

    /// The fewest messages any follower got.
    fn least(&self) -> usize {
        self.followers
            .iter()
            .map(|f| f.lock().unwrap().got.len())
            .min()
            .unwrap_or(0)
    }

    /// Waits until every follower reached offset `last`.
    async fn finish(self, last: u64) -> Vec<Arc<Mutex<Follower>>> {
        *self.last.lock().unwrap() = Some(last);
        for task in self.tasks {
            timeout(Duration::from_secs(60), task)
                .await
                .expect("a client did not catch up")
                .unwrap();
        }
        self.followers
    }
}

fn restart_config(port: u16, dir: &std::path::Path) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
drain_period = "1s"
reconnect_jitter = "1s"
shutdown_grace = "2s"
[admin]
enabled = false
[log]
format = "json"
[history]
dir = "{}"
[[route]]
path = "/h"
format = "envelope"
channel = "news"
history_size = 5000
"#,
        dir.display()
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// 500 clients and a publisher at 200/s; the daemon is stopped (SIGTERM, drained) and
/// started again on the same port by `run`; every client must end with exactly the
/// messages that got a 200, in order, none twice.
async fn survive_a_restart(port: u16, run: impl Fn(&str) -> Daemon) {
    const CLIENTS: usize = 500;
    let state = tempfile::tempdir().unwrap();
    let toml = restart_config(port, state.path());
    let mut first = run(&toml);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Everyone has its position before the first publish.
    let crowd = Crowd::start(addr, CLIENTS, false).await;
    let stop = Arc::new(Mutex::new(false));
    let publisher = tokio::spawn(publish_until(addr, stop.clone()));
    // Some traffic, then the restart in the middle of it.
    // Generous limits: a loaded machine publishes far below 200/s.
    let slow = Duration::from_secs(60);
    until("no traffic", slow, || crowd.least() >= 50).await;
    first.signal("TERM");
    assert!(first.wait_exit().success());
    let saved = first.wait_message("history saved");
    assert!(
        saved["fields"]["messages"].as_u64().unwrap() >= 50,
        "{saved}"
    );
    let mut second = run(&toml);
    second.wait_message("history restored");
    // Everyone back, and messages published since, through the restored history.
    let back = |n| {
        crowd
            .followers
            .iter()
            .all(|f| f.lock().unwrap().connects >= n)
    };
    until("clients did not come back", slow, || back(2)).await;
    until("no traffic after the restart", slow, || {
        crowd.least() >= 100
    })
    .await;
    *stop.lock().unwrap() = true;
    let (ok, unanswered, last) = publisher.await.unwrap();
    let followers = crowd.finish(last).await;
    assert!(ok.len() >= 100, "{} publishes answered 200", ok.len());
    let wanted: HashSet<u64> = ok.iter().copied().collect();
    for f in &followers {
        let f = f.lock().unwrap();
        let got: HashSet<u64> = f.got.iter().copied().collect();
        assert_eq!(got.len(), f.got.len(), "a message twice");
        assert!(f.got.windows(2).all(|w| w[0] < w[1]), "out of order");
        let missing: Vec<&u64> = wanted.difference(&got).collect();
        assert!(missing.is_empty(), "missed {missing:?}");
        assert!(
            got.difference(&wanted).all(|s| unanswered.contains(s)),
            "got a message never published"
        );
    }
    second.signal("TERM");
    assert!(second.wait_exit().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_miss_nothing_across_a_restart() {
    survive_a_restart(free_port(), |toml| {
        launch(toml, &[], |config| {
            let mut cmd = Command::new(BIN);
            cmd.arg("--config").arg(config);
            cmd
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_miss_nothing_across_a_restart_under_socket_activation() {
    if which("systemd-socket-activate").is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-socket-activate is not installed (Debian: apt-get install systemd)"
        );
        eprintln!(
            "SKIPPED: systemd-socket-activate is not installed (Debian: apt-get install systemd)"
        );
        return;
    }
    let port = free_port();
    survive_a_restart(port, |toml| {
        activated_at(&format!("127.0.0.1:{port}"), toml).expect("found on PATH above")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_for_3_s_is_cut_off_and_recovers_everything() {
    let toml = r#"
[heartbeat.fast]
strategy = "protocol"
ping_interval = "250ms"
ping_timeout = "500ms"
[[route]]
path = "/h"
format = "envelope"
channel = "news"
history_size = 5000
heartbeat = "fast"
"#;
    let s = Server::start(toml).await;
    let crowd = Crowd::start(s.addr, 20, true).await;
    let stop = Arc::new(Mutex::new(false));
    let publisher = tokio::spawn(publish_until(s.addr, stop.clone()));
    let staller = crowd.followers[0].clone();
    until(
        "the stalled client was never cut off",
        Duration::from_secs(60),
        || staller.lock().unwrap().connects >= 2,
    )
    .await;
    let timeouts = s
        .metric("heartwire_heartbeat_timeouts_total{policy=\"fast\",strategy=\"protocol\"}")
        .await;
    assert!(
        timeouts >= 1.0,
        "cut off by the heartbeat, as a dead peer would be"
    );
    // Live again: more messages after its recovery.
    let back = staller.lock().unwrap().got.len();
    until(
        "the recovered client gets nothing live",
        Duration::from_secs(60),
        || staller.lock().unwrap().got.len() >= back + 50,
    )
    .await;
    *stop.lock().unwrap() = true;
    let (ok, unanswered, last) = publisher.await.unwrap();
    assert!(unanswered.is_empty());
    let followers = crowd.finish(last).await;
    for f in &followers {
        assert_eq!(f.lock().unwrap().got, ok, "every message, in order, once");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_history_file_is_set_aside_and_clients_are_told_epoch_changed() {
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let toml = restart_config(port, state.path());
    let start = |toml: &str| {
        launch(toml, &[], |config| {
            let mut cmd = Command::new(BIN);
            cmd.arg("--config").arg(config);
            cmd
        })
    };
    let mut d = start(&toml);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut ws = connect(addr, "/h", None).await.unwrap();
    let epoch = serde_json::from_str::<Value>(&recv_text(&mut ws).await).unwrap()["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..3 {
        assert_eq!(post(addr, i).await.map(|r| r.0), Some(200));
    }
    drop(ws);
    d.signal("TERM");
    assert!(d.wait_exit().success());
    let file = state.path().join("history.bin");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let mut d = start(&toml);
    let warned = d.wait_message("saved history unusable");
    assert!(message_of(&warned).contains("checksum"), "{warned}");
    assert!(state.path().join("history.bin.corrupt").exists());
    let mut ws = connect(addr, &format!("/h?recover=news:3:{epoch}"), None)
        .await
        .unwrap();
    let pos: Value = serde_json::from_str(&recv_text(&mut ws).await).unwrap();
    assert_eq!(
        (pos["recovered"].as_bool(), pos["reason"].as_str()),
        (Some(false), Some("epoch_changed")),
        "{pos}"
    );
    assert_ne!(pos["epoch"].as_str(), Some(epoch.as_str()));
    d.signal("TERM");
    assert!(d.wait_exit().success());
}

fn message_of(v: &Value) -> String {
    v.to_string()
}
