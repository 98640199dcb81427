//! The seed's own kind of client (Python websocket-client, gzip, json) against the daemon.
//! Runs when python3 with websocket-client is installed (.ci/run installs it); under
//! CI=true a missing interpreter or module is a failure, not a skip.

mod common;

use std::process::Command;

use common::*;

const DEMO: &str = r#"
[heartbeat.frames]
strategy = "protocol"
ping_interval = "100ms"
ping_timeout = "1s"

[heartbeat.app]
strategy = "json-gzip"
ping_interval = "100ms"
max_missed = 2

[[route]]
path = "/ws"
origins = ["*"]
welcome = "Welcome"
on_message = "echo"
echo_prefix = "new message :"
heartbeat = "frames"

[[route]]
path = "/"
origins = ["*"]
on_message = "relay"
relay_prefix = "server said: "
heartbeat = "app"
"#;

#[tokio::test]
async fn a_seed_style_python_client_stays_connected_and_is_served() {
    let probe = Command::new("python3")
        .args(["-c", "import websocket"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var("CI").is_err(),
            "CI must install python3 and websocket-client"
        );
        eprintln!(
            "skipped: python3 with websocket-client not installed (pip install websocket-client)"
        );
        return;
    }
    let s = Server::start(DEMO).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/seed_client.py");
    let url = format!("ws://{}", s.addr);
    let out = tokio::time::timeout(
        T,
        tokio::process::Command::new("python3")
            .arg(script)
            .arg(url)
            .output(),
    )
    .await
    .expect("python client hung")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("seed client ok"));
    s.stop().await;
}
