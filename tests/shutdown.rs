//! Graceful shutdown: every client gets 1001, and `run` returns within the grace.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::time::timeout;

#[tokio::test]
async fn every_client_gets_1001_and_run_returns() {
    let s = Server::start(
        "[server]\nshutdown_grace = \"3s\"\n[[route]]\npath = \"/a\"\n[[route]]\npath = \"/b\"\n",
    )
    .await;
    let mut clients = Vec::new();
    for path in ["/a", "/a", "/b"] {
        clients.push(s.ws(path).await);
    }
    s.shutdown.cancel();
    for c in &mut clients {
        let frame = recv_close(c).await;
        assert_eq!(u16::from(frame.code), 1001);
        // The drain's reconnect hint follows (see docs/operations.md).
        assert!(
            frame
                .reason
                .starts_with("server shutting down; reconnect in "),
            "{}",
            frame.reason
        );
    }
    let started = Instant::now();
    timeout(T, s.handle)
        .await
        .expect("run hung")
        .unwrap()
        .unwrap();
    // Clients that answer the close let it finish well before the grace.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_client_that_never_answers_the_close_is_dropped_after_the_grace() {
    let grace = Duration::from_millis(600);
    let s = Server::start("[server]\nshutdown_grace = \"600ms\"\n[[route]]\npath = \"/a\"\n").await;
    let mut raw = Raw::connect(s.addr, "/a").await;
    // The raw client is registered once its handshake answer arrived; check via a publish.
    assert_eq!(s.publish("/publish", "x").await.1, "{\"queued\":1}\n");
    let started = Instant::now();
    s.shutdown.cancel();
    assert_eq!(raw.close_code().await.0, 1001);
    timeout(T, s.handle)
        .await
        .expect("run hung")
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= grace - Duration::from_millis(50),
        "returned before the grace: {took:?}"
    );
    assert!(took < grace + Duration::from_secs(3), "took {took:?}");
    raw.until_closed().await;
}

#[tokio::test]
async fn new_connections_are_refused_once_shutdown_starts() {
    let s = Server::start("[[route]]\npath = \"/a\"\n").await;
    let addr = s.addr;
    s.stop().await;
    assert!(connect(addr, "/a", None).await.is_err());
}
