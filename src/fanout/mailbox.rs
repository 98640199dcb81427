//! One connection's queue of outgoing frames, and what falling behind does to it.
//!
//! Publishers push shared, pre-encoded frames (one allocation per message, whatever the
//! number of recipients); the connection takes them in batches. The queue is bounded by
//! `server.outbound_queue` messages and `server.outbound_queue_bytes` bytes, and the
//! route's slow-consumer policy decides, here and nowhere else, what happens at the bound:
//! `disconnect` ends the connection, `drop-oldest` skips the oldest, `keep-latest` keeps
//! only the newest. A slow client bounds its own backlog and never delays anyone.
//!
//! An idle mailbox holds no frame memory: the queue is allocated on the first message
//! and given back when it drains after a burst.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::config::SlowConsumer;
use crate::wire::WireFrame;

/// Most queued messages one batch takes before a flush.
const BATCH: usize = 64;
/// Most queued bytes one batch takes: bounds a connection's write buffer.
const BATCH_BYTES: usize = 64 * 1024;
/// A drained queue keeps at most this much capacity (in frames).
const KEEP_CAPACITY: usize = 16;

/// How much a mailbox holds and what happens beyond it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The route's slow-consumer policy.
    pub policy: SlowConsumer,
    /// Most messages queued (`server.outbound_queue`).
    pub messages: usize,
    /// Most bytes queued (`server.outbound_queue_bytes`).
    pub bytes: usize,
}

/// How far a `disconnect` client fell behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behind {
    /// Over the message bound, with this many queued.
    Messages(usize),
    /// Over the byte bound, with this many queued.
    Bytes(usize),
}

/// Why a mailbox stopped taking messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// A `disconnect` client fell behind.
    Behind(Behind),
    /// Closed on purpose (a kick, an expired token): close with this code and reason.
    Close(u16, String),
}

/// What one [`Mailbox::take`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Taken {
    /// Messages still queued after the batch.
    pub left: usize,
    /// Messages skipped by `drop-oldest` / `keep-latest` since the last take.
    pub dropped: u64,
    /// Set once the mailbox is closed; the batch is then empty.
    pub ending: Option<Ending>,
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<WireFrame>,
    /// The first `exempt` frames were preloaded (a recovery's replay, whose bytes history
    /// already holds) and count against no bound.
    exempt: usize,
    /// Bytes of the frames after the exempt ones.
    bytes: usize,
    dropped: u64,
    ending: Option<Ending>,
}

/// One connection's outgoing frames.
#[derive(Debug)]
pub struct Mailbox {
    queue: Mutex<Queue>,
    ready: Notify,
    limits: Limits,
    envelope: bool,
}

impl Mailbox {
    /// An empty mailbox bounded by `limits`, for a route sending envelopes if `envelope`.
    pub fn new(limits: Limits, envelope: bool) -> Self {
        Self {
            queue: Mutex::default(),
            ready: Notify::new(),
            limits,
            envelope,
        }
    }

    /// Whether its connection is sent envelopes (`format = "envelope"`) rather than raw
    /// messages.
    pub fn envelope(&self) -> bool {
        self.envelope
    }

    /// Queues `frames` ahead of anything pushed later, outside the bounds: a recovering
    /// connection's position and replay, at most `history_size` frames whose bytes
    /// history holds anyway. Call before the connection can receive live messages.
    pub fn preload(&self, frames: impl IntoIterator<Item = WireFrame>) {
        let mut q = self.lock();
        // After earlier preloads, ahead of live frames (another channel's, already queued).
        let exempt = q.exempt;
        let live: Vec<WireFrame> = q.frames.drain(exempt..).collect();
        q.frames.extend(frames);
        q.exempt = q.frames.len();
        q.frames.extend(live);
        drop(q);
        self.ready.notify_one();
    }

    /// Queues `frame`, applying the slow-consumer policy at the bound. Returns whether
    /// it was queued (not when the mailbox is closed, or a `disconnect` client just fell
    /// behind).
    pub fn push(&self, frame: &WireFrame) -> bool {
        let len = frame.encoded().len();
        let mut q = self.lock();
        if q.ending.is_some() {
            return false;
        }
        let Limits {
            policy,
            messages,
            bytes,
        } = self.limits;
        // One frame always fits (the config holds the byte bound to at least one message).
        let over = |q: &Queue| {
            let held = q.frames.len() - q.exempt;
            held >= messages || (held > 0 && q.bytes + len > bytes)
        };
        match policy {
            SlowConsumer::Disconnect if over(&q) => {
                let held = q.frames.len() - q.exempt;
                let behind = if held >= messages {
                    Behind::Messages(held + 1)
                } else {
                    Behind::Bytes(q.bytes + len)
                };
                q.end(Ending::Behind(behind));
                drop(q);
                self.ready.notify_one();
                return false;
            }
            SlowConsumer::Disconnect => {}
            SlowConsumer::DropOldest => {
                while over(&q) {
                    let oldest = q.exempt;
                    let Some(old) = q.frames.remove(oldest) else {
                        break;
                    };
                    q.bytes -= old.encoded().len();
                    q.dropped += 1;
                }
            }
            SlowConsumer::KeepLatest => {
                q.dropped += (q.frames.len() - q.exempt) as u64;
                let exempt = q.exempt;
                q.frames.truncate(exempt);
                q.bytes = 0;
            }
        }
        q.frames.push_back(frame.clone());
        q.bytes += len;
        drop(q);
        self.ready.notify_one();
        true
    }

    /// Closes the mailbox: queued frames are dropped and the connection closes with
    /// `code` and `reason` at its next turn. The first ending wins.
    pub fn close(&self, code: u16, reason: String) {
        self.lock().end(Ending::Close(code, reason));
        self.ready.notify_one();
    }

    /// Its bounds and policy.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Resolves when there may be something to take (a permit is kept if nobody waits,
    /// so a push between two waits is never missed).
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Moves up to a batch of frames (64 messages or 64 KiB) into `batch`.
    pub fn take(&self, batch: &mut Vec<WireFrame>) -> Taken {
        let mut q = self.lock();
        let dropped = std::mem::take(&mut q.dropped);
        if let Some(ending) = q.ending.clone() {
            return Taken {
                left: 0,
                dropped,
                ending: Some(ending),
            };
        }
        let (mut bytes, mut counted) = (0, 0);
        while batch.len() < BATCH && bytes < BATCH_BYTES {
            let Some(frame) = q.frames.pop_front() else {
                break;
            };
            bytes += frame.encoded().len();
            if q.exempt > 0 {
                q.exempt -= 1;
            } else {
                counted += frame.encoded().len();
            }
            batch.push(frame);
        }
        q.bytes -= counted;
        let left = q.frames.len();
        if left == 0 && q.frames.capacity() > KEEP_CAPACITY {
            q.frames = VecDeque::new();
        }
        drop(q);
        if left > 0 {
            // The rest is the next turn's: keep the permit.
            self.ready.notify_one();
        }
        Taken {
            left,
            dropped,
            ending: None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Every update leaves the queue consistent, so a poisoned lock is still usable.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Queue {
    fn end(&mut self, ending: Ending) {
        if self.ending.is_none() {
            self.ending = Some(ending);
            self.frames = VecDeque::new();
            self.exempt = 0;
            self.bytes = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio_tungstenite::tungstenite::Message;

    use super::*;

    fn frame(text: &str) -> WireFrame {
        WireFrame::new(Message::text(text))
    }

    fn texts(batch: &[WireFrame]) -> Vec<String> {
        batch
            .iter()
            .map(|f| f.message().to_text().unwrap_or_default().to_owned())
            .collect()
    }

    fn mailbox(policy: SlowConsumer, messages: usize, bytes: usize) -> Mailbox {
        Mailbox::new(
            Limits {
                policy,
                messages,
                bytes,
            },
            false,
        )
    }

    #[test]
    fn batches_in_order_and_counts_what_is_left() {
        let m = mailbox(SlowConsumer::Disconnect, 1000, 1 << 20);
        for i in 0..100 {
            assert!(m.push(&frame(&i.to_string())));
        }
        let mut batch = Vec::new();
        let t = m.take(&mut batch);
        assert_eq!((batch.len(), t.left, t.dropped), (BATCH, 36, 0));
        assert_eq!(texts(&batch)[..3], ["0", "1", "2"]);
        batch.clear();
        assert_eq!(m.take(&mut batch).left, 0);
        assert_eq!(texts(&batch).last().map(String::as_str), Some("99"));
    }

    #[test]
    fn disconnect_ends_at_either_bound() {
        let m = mailbox(SlowConsumer::Disconnect, 2, 1 << 20);
        assert!(m.push(&frame("a")) && m.push(&frame("b")));
        assert!(!m.push(&frame("c")));
        assert!(!m.push(&frame("d")), "nothing more once ended");
        let t = m.take(&mut Vec::new());
        assert_eq!(t.ending, Some(Ending::Behind(Behind::Messages(3))));
        // Each frame of "aaaa" is 6 bytes encoded.
        let m = mailbox(SlowConsumer::Disconnect, 100, 12);
        assert!(m.push(&frame("aaaa")) && m.push(&frame("aaaa")));
        assert!(!m.push(&frame("aaaa")));
        let t = m.take(&mut Vec::new());
        assert_eq!(t.ending, Some(Ending::Behind(Behind::Bytes(18))));
    }

    #[test]
    fn drop_oldest_and_keep_latest_skip_and_count() {
        let m = mailbox(SlowConsumer::DropOldest, 3, 1 << 20);
        for t in ["1", "2", "3", "4", "5"] {
            assert!(m.push(&frame(t)));
        }
        let mut batch = Vec::new();
        let t = m.take(&mut batch);
        assert_eq!(
            (texts(&batch), t.dropped),
            (vec!["3".into(), "4".into(), "5".into()], 2)
        );
        let m = mailbox(SlowConsumer::KeepLatest, 3, 1 << 20);
        for t in ["1", "2", "3"] {
            m.push(&frame(t));
        }
        let mut batch = Vec::new();
        let t = m.take(&mut batch);
        assert_eq!((texts(&batch), t.dropped), (vec!["3".into()], 2));
    }

    #[test]
    fn close_wins_once_and_drops_the_queue() {
        let m = mailbox(SlowConsumer::Disconnect, 10, 1 << 20);
        m.push(&frame("x"));
        m.close(4009, "kicked".into());
        m.close(4001, "later".into());
        let mut batch = Vec::new();
        let t = m.take(&mut batch);
        assert!(batch.is_empty());
        assert_eq!(t.ending, Some(Ending::Close(4009, "kicked".into())));
    }

    #[test]
    fn preloaded_frames_go_first_and_count_against_no_bound() {
        let m = mailbox(SlowConsumer::Disconnect, 2, 1 << 20);
        assert!(m.push(&frame("live1")));
        m.preload(["p", "r1", "r2", "r3"].map(frame));
        assert!(
            m.push(&frame("live2")),
            "two live frames fit whatever was preloaded"
        );
        assert!(!m.push(&frame("live3")), "the third is over the bound");
        let m = mailbox(SlowConsumer::DropOldest, 2, 1 << 20);
        m.preload(["p", "r1"].map(frame));
        for t in ["a", "b", "c"] {
            assert!(m.push(&frame(t)));
        }
        let mut batch = Vec::new();
        let t = m.take(&mut batch);
        assert_eq!(
            texts(&batch),
            ["p", "r1", "b", "c"],
            "the oldest live one went"
        );
        assert_eq!(t.dropped, 1);
        let m = mailbox(SlowConsumer::KeepLatest, 10, 1 << 20);
        m.preload(["p"].map(frame));
        m.push(&frame("a"));
        m.push(&frame("b"));
        let mut batch = Vec::new();
        m.take(&mut batch);
        assert_eq!(texts(&batch), ["p", "b"]);
    }

    #[test]
    fn preloaded_frames_go_ahead_of_live_ones_already_queued() {
        let m = mailbox(SlowConsumer::Disconnect, 10, 1 << 20);
        m.push(&frame("live"));
        m.preload(["p1"].map(frame));
        m.preload(["p2"].map(frame));
        let mut batch = Vec::new();
        m.take(&mut batch);
        assert_eq!(texts(&batch), ["p1", "p2", "live"]);
        assert!(m.push(&frame("x")));
        batch.clear();
        assert_eq!(m.take(&mut batch).left, 0);
        assert_eq!(texts(&batch), ["x"]);
    }

    #[tokio::test]
    async fn a_push_before_the_wait_is_not_missed() {
        let m = mailbox(SlowConsumer::Disconnect, 10, 1 << 20);
        m.push(&frame("x"));
        tokio::time::timeout(std::time::Duration::from_secs(5), m.ready())
            .await
            .expect("the permit from the push");
    }
}
