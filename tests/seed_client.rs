//! The seed's own kind of client (Python websocket-client, gzip, json) against the daemon.
//!
//! It needs a Python with websocket-client: `TEST_PYTHON` names the interpreter
//! (default `python3`; .ci/run makes a virtual environment and points it there). Without
//! one the test fails and says how to install it: a test that did not run never reports
//! `ok`. `SKIP_PYTHON_TESTS=1` skips it on purpose, except under CI (`CI` set), which
//! always runs it.

mod common;

use std::process::Command;

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

/// How to get a Python that can run tests/seed_client.py, for the failure message.
const INSTALL: &str = "\
tests/seed_client.rs drives the daemon with Python's websocket-client. Install it in a
virtual environment and point TEST_PYTHON at it (or activate the environment):
    python3 -m venv .venv && .venv/bin/pip install websocket-client==1.9.2
    TEST_PYTHON=$PWD/.venv/bin/python cargo test --workspace
(Debian: apt-get install python3-venv if `python3 -m venv` fails; .ci/run does all this.)
To skip this one test instead, set SKIP_PYTHON_TESTS=1; CI (env CI set) always runs it.";

/// The interpreter that runs the client: `TEST_PYTHON`, else `python3`.
fn python() -> String {
    std::env::var("TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Why `python` cannot run the client, or `None` when it can.
fn cannot_run(python: &str) -> Option<String> {
    let probe = Command::new(python)
        .args(["-c", "from websocket import create_connection, ABNF"])
        .output();
    match probe {
        Err(err) => Some(format!("cannot run `{python}`: {err}")),
        Ok(out) if !out.status.success() => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().last().unwrap_or("no output");
            Some(format!("`{python}` cannot import websocket-client: {last}"))
        }
        Ok(_) => None,
    }
}

#[tokio::test]
async fn a_seed_style_python_client_stays_connected_and_is_served() {
    let ci = std::env::var_os("CI").is_some();
    if !ci && std::env::var("SKIP_PYTHON_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("skipped: SKIP_PYTHON_TESTS=1");
        return;
    }
    let python = python();
    if let Some(why) = cannot_run(&python) {
        panic!("{why}\n{INSTALL}");
    }
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
