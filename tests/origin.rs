//! Origin checks at the handshake: same-origin default, allow-lists, wildcards.

mod common;

use common::*;
use tokio_tungstenite::tungstenite::Error;

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
