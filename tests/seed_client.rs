//! The seed's own kind of client (Python websocket-client, gzip, json) against the daemon.
//!
//! It needs a Python with websocket-client: see `tests/common/python.rs`.

mod common;

use common::*;

/// The app route pings every 250 ms and forgives 2 missed: a client that does not answer is
/// dropped by the third tick (750 ms), before the 6th ping the script waits for (1.25 s or
/// later), so the script passes only by answering; a client held up for a few hundred ms on
/// a loaded machine (CI shares 2 cores) is not dropped, as it was at 100 ms.
const DEMO: &str = r#"
[heartbeat.frames]
strategy = "protocol"
ping_interval = "100ms"
ping_timeout = "1s"

[heartbeat.app]
strategy = "json-gzip"
ping_interval = "250ms"
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
    let Some(python) = common::python::python("websocket") else {
        return;
    };
    let s = Server::start(DEMO).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/seed_client.py");
    let url = format!("ws://{}", s.addr);
    let out = tokio::time::timeout(
        T,
        tokio::process::Command::new(&python)
            .arg(script)
            .arg(url)
            .output(),
    )
    .await
    .expect("python client hung")
    .unwrap_or_else(|err| panic!("cannot run `{python} {script}`: {err}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("seed client ok"));
    s.stop().await;
}
