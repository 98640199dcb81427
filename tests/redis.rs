//! Several heartwire nodes on one real redis-server (`[broker] kind = "redis"`): a publish
//! on any node reaches the clients of every node once, in order; personal channels reach
//! only their user's node; a client recovers on another node; and Redis stopped, killed
//! and restarted, or a node restarted, under publishes, loses nothing answered 200.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::daemon::{self, Daemon};
use common::publisher::{Publisher, publish};
use common::redis::Redis;
use common::{T, Ws, connect, http, recv};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

/// A node on `redis`, listening on `listen`, with a shared channel with history (`/live`)
/// and personal ones (`/user/{id}`).
fn node(redis: &Redis, listen: &str) -> Daemon {
    let mut d = node_with(redis, listen, "");
    d.wait_message("broker connected");
    d
}

/// [`node`], with more `[broker]` keys, not waiting for the broker.
fn node_with(redis: &Redis, listen: &str, broker: &str) -> Daemon {
    let toml = format!(
        r#"
[server]
listen = "{listen}"
drain_period = "200ms"
reconnect_jitter = "100ms"
shutdown_grace = "2s"
[admin]
listen = "127.0.0.1:0"
[log]
format = "json"
[broker]
kind = "redis"
url = "{url}"
timeout = "500ms"
probe_interval = "200ms"
{broker}
[[route]]
path = "/live"
format = "envelope"
channel = "news"
history_size = 1000
[[route]]
path = "/user/{{id}}"
format = "envelope"
channels = ["user.{{id}}"]
history_size = 100
"#,
        url = redis.url()
    );
    let mut d = daemon::start(&toml, &[]);
    d.admin();
    d
}

async fn json(ws: &mut Ws) -> Value {
    match recv(ws).await {
        Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
        other => panic!("expected text, got {other:?}"),
    }
}

async fn publish_n(addr: SocketAddr, channel: &str, n: u64) -> Value {
    let (status, body) = http(
        addr,
        "POST",
        &format!("/publish?channel={channel}"),
        &[("Content-Type", "application/json")],
        format!("{{\"n\":{n}}}").as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn healthz(d: &Daemon) -> u16 {
    http(d.admin.unwrap(), "GET", "/healthz", &[], b"").await.0
}

/// Waits (bounded) until `/healthz` of `d` answers `status`.
async fn health_becomes(d: &Daemon, status: u16) {
    let deadline = Instant::now() + T;
    while healthz(d).await != status {
        assert!(
            Instant::now() < deadline,
            "/healthz never answered {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deliver_every_publish_once_and_personal_channels_only_to_their_user() {
    let redis = Redis::start();
    let nodes: Vec<Daemon> = (0..3).map(|_| node(&redis, "127.0.0.1:0")).collect();
    let mut news = Vec::new();
    for n in &nodes {
        let mut ws = connect(n.public, "/live", None).await.unwrap();
        let p = json(&mut ws).await;
        assert_eq!(
            (p["type"].as_str(), p["offset"].as_u64()),
            (Some("position"), Some(0))
        );
        news.push(ws);
    }
    let mut u1 = connect(nodes[0].public, "/user/1", None).await.unwrap();
    let mut u2 = connect(nodes[1].public, "/user/2", None).await.unwrap();
    json(&mut u1).await;
    json(&mut u2).await;

    // Each node publishes in turn; every client sees 1..=9 once, in order.
    let mut epoch = String::new();
    for i in 1..=9u64 {
        let a = publish_n(nodes[i as usize % 3].public, "news", i).await;
        assert_eq!(a["positions"]["news"]["offset"], i, "{a}");
        epoch = a["positions"]["news"]["epoch"].as_str().unwrap().to_owned();
    }
    for ws in &mut news {
        for i in 1..=9u64 {
            let m = json(ws).await;
            assert_eq!(
                (m["offset"].as_u64(), m["data"]["n"].as_u64()),
                (Some(i), Some(i)),
                "{m}"
            );
            assert_eq!(m["epoch"], epoch.as_str());
        }
    }

    // A personal channel reaches its user's node only: user 1 next sees its own message.
    let a = publish_n(nodes[2].public, "user.2", 100).await;
    assert_eq!(a["channels"]["user.2"], 1, "one node holds user.2: {a}");
    assert_eq!(json(&mut u2).await["data"]["n"], 100);
    publish_n(nodes[2].public, "user.1", 101).await;
    assert_eq!(
        json(&mut u1).await["data"]["n"],
        101,
        "user 1 never saw user 2's"
    );

    // The client on node 0 leaves after offset 9, and comes back on node 2.
    drop(news.remove(0));
    for i in 10..=12u64 {
        publish_n(nodes[1].public, "news", i).await;
    }
    let path = format!("/live?recover=news:9:{epoch}");
    let mut moved = connect(nodes[2].public, &path, None).await.unwrap();
    let p = json(&mut moved).await;
    assert_eq!(
        (p["recovered"].as_bool(), p["replayed"].as_u64()),
        (Some(true), Some(3)),
        "{p}"
    );
    publish_n(nodes[0].public, "news", 13).await;
    for i in 10..=13u64 {
        let m = json(&mut moved).await;
        assert_eq!(
            (m["offset"].as_u64(), m["data"]["n"].as_u64()),
            (Some(i), Some(i)),
            "{m}"
        );
    }
    for ws in &mut news {
        for i in 10..=13u64 {
            assert_eq!(json(ws).await["data"]["n"], i);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_on_another_node_with_the_same_idempotency_key_publishes_once() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, "127.0.0.1:0"), node(&redis, "127.0.0.1:0"));
    let mut ws = connect(b.public, "/live", None).await.unwrap();
    json(&mut ws).await;
    let keyed = |addr: SocketAddr, channel: &'static str, key: &'static str, n: u64| {
        let headers = [
            ("Content-Type", "application/json"),
            ("Idempotency-Key", key),
        ];
        let target = format!("/publish?channel={channel}");
        async move {
            let body = format!("{{\"n\":{n}}}");
            common::http_with_head(addr, "POST", &target, &headers, body.as_bytes()).await
        }
    };
    let (status, head, first) = keyed(a.public, "news", "order-42", 1).await;
    assert_eq!(status, 200, "{first}");
    assert!(!head.to_ascii_lowercase().contains("idempotent-replayed"));
    // The backend's retry reaches node B: node A's answer, and nothing published.
    let (status, head, again) = keyed(b.public, "news", "order-42", 2).await;
    assert_eq!((status, &again), (200, &first));
    assert!(
        head.to_ascii_lowercase()
            .contains("idempotent-replayed: true"),
        "{head}"
    );
    // A refused publish gives its key back at once: the retry that follows it publishes.
    let (status, _, body) = keyed(b.public, "no%20such", "order-43", 3).await;
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = keyed(a.public, "news", "order-43", 4).await;
    assert_eq!(status, 200, "{body}");
    // In order on the client: 1 then 4; 2 was never published (nor 3).
    assert_eq!(json(&mut ws).await["data"]["n"], 1);
    assert_eq!(json(&mut ws).await["data"]["n"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reaches_redis_over_tls_with_its_password_file_and_a_wrong_one_says_so() {
    let redis = Redis::start_with(&["--requirepass", "s3cret-for-tests"], true);
    let dir = tempfile::tempdir().unwrap();
    let (good, bad) = (dir.path().join("good"), dir.path().join("bad"));
    std::fs::write(&good, "s3cret-for-tests\n").unwrap();
    std::fs::write(&bad, "wrong\n").unwrap();
    let ca = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tls/redis-ca.crt"
    );
    let keys = |file: &std::path::Path| {
        format!("password_file = \"{}\"\nca_file = \"{ca}\"", file.display())
    };
    let mut ok = node_with(&redis, "127.0.0.1:0", &keys(&good));
    ok.wait_message("broker connected");
    let mut ws = connect(ok.public, "/live", None).await.unwrap();
    json(&mut ws).await;
    let a = publish_n(ok.public, "news", 1).await;
    assert_eq!(a["positions"]["news"]["offset"], 1, "{a}");
    assert_eq!(json(&mut ws).await["data"]["n"], 1);

    let mut refused = node_with(&redis, "127.0.0.1:0", &keys(&bad));
    let down = refused.wait_message("broker down");
    let why = down["fields"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        why.contains("broker.password_file"),
        "names the key to fix: {down}"
    );
    let (status, body) = http(refused.admin.unwrap(), "GET", "/healthz", &[], b"").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("broker down: "), "{body}");
    let (status, body) = http(
        refused.public,
        "POST",
        "/publish?channel=news",
        &[("Content-Type", "application/json")],
        b"{\"n\":2}",
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("broker unavailable: "), "{body}");
    // New clients are turned away with a reason until Redis is reachable.
    let refused_ws = connect(refused.public, "/live", None).await;
    assert!(
        refused_ws.is_err(),
        "a handshake on a node without Redis gets 503"
    );
}

/// What a client saw: a message's `n`, or a notice that messages were lost (`recovered:
/// false`, after which earlier publishes are excused).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Seen {
    N(u64),
    Lost,
}

const END: u64 = 1_000_000;

/// A client on `addr`'s `/live` that reconnects (with `recover=`) whenever its
/// connection ends, until it sees `END`; says on `ready` when it first knows its position.
/// Returns what it saw and how many connections it took.
async fn reconnecting_client(addr: SocketAddr, ready: mpsc::Sender<()>) -> (Vec<Seen>, usize) {
    let mut seen = Vec::new();
    let mut connections = 0;
    let mut at: Option<(String, u64)> = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let path = match &at {
            Some((epoch, offset)) => format!("/live?recover=news:{offset}:{epoch}"),
            None => "/live".to_owned(),
        };
        let mut ws = loop {
            assert!(Instant::now() < deadline, "could not reconnect to {addr}");
            match connect(addr, &path, None).await {
                Ok(ws) => {
                    connections += 1;
                    break ws;
                }
                // The node is restarting: a client retries after a pause.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        loop {
            let Ok(Some(Ok(msg))) = timeout(T, futures_util::StreamExt::next(&mut ws)).await else {
                break;
            };
            let Message::Text(t) = msg else { continue };
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            let (Some(epoch), Some(offset)) = (v["epoch"].as_str(), v["offset"].as_u64()) else {
                continue;
            };
            if at.is_none() {
                let _ = ready.send(()).await;
            }
            at = Some((epoch.to_owned(), offset));
            if v["recovered"] == false {
                seen.push(Seen::Lost);
            }
            if let Some(n) = v["data"]["n"].as_u64() {
                if n == END {
                    return (seen, connections);
                }
                seen.push(Seen::N(n));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_killed_and_a_node_restarted_lose_nothing_answered_200() {
    let mut redis = Redis::start();
    let mut nodes: Vec<Daemon> = (0..3).map(|_| node(&redis, "127.0.0.1:0")).collect();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.public).collect();
    let (ready, mut connected) = mpsc::channel(3);
    let clients: Vec<_> = addrs
        .iter()
        .map(|a| tokio::spawn(reconnecting_client(*a, ready.clone())))
        .collect();
    for _ in 0..3 {
        timeout(T, connected.recv())
            .await
            .expect("every client connects");
    }
    let mut publisher = Publisher::start(addrs.clone(), "news", Duration::from_millis(10));
    bl(|| publisher.accepted(50));

    // Redis stopped for 3 s: publishes answer 503, health says not ready.
    redis.signal("STOP");
    let mark = publisher.mark();
    bl(|| publisher.refused_after(mark));
    for n in &nodes {
        health_becomes(n, 503).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await; // the fault's length, not a wait
    redis.signal("CONT");
    for n in &nodes {
        health_becomes(n, 200).await;
    }
    let mark = publisher.mark();
    bl(|| publisher.accepted_after(mark, 50));

    // Redis killed and started again, empty, on the same port.
    redis.kill_and_restart();
    for n in &nodes {
        health_becomes(n, 200).await;
    }
    let mark = publisher.mark();
    bl(|| publisher.accepted_after(mark, 50));

    // One node restarted on its address; its client recovers there.
    nodes[2].signal("TERM");
    assert!(bl(|| nodes[2].wait_exit()).success());
    nodes[2] = bl(|| node(&redis, &addrs[2].to_string()));
    let mark = publisher.mark();
    bl(|| publisher.accepted_after(mark, 50));
    bl(|| publisher.finish());
    assert!(publish(addrs[0], "news", END), "the last publish");

    for (i, c) in clients.into_iter().enumerate() {
        let (seen, connections) = timeout(T, c).await.expect("client saw END").unwrap();
        // Redis's outages leave connected clients connected; only the restart closes.
        let restarted = usize::from(i == 2);
        assert_eq!(connections, 1 + restarted, "client {i}: connections");
        let ns: Vec<u64> = seen
            .iter()
            .filter_map(|s| match s {
                Seen::N(n) => Some(*n),
                Seen::Lost => None,
            })
            .collect();
        let mut once = ns.clone();
        once.sort_unstable();
        once.dedup();
        assert_eq!(once.len(), ns.len(), "client {i}: a message twice: {ns:?}");
        // Publishes answered 503 may still run when Redis continues, in any order; those
        // answered 200, each before the next was sent, arrive in their order.
        let answered: Vec<u64> = ns
            .iter()
            .copied()
            .filter(|n| publisher.ok.contains(n))
            .collect();
        assert!(
            answered.windows(2).all(|w| w[0] < w[1]),
            "client {i}: out of order: {ns:?}"
        );
        for n in &ns {
            assert!(
                publisher.ok.contains(n) || publisher.unanswered.contains(n),
                "client {i}: {n} was never published"
            );
        }
        let excused = |n: u64| {
            seen.iter().enumerate().any(|(at, s)| {
                *s == Seen::Lost
                    && seen[..at]
                        .iter()
                        .rev()
                        .find_map(|s| match s {
                            Seen::N(m) => Some(*m),
                            Seen::Lost => None,
                        })
                        .is_none_or(|before| before < n)
                    && seen[at..]
                        .iter()
                        .find_map(|s| match s {
                            Seen::N(m) => Some(*m),
                            Seen::Lost => None,
                        })
                        .is_none_or(|after| n < after)
            })
        };
        let missed: Vec<u64> = publisher
            .ok
            .iter()
            .copied()
            .filter(|n| !ns.contains(n) && !excused(*n))
            .collect();
        assert!(
            missed.is_empty(),
            "client {i} missed {missed:?} answered 200; saw {seen:?}"
        );
    }
    for (i, n) in nodes.iter_mut().enumerate() {
        assert_eq!(n.child.try_wait().unwrap(), None, "node {i} exited");
        assert_eq!(healthz(n).await, 200);
        let m = n.metrics().await;
        assert!(
            common::metric(&m, "heartwire_broker_reconnects_total") >= 1.0 || i == 2,
            "{m}"
        );
    }
    assert!(
        !publisher.unanswered.is_empty(),
        "some publishes met the outage"
    );
}

/// Runs blocking test code (the publisher's waits, a process's exit) off the runtime.
fn bl<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(f)
}
