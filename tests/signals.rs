//! The real binary under real signals: SIGHUP reloads (or refuses a bad file and keeps
//! serving), SIGTERM closes every client with 1001 and exits 0.

mod common;

use common::daemon::{self, message};
use common::*;

fn config(welcome: &str) -> String {
    // The admin listener on port 0 too: its default, 9090, may be taken (say, by a
    // `cargo run` of the shipped config on the same machine).
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"3s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\n[[route]]\npath = \"/a\"\nwelcome = {welcome}\n"
    )
}

#[tokio::test]
async fn sighup_reloads_or_refuses_and_sigterm_exits_cleanly() {
    let mut d = daemon::start(&config("\"v1\""), &[]);
    let mut first = connect(d.public, "/a", None).await.unwrap();
    assert_eq!(recv_text(&mut first).await, "v1");

    std::fs::write(&d.config, config("\"v2\"")).unwrap();
    d.signal("HUP");
    d.wait_message("config reloaded");
    let mut second = connect(d.public, "/a", None).await.unwrap();
    assert_eq!(recv_text(&mut second).await, "v2");

    std::fs::write(&d.config, config("5")).unwrap();
    d.signal("HUP");
    let refused = d.wait_message("reload refused");
    let refused = message(&refused);
    assert!(
        refused.contains("route[0].welcome") && refused.contains("heartwire.toml"),
        "{refused}"
    );
    let mut third = connect(d.public, "/a", None).await.unwrap();
    assert_eq!(recv_text(&mut third).await, "v2");
    send_text(&mut first, "still connected").await;
    assert_eq!(recv_text(&mut first).await, "still connected");

    d.signal("TERM");
    for ws in [&mut first, &mut second, &mut third] {
        assert_eq!(u16::from(recv_close(ws).await.code), 1001);
    }
    let status = tokio::task::spawn_blocking(move || d.wait_exit())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
