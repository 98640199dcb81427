//! The README's examples as a new user runs them, with the tools the README names.

mod common;

use std::process::Stdio;

use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::timeout;

/// The README's `[auth]` and route, the secret taken from the test fixtures.
const CHANNELS_AND_AUTH: &str = r#"
[auth]
issuer = "https://app.example"
audience = "heartwire"
leeway = "30s"

[[auth.key]]
kid = "2026-12"
algorithm = "HS256"
file = "tests/keys/hs.secret"

[[route]]
path = "/me"
auth = "jwt"
channels = ["news", "user.{sub}"]
"#;

#[tokio::test]
async fn the_channels_and_authentication_example_works_with_pyjwt_and_websocket_client() {
    let Some(python) = common::python::python("jwt, websocket") else {
        return;
    };
    let s = Server::start(CHANNELS_AND_AUTH).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/readme_auth.py");
    let secret = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/hs.secret");
    let mut child = tokio::process::Command::new(&python)
        .args([script, &format!("ws://{}/me", s.addr), secret])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{python} {script}`: {e}"));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || {
        timeout(T, lines.next_line())
            .await
            .expect("the Python client said nothing in time")
            .unwrap()
            .expect("the Python client ended early")
    };
    assert_eq!(next().await, "connected heartwire");

    // Someone else's message does not reach user 42; theirs does, once.
    assert_eq!(
        s.publish("/publish?channel=user.7", "not yours").await,
        (200, "{\"channels\":{\"user.7\":0},\"queued\":0}\n".into())
    );
    assert_eq!(
        s.publish("/publish?channel=user.42", "you have mail").await,
        (200, "{\"channels\":{\"user.42\":1},\"queued\":1}\n".into())
    );
    assert_eq!(next().await, "got: you have mail");
    s.stop().await;
    let status = timeout(T, child.wait())
        .await
        .expect("the client did not exit");
    assert!(status.unwrap().success());
}
