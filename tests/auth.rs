//! Subscriber authentication end to end: tokens minted with the same crate heartwire
//! verifies with, carried the three ways a browser can, refused with their documented
//! answers while a bystander keeps being served; personal channels, kicks, expiry,
//! refresh, key rotation on reload, and logs that never show a token.

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

const CONFIG: &str = r#"
[auth]
issuer = "https://app.example"
audience = "heartwire"

[[auth.key]]
kid = "rs"
algorithm = "RS256"
file = "tests/keys/rsa.pub"

[[auth.key]]
kid = "ec"
algorithm = "ES256"
file = "tests/keys/ec.pub"

[[auth.key]]
algorithm = "HS256"
file = "tests/keys/hs.secret"

[[route]]
path = "/me"
auth = "jwt"
channels = ["news", "user.{sub}"]
on_message = "echo"

[[route]]
path = "/org"
auth = "jwt"
channels = ["org.{claim.org}"]
origins = ["http://app.test"]
token_cookie = "hw_token"

[[route]]
path = "/open"
"#;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn key_file(name: &str) -> Vec<u8> {
    std::fs::read(format!("tests/keys/{name}")).unwrap()
}

fn mint(alg: Algorithm, kid: Option<&str>, file: &str, claims: &Value) -> String {
    let bytes = key_file(file);
    let key = match alg {
        Algorithm::HS256 => EncodingKey::from_secret(bytes.strip_suffix(b"\n").unwrap_or(&bytes)),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&bytes).unwrap(),
        _ => EncodingKey::from_rsa_pem(&bytes).unwrap(),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, &key).unwrap()
}

/// Claims every route here accepts, for `sub`, valid for an hour.
fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": "https://app.example", "aud": "heartwire", "exp": now() + 3600})
}

fn rs(claims: &Value) -> String {
    mint(Algorithm::RS256, Some("rs"), "rsa.key", claims)
}

/// Connects offering `["heartwire", "heartwire.bearer.<token>"]`, as the docs tell
/// browsers to; the client fails unless the server selects `heartwire`.
async fn ws_with(s: &Server, path: &str, token: &str) -> Ws {
    let mut req = format!("ws://{}{path}", s.addr)
        .into_client_request()
        .unwrap();
    let offered = format!("heartwire, heartwire.bearer.{token}");
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", offered.parse().unwrap());
    let (ws, res) = timeout(T, tokio_tungstenite::connect_async(req))
        .await
        .expect("connect timed out")
        .unwrap_or_else(|e| panic!("connect {path}: {e}"));
    assert_eq!(res.headers()["sec-websocket-protocol"], "heartwire");
    ws
}

/// Connects offering `heartwire` and `bearer` (if not empty), as heartwire.js does, to a
/// route that refuses the token: the server selects `heartwire`, then closes at once.
async fn refused_by_close(s: &Server, path: &str, bearer: &str) -> CloseFrame {
    let mut req = format!("ws://{}{path}", s.addr)
        .into_client_request()
        .unwrap();
    let offered = match bearer {
        "" => "heartwire".to_owned(),
        b => format!("heartwire, {b}"),
    };
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", offered.parse().unwrap());
    let (mut ws, res) = timeout(T, tokio_tungstenite::connect_async(req))
        .await
        .expect("connect timed out")
        .unwrap_or_else(|e| panic!("connect {path}: {e}"));
    assert_eq!(res.headers()["sec-websocket-protocol"], "heartwire");
    recv_close(&mut ws).await
}

const UPGRADE: [(&str, &str); 4] = [
    ("Connection", "Upgrade"),
    ("Upgrade", "websocket"),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Key", HANDSHAKE_KEY),
];

/// A handshake that is expected to be refused: status, response head, JSON body.
async fn refused(s: &Server, target: &str, extra: &[(&str, &str)]) -> (u16, String, Value) {
    let mut headers = UPGRADE.to_vec();
    headers.extend_from_slice(extra);
    let (status, head, body) = http_with_head(s.addr, "GET", target, &headers, b"").await;
    let body = serde_json::from_str(&body).unwrap_or(Value::Null);
    (status, head, body)
}

/// Every log line the daemons in this test binary write, at debug.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("heartwire=debug")
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buf
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn every_bad_token_gets_its_answer_and_a_bystander_keeps_being_served() {
    let s = Server::start(CONFIG).await;
    let mut bystander = ws_with(&s, "/me", &rs(&claims("b"))).await;

    let base = claims("u1");
    let with = |k: &str, v: Value| {
        let mut c = base.clone();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = base.clone();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let rsa_pub = String::from_utf8(key_file("rsa.pub")).unwrap();
    let header = |h: Value| URL_SAFE_NO_PAD.encode(h.to_string());
    let payload = URL_SAFE_NO_PAD.encode(base.to_string());
    let hs_with_rsa_pub = encode(
        &Header::new(Algorithm::HS256),
        &base,
        &EncodingKey::from_secret(rsa_pub.as_bytes()),
    )
    .unwrap();
    let big = "a".repeat(9 * 1024);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "expired",
            rs(&with("exp", json!(now() - 3600))),
            403,
            "expired",
        ),
        (
            "nbf in the future",
            rs(&with("nbf", json!(now() + 3600))),
            403,
            "not_yet_valid",
        ),
        (
            "signed with a key heartwire does not have",
            mint(Algorithm::HS256, None, "hs-old.secret", &base),
            403,
            "invalid",
        ),
        (
            "alg none",
            format!(
                "{}.{payload}.",
                header(json!({"alg": "none", "typ": "JWT"}))
            ),
            403,
            "invalid",
        ),
        (
            "HS256 signed with the RS256 public key",
            hs_with_rsa_pub,
            403,
            "invalid",
        ),
        (
            "wrong audience",
            rs(&with("aud", json!("other"))),
            403,
            "audience",
        ),
        (
            "wrong issuer",
            rs(&with("iss", json!("https://evil.example"))),
            403,
            "issuer",
        ),
        (
            "a channel the token does not allow",
            rs(&with("channels", json!(["news", "user.someone-else"]))),
            403,
            "channel",
        ),
        ("no sub for user.{sub}", rs(&without("sub")), 403, "invalid"),
        ("malformed base64", "!!!.@@@.$$$".to_owned(), 403, "invalid"),
        ("9 KiB", big.clone(), 403, "too_large"),
    ];
    for (what, token, status, label) in &cases {
        let (got, _, body) = refused(&s, &format!("/me?token={token}"), &[]).await;
        assert_eq!(
            (got, body["auth"].as_str()),
            (*status, Some(*label)),
            "{what}: {body}"
        );
        let error = body["error"].as_str().unwrap();
        for part in token.split('.').filter(|p| p.len() > 8) {
            assert!(
                !error.contains(part),
                "{what}: the answer quotes the token: {error}"
            );
        }
        // The same token as the bearer subprotocol alone gets the same answer.
        let offered = format!("heartwire.bearer.{token}");
        let (got, _, body) = refused(&s, "/me", &[("Sec-WebSocket-Protocol", &offered)]).await;
        assert_eq!(
            (got, body["auth"].as_str()),
            (*status, Some(*label)),
            "{what} as subprotocol"
        );
        // Offered with `heartwire` (browsers, which never see a refused handshake's status):
        // a 101, then a close with the same reason, 4001 for an expired token, else 4003.
        let close = refused_by_close(&s, "/me", &offered).await;
        let code = if *label == "expired" { 4001 } else { 4003 };
        assert_eq!(u16::from(close.code), code, "{what}: {}", close.reason);
        let said = close
            .reason
            .strip_prefix(&format!("token refused ({label}): "))
            .unwrap_or_else(|| panic!("{what}: {}", close.reason));
        let error = body["error"].as_str().unwrap();
        assert!(
            error.starts_with(said),
            "{what}: the close says what the 403 says: {said} / {error}"
        );
    }
    // `heartwire` without a token: 4003 `missing`, saying how to send one.
    let close = refused_by_close(&s, "/me", "").await;
    assert_eq!(u16::from(close.code), 4003);
    assert!(
        close.reason.starts_with("token refused (missing): "),
        "{}",
        close.reason
    );
    // None of these sockets was ever a connection: only the bystander is listed.
    let (_, list) = http(s.admin, "GET", "/connections", &[], b"").await;
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    // No token at all: 401 with a challenge and how to send one.
    let (status, head, body) = refused(&s, "/me", &[]).await;
    assert_eq!(
        (status, body["auth"].as_str()),
        (401, Some("missing")),
        "{body}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer realm=\"heartwire\""),
        "{head}"
    );
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("heartwire.bearer.<token>"),
        "{body}"
    );
    // 64 KiB does not fit the 16 KiB of request headers heartwire reads: 431 from HTTP.
    let huge = format!("heartwire, heartwire.bearer.{}", "a".repeat(64 * 1024));
    let (status, _, _) = refused(&s, "/me", &[("Sec-WebSocket-Protocol", &huge)]).await;
    assert_eq!(status, 431);

    // Counted by reason; the bystander was never disturbed.
    // Each token three ways (query, bearer alone, with `heartwire`), plus the two above.
    assert_eq!(
        s.metric(r#"heartwire_auth_refusals_total{reason="invalid"}"#)
            .await,
        15.0
    );
    assert_eq!(
        s.metric(r#"heartwire_auth_refusals_total{reason="expired"}"#)
            .await,
        3.0
    );
    assert_eq!(
        s.metric(r#"heartwire_auth_refusals_total{reason="missing"}"#)
            .await,
        2.0
    );
    assert_eq!(
        s.metric(r#"heartwire_connections_rejected_total{reason="auth"}"#)
            .await,
        35.0
    );
    assert_eq!(
        s.publish("/publish?channel=user.b", "still here").await.0,
        200
    );
    assert_eq!(recv_text(&mut bystander).await, "still here");
    s.stop().await;
}

#[tokio::test]
async fn a_socket_closed_for_its_token_holds_its_slot_only_until_the_close() {
    // One connection per address: a slot kept by a refused socket would refuse the next.
    let s = Server::start(&format!("[server]\nmax_connections_per_ip = 1\n{CONFIG}")).await;
    let mut forbidden = claims("u1");
    forbidden["channels"] = json!(["news"]);
    for _ in 0..5 {
        let close =
            refused_by_close(&s, "/me", &format!("heartwire.bearer.{}", rs(&forbidden))).await;
        assert_eq!(u16::from(close.code), 4003, "{}", close.reason);
    }
    let mut ok = ws_with(&s, "/me", &rs(&claims("u1"))).await;
    assert_eq!(
        s.publish("/publish?channel=user.u1", "through").await.0,
        200
    );
    assert_eq!(recv_text(&mut ok).await, "through");
    // While that one is open, the next refusal finds no slot: the HTTP answer, still
    // counted as a token refusal.
    let offered = format!("heartwire, heartwire.bearer.{}", rs(&forbidden));
    let (status, _, body) = refused(&s, "/me", &[("Sec-WebSocket-Protocol", &offered)]).await;
    assert_eq!(
        (status, body["auth"].as_str()),
        (403, Some("channel")),
        "{body}"
    );
    assert_eq!(
        s.metric(r#"heartwire_connections_rejected_total{reason="auth"}"#)
            .await,
        6.0
    );
    s.stop().await;
}

#[tokio::test]
async fn tokens_travel_as_subprotocol_query_or_cookie_and_every_algorithm_verifies() {
    let s = Server::start(CONFIG).await;
    // Subprotocol (RS256), query (ES256), query (HS256 without kid).
    let mut a = ws_with(&s, "/me", &rs(&claims("a"))).await;
    let es = mint(Algorithm::ES256, Some("ec"), "ec.key", &claims("e"));
    let mut e = s.ws(&format!("/me?token={es}")).await;
    let hs = mint(Algorithm::HS256, None, "hs.secret", &claims("h"));
    let mut h = s.ws(&format!("/me?token={hs}")).await;
    for (ws, user) in [(&mut a, "a"), (&mut e, "e"), (&mut h, "h")] {
        let (status, body) = s
            .publish(&format!("/publish?channel=user.{user}"), user)
            .await;
        assert_eq!(
            (status, body),
            (
                200,
                format!("{{\"channels\":{{\"user.{user}\":1}},\"queued\":1}}\n")
            )
        );
        assert_eq!(recv_text(ws).await, user);
    }

    // A cookie, on the route that names one and lists its origins.
    let mut org = claims("c");
    org["org"] = json!("acme");
    let cookie = format!("other=1; hw_token={}", rs(&org));
    let mut req = format!("ws://{}/org", s.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Origin", "http://app.test".parse().unwrap());
    req.headers_mut().insert("Cookie", cookie.parse().unwrap());
    let (mut c, _) = timeout(T, tokio_tungstenite::connect_async(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        s.publish("/publish?channel=org.acme", "acme news").await.0,
        200
    );
    assert_eq!(recv_text(&mut c).await, "acme news");
    // The same cookie on a route without token_cookie is no token.
    let (status, _, _) = refused(&s, "/me", &[("Cookie", &cookie)]).await;
    assert_eq!(status, 401);
    // A token without the claim a template needs.
    let (status, _, body) = refused(
        &s,
        "/org",
        &[
            ("Origin", "http://app.test"),
            ("Cookie", &format!("hw_token={}", rs(&claims("c")))),
        ],
    )
    .await;
    assert_eq!(
        (status, body["auth"].as_str()),
        (403, Some("invalid")),
        "{body}"
    );
    assert!(
        body["error"].as_str().unwrap().contains("\"org\""),
        "{body}"
    );

    // Routes without auth ignore tokens and need none.
    s.ws("/open").await;
    s.stop().await;
}

#[tokio::test]
async fn personal_publishes_reach_only_that_users_connections() {
    let s = Server::start(CONFIG).await;
    let mut u1a = ws_with(&s, "/me", &rs(&claims("u1"))).await;
    let mut u1b = ws_with(&s, "/me", &rs(&claims("u1"))).await;
    let mut u2 = ws_with(&s, "/me", &rs(&claims("u2"))).await;
    let mut u3 = ws_with(&s, "/me", &rs(&claims("u3"))).await;
    for (user, holders) in [("u1", 2), ("u2", 1), ("u3", 1)] {
        let (status, body) = s
            .publish(
                &format!("/publish?channel=user.{user}"),
                &format!("for {user}"),
            )
            .await;
        assert_eq!(
            (status, body),
            (
                200,
                format!("{{\"channels\":{{\"user.{user}\":{holders}}},\"queued\":{holders}}}\n")
            )
        );
    }
    assert_eq!(
        s.publish("/publish?channel=news", "for all").await.1,
        "{\"channels\":{\"news\":4},\"queued\":4}\n"
    );
    // Each gets its own message, then the shared one: nothing of anyone else's.
    for (ws, user) in [
        (&mut u1a, "u1"),
        (&mut u1b, "u1"),
        (&mut u2, "u2"),
        (&mut u3, "u3"),
    ] {
        assert_eq!(recv_text(ws).await, format!("for {user}"));
        assert_eq!(recv_text(ws).await, "for all");
    }
    // Offline is normal.
    assert_eq!(
        s.publish("/publish?channel=user.u9", "x").await,
        (200, "{\"channels\":{\"user.u9\":0},\"queued\":0}\n".into())
    );
    s.stop().await;
}

#[tokio::test]
async fn a_kick_by_user_closes_exactly_that_users_connections() {
    let s = Server::start(CONFIG).await;
    let mut a1 = ws_with(&s, "/me", &rs(&claims("a"))).await;
    let mut a2 = ws_with(&s, "/me", &rs(&claims("a"))).await;
    let mut b = ws_with(&s, "/me", &rs(&claims("b"))).await;
    let mut anon = s.ws("/open").await;
    let (status, body) = s
        .http("POST", "/publish/disconnect?user=a&reason=banned", &[], b"")
        .await;
    assert_eq!((status, body.as_str()), (200, "{\"disconnected\":2}\n"));
    for ws in [&mut a1, &mut a2] {
        let close = recv_close(ws).await;
        assert_eq!(u16::from(close.code), 4009);
        assert!(close.reason.contains("banned"), "{}", close.reason);
    }
    assert_eq!(
        s.publish("/publish?channel=news", "after").await.1,
        "{\"channels\":{\"news\":1},\"queued\":1}\n"
    );
    assert_eq!(recv_text(&mut b).await, "after");
    assert_eq!(s.publish("/publish?channel=/open", "open").await.0, 200);
    assert_eq!(recv_text(&mut anon).await, "open");
    // /connections shows who, never the token.
    let (_, list) = http(s.admin, "GET", "/connections", &[], b"").await;
    let list: Value = serde_json::from_str(&list).unwrap();
    let users: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["user"].as_str())
        .collect();
    assert_eq!(users, ["b"], "{list}");
    s.stop().await;
}

#[tokio::test]
async fn an_expired_token_closes_with_4001_and_a_refresh_is_consumed() {
    let toml = CONFIG.replace(
        "audience = \"heartwire\"",
        "audience = \"heartwire\"\nleeway = \"0s\"",
    );
    let s = Server::start(&toml).await;
    let soon = |sub: &str, secs: u64| {
        let mut c = claims(sub);
        c["exp"] = json!(now() + secs);
        rs(&c)
    };
    // Smoke on the wall clock (the exact instants are unit-tested on paused time): exp is
    // whole seconds, so 2 s from now runs out in 1 to 2 s.
    let started = Instant::now();
    let mut short = ws_with(&s, "/me", &soon("x", 2)).await;
    let close = recv_close(&mut short).await;
    let took = started.elapsed();
    assert_eq!(u16::from(close.code), 4001, "{}", close.reason);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert_eq!(s.metric("heartwire_tokens_expired_total").await, 1.0);

    // A refresh is consumed, not echoed by the route; a refused one closes with 4003.
    let mut r = ws_with(&s, "/me", &soon("y", 60)).await;
    send_text(&mut r, &json!({"token": soon("y", 120)}).to_string()).await;
    send_text(&mut r, "hello").await;
    assert_eq!(recv_text(&mut r).await, "hello");
    send_text(&mut r, &json!({"token": soon("z", 120)}).to_string()).await;
    let close = recv_close(&mut r).await;
    assert_eq!(u16::from(close.code), 4003);
    assert!(
        close.reason.starts_with("token refused (invalid)"),
        "{}",
        close.reason
    );
    s.stop().await;
}

#[tokio::test]
async fn a_reload_rotates_keys_and_verified_connections_keep_their_identity() {
    let s = Server::start(CONFIG).await;
    let mut old = ws_with(&s, "/me", &rs(&claims("old"))).await;
    // The RS256 key is retired; an ES256 one stays.
    let rotated = CONFIG.replace(
        "kid = \"rs\"\nalgorithm = \"RS256\"\nfile = \"tests/keys/rsa.pub\"",
        "kid = \"rs2\"\nalgorithm = \"HS256\"\nfile = \"tests/keys/hs-old.secret\"",
    );
    assert_ne!(rotated, CONFIG);
    s.reload(&rotated);
    let token = rs(&claims("new"));
    // Reloads apply asynchronously: wait for the old key to be refused.
    timeout(T, async {
        loop {
            if refused(&s, &format!("/me?token={token}"), &[]).await.0 == 403 {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the reload did not retire the key");
    let (_, _, body) = refused(&s, &format!("/me?token={token}"), &[]).await;
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no key has kid \"rs\""),
        "{body}"
    );
    let mut new = ws_with(
        &s,
        "/me",
        &mint(
            Algorithm::HS256,
            Some("rs2"),
            "hs-old.secret",
            &claims("new"),
        ),
    )
    .await;
    assert_eq!(
        s.publish("/publish?channel=news", "both").await.1,
        "{\"channels\":{\"news\":2},\"queued\":2}\n"
    );
    assert_eq!(recv_text(&mut old).await, "both");
    assert_eq!(recv_text(&mut new).await, "both");
    s.stop().await;
}

#[tokio::test]
async fn the_logs_show_refusals_and_users_but_never_a_token() {
    let logs = logs();
    let s = Server::start(CONFIG).await;
    let good = rs(&claims("logged-user"));
    let bad = rs(
        &json!({"sub": "x", "iss": "https://app.example", "aud": "heartwire", "exp": now() - 100}),
    );
    let mut ws = s.ws(&format!("/me?token={good}")).await;
    assert_eq!(refused(&s, &format!("/me?token={bad}"), &[]).await.0, 403);
    send_text(&mut ws, "ping").await;
    assert_eq!(recv_text(&mut ws).await, "ping");
    drop(ws);
    s.stop().await;
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        text.contains("token refused"),
        "the refusal is logged:\n{text}"
    );
    assert!(text.contains("logged-user"), "the user is logged:\n{text}");
    for token in [&good, &bad] {
        for part in token.split('.') {
            assert!(
                !text.contains(part),
                "a token part reached the log:\n{text}"
            );
        }
    }
}

#[test]
fn configs_that_cannot_work_are_refused_with_the_key_and_the_fix() {
    let cases = [
        (
            "[[route]]\npath = \"/a\"\nauth = \"jwt\"\n",
            "route[0].auth",
            "[[auth.key]]",
        ),
        (
            "[[route]]\npath = \"/a\"\nchannels = [\"user.{sub}\"]\n",
            "route[0].channels",
            "auth = \"jwt\"",
        ),
        (
            "[[auth.key]]\nalgorithm = \"HS256\"\nfile = \"tests/keys/hs.secret\"\n[[route]]\npath = \"/a\"\nauth = \"jwt\"\ntoken_cookie = \"t\"\n",
            "route[0].token_cookie",
            "origins",
        ),
        (
            "[[auth.key]]\nalgorithm = \"HS256\"\nfile = \"tests/keys/rsa.pub\"\n",
            "auth.key[0]",
            "PEM",
        ),
        (
            "[[auth.key]]\nalgorithm = \"ES256\"\nfile = \"tests/keys/missing.pub\"\n",
            "auth.key[0].file",
            "missing.pub",
        ),
        (
            "[[auth.key]]\nalgorithm = \"none\"\nfile = \"tests/keys/hs.secret\"\n",
            "auth.key[0].algorithm",
            "forge",
        ),
        (
            "[[auth.key]]\nalgorithm = \"HS256\"\nfile = \"tests/keys/hs.secret\"\n[[route]]\npath = \"/a\"\nauth = \"jwt\"\nchannels = [\"t.{query.token}\"]\n",
            "route[0].channels",
            "{sub}",
        ),
    ];
    for (toml, key, hint) in cases {
        let err = heartwire::config::from_toml(toml, std::path::Path::new("test.toml"))
            .expect_err(toml)
            .to_string();
        assert!(err.contains(&format!("`{key}")), "{toml}\n=> {err}");
        assert!(err.contains(hint), "{toml}\n=> {err}");
    }
}
