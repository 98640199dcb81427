//! Addressed channels without tokens: path segments and query parameters make a
//! connection's channels; publishes name one or several; kicks close by channel.

mod common;

use common::*;

const CONFIG: &str = r#"
[[route]]
path = "/room/{id}"
channels = ["room.{id}", "lobby"]
on_message = "relay"

[[route]]
path = "/feed"
channels = ["feed.{query.topic}"]
on_message = "ignore"

[[route]]
path = "/plain"
"#;

#[tokio::test]
async fn path_and_query_templates_give_each_connection_its_channels() {
    let s = Server::start(CONFIG).await;
    let mut r1 = s.ws("/room/1").await;
    let mut r1b = s.ws("/room/1").await;
    let mut r2 = s.ws("/room/2").await;
    let mut prices = s.ws("/feed?topic=prices").await;
    let mut plain = s.ws("/plain").await;

    // One room only: exact counts per channel.
    assert_eq!(
        s.publish("/publish?channel=room.1", "to room 1").await,
        (200, "{\"channels\":{\"room.1\":2},\"queued\":2}\n".into())
    );
    assert_eq!(recv_text(&mut r1).await, "to room 1");
    assert_eq!(recv_text(&mut r1b).await, "to room 1");
    // A query-parameter channel.
    assert_eq!(
        s.publish("/publish?channel=feed.prices", "p1").await.1,
        "{\"channels\":{\"feed.prices\":1},\"queued\":1}\n"
    );
    assert_eq!(recv_text(&mut prices).await, "p1");
    // Several channels: a connection holding two of them gets the message once.
    let (status, body) = s
        .publish(
            "/publish?channel=room.2&channel=lobby&channel=feed.nobody",
            "many",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["queued"], 3);
    assert_eq!(reply["channels"]["room.2"], 1);
    assert_eq!(reply["channels"]["lobby"], 3);
    assert_eq!(
        reply["channels"]["feed.nobody"], 0,
        "offline is not an error"
    );
    for ws in [&mut r1, &mut r1b, &mut r2] {
        assert_eq!(recv_text(ws).await, "many");
    }
    // The plain route kept its old meaning: its path is its channel.
    assert_eq!(
        s.publish("/publish?channel=/plain", "old").await.1,
        "{\"channels\":{\"/plain\":1},\"queued\":1}\n"
    );
    assert_eq!(recv_text(&mut plain).await, "old");
    // Everyone saw exactly what was theirs: a final broadcast is the next message.
    assert_eq!(s.publish("/publish", "end").await.1, "{\"queued\":5}\n");
    for ws in [&mut r1, &mut r1b, &mut r2, &mut prices, &mut plain] {
        assert_eq!(recv_text(ws).await, "end");
    }
    s.stop().await;
}

#[tokio::test]
async fn relay_goes_to_the_senders_channels_only() {
    let s = Server::start(CONFIG).await;
    let mut a = s.ws("/room/a").await;
    let mut a2 = s.ws("/room/a").await;
    let mut b = s.ws("/room/b").await;
    send_text(&mut a, "hi room").await;
    // room.a and lobby: a and a2 hold room.a, b holds lobby, each gets it once.
    assert_eq!(recv_text(&mut a).await, "hi room");
    assert_eq!(recv_text(&mut a2).await, "hi room");
    assert_eq!(recv_text(&mut b).await, "hi room");
    assert_eq!(s.publish("/publish?channel=room.b", "only b").await.0, 200);
    assert_eq!(recv_text(&mut b).await, "only b");
    s.stop().await;
}

#[tokio::test]
async fn the_envelope_names_channels_in_the_body() {
    let s = Server::start(CONFIG).await;
    let mut r = s.ws("/room/7").await;
    let envelope = [("Content-Type", "application/vnd.heartwire+json")];
    let (status, body) = s
        .http(
            "POST",
            "/publish",
            &envelope,
            br#"{"channels": ["room.7", "lobby"], "data": {"order": 42}}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(recv_text(&mut r).await, r#"{"order":42}"#);
    let (_, body) = s
        .http(
            "POST",
            "/publish",
            &envelope,
            br#"{"channel": "room.7", "data": "text"}"#,
        )
        .await;
    assert_eq!(body, "{\"channels\":{\"room.7\":1},\"queued\":1}\n");
    assert_eq!(recv_text(&mut r).await, "text");
    for (target, bad, why) in [
        ("/publish", &br#"{"data": 1}"#[..], "no `channels`"),
        ("/publish", br#"{"channels": ["lobby"]}"#, "no `data`"),
        (
            "/publish",
            br#"{"channels": "lobby", "data": 1}"#,
            "invalid type",
        ),
        (
            "/publish",
            br#"{"channels": ["lobby"], "data": 1, "x": 2}"#,
            "unknown field",
        ),
        (
            "/publish?channel=lobby",
            br#"{"channels": ["lobby"], "data": 1}"#,
            "not both",
        ),
    ] {
        let (status, body) = s.http("POST", target, &envelope, bad).await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains(why), "{why}: {body}");
    }
    s.stop().await;
}

#[tokio::test]
async fn bad_names_are_400_and_names_no_route_could_hold_are_404() {
    let s = Server::start(CONFIG).await;
    let mut bystander = s.ws("/plain").await;
    for (target, status, why) in [
        ("/publish?channel=a%20b", 400, "is not a channel name"),
        ("/publish?channel=", 400, "is not a channel name"),
        ("/publish?channel=lobby&channel=lobby", 400, "named twice"),
        (
            "/publish?channel=nosuch",
            404,
            "no route could give a connection channel `nosuch`",
        ),
        ("/publish?channel=room.", 404, "`room.`"),
    ] {
        let (got, body) = s.publish(target, "x").await;
        assert_eq!(got, status, "{target}: {body}");
        assert!(body.contains(why), "{target}: {body}");
    }
    let many: String = (0..65).map(|i| format!("channel=room.{i}&")).collect();
    let (got, body) = s.publish(&format!("/publish?{many}"), "x").await;
    assert_eq!(got, 400, "{body}");
    assert!(body.contains("at most 64"), "{body}");

    // At the handshake: a missing query parameter, a value outside the charset.
    for (path, why) in [
        ("/feed", "needs the query parameter `topic`"),
        ("/feed?topic=a%2Ab", "is not a channel name"),
        ("/feed?topic=%FF", "not valid UTF-8"),
    ] {
        let (status, body) = s.http("GET", path, &UPGRADE, b"").await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains(why), "{path}: {body}");
    }
    assert_eq!(
        s.metric(r#"heartwire_connections_rejected_total{reason="channel"}"#)
            .await,
        3.0
    );
    // Nothing above disturbed anyone.
    assert_eq!(s.publish("/publish?channel=/plain", "still").await.0, 200);
    assert_eq!(recv_text(&mut bystander).await, "still");
    s.stop().await;
}

#[tokio::test]
async fn a_kick_by_channel_closes_exactly_its_holders_and_connections_lists_channels() {
    let s = Server::start(CONFIG).await;
    let mut r1 = s.ws("/room/1").await;
    let mut r2 = s.ws("/room/2").await;
    let (status, body) = http(s.admin, "GET", "/connections", &[], b"").await;
    assert_eq!(status, 200);
    let rows: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rows[0]["channels"], serde_json::json!(["room.1", "lobby"]));
    assert_eq!(rows[0]["user"], serde_json::Value::Null);
    assert_eq!(rows[0]["route"], "/room/{id}");

    assert_eq!(
        s.http(
            "POST",
            "/publish/disconnect?channel=room.1&reason=room+closed",
            &[],
            b""
        )
        .await,
        (200, "{\"disconnected\":1}\n".into())
    );
    let close = recv_close(&mut r1).await;
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (4009, "room closed")
    );
    assert_eq!(
        s.publish("/publish?channel=lobby", "left").await.1,
        "{\"channels\":{\"lobby\":1},\"queued\":1}\n"
    );
    assert_eq!(recv_text(&mut r2).await, "left");
    for (method, target, status) in [
        ("GET", "/publish/disconnect?channel=lobby", 405),
        ("POST", "/publish/disconnect", 400),
        ("POST", "/publish/disconnect?channel=lobby&user=x", 400),
        ("POST", "/publish/disconnect?channel=a%20b", 400),
    ] {
        assert_eq!(
            s.http(method, target, &[], b"").await.0,
            status,
            "{method} {target}"
        );
    }
    assert_eq!(
        s.http("POST", "/publish/disconnect?channel=nobody.here", &[], b"")
            .await,
        (200, "{\"disconnected\":0}\n".into())
    );
    s.stop().await;
}

/// The headers of a WebSocket upgrade, for a request whose refusal the test reads.
const UPGRADE: [(&str, &str); 4] = [
    ("Connection", "Upgrade"),
    ("Upgrade", "websocket"),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Key", HANDSHAKE_KEY),
];
