//! The supervisor's timing rules on paused time: a real supervisor over an in-memory
//! socket (`tokio::io::duplex`), its real mailbox and heartbeat ticker, and a peer
//! that speaks raw RFC 6455 frames so it answers exactly what the test says. Time only
//! moves when every task waits, so the instants asserted are exact.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::sync::CancellationToken;

use super::session::{Ended, Session};
use super::supervise;
use crate::config::{self, Config};
use crate::fanout::{Hub, Limits, MemoryBroker, Registration, Subscriber, Target};
use crate::metrics::Metrics;
use crate::wire::Payload;

const MS: Duration = Duration::from_millis(1);
/// Longer than any rule under test: a wait that hits it is a failure.
const NEVER: Duration = Duration::from_secs(3600);

const OP_TEXT: u8 = 1;
const OP_BINARY: u8 = 2;
const OP_CLOSE: u8 = 8;
const OP_PING: u8 = 9;
const OP_PONG: u8 = 10;

/// One supervised connection and the peer at the other end of its socket.
struct Rig {
    hub: Arc<Hub>,
    peer: DuplexStream,
    buf: Vec<u8>,
    task: JoinHandle<Ended>,
    start: Instant,
    _registration: Registration,
}

fn parse(toml: &str) -> Config {
    config::from_toml(toml, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}"))
}

impl Rig {
    /// A connection on route `/a` of `toml`, its socket buffer `socket` bytes each way.
    fn start(toml: &str, socket: usize) -> Rig {
        Rig::start_as(toml, socket, None, None)
    }

    /// [`start`](Self::start) for user `user` whose token runs out `expires_in` from now.
    fn start_as(
        toml: &str,
        socket: usize,
        user: Option<&str>,
        expires_in: Option<Duration>,
    ) -> Rig {
        let config = parse(toml);
        let hub = Arc::new(Hub::new(Arc::new(Metrics::new())));
        hub.apply(&config);
        let route = hub.route("/a").expect("route /a");
        let pulse = route.pulse.subscribe();
        let who = Subscriber {
            user: user.map(Into::into),
            channels: vec!["/a".into()],
            resume: Vec::new(),
        };
        let limits = Limits {
            policy: route.settings().slow_consumer,
            messages: config.server.outbound_queue,
            bytes: config.server.outbound_queue_bytes,
        };
        let (conn, registration) =
            hub.register(&route, "127.0.0.1:1".parse().unwrap(), who, limits);
        let broker = MemoryBroker::default();
        let _ = futures_util::FutureExt::now_or_never(crate::fanout::Broker::start(
            &broker,
            hub.clone(),
        ));
        let mut session = Session::new(
            conn,
            route,
            &config,
            Arc::new(broker),
            CancellationToken::new(),
        );
        session.expires = expires_in.map(|d| (Instant::now() + d).into_std());
        let (server, peer) = tokio::io::duplex(socket);
        let ws = futures_util::FutureExt::now_or_never(WebSocketStream::from_raw_socket(
            server,
            Role::Server,
            None,
        ))
        .expect("from_raw_socket does no I/O");
        let task = tokio::spawn(supervise(ws, session, pulse));
        Rig {
            hub,
            peer,
            buf: Vec::new(),
            task,
            start: Instant::now(),
            _registration: registration,
        }
    }

    /// The next frame from the server, and when it arrived (since the start).
    async fn frame(&mut self) -> (u8, Vec<u8>, Duration) {
        timeout(NEVER, async {
            loop {
                if let Some((op, payload, used)) = parse_frame(&self.buf) {
                    self.buf.drain(..used);
                    return (op, payload, self.start.elapsed());
                }
                let mut chunk = [0u8; 4096];
                let n = self.peer.read(&mut chunk).await.expect("read");
                assert!(n > 0, "the server hung up without a close frame");
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("no frame within an hour of paused time")
    }

    /// Sends a masked client frame.
    async fn send(&mut self, op: u8, payload: &[u8]) {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![0x80 | op];
        match u16::try_from(payload.len()) {
            Ok(n) if n < 126 => out.push(0x80 | n as u8),
            Ok(n) => {
                out.push(0x80 | 126);
                out.extend_from_slice(&n.to_be_bytes());
            }
            Err(_) => panic!("test frames are under 64 KiB"),
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.peer.write_all(&out).await.expect("write");
    }

    /// Reads until a close frame; returns its code, reason and time.
    async fn close(&mut self) -> (u16, String, Duration) {
        loop {
            let (op, payload, at) = self.frame().await;
            if op == OP_CLOSE {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                let reason = String::from_utf8_lossy(&payload[2..]).into_owned();
                return (code, reason, at);
            }
        }
    }

    fn publish(&self, text: &str) -> usize {
        let target = Target::Channels(vec!["/a".into()]);
        self.hub
            .deliver(&target, &Payload::Text(text.into()))
            .queued
    }
}

/// A complete unmasked server frame at the start of `buf`: opcode, payload, bytes used.
fn parse_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let (len, at) = match b1 & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => return None,
        n => (usize::from(n), 2),
    };
    let payload = buf.get(at..at + len)?;
    Some((b0 & 0x0f, payload.to_vec(), at + len))
}

fn token_of_json_ping(payload: &[u8]) -> u64 {
    let mut json = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(payload), &mut json)
        .expect("gzip");
    let value: serde_json::Value = serde_json::from_str(&json).expect("json");
    value["ping"].as_u64().expect("a ping token")
}

const PROTOCOL: &str = r#"
[heartbeat.p]
strategy = "protocol"
ping_interval = "100ms"
ping_timeout = "250ms"
[[route]]
path = "/a"
heartbeat = "p"
"#;

const JSON: &str = r#"
[heartbeat.j]
strategy = "json-gzip"
ping_interval = "100ms"
max_missed = 2
[[route]]
path = "/a"
heartbeat = "j"
"#;

#[tokio::test(start_paused = true)]
async fn protocol_pings_come_every_interval_while_answered() {
    let mut rig = Rig::start(PROTOCOL, 64 * 1024);
    for n in 1..=5u32 {
        let (op, payload, at) = rig.frame().await;
        assert_eq!(op, OP_PING);
        assert_eq!(payload.len(), 13);
        assert_eq!(at, 100 * MS * n, "ping {n}");
        rig.send(OP_PONG, &payload).await;
    }
    assert!(!rig.task.is_finished());
}

#[tokio::test(start_paused = true)]
async fn a_silent_protocol_peer_is_closed_ping_timeout_after_the_first_unanswered_ping() {
    let mut rig = Rig::start(PROTOCOL, 64 * 1024);
    let (code, reason, at) = rig.close().await;
    assert_eq!((code, reason.as_str()), (4000, "heartbeat timeout"));
    // First ping at 100 ms, then 250 ms of silence.
    assert_eq!(at, 350 * MS);
    // The peer never answers the close: the socket is dropped a second later.
    let mut rest = Vec::new();
    rig.peer.read_to_end(&mut rest).await.expect("read");
    assert_eq!(rig.start.elapsed(), 1350 * MS);
    let ended = rig.task.await.unwrap();
    assert_eq!(ended.code, Some(4000));
}

#[tokio::test(start_paused = true)]
async fn any_frame_counts_as_alive_under_a_protocol_policy() {
    let mut rig = Rig::start(PROTOCOL, 64 * 1024);
    // Text instead of pongs: the route echoes it, and the peer stays.
    for n in 1..=4u32 {
        let (op, _, at) = rig.frame().await;
        assert_eq!((op, at), (OP_PING, 100 * MS * n));
        rig.send(OP_TEXT, b"still here").await;
        let (op, payload, _) = rig.frame().await;
        assert_eq!((op, payload.as_slice()), (OP_TEXT, &b"still here"[..]));
    }
    assert!(!rig.task.is_finished());
}

#[tokio::test(start_paused = true)]
async fn a_silent_json_gzip_peer_is_closed_on_the_tick_after_max_missed() {
    let mut rig = Rig::start(JSON, 64 * 1024);
    for n in 1..=2u32 {
        let (op, payload, at) = rig.frame().await;
        assert_eq!((op, at), (OP_BINARY, 100 * MS * n));
        token_of_json_ping(&payload);
    }
    let (code, reason, at) = rig.close().await;
    assert_eq!(code, 4000);
    assert_eq!(reason, "heartbeat timeout: 2 pings unanswered");
    assert_eq!(at, 300 * MS);
    let ended = rig.task.await.unwrap();
    assert_eq!(ended.code, Some(4000));
}

#[tokio::test(start_paused = true)]
async fn a_pong_that_crosses_the_next_ping_still_counts() {
    let mut rig = Rig::start(JSON, 64 * 1024);
    // Each pong answers the ping before the latest: always one behind, never dead.
    let mut previous = None;
    for n in 1..=6u32 {
        let (op, payload, at) = rig.frame().await;
        assert_eq!((op, at), (OP_BINARY, 100 * MS * n), "ping {n}");
        if let Some(token) = previous {
            rig.send(OP_TEXT, format!("{{\"pong\": {token}}}").as_bytes())
                .await;
        }
        previous = Some(token_of_json_ping(&payload));
    }
    assert!(!rig.task.is_finished());
    // The last pong (for ping 5, at 600 ms) cleared the books; a wrong pong counts for
    // nothing: pings 7 and 8 go unanswered and the tick at 900 ms closes.
    rig.send(OP_TEXT, b"{\"pong\": 1}").await;
    let (code, _, at) = rig.close().await;
    assert_eq!(code, 4000);
    assert_eq!(at, 900 * MS);
}

#[tokio::test(start_paused = true)]
async fn a_reload_switches_a_live_connection_to_the_new_policy_from_its_next_tick() {
    let mut rig = Rig::start(PROTOCOL, 64 * 1024);
    let (op, payload, _) = rig.frame().await;
    assert_eq!(op, OP_PING);
    rig.send(OP_PONG, &payload).await;
    // Same policy name, other strategy and interval.
    let switched = PROTOCOL.replace(
        "strategy = \"protocol\"\nping_interval = \"100ms\"\nping_timeout = \"250ms\"",
        "strategy = \"json-gzip\"\nping_interval = \"40ms\"",
    );
    let reloaded_at = rig.start.elapsed();
    rig.hub.apply(&parse(&switched));
    let (op, payload, at) = rig.frame().await;
    assert_eq!(op, OP_BINARY, "the next ping is json-gzip");
    assert_eq!(at, reloaded_at + 40 * MS);
    token_of_json_ping(&payload);
    // The new rule applies: two unanswered json pings close it.
    let (code, reason, at) = rig.close().await;
    assert_eq!(code, 4000);
    assert!(reason.contains("2 pings unanswered"), "{reason}");
    assert_eq!(at, reloaded_at + 120 * MS);
}

#[tokio::test(start_paused = true)]
async fn a_reload_that_leaves_the_policy_alone_keeps_the_phase_and_the_books() {
    let mut rig = Rig::start(JSON, 64 * 1024);
    let (_, _, at) = rig.frame().await;
    assert_eq!(at, 100 * MS);
    // An unrelated change: a new route. The ping unanswered before still counts.
    rig.hub
        .apply(&parse(&format!("{JSON}[[route]]\npath = \"/b\"\n")));
    let (_, _, at) = rig.frame().await;
    assert_eq!(at, 200 * MS);
    let (code, _, at) = rig.close().await;
    assert_eq!((code, at), (4000, 300 * MS));
}

const SLOW: &str = r#"
[server]
outbound_queue = 4
[[route]]
path = "/a"
slow_consumer = "POLICY"
"#;

/// Publishes 10 messages before the connection's task runs, then reads what it gets.
async fn after_a_burst(policy: &str) -> (Vec<String>, Option<(u16, String)>, Rig) {
    let mut rig = Rig::start(&SLOW.replace("POLICY", policy), 64 * 1024);
    let queued: Vec<usize> = (1..=10).map(|i| rig.publish(&format!("m{i}"))).collect();
    // `disconnect` takes four, then the fifth ends the mailbox; the others take all.
    let want = if policy == "disconnect" { 4 } else { 10 };
    assert_eq!(queued.iter().sum::<usize>(), want, "{queued:?}");
    let mut got = Vec::new();
    loop {
        let (op, payload, _) = rig.frame().await;
        let text =
            String::from_utf8(payload[if op == OP_CLOSE { 2 } else { 0 }..].to_vec()).unwrap();
        if op == OP_CLOSE {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            return (got, Some((code, text)), rig);
        }
        got.push(text);
        if got.last().map(String::as_str) == Some("m10") {
            return (got, None, rig);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn slow_consumer_disconnect_closes_with_1008_when_over_the_queue() {
    let (got, close, rig) = after_a_burst("disconnect").await;
    assert!(got.is_empty(), "{got:?}");
    let (code, reason) = close.expect("a close");
    assert_eq!(code, 1008);
    assert!(
        reason.starts_with("slow consumer: 5 messages queued, over server.outbound_queue (4)"),
        "{reason}"
    );
    assert_eq!(rig.task.await.unwrap().code, Some(1008));
}

#[tokio::test(start_paused = true)]
async fn slow_consumer_drop_oldest_keeps_the_newest_that_fit() {
    let (got, close, rig) = after_a_burst("drop-oldest").await;
    assert_eq!(close, None);
    assert_eq!(got, ["m7", "m8", "m9", "m10"]);
    assert!(!rig.task.is_finished());
}

#[tokio::test(start_paused = true)]
async fn slow_consumer_keep_latest_gets_only_the_newest() {
    let (got, close, rig) = after_a_burst("keep-latest").await;
    assert_eq!(close, None);
    assert_eq!(got, ["m10"]);
    assert!(!rig.task.is_finished());
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_dropped_after_write_timeout() {
    let toml = "[server]\nwrite_timeout = \"2s\"\n[[route]]\npath = \"/a\"\n";
    // A socket buffer far smaller than what is published: writes block.
    let mut rig = Rig::start(toml, 256);
    let big = "x".repeat(100);
    for _ in 0..20 {
        rig.publish(&big);
    }
    let start = rig.start;
    let ended = (&mut rig.task).await.unwrap();
    assert_eq!(ended.code, None);
    assert!(
        ended.reason.contains("client not reading"),
        "{}",
        ended.reason
    );
    let at = start.elapsed();
    assert!(
        (2000 * MS..2100 * MS).contains(&at),
        "dropped at {at:?}, want 2 s after the first blocked write"
    );
}

const AUTH: &str = r#"
[[auth.key]]
algorithm = "HS256"
file = "tests/keys/hs.secret"
[[route]]
path = "/a"
auth = "jwt"
"#;

/// A refresh message for `sub` whose token expires `exp_in` seconds from now (wall clock,
/// as JWT times are).
fn refresh_for(sub: &str, exp_in: u64) -> Vec<u8> {
    let secret = std::fs::read("tests/keys/hs.secret").expect("fixture");
    let secret = secret.strip_suffix(b"\n").unwrap_or(&secret);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({ "sub": sub, "exp": now + exp_in }),
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap();
    serde_json::json!({ "token": token })
        .to_string()
        .into_bytes()
}

#[tokio::test(start_paused = true)]
async fn an_unrefreshed_token_closes_with_4001_at_its_expiry() {
    let mut rig = Rig::start_as(AUTH, 64 * 1024, Some("u1"), Some(5 * 1000 * MS));
    let (code, reason, at) = rig.close().await;
    assert_eq!((code, at), (crate::close::TOKEN_EXPIRED, 5 * 1000 * MS));
    assert!(reason.starts_with("token expired"), "{reason}");
}

#[tokio::test(start_paused = true)]
async fn a_refresh_moves_the_expiry_to_the_new_tokens() {
    let mut rig = Rig::start_as(AUTH, 64 * 1024, Some("u1"), Some(5 * 1000 * MS));
    rig.send(OP_TEXT, &refresh_for("u1", 100)).await;
    // Consumed, not echoed: the next frame is the close at the new token's expiry (exp is
    // whole seconds, plus the default 30 s leeway), long after the old one's 5 s.
    let (code, _, at) = rig.close().await;
    assert_eq!(code, crate::close::TOKEN_EXPIRED);
    let secs = at.as_secs();
    assert!((128..=131).contains(&secs), "closed after {at:?}");
}

#[tokio::test(start_paused = true)]
async fn a_refresh_for_another_user_closes_with_4003() {
    let mut rig = Rig::start_as(AUTH, 64 * 1024, Some("u1"), Some(5 * 1000 * MS));
    rig.send(OP_TEXT, &refresh_for("u2", 100)).await;
    let (code, reason, at) = rig.close().await;
    assert_eq!((code, at), (crate::close::REFUSED, Duration::ZERO));
    assert!(reason.starts_with("token refused (invalid)"), "{reason}");
}

#[tokio::test(start_paused = true)]
async fn refreshes_past_the_rate_limit_are_refused_unchecked() {
    // Ten at once are taken, one more a second later too; the next at that instant is
    // refused however valid its token, and at once, not at an expiry.
    let mut rig = Rig::start_as(AUTH, 64 * 1024, Some("u1"), Some(5 * 1000 * MS));
    let refresh = refresh_for("u1", 100);
    for _ in 0..10 {
        rig.send(OP_TEXT, &refresh).await;
    }
    tokio::time::sleep(1000 * MS).await;
    rig.send(OP_TEXT, &refresh).await;
    rig.send(OP_TEXT, &refresh).await;
    let (code, reason, at) = rig.close().await;
    assert_eq!(code, crate::close::REFUSED, "{reason}");
    assert!(
        reason.starts_with("token refreshed over 10 times"),
        "{reason}"
    );
    assert!(reason.len() <= crate::close::MAX_REASON, "{reason}");
    assert_eq!(at, 1000 * MS, "closed at the 12th, not at an expiry");
}

#[tokio::test(start_paused = true)]
async fn a_client_over_its_routes_client_rate_is_closed_with_1008() {
    // client_rate = 5: five at once, five more a second later, then one too many.
    let mut rig = Rig::start(
        "[[route]]\npath = \"/a\"\non_message = \"ignore\"\nclient_rate = 5\n",
        64 * 1024,
    );
    for _ in 0..5 {
        rig.send(OP_TEXT, b"hi").await;
    }
    tokio::time::sleep(1000 * MS).await;
    for _ in 0..6 {
        rig.send(OP_TEXT, b"hi").await;
    }
    let (code, reason, at) = rig.close().await;
    assert_eq!(code, crate::close::POLICY, "{reason}");
    assert_eq!(
        reason,
        "sent over 5 messages in a second (route client_rate): slow down"
    );
    assert_eq!(at, 1000 * MS, "closed at the 11th message");
}

#[tokio::test(start_paused = true)]
async fn a_client_ping_is_answered_at_once_and_not_passed_to_the_route() {
    // An echo route without heartbeat: the pong comes back, the ping is not echoed.
    let mut rig = Rig::start("[[route]]\npath = \"/a\"\n", 64 * 1024);
    rig.send(OP_TEXT, br#"{"ping": 17}"#).await;
    let (op, payload, at) = rig.frame().await;
    assert_eq!(
        (op, payload.as_slice(), at),
        (OP_TEXT, &br#"{"pong":17}"#[..], Duration::ZERO)
    );
    rig.send(OP_TEXT, b"next").await;
    let (op, payload, _) = rig.frame().await;
    assert_eq!((op, payload.as_slice()), (OP_TEXT, &b"next"[..]));
}

#[tokio::test(start_paused = true)]
async fn with_client_pings_off_a_ping_is_ordinary_traffic() {
    let mut rig = Rig::start(
        "[[route]]\npath = \"/a\"\nclient_pings = false\n",
        64 * 1024,
    );
    rig.send(OP_TEXT, br#"{"ping": 17}"#).await;
    let (op, payload, _) = rig.frame().await;
    assert_eq!((op, payload.as_slice()), (OP_TEXT, &br#"{"ping": 17}"#[..]));
}
