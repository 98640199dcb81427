//! Live reload: policies change under live connections, routes come and go, an invalid
//! file changes nothing, and no connection or message is lost across a reload.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use heartwire::config;
use heartwire::ops::reload;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

fn policy(interval: &str) -> String {
    format!(
        r#"
[heartbeat.frames]
strategy = "protocol"
ping_interval = "{interval}"
ping_timeout = "5s"

[[route]]
path = "/a"
heartbeat = "frames"
"#
    )
}

/// Arrival times of the next `n` ping frames.
async fn ping_times(ws: &mut Ws, n: usize) -> Vec<Instant> {
    let mut times = Vec::new();
    while times.len() < n {
        let msg = timeout(T, ws.next())
            .await
            .expect("no ping in time")
            .unwrap()
            .unwrap();
        if let Message::Ping(_) = msg {
            times.push(Instant::now());
        }
    }
    times
}

fn median_gap(times: &[Instant]) -> Duration {
    let mut gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort();
    gaps[gaps.len() / 2]
}

#[tokio::test]
async fn a_new_interval_applies_to_live_connections() {
    let s = Server::start(&policy("400ms")).await;
    let mut ws = s.ws("/a").await;
    let before = median_gap(&ping_times(&mut ws, 4).await);
    s.reload(&policy("100ms"));
    // The first ping after the reload comes one new interval after it; measure after that.
    ping_times(&mut ws, 1).await;
    let after = median_gap(&ping_times(&mut ws, 6).await);
    // Exact spacing before and after a switch is unit-tested on paused time
    // (src/conn/tests.rs); here, on a real socket, the pings come faster after the reload.
    assert!(before >= Duration::from_millis(350), "before: {before:?}");
    assert!(after >= Duration::from_millis(60), "after: {after:?}");
    assert!(after < before, "before {before:?}, after {after:?}");
    // Same connection throughout.
    send_text(&mut ws, "same socket").await;
    assert_eq!(recv_text(&mut ws).await, "same socket");
    s.stop().await;
}

#[tokio::test]
async fn a_new_strategy_applies_to_live_connections() {
    let s = Server::start(&policy("100ms")).await;
    let mut ws = s.ws("/a").await;
    ping_times(&mut ws, 1).await;
    s.reload(
        r#"
[heartbeat.frames]
strategy = "json-gzip"
ping_interval = "100ms"
max_missed = 3
[[route]]
path = "/a"
heartbeat = "frames"
"#,
    );
    loop {
        match timeout(T, ws.next()).await.unwrap().unwrap().unwrap() {
            Message::Binary(data) => {
                assert!(gunzip(&data).starts_with("{\"ping\": "));
                break;
            }
            Message::Ping(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn removed_routes_close_with_1001_and_added_routes_accept() {
    let s = Server::start("[[route]]\npath = \"/a\"\n[[route]]\npath = \"/b\"\n").await;
    let (mut a, mut b) = (s.ws("/a").await, s.ws("/b").await);
    assert!(connect(s.addr, "/c", None).await.is_err());
    s.reload("[[route]]\npath = \"/a\"\n[[route]]\npath = \"/c\"\nwelcome = \"new\"\n");
    let frame = recv_close(&mut b).await;
    assert_eq!(u16::from(frame.code), 1001);
    assert_eq!(frame.reason.as_str(), "route removed from config");
    let mut c = s.ws("/c").await;
    assert_eq!(recv_text(&mut c).await, "new");
    send_text(&mut a, "kept").await;
    assert_eq!(recv_text(&mut a).await, "kept");
    s.stop().await;
}

#[tokio::test]
async fn an_invalid_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heartwire.toml");
    std::fs::write(&path, "[[route]]\npath = \"/a\"\nwelcome = \"v1\"\n").unwrap();
    let s = Server::start("[[route]]\npath = \"/a\"\nwelcome = \"v1\"\n").await;
    let before = s.config_tx.borrow().clone();
    std::fs::write(&path, "[[route]]\npath = \"/a\"\nwelcome = 5\n").unwrap();
    assert!(!reload::reload(&path, &loopback(), &s.config_tx));
    assert!(Arc::ptr_eq(&before, &s.config_tx.borrow()));
    let mut ws = s.ws("/a").await;
    assert_eq!(recv_text(&mut ws).await, "v1");
    std::fs::write(
        &path,
        "[server]\nshutdown_grace = \"1s\"\n[[route]]\npath = \"/a\"\nwelcome = \"v2\"\n",
    )
    .unwrap();
    assert!(reload::reload(&path, &loopback(), &s.config_tx));
    let mut ws2 = s.ws("/a").await;
    assert_eq!(recv_text(&mut ws2).await, "v2");
    // The first client is untouched.
    send_text(&mut ws, "hi").await;
    assert_eq!(recv_text(&mut ws).await, "hi");
    s.stop().await;
}

#[tokio::test]
async fn no_connection_or_message_is_lost_across_reloads_under_publish_traffic() {
    const N: usize = 300;
    let configs = [
        policy("50ms"),
        policy("70ms").replace("/a\"", "/a\"\nwelcome = \"w\""),
        policy("30ms") + "[[route]]\npath = \"/extra\"\n",
    ];
    let s = Server::start(&configs[0]).await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(s.ws("/a").await);
    }
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                for i in 0..N {
                    assert_eq!(recv_text(&mut ws).await, i.to_string(), "lost or reordered");
                }
                ws
            })
        })
        .collect();
    for i in 0..N {
        if i % 50 == 25 {
            s.reload(&configs[(i / 50) % configs.len()]);
        }
        let (status, body) = s.publish("/publish?channel=/a", &i.to_string()).await;
        assert_eq!(
            (status, body.as_str()),
            (200, "{\"channels\":{\"/a\":5},\"queued\":5}\n"),
            "publish {i}"
        );
    }
    for r in readers {
        let mut ws = r.await.unwrap();
        send_text(&mut ws, "alive").await;
        assert_eq!(recv_text(&mut ws).await, "alive");
    }
    s.stop().await;
}

/// What a daemon bound to `127.0.0.1` serves.
fn loopback() -> config::Served {
    config::Served {
        addrs: vec!["127.0.0.1:8080".parse().unwrap()],
        from: config::Listeners::Configured,
    }
}

#[test]
fn reload_reads_the_file_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.toml");
    std::fs::write(&path, "").unwrap();
    let (tx, _rx) = tokio::sync::watch::channel(Arc::new(config::load(&path).unwrap()));
    std::fs::write(&path, "[server]\nmax_connections = 3\n").unwrap();
    assert!(reload::reload(&path, &loopback(), &tx));
    assert_eq!(tx.borrow().server.max_connections, 3);
}
