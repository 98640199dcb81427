//! The publish endpoint: GET and POST, channels, content types, auth, limits.

mod common;

use std::time::Duration;

use common::*;
use tokio_tungstenite::tungstenite::Message;

const CONFIG: &str = r#"
[publish]
path = "/receive"
max_body_size = 1024

[[route]]
path = "/a"
channel = "news"

[[route]]
path = "/b"
channel = "news"

[[route]]
path = "/c"
"#;

#[tokio::test]
async fn get_and_post_reach_every_client_of_the_channel_exactly_once() {
    let s = Server::start(CONFIG).await;
    let (mut a1, mut a2, mut b, mut c) = (
        s.ws("/a").await,
        s.ws("/a").await,
        s.ws("/b").await,
        s.ws("/c").await,
    );
    assert_eq!(
        s.http("GET", "/receive?msg=one%20two&channel=news", &[], b"")
            .await,
        (200, "{\"channels\":{\"news\":3},\"queued\":3}\n".into())
    );
    assert_eq!(
        s.http("GET", "/receive?channel=news&msg=caf%C3%A9+1%2B1", &[], b"")
            .await,
        (200, "{\"channels\":{\"news\":3},\"queued\":3}\n".into())
    );
    assert_eq!(
        s.publish("/receive?channel=news", "three").await,
        (200, "{\"channels\":{\"news\":3},\"queued\":3}\n".into())
    );
    assert_eq!(s.publish("/receive?channel=%2Fc", "for c").await.0, 200);
    for ws in [&mut a1, &mut a2, &mut b] {
        assert_eq!(recv_text(ws).await, "one two");
        assert_eq!(recv_text(ws).await, "café 1+1");
        assert_eq!(recv_text(ws).await, "three");
    }
    // /c saw neither news message: its first message is its own.
    assert_eq!(recv_text(&mut c).await, "for c");
    // No channel: everyone.
    assert_eq!(
        s.http("GET", "/receive?msg=all", &[], b"").await.1,
        "{\"queued\":4}\n"
    );
    for ws in [&mut a1, &mut a2, &mut b, &mut c] {
        assert_eq!(recv_text(ws).await, "all");
    }
    s.stop().await;
}

#[tokio::test]
async fn content_types_pick_the_frame_type() {
    let s = Server::start(CONFIG).await;
    let mut ws = s.ws("/c").await;
    let cases: &[(&str, &[u8], Message)] = &[
        (
            "application/json",
            br#"{"a": 1}"#,
            Message::text(r#"{"a": 1}"#),
        ),
        (
            "application/octet-stream",
            &[0, 159, 146, 150],
            Message::binary(vec![0u8, 159, 146, 150]),
        ),
        (
            "text/plain; charset=utf-8",
            "héllo".as_bytes(),
            Message::text("héllo"),
        ),
        (
            "application/x-www-form-urlencoded",
            b"msg=from+a+form",
            Message::text("from a form"),
        ),
        (
            "application/x-www-form-urlencoded",
            b"other=1&msg=caf%C3%A9+1%2B1",
            Message::text("café 1+1"),
        ),
    ];
    for (ctype, body, want) in cases {
        let (status, text) = s
            .http(
                "POST",
                "/receive?channel=/c",
                &[("Content-Type", ctype)],
                body,
            )
            .await;
        assert_eq!(status, 200, "{ctype}: {text}");
        assert_eq!(&recv(&mut ws).await, want, "{ctype}");
    }
    s.stop().await;
}

#[tokio::test]
async fn bad_requests_get_a_4xx_with_a_reason() {
    let s = Server::start(CONFIG).await;
    let json = [("Content-Type", "application/json")];
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a [(&'a str, &'a str)],
        Vec<u8>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/receive?channel=news",
            &json,
            b"{not json".to_vec(),
            400,
            "not valid JSON",
        ),
        (
            "POST",
            "/receive?channel=bad%20name",
            &[],
            b"x".to_vec(),
            400,
            "not a channel name",
        ),
        (
            "POST",
            "/receive?channel=nobody",
            &[],
            b"x".to_vec(),
            404,
            "no route could give a connection channel `nobody`",
        ),
        ("GET", "/receive", &[], vec![], 400, "missing `msg`"),
        (
            "POST",
            "/receive",
            &[("Content-Type", "image/png")],
            b"x".to_vec(),
            415,
            "not supported",
        ),
        (
            "POST",
            "/receive",
            &[("Content-Type", "text/plain")],
            vec![0xff, 0xfe],
            400,
            "not valid UTF-8",
        ),
        // Percent-encoded bytes that are not UTF-8 are refused as a text body is, not
        // delivered as replacement characters.
        (
            "GET",
            "/receive?msg=%ff%fe",
            &[],
            vec![],
            400,
            "not valid UTF-8",
        ),
        (
            "GET",
            "/receive?channel=news&msg=ok%C3",
            &[],
            vec![],
            400,
            "message (`msg`) is not valid UTF-8",
        ),
        (
            "POST",
            "/receive?channel=%ff%fe",
            &[],
            b"x".to_vec(),
            400,
            "`channel` is not valid UTF-8",
        ),
        (
            "POST",
            "/receive",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            b"msg=%ff%fe".to_vec(),
            400,
            "(form field `msg`) is not valid UTF-8",
        ),
        (
            "POST",
            "/receive",
            &[],
            vec![b'x'; 1025],
            413,
            "publish.max_body_size",
        ),
        ("PUT", "/receive", &[], vec![], 405, "POST"),
    ];
    // On channel `news`, which the refused requests name or reach (no channel: every route).
    let mut bystander = s.ws("/a").await;
    for (i, (method, target, headers, body, want, reason)) in cases.into_iter().enumerate() {
        let (status, text) = s.http(method, target, headers, &body).await;
        assert_eq!(status, want, "{method} {target}: {text}");
        assert!(text.contains(reason), "{method} {target}: {text}");
        // The refused message reached nobody, and the daemon still serves: the next
        // message the bystander sees is the good one sent after it.
        let good = format!("good {i}");
        assert_eq!(s.publish("/receive?channel=news", &good).await.0, 200);
        assert_eq!(
            recv_text(&mut bystander).await,
            good,
            "after {method} {target}"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn a_token_is_required_when_set() {
    let s = Server::start(
        r#"
[publish]
token = "s3cret"
allow_get = false
[[route]]
path = "/c"
"#,
    )
    .await;
    let mut ws = s.ws("/c").await;
    let (status, body) = s.publish("/publish", "x").await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Authorization: Bearer"), "{body}");
    let (status, _) = s
        .http(
            "POST",
            "/publish",
            &[("Authorization", "Bearer nope")],
            b"x",
        )
        .await;
    assert_eq!(status, 403);
    let (status, body) = s
        .http(
            "GET",
            "/publish?msg=x",
            &[("Authorization", "Bearer s3cret")],
            b"",
        )
        .await;
    assert_eq!(status, 405, "{body}");
    assert!(body.contains("allow_get"), "{body}");
    let (status, _) = s
        .http(
            "POST",
            "/publish",
            &[("Authorization", "Bearer s3cret")],
            b"ok",
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(recv_text(&mut ws).await, "ok");
    s.stop().await;
}

#[tokio::test]
async fn a_publish_right_after_the_handshake_reaches_the_new_client() {
    let s = Server::start("[[route]]\npath = \"/c\"\n").await;
    let mut clients = Vec::new();
    for i in 1..=30 {
        // The connection subscribes before its 101 is sent, so no window exists.
        clients.push(s.ws("/c").await);
        let (status, body) = s.publish("/publish", &format!("m{i}")).await;
        assert_eq!((status, body), (200, format!("{{\"queued\":{i}}}\n")));
    }
    for (i, ws) in clients.iter_mut().enumerate() {
        assert_eq!(recv_text(ws).await, format!("m{}", i + 1));
    }
    s.stop().await;
}

#[tokio::test]
async fn the_rate_limit_refuses_with_429_and_a_retry_after_then_recovers() {
    let config =
        |limit: &str| format!("[publish]\ntoken = \"s3cret\"\n{limit}\n[[route]]\npath = \"/c\"\n");
    let limited = config("rate_limit = 2\nrate_burst = 3");
    let s = Server::start(&limited).await;
    let mut ws = s.ws("/c").await;
    let auth = [("Authorization", "Bearer s3cret")];
    // Strangers without the token do not spend the publishers' budget.
    for _ in 0..10 {
        assert_eq!(s.publish("/publish", "x").await.0, 401);
    }
    for i in 1..=3 {
        let (status, body) = s
            .http("POST", "/publish", &auth, format!("m{i}").as_bytes())
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, head, body) = http_with_head(s.addr, "POST", "/publish", &auth, b"over").await;
    assert_eq!(status, 429, "{body}");
    assert!(
        head.to_ascii_lowercase().contains("\r\nretry-after: 1"),
        "{head}"
    );
    assert!(body.contains("publish.rate_limit (2 requests/s)"), "{body}");
    let wait_ms: u64 = body
        .split("retry in ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no wait in {body}"));
    assert!((1..=500).contains(&wait_ms), "{body}");
    // The refused message went nowhere; the three accepted ones arrived in order.
    for i in 1..=3 {
        assert_eq!(recv_text(&mut ws).await, format!("m{i}"));
    }
    // The bucket refills at the announced time (the wait is the contract under test).
    tokio::time::sleep(Duration::from_millis(wait_ms + 20)).await;
    assert_eq!(s.http("POST", "/publish", &auth, b"m4").await.0, 200);
    assert_eq!(recv_text(&mut ws).await, "m4");
    // A reload that keeps the rate keeps the (now empty) bucket; one that lifts it applies at once.
    s.reload(&limited);
    assert_eq!(s.http("POST", "/publish", &auth, b"x").await.0, 429);
    s.reload(&config(""));
    for i in 5..=20 {
        let (status, body) = s
            .http("POST", "/publish", &auth, format!("m{i}").as_bytes())
            .await;
        assert_eq!(status, 200, "{body}");
    }
    for i in 5..=20 {
        assert_eq!(recv_text(&mut ws).await, format!("m{i}"));
    }
    s.stop().await;
}
