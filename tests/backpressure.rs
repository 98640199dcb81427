//! A client that never reads is cut off at its queue bound; the others keep receiving.

mod common;

use common::*;
use tokio::sync::mpsc;

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_and_no_one_else_notices() {
    let s = Server::start(
        r#"
[server]
outbound_queue = 32
write_timeout = "1s"
[[route]]
path = "/feed"
"#,
    )
    .await;
    const MESSAGES: usize = 480;
    const BATCH: usize = 16;
    let payload = "x".repeat(32 * 1024);

    let mut stuck = Raw::connect(s.addr, "/feed").await;
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
    let mut readers = Vec::new();
    for _ in 0..2 {
        let mut ws = s.ws("/feed").await;
        let ack = ack_tx.clone();
        let expected = payload.clone();
        readers.push(tokio::spawn(async move {
            for i in 0..MESSAGES {
                let text = recv_text(&mut ws).await;
                assert_eq!(text.len(), expected.len() + 6, "message {i}");
                assert!(text.starts_with(&format!("{i:05}:")), "out of order at {i}");
                ack.send(i).unwrap();
            }
        }));
    }
    drop(ack_tx);

    for batch in 0..MESSAGES / BATCH {
        for i in batch * BATCH..(batch + 1) * BATCH {
            let (status, body) = s.publish("/publish", &format!("{i:05}:{payload}")).await;
            assert_eq!(status, 200, "{body}");
        }
        // Keep the readers well within the queue so only the stuck client lags.
        for _ in 0..2 * BATCH {
            ack_rx.recv().await.expect("a reader failed");
        }
    }
    for r in readers {
        r.await.unwrap();
    }

    // The stuck client got part of the stream, then a 1008 close or a dropped socket.
    let mut got = 0;
    let mut closed = None;
    while let Some((b0, payload)) = stuck.frame().await {
        match b0 & 0x0f {
            0x1 => got += 1,
            0x8 => closed = Some(u16::from_be_bytes([payload[0], payload[1]])),
            _ => {}
        }
    }
    assert!(got < MESSAGES, "the stuck client was never cut off");
    assert!(
        matches!(closed, None | Some(1008)),
        "closed with {closed:?}"
    );
    // Everyone else is still served.
    let mut ws = s.ws("/feed").await;
    s.publish("/publish", "still here").await;
    assert_eq!(recv_text(&mut ws).await, "still here");
    s.stop().await;
}
