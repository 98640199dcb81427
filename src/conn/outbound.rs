//! What the connection's mailbox gave it, as the supervisor acts on it: skipped messages
//! counted, and the close for a client that fell behind or was closed on purpose.

use std::time::Duration;

use tracing::debug;

use super::step::Step;
use crate::close;
use crate::fanout::{Behind, Ending, Limits, Vitals};
use crate::metrics::SlowAction;

/// Counts messages a `drop-oldest` or `keep-latest` client skipped.
pub(super) fn skipped(vitals: &Vitals, dropped: u64, limits: Limits) {
    if dropped > 0 {
        vitals.route().slow(SlowAction::Skip);
        vitals.route().dropped(dropped);
        debug!(dropped, policy = ?limits.policy, "slow consumer: skipped messages");
    }
}

/// The close for a mailbox that ended (a slow consumer's, counted here).
pub(super) fn ended(vitals: &Vitals, ending: Ending, limits: Limits) -> Step {
    match ending {
        Ending::Behind(behind) => {
            vitals.route().slow(SlowAction::Disconnect);
            let how_far = match behind {
                Behind::Messages(n) => {
                    format!(
                        "{n} messages queued, over server.outbound_queue ({})",
                        limits.messages
                    )
                }
                Behind::Bytes(n) => format!(
                    "{n} bytes queued, over server.outbound_queue_bytes ({})",
                    limits.bytes
                ),
            };
            Step::Close(
                close::POLICY,
                format!("slow consumer: {how_far}; read faster or reconnect"),
                Duration::ZERO,
            )
        }
        Ending::Close(code, reason) => Step::Close(code, reason, Duration::ZERO),
    }
}
