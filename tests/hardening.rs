//! Bad input over raw sockets gets a clear, specific answer, and nobody else notices.
//! Each case ends by checking a bystander client still receives a publish.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

const CONFIG: &str = r#"
[server]
max_message_size = 1024
max_frame_size = 512
handshake_timeout = "300ms"
max_connections = 20
max_connections_per_ip = 4

[[route]]
path = "/ws"
"#;

/// A bystander on /ws must keep receiving after every bad client.
async fn bystander_still_served(s: &Server, ws: &mut Ws, tag: &str) {
    let (status, _) = s.publish("/publish", tag).await;
    assert_eq!(status, 200);
    assert_eq!(
        recv_text(ws).await,
        tag,
        "bystander missed a publish after {tag}"
    );
}

#[tokio::test]
async fn protocol_violations_close_with_the_rfc_code() {
    let s = Server::start(CONFIG).await;
    let mut bystander = s.ws("/ws").await;
    let big = vec![b'a'; 600];
    let huge: Vec<u8> = vec![b'b'; 1100];
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked frame", vec![0x81, 0x02, b'h', b'i'], 1002),
        ("reserved bits", client_frame(0x81 | 0x40, b"hi"), 1002),
        ("unknown opcode", client_frame(0x83, b"hi"), 1002),
        (
            "control frame over 125 bytes",
            client_frame(0x89, &[0u8; 126]),
            1002,
        ),
        ("fragmented control frame", client_frame(0x09, b"hi"), 1002),
        (
            "invalid UTF-8",
            client_frame(0x81, &[0xff, 0xfe, 0xfd]),
            1007,
        ),
        ("frame over max_frame_size", client_frame(0x82, &big), 1009),
        (
            "message over max_message_size",
            [
                client_frame(0x02, &huge[..400]),
                client_frame(0x00, &huge[400..800]),
                client_frame(0x80, &huge[800..]),
            ]
            .concat(),
            1009,
        ),
    ];
    for (name, bytes, want) in cases {
        let mut raw = Raw::connect(s.addr, "/ws").await;
        raw.send(&bytes).await;
        let (code, reason) = raw.close_code().await;
        assert_eq!(code, want, "{name}: {reason}");
        assert!(!reason.is_empty(), "{name}: no reason");
        raw.until_closed().await;
        bystander_still_served(&s, &mut bystander, name).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn bad_handshakes_get_a_status_and_a_reason() {
    let s = Server::start(CONFIG).await;
    let mut bystander = s.ws("/ws").await;
    let a = s.addr;
    let cases = [
        (
            "garbage request line",
            "HELLO\r\n\r\n".to_owned(),
            "400",
            "",
        ),
        (
            "wrong version",
            format!(
                "GET /ws HTTP/1.1\r\nHost: {a}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: {HANDSHAKE_KEY}\r\n\r\n"
            ),
            "426",
            "sec-websocket-version: 13",
        ),
        (
            "missing key",
            format!(
                "GET /ws HTTP/1.1\r\nHost: {a}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ),
            "400",
            "Sec-WebSocket-Key",
        ),
        (
            "not an upgrade",
            format!("GET /ws HTTP/1.1\r\nHost: {a}\r\n\r\n"),
            "426",
            "WebSocket endpoint",
        ),
        (
            "POST on a WebSocket path",
            format!("POST /ws HTTP/1.1\r\nHost: {a}\r\nContent-Length: 0\r\n\r\n"),
            "405",
            "GET",
        ),
    ];
    for (name, request, status, needle) in cases {
        let (mut raw, head) = Raw::request(a, &request).await;
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}")),
            "{name}: {head}"
        );
        let mut body = std::mem::take(&mut raw.buf);
        if !body.ends_with(b"\n") {
            let _ = timeout(
                Duration::from_millis(500),
                raw.stream.read_to_end(&mut body),
            )
            .await;
        }
        let whole = format!("{head}\n{}", String::from_utf8_lossy(&body)).to_ascii_lowercase();
        assert!(
            whole.contains(&needle.to_ascii_lowercase()),
            "{name}: {whole}"
        );
        bystander_still_served(&s, &mut bystander, name).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn a_half_sent_request_is_dropped_after_the_handshake_timeout() {
    let s = Server::start(CONFIG).await;
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    timeout(T, stream.read_to_end(&mut buf))
        .await
        .expect("never dropped")
        .ok();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250), "dropped after {took:?}");
    assert!(took < Duration::from_secs(3), "dropped after {took:?}");
    s.stop().await;
}

async fn connect_from(source: &str, s: &Server) -> Result<Ws, u16> {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(format!("{source}:0").parse::<SocketAddr>().unwrap())
        .unwrap();
    let stream = socket.connect(s.addr).await.unwrap();
    let url = format!("ws://{}/ws", s.addr);
    match timeout(
        T,
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream)),
    )
    .await
    .unwrap()
    {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn connection_limits_answer_503_before_the_upgrade() {
    let s = Server::start(CONFIG).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(
            connect_from("127.0.0.1", &s)
                .await
                .expect("under the per-IP limit"),
        );
    }
    assert_eq!(
        connect_from("127.0.0.1", &s).await.err(),
        Some(503),
        "per-IP limit"
    );
    // Another address is not affected by 127.0.0.1's count.
    held.push(connect_from("127.0.0.2", &s).await.expect("another IP"));
    // Closing one frees its slot.
    drop(held.remove(0));
    let mut again = None;
    let deadline = Instant::now() + T;
    while Instant::now() < deadline {
        match connect_from("127.0.0.1", &s).await {
            Ok(ws) => {
                again = Some(ws);
                break;
            }
            // The server notices the close asynchronously; wait for its EOF, not a timer.
            Err(503) => tokio::task::yield_now().await,
            Err(other) => panic!("{other}"),
        }
    }
    assert!(again.is_some(), "slot never freed");
    // Global limit: fill up from several addresses.
    let mut sources = (3..20).map(|i| format!("127.0.0.{i}"));
    let mut status = None;
    for _ in 0..40 {
        let source = sources.next().unwrap_or_else(|| "127.0.0.30".into());
        match connect_from(&source, &s).await {
            Ok(ws) => held.push(ws),
            Err(code) => {
                status = Some(code);
                break;
            }
        }
    }
    assert_eq!(status, Some(503));
    assert_eq!(held.len() + 1, 20, "refused before max_connections");
    let (code, body) = s
        .http(
            "GET",
            "/ws",
            &[
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Key", HANDSHAKE_KEY),
            ],
            b"",
        )
        .await;
    assert_eq!(code, 503);
    assert!(body.contains("server.max_connections"), "{body}");
    s.stop().await;
}

/// What a client that stopped reading got once it read again.
struct SlowReader {
    /// Numbers of the messages it received, in order.
    seen: Vec<usize>,
    /// The close frame, if it was closed.
    closed: Option<(u16, String)>,
    /// `heartwire_slow_consumers_total` for /f, by action.
    disconnects: f64,
    skips: f64,
    /// `heartwire_messages_dropped_total` for /f.
    dropped: f64,
}

/// Publishes `n` numbered 60 KiB messages while `slow` does not read, then reads what it
/// got. `limits` are extra `[server]` keys.
async fn slow_reader_sees(policy: &str, n: usize, limits: &str) -> SlowReader {
    let s = Server::start(&format!(
        "[server]\nwrite_timeout = \"60s\"\n{limits}\n[[route]]\npath = \"/f\"\nslow_consumer = \"{policy}\"\n"
    ))
    .await;
    let mut slow = s.ws("/f").await;
    let mut fast = s.ws("/f").await;
    let pad = "p".repeat(60 * 1024);
    for i in 0..n {
        assert_eq!(s.publish("/publish", &format!("{i}:{pad}")).await.0, 200);
        // The fast reader keeps up, so it never lags.
        assert!(recv_text(&mut fast).await.starts_with(&format!("{i}:")));
    }
    assert_eq!(s.publish("/publish", "last").await.0, 200);
    assert_eq!(recv_text(&mut fast).await, "last");
    let mut seen = Vec::new();
    let mut closed = None;
    loop {
        match recv(&mut slow).await {
            Message::Text(t) if t.as_str() == "last" => break,
            Message::Text(t) => seen.push(t.as_str().split(':').next().unwrap().parse().unwrap()),
            Message::Close(c) => {
                closed = c.map(|c| (u16::from(c.code), c.reason.as_str().to_owned()));
                break;
            }
            _ => {}
        }
    }
    let slow_series =
        |action| format!(r#"heartwire_slow_consumers_total{{route="/f",action="{action}"}}"#);
    let reader = SlowReader {
        seen,
        closed,
        disconnects: s.metric(&slow_series("disconnect")).await,
        skips: s.metric(&slow_series("skip")).await,
        dropped: s
            .metric(r#"heartwire_messages_dropped_total{route="/f"}"#)
            .await,
    };
    s.stop().await;
    reader
}

// 400 x 60 KiB = 24 MB: enough to fill loopback socket buffers and then the queue.
const SLOW_N: usize = 400;

#[tokio::test]
async fn slow_consumer_policies() {
    // The message bound: 8 messages.
    let r = slow_reader_sees("disconnect", SLOW_N, "outbound_queue = 8").await;
    let (code, reason) = r.closed.expect("disconnect: not closed");
    assert_eq!(code, 1008, "disconnect: got {} messages", r.seen.len());
    assert!(
        reason.contains("messages queued, over server.outbound_queue (8)"),
        "{reason}"
    );
    assert_eq!((r.disconnects, r.skips, r.dropped), (1.0, 0.0, 0.0));
    for policy in ["drop-oldest", "keep-latest"] {
        let r = slow_reader_sees(policy, SLOW_N, "outbound_queue = 8").await;
        assert_skipped_in_order(policy, &r);
    }
}

#[tokio::test]
async fn the_outbound_queue_is_bounded_in_bytes_too() {
    // A ring long enough for every message: only the 1 MiB bound can cut the client off.
    let limits = "outbound_queue = 1024\noutbound_queue_bytes = 1048576";
    let r = slow_reader_sees("disconnect", SLOW_N, limits).await;
    let (code, reason) = r.closed.expect("disconnect: not closed");
    assert_eq!(code, 1008, "got {} messages", r.seen.len());
    assert!(
        reason.contains("bytes queued, over server.outbound_queue_bytes (1048576)"),
        "{reason}"
    );
    assert_eq!((r.disconnects, r.dropped), (1.0, 0.0));
    let r = slow_reader_sees("drop-oldest", SLOW_N, limits).await;
    assert_skipped_in_order("drop-oldest", &r);
}

/// A skipping policy kept the client, skipped some messages, counted exactly those, and
/// delivered the rest in order.
fn assert_skipped_in_order(policy: &str, r: &SlowReader) {
    assert_eq!(r.closed, None, "{policy} closed the slow client");
    assert!(r.seen.len() < SLOW_N, "{policy}: nothing was skipped");
    assert!(
        r.seen.windows(2).all(|w| w[0] < w[1]),
        "{policy}: out of order or duplicated"
    );
    assert_eq!(
        r.dropped as usize,
        SLOW_N - r.seen.len(),
        "{policy}: dropped count"
    );
    assert!(r.skips >= 1.0 && r.disconnects == 0.0, "{policy}");
}

#[tokio::test]
async fn http_connections_are_bounded_and_wait_their_turn() {
    let s = Server::start("[server]\nmax_http_connections = 3\n[[route]]\npath = \"/ws\"\n").await;
    let mut bystander = s.ws("/ws").await;
    // Three silent sockets take every HTTP place (the WebSocket holds none).
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(tokio::net::TcpStream::connect(s.addr).await.unwrap());
    }
    let deadline = Instant::now() + T;
    while s.metric("heartwire_http_connections").await < 3.0 {
        assert!(
            Instant::now() < deadline,
            "the idle sockets were never accepted"
        );
        tokio::task::yield_now().await;
    }
    // A fourth waits in the listen queue, unanswered, until a place is free.
    let addr = s.addr;
    let mut waiting =
        tokio::spawn(async move { http(addr, "GET", "/publish?msg=after", &[], b"").await });
    assert!(
        timeout(Duration::from_millis(300), &mut waiting)
            .await
            .is_err(),
        "answered past max_http_connections"
    );
    assert!(s.metric("heartwire_http_connections_full_total").await >= 1.0);
    drop(idle.pop());
    let (status, body) = timeout(T, waiting).await.expect("never served").unwrap();
    assert_eq!((status, body.as_str()), (200, "{\"queued\":1}\n"));
    assert_eq!(recv_text(&mut bystander).await, "after");
    s.stop().await;
}

#[tokio::test]
async fn the_largest_values_a_config_may_hold_run() {
    // Every ceiling at once: no timer or size computation overflows.
    let s = Server::start(
        r#"
[server]
max_message_size = 67108864
outbound_queue = 65536
outbound_queue_bytes = 1073741824
handshake_timeout = "24h"
write_timeout = "24h"
shutdown_grace = "24h"
drain_period = "24h"
reconnect_jitter = "24h"
[publish]
max_body_size = 67108864
[heartbeat.p]
strategy = "protocol"
ping_interval = "24h"
ping_timeout = "24h"
[heartbeat.j]
strategy = "json-gzip"
ping_interval = "24h"
max_missed = 4294967295
[[route]]
path = "/p"
heartbeat = "p"
[[route]]
path = "/j"
heartbeat = "j"
"#,
    )
    .await;
    let (mut p, mut j) = (s.ws("/p").await, s.ws("/j").await);
    assert_eq!(s.publish("/publish", "big limits").await.0, 200);
    assert_eq!(recv_text(&mut p).await, "big limits");
    assert_eq!(recv_text(&mut j).await, "big limits");
    // Gone before the stop, which would otherwise wait up to the 24 h grace for them.
    drop((p, j));
    let deadline = Instant::now() + T;
    while s.metric(r#"heartwire_connections_open{route="/p"}"#).await
        + s.metric(r#"heartwire_connections_open{route="/j"}"#).await
        > 0.0
    {
        assert!(Instant::now() < deadline, "clients never left");
        tokio::task::yield_now().await;
    }
    s.stop().await;
}
