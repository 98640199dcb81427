//! Heartbeat strategies over real sockets, with short intervals.
//! Timing assertions carry a lower bound (never early) and a generous upper bound
//! (the machine is shared), both derived from the documented detection bounds:
//! protocol closes within (ping_timeout, ping_interval + ping_timeout];
//! json-gzip within (max_missed x interval, (max_missed + 1) x interval].

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

const I: Duration = Duration::from_millis(100);
const TIMEOUT: Duration = Duration::from_millis(300);

const CONFIG: &str = r#"
[heartbeat.frames]
strategy = "protocol"
ping_interval = "100ms"
ping_timeout = "300ms"

[heartbeat.app]
strategy = "json-gzip"
ping_interval = "100ms"
max_missed = 2

# Slow enough that silent test clients outlive the test.
[heartbeat.slow]
strategy = "json-gzip"
ping_interval = "10s"

[[route]]
path = "/frames"
heartbeat = "frames"

[[route]]
path = "/app"
heartbeat = "app"

[[route]]
path = "/relay"
on_message = "relay"
heartbeat = "slow"
"#;

/// The next message, whatever it is (pings included).
async fn next(ws: &mut Ws) -> Message {
    timeout(T, ws.next())
        .await
        .expect("no message in time")
        .expect("ended")
        .expect("read error")
}

/// Reads a json-gzip ping and returns its value.
async fn app_ping(ws: &mut Ws) -> u64 {
    loop {
        if let Message::Binary(data) = next(ws).await {
            let v: serde_json::Value = serde_json::from_str(&gunzip(&data)).unwrap();
            return v["ping"].as_u64().expect("ping value");
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn a_client_answering_protocol_pings_stays_and_payloads_are_timestamps() {
    let s = Server::start(CONFIG).await;
    let mut ws = s.ws("/frames").await;
    let mut pings = 0;
    while pings < 6 {
        // Reading also flushes tungstenite's automatic pong.
        if let Message::Ping(payload) = next(&mut ws).await {
            assert_eq!(payload.len(), 13);
            let mut be = [0u8; 16];
            be[3..].copy_from_slice(&payload);
            let sent = u128::from_be_bytes(be) as u64;
            assert!(
                now_ms().abs_diff(sent) < 5_000,
                "payload {sent} is not a timestamp near now"
            );
            pings += 1;
        }
    }
    send_text(&mut ws, "still here").await;
    assert_eq!(recv_text(&mut ws).await, "still here");
    s.stop().await;
}

#[tokio::test]
async fn a_client_answering_json_pings_stays() {
    let s = Server::start(CONFIG).await;
    let mut ws = s.ws("/app").await;
    for _ in 0..6 {
        let v = app_ping(&mut ws).await;
        send_text(&mut ws, &format!("{{\"pong\": {v}}}")).await;
    }
    send_text(&mut ws, "still here").await;
    assert_eq!(recv_text_skipping_pings(&mut ws).await, "still here");
    s.stop().await;
}

#[tokio::test]
async fn a_silent_peer_is_closed_within_the_protocol_bound() {
    let s = Server::start(CONFIG).await;
    let mut raw = Raw::connect(s.addr, "/frames").await;
    let started = Instant::now();
    let (code, reason) = raw.close_code().await;
    let took = started.elapsed();
    assert_eq!((code, reason.as_str()), (4000, "heartbeat timeout"));
    assert!(
        took >= TIMEOUT,
        "closed after {took:?}, before ping_timeout"
    );
    // The exact bounds, and the socket dropped when the peer never answers the close,
    // are unit-tested on paused time (src/conn/tests.rs); here: it happens, for real.
    raw.until_closed().await;
    s.stop().await;
}

/// A json-gzip ping's value, if `data` is one (an echo of the client's own binary is not).
fn ping_value(data: &[u8]) -> Option<u64> {
    let text = gunzip_bounded(data)?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["ping"].as_u64()
}

/// gunzips at most 1 KiB: the echo of a gzip bomb must not inflate here either.
fn gunzip_bounded(data: &[u8]) -> Option<String> {
    use std::io::Read;
    let mut out = String::new();
    flate2::read::GzDecoder::new(data)
        .take(1024)
        .read_to_string(&mut out)
        .ok()?;
    Some(out)
}

/// A client on /app answering every ping, until it receives a text message, which it returns.
fn answering_bystander(mut ws: Ws) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        loop {
            match next(&mut ws).await {
                Message::Binary(data) => {
                    let v = ping_value(&data).expect("a ping");
                    send_text(&mut ws, &format!("{{\"pong\": {v}}}")).await;
                }
                Message::Text(t) => return t.as_str().to_owned(),
                Message::Close(c) => panic!("bystander closed: {c:?}"),
                _ => {}
            }
        }
    })
}

/// Runs a client on /app that answers each ping with `answer(value)` (nothing for `None`)
/// until it is closed, while a bystander answers properly. Returns how long it lasted,
/// the pings it saw and its close code, once the bystander has been shown to be served.
async fn closed_after_missed_pings(
    answer: impl Fn(u64) -> Option<Message>,
) -> (Duration, u32, u16) {
    let s = Server::start(CONFIG).await;
    let bystander = answering_bystander(s.ws("/app").await);
    let mut ws = s.ws("/app").await;
    let started = Instant::now();
    let mut pings = 0;
    let code = loop {
        match next(&mut ws).await {
            Message::Binary(data) => {
                let Some(v) = ping_value(&data) else { continue };
                pings += 1;
                if let Some(reply) = answer(v) {
                    ws.send(reply).await.unwrap();
                }
            }
            Message::Close(Some(frame)) => break u16::from(frame.code),
            _ => {}
        }
    };
    let took = started.elapsed();
    // Finish the close handshake as a real client would.
    while let Ok(Some(Ok(_))) = timeout(T, ws.next()).await {}
    // Nobody else noticed: the bystander is still connected and served.
    assert_eq!(s.publish("/publish", "still served").await.0, 200);
    assert_eq!(
        timeout(T, bystander).await.expect("bystander").unwrap(),
        "still served"
    );
    s.stop().await;
    (took, pings, code)
}

#[tokio::test]
async fn a_silent_client_is_closed_after_max_missed_json_pings() {
    let (took, pings, code) = closed_after_missed_pings(|_| None).await;
    assert_eq!(code, 4000);
    assert_eq!(pings, 2, "max_missed = 2 pings, then the close");
    // Exact timing on paused time: src/conn/tests.rs.
    assert!(took >= 2 * I, "closed after {took:?}");
}

/// gzip of 10 MiB of spaces: about 10 KiB on the wire, inside max_message_size.
fn gzip_bomb() -> Vec<u8> {
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(b"{\"pong\": 1, \"pad\": \"").unwrap();
    gz.write_all(&vec![b' '; 10 << 20]).unwrap();
    gz.finish().unwrap()
}

#[tokio::test]
async fn wrong_malformed_stale_or_bomb_pongs_count_as_missed() {
    let text = |t: String| Some(Message::text(t));
    let answers: [Box<dyn Fn(u64) -> Option<Message>>; 4] = [
        Box::new(move |v| text(format!("{{\"pong\": {}}}", v + 1))),
        Box::new(move |_| text("{\"pong\": \"not a number\"}".into())),
        Box::new(move |_| text("{\"pong\": 1}".into())),
        Box::new(|_| Some(Message::binary(gzip_bomb()))),
    ];
    for answer in answers {
        let (took, pings, code) = closed_after_missed_pings(answer).await;
        assert_eq!((code, pings), (4000, 2));
        assert!(took >= 2 * I, "closed after {took:?}");
    }
}

#[tokio::test]
async fn a_gzip_compressed_pong_counts() {
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;
    let s = Server::start(CONFIG).await;
    let mut ws = s.ws("/app").await;
    for _ in 0..5 {
        let v = app_ping(&mut ws).await;
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(format!("{{\"pong\": {v}}}").as_bytes())
            .unwrap();
        ws.send(Message::binary(gz.finish().unwrap()))
            .await
            .unwrap();
    }
    send_text(&mut ws, "alive").await;
    assert_eq!(recv_text_skipping_pings(&mut ws).await, "alive");
    s.stop().await;
}

#[tokio::test]
async fn pongs_are_never_echoed_or_relayed_and_client_pings_are_answered() {
    let s = Server::start(CONFIG).await;
    let (mut a, mut b) = (s.ws("/relay").await, s.ws("/relay").await);
    // A pong, even one for no ping of ours, is heartbeat traffic: consumed.
    send_text(&mut a, "{\"pong\": 1}").await;
    send_text(&mut a, "{\"ping\": 12345}").await;
    send_text(&mut a, "hello").await;
    // a gets the answer to its own ping, then the relay of "hello": no pong relayed.
    assert_eq!(recv_text_skipping_pings(&mut a).await, "{\"pong\":12345}");
    assert_eq!(recv_text_skipping_pings(&mut a).await, "hello");
    // b sees only the relay.
    assert_eq!(recv_text_skipping_pings(&mut b).await, "hello");

    let mut e = s.ws("/app").await;
    let v = app_ping(&mut e).await;
    send_text(&mut e, &format!("{{\"pong\": {v}}}")).await;
    send_text(&mut e, "echo me").await;
    assert_eq!(recv_text_skipping_pings(&mut e).await, "echo me");
    s.stop().await;
}

async fn recv_text_skipping_pings(ws: &mut Ws) -> String {
    loop {
        match next(ws).await {
            Message::Text(t) => return t.as_str().to_owned(),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn client_ping_frames_get_their_payload_back() {
    let s = Server::start(CONFIG).await;
    let mut ws = s.ws("/frames").await;
    ws.send(Message::Ping(Bytes::from_static(b"are you there")))
        .await
        .unwrap();
    loop {
        if let Message::Pong(p) = next(&mut ws).await
            && p.as_ref() == b"are you there"
        {
            break;
        }
    }
    s.stop().await;
}
