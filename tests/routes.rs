//! WebSocket routes: welcome, echo, relay, ignore; static pages; unknown paths.

mod common;

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

const CONFIG: &str = r#"
[[route]]
path = "/ws"
origins = ["*"]
welcome = "Welcome"
on_message = "echo"
echo_prefix = "new message :"

[[route]]
path = "/"
on_message = "relay"
relay_prefix = "server said: "

[[route]]
path = "/plain"

[[route]]
path = "/quiet"
on_message = "ignore"

[[route]]
path = "/raw"
client_pings = false

[[route]]
path = "/chat"
on_message = "relay"
client_rate = 3

[[static]]
path = "/index"
body = "Hello world"
"#;

#[tokio::test]
async fn welcome_then_echo_keeps_text_text_and_binary_binary() {
    let s = Server::start(CONFIG).await;
    let mut ws = s.ws("/ws").await;
    assert_eq!(recv_text(&mut ws).await, "Welcome");
    send_text(&mut ws, "hello").await;
    assert_eq!(recv_text(&mut ws).await, "new message :hello");
    ws.send(Message::binary(vec![0u8, 1, 2])).await.unwrap();
    let mut want = b"new message :".to_vec();
    want.extend([0, 1, 2]);
    assert_eq!(recv(&mut ws).await, Message::binary(want));
    s.stop().await;
}

#[tokio::test]
async fn an_echo_route_without_welcome_or_prefix_is_a_plain_echo_server() {
    let s = Server::start(CONFIG).await;
    let mut ws = s.ws("/plain").await;
    for msg in [Message::text("α"), Message::binary(vec![9u8; 70_000 / 2])] {
        ws.send(msg.clone()).await.unwrap();
        assert_eq!(recv(&mut ws).await, msg);
    }
    s.stop().await;
}

#[tokio::test]
async fn relay_reaches_every_client_of_the_route_once_sender_included() {
    let s = Server::start(CONFIG).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(s.ws("/").await);
    }
    let mut other = s.ws("/quiet").await;
    send_text(&mut clients[0], "hi").await;
    send_text(&mut clients[0], "end").await;
    for c in &mut clients {
        assert_eq!(recv_text(c).await, "server said: hi");
        // The next message is the second relay, not a duplicate of the first.
        assert_eq!(recv_text(c).await, "server said: end");
    }
    // The other route got nothing: its next message is a publish aimed at it.
    s.publish("/publish?channel=/quiet", "only quiet").await;
    assert_eq!(recv_text(&mut other).await, "only quiet");
    s.stop().await;
}

#[tokio::test]
async fn a_client_ping_is_answered_on_any_route_and_never_relayed() {
    let s = Server::start(CONFIG).await;
    let (mut a, mut b) = (s.ws("/").await, s.ws("/").await);
    send_text(&mut a, r#"{"ping": 1234.5}"#).await;
    assert_eq!(recv_text(&mut a).await, r#"{"pong":1234.5}"#);
    send_text(&mut a, "after").await;
    // b's first message is the relay of "after": the ping never reached the route.
    assert_eq!(recv_text(&mut b).await, "server said: after");
    assert_eq!(recv_text(&mut a).await, "server said: after");
    // With client_pings = false the same text is ordinary traffic: echoed.
    let mut raw = s.ws("/raw").await;
    send_text(&mut raw, r#"{"ping": 7}"#).await;
    assert_eq!(recv_text(&mut raw).await, r#"{"ping": 7}"#);
    s.stop().await;
}

#[tokio::test]
async fn a_client_flooding_a_relay_route_is_closed_and_the_others_keep_their_messages() {
    let s = Server::start(CONFIG).await;
    let (mut flood, mut other) = (s.ws("/chat").await, s.ws("/chat").await);
    for i in 0..50 {
        // The socket may close under the flood: later sends may fail.
        if flood.send(Message::text(format!("m{i}"))).await.is_err() {
            break;
        }
    }
    let close = recv_close(&mut flood).await;
    assert_eq!(u16::from(close.code), 1008);
    assert_eq!(
        close.reason.as_str(),
        "sent over 3 messages in a second (route client_rate): slow down"
    );
    // The burst of 3 was relayed, not the whole flood: a publish marks the end.
    s.publish("/publish?channel=/chat", "end").await;
    let mut relayed = 0;
    while recv_text(&mut other).await != "end" {
        relayed += 1;
    }
    assert!((3..50).contains(&relayed), "{relayed} relayed");
    assert_eq!(s.metric("heartwire_clients_too_fast_total").await, 1.0);
    s.stop().await;
}

#[tokio::test]
async fn ignore_drops_client_messages() {
    let s = Server::start(CONFIG).await;
    let mut ws = s.ws("/quiet").await;
    send_text(&mut ws, "dropped").await;
    s.publish("/publish?channel=/quiet", "after").await;
    assert_eq!(recv_text(&mut ws).await, "after");
    s.stop().await;
}

#[tokio::test]
async fn static_page_and_unknown_paths() {
    let s = Server::start(CONFIG).await;
    assert_eq!(
        s.http("GET", "/index", &[], b"").await,
        (200, "Hello world".into())
    );
    let (status, body) = s.http("POST", "/index", &[], b"").await;
    assert_eq!(status, 405, "{body}");
    let (status, body) = s.http("GET", "/nope", &[], b"").await;
    assert_eq!(status, 404);
    assert!(body.contains("/nope"), "{body}");
    // A plain GET on a WebSocket path says what to do.
    let (status, body) = s.http("GET", "/ws", &[], b"").await;
    assert_eq!(status, 426);
    assert!(body.contains("WebSocket"), "{body}");
    s.stop().await;
}
