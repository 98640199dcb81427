//! The route's fan-out, as one connection takes it: batches of shared frames, and what
//! its slow-consumer policy does when it falls behind.

use std::time::Duration;

use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tracing::debug;

use super::step::Step;
use crate::close;
use crate::config::SlowConsumer;
use crate::fanout::{Queued, Route, Vitals};
use crate::metrics::SlowAction;

/// Most queued messages written before one flush.
const BATCH: usize = 64;
/// Most queued bytes written before one flush: bounds a connection's write buffer.
const BATCH_BYTES: usize = 64 * 1024;
/// Most queued messages a `keep-latest` connection skips in one go.
const SKIP_LIMIT: usize = 4096;

/// How far a `disconnect` client fell behind.
pub(super) enum Behind {
    Messages(u64),
    Bytes(u64),
}

/// Why a connection stops taking from its route.
pub(super) enum Stop {
    /// A `disconnect` client fell too far behind.
    Behind(Behind),
    /// The route is gone.
    Closed,
}

/// Takes what the route has for this connection after `first` (what `recv` gave): fills
/// `batch` with up to [`BATCH`] frames or [`BATCH_BYTES`] bytes, for `keep-latest` only the
/// newest. Falling behind (by messages: the ring lapped it; by bytes: over `max_behind`)
/// gets `policy`, here and nowhere else: `disconnect` stops, the others skip the oldest and
/// count it in `vitals`. Returns how many are still queued after the batch; the batch may be
/// empty when all this turn brought was a skip.
pub(super) fn take_batch(
    rx: &mut broadcast::Receiver<Queued>,
    route: &Route,
    first: Result<Queued, RecvError>,
    policy: SlowConsumer,
    max_behind: u64,
    batch: &mut Vec<Queued>,
    vitals: &Vitals,
) -> Result<usize, Stop> {
    let mut dropped = 0;
    let lagged = |n: u64, dropped: &mut u64| {
        if policy == SlowConsumer::Disconnect {
            return Err(Stop::Behind(Behind::Messages(n)));
        }
        *dropped += n;
        Ok(())
    };
    let mut first = match first {
        Ok(queued) => queued,
        Err(RecvError::Lagged(n)) => {
            lagged(n, &mut dropped)?;
            skipped(vitals, dropped, policy);
            return Ok(0);
        }
        Err(RecvError::Closed) => return Err(Stop::Closed),
    };
    // The bytes bound, checked once per batch: the rest of the batch is closer to the tail.
    // (keep-latest is never more than one message behind.)
    loop {
        let behind = route.bytes_after(&first);
        if behind <= max_behind || policy == SlowConsumer::KeepLatest {
            break;
        }
        if policy == SlowConsumer::Disconnect {
            return Err(Stop::Behind(Behind::Bytes(behind)));
        }
        match rx.try_recv() {
            Ok(next) => {
                dropped += 1;
                first = next;
            }
            Err(TryRecvError::Lagged(n)) => lagged(n, &mut dropped)?,
            // Counted but not yet queued by a concurrent publisher: nothing newer to take.
            Err(_) => break,
        }
    }
    let mut bytes = first.frame.encoded().len();
    batch.push(first);
    let mut left = None;
    for _ in 0..SKIP_LIMIT {
        let full = batch.len() >= BATCH || bytes >= BATCH_BYTES;
        if full && policy != SlowConsumer::KeepLatest {
            break;
        }
        match rx.try_recv() {
            Ok(queued) => {
                if policy == SlowConsumer::KeepLatest {
                    dropped += batch.len() as u64;
                    batch.clear();
                    bytes = 0;
                }
                bytes += queued.frame.encoded().len();
                batch.push(queued);
            }
            Err(TryRecvError::Lagged(n)) => {
                if let Err(stop) = lagged(n, &mut dropped) {
                    batch.clear();
                    return Err(stop);
                }
            }
            // Drained: nothing left, known without asking the channel.
            Err(_) => {
                left = Some(0);
                break;
            }
        }
    }
    skipped(vitals, dropped, policy);
    // Stopped by the batch cap: only now is the backlog worth counting. `len()` locks the
    // channel's tail, which every publish takes too, so it stays off the common path.
    Ok(left.unwrap_or_else(|| rx.len()))
}

/// Counts messages a `drop-oldest` or `keep-latest` client skipped.
fn skipped(vitals: &Vitals, dropped: u64, policy: SlowConsumer) {
    if dropped > 0 {
        vitals.route().slow(SlowAction::Skip);
        vitals.route().dropped(dropped);
        debug!(dropped, ?policy, "slow consumer: skipped messages");
    }
}

/// The close for a `disconnect` client that fell `behind`.
pub(super) fn slow(behind: Behind, max_bytes: u64) -> Step {
    let how_far = match behind {
        Behind::Messages(n) => format!("{n} messages"),
        Behind::Bytes(n) => format!("{n} bytes (limit {max_bytes})"),
    };
    Step::Close(
        close::SLOW_CONSUMER,
        format!("slow consumer: fell {how_far} behind; read faster or reconnect"),
        Duration::ZERO,
    )
}
