//! What the supervisor does after an event, and how a bounded write turns into one.

use std::time::Duration;

use tokio::time;

/// What happens next to a connection.
pub(super) enum Step {
    /// Keep serving.
    Continue,
    /// Close with this code and reason, waiting this long for the peer's answer.
    Close(u16, String, Duration),
    /// The peer is gone (closed, reset, or a write failed).
    Gone(String),
    /// A write blocked for `write_timeout`: the client is not reading.
    Stuck(String),
}

/// The step after a write bounded by `limit`.
pub(super) fn written<E: std::fmt::Display>(
    result: Result<Result<(), E>, time::error::Elapsed>,
    limit: Duration,
) -> Step {
    match result {
        Ok(Ok(())) => Step::Continue,
        Ok(Err(err)) => Step::Gone(format!("write failed: {err}")),
        Err(_) => Step::Stuck(format!(
            "write blocked for more than {limit:?}: client not reading"
        )),
    }
}
