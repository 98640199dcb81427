//! The real binary under real signals: SIGHUP reloads (or refuses a bad file and keeps
//! serving), SIGTERM closes every client with 1001 and exits 0.

mod common;

use common::daemon::Daemon;
use common::*;

fn write_config(path: &std::path::Path, welcome: &str) {
    let text = format!(
        // The admin listener on port 0 too: its default, 9090, may be taken (say, by a
        // `cargo run` of the shipped config on the same machine).
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"3s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[route]]\npath = \"/a\"\nwelcome = {welcome}\n"
    );
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn sighup_reloads_or_refuses_and_sigterm_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heartwire.toml");
    write_config(&path, "\"v1\"");
    let mut d = Daemon::start(&path);
    let mut first = connect(d.addr, "/a", None).await.unwrap();
    assert_eq!(recv_text(&mut first).await, "v1");

    write_config(&path, "\"v2\"");
    d.signal("HUP");
    d.wait_for("config reloaded");
    let mut second = connect(d.addr, "/a", None).await.unwrap();
    assert_eq!(recv_text(&mut second).await, "v2");

    write_config(&path, "5");
    d.signal("HUP");
    let refused = d.wait_for("reload refused");
    assert!(
        refused.contains("route[0].welcome") && refused.contains("heartwire.toml"),
        "{refused}"
    );
    let mut third = connect(d.addr, "/a", None).await.unwrap();
    assert_eq!(recv_text(&mut third).await, "v2");
    send_text(&mut first, "still connected").await;
    assert_eq!(recv_text(&mut first).await, "still connected");

    d.signal("TERM");
    for ws in [&mut first, &mut second, &mut third] {
        assert_eq!(u16::from(recv_close(ws).await.code), 1001);
    }
    let status = tokio::task::spawn_blocking(move || d.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
