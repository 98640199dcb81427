//! Origin checks at the handshake: same-origin default, allow-lists, wildcards.

mod common;

use common::*;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Error;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const CONFIG: &str = r#"
[[route]]
path = "/default"

[[route]]
path = "/listed"
origins = ["https://app.example.com", "https://*.example.org"]

[[route]]
path = "/any"
origins = ["*"]
"#;

async fn status(s: &Server, path: &str, origin: Option<&str>) -> u16 {
    match connect(s.addr, path, origin).await {
        Ok(_) => 101,
        Err(Error::Http(res)) => res.status().as_u16(),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn origins_are_checked_before_the_upgrade() {
    let s = Server::start(CONFIG).await;
    let same = format!("http://{}", s.addr);
    let cases = [
        ("/default", None, 101),
        ("/default", Some(same.as_str()), 101),
        ("/default", Some("http://evil.com"), 403),
        ("/listed", Some("https://app.example.com"), 101),
        ("/listed", Some("https://evil.example.com"), 403),
        ("/listed", Some("https://a.example.org"), 101),
        ("/listed", Some("https://x.y.example.org"), 101),
        ("/listed", Some("https://example.org"), 403),
        ("/listed", None, 101),
        ("/any", Some("null"), 101),
        ("/any", Some("http://evil.com"), 101),
    ];
    for (path, origin, want) in cases {
        assert_eq!(status(&s, path, origin).await, want, "{path} {origin:?}");
    }
    s.stop().await;
}

#[tokio::test]
async fn a_refused_origin_is_told_which_key_to_change() {
    let s = Server::start(CONFIG).await;
    let (status, body) = s
        .http(
            "GET",
            "/listed",
            &[
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Key", HANDSHAKE_KEY),
                ("Origin", "https://evil.com"),
            ],
            b"",
        )
        .await;
    assert_eq!(status, 403);
    assert!(
        body.contains("https://evil.com") && body.contains("origins"),
        "{body}"
    );
    s.stop().await;
}

/// Connects to `path` from `origin` offering `heartwire`, as heartwire.js does.
async fn offering_heartwire(s: &Server, path: &str, origin: &str) -> Ws {
    let mut req = format!("ws://{}{path}", s.addr)
        .into_client_request()
        .unwrap();
    let h = req.headers_mut();
    h.insert("Origin", origin.parse().unwrap());
    h.insert("Sec-WebSocket-Protocol", "heartwire".parse().unwrap());
    let (ws, res) = timeout(T, tokio_tungstenite::connect_async(req))
        .await
        .expect("connect timed out")
        .unwrap_or_else(|e| panic!("connect {path} from {origin}: {e}"));
    assert_eq!(res.headers()["sec-websocket-protocol"], "heartwire");
    ws
}

#[tokio::test]
async fn a_refused_origin_offering_heartwire_reads_4003_and_is_never_a_connection() {
    let s = Server::start(CONFIG).await;
    // Allowed: a plain connection, listed, served.
    let _bystander = offering_heartwire(&s, "/listed", "https://app.example.com").await;
    // Refused: a browser never sees a 403, so it gets a 101 and the reason in a close.
    let mut ws = offering_heartwire(&s, "/listed", "https://evil.example.com").await;
    let close = recv_close(&mut ws).await;
    assert_eq!(u16::from(close.code), 4003, "{}", close.reason);
    assert_eq!(
        close.reason.as_str(),
        "origin `https://evil.example.com` may not connect to /listed: add it to `origins` of this [[route]]"
    );
    // An origin too long for a close frame is shortened; the fix is not.
    let long = format!("https://{}.example.com", "a".repeat(200));
    let close = recv_close(&mut offering_heartwire(&s, "/listed", &long).await).await;
    assert_eq!(u16::from(close.code), 4003);
    assert!(close.reason.len() <= 123, "{}", close.reason);
    assert!(
        close
            .reason
            .ends_with("...` may not connect to /listed: add it to `origins` of this [[route]]"),
        "{}",
        close.reason
    );
    // Counted as origin refusals; only the bystander was ever a connection.
    assert_eq!(
        s.metric(r#"heartwire_connections_rejected_total{reason="origin"}"#)
            .await,
        2.0
    );
    let (_, list) = http(s.admin, "GET", "/connections", &[], b"").await;
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    // Without `heartwire`, the same origin still gets the HTTP 403.
    assert_eq!(
        status(&s, "/listed", Some("https://evil.example.com")).await,
        403
    );
    s.stop().await;
}
