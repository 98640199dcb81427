//! The Python a test drives the daemon with: `TEST_PYTHON` (default `python3`), which
//! .ci/run points at a virtual environment holding websocket-client and PyJWT. Without
//! one a test fails and says how to install it: a test that did not run never reports
//! `ok`. `SKIP_PYTHON_TESTS=1` skips them on purpose, except under CI (`CI` set).

use std::process::Command;

/// How to get a Python that can run the tests' scripts, for the failure message.
const INSTALL: &str = "\
These tests drive the daemon with Python's websocket-client and PyJWT. Install them in a
virtual environment and point TEST_PYTHON at it (or activate the environment):
    python3 -m venv .venv && .venv/bin/pip install websocket-client==1.9.2 PyJWT==2.10.1
    TEST_PYTHON=$PWD/.venv/bin/python cargo test --workspace
(Debian: apt-get install python3-venv if `python3 -m venv` fails; .ci/run does all this.)
To skip them instead, set SKIP_PYTHON_TESTS=1; CI (env CI set) always runs them.";

/// The interpreter to run, once it is known to import `modules`; `None` when the Python
/// tests are skipped on purpose. Panics, saying how to install them, when it cannot.
pub fn python(modules: &str) -> Option<String> {
    let ci = std::env::var_os("CI").is_some();
    if !ci && std::env::var("SKIP_PYTHON_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("skipped: SKIP_PYTHON_TESTS=1");
        return None;
    }
    let python = std::env::var("TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .output();
    match probe {
        Err(err) => panic!("cannot run `{python}`: {err}\n{INSTALL}"),
        Ok(out) if !out.status.success() => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().last().unwrap_or("no output");
            panic!("`{python}` cannot import {modules}: {last}\n{INSTALL}")
        }
        Ok(_) => Some(python),
    }
}
