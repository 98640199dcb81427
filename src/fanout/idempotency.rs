//! `Idempotency-Key` on publish: a retried publish gets the first answer again and is not
//! published twice.
//!
//! A key is remembered for [`WINDOW`] after its publish succeeded. Only 200 answers are
//! kept: a publish that failed may be retried and then publishes. While the first attempt
//! is in flight, a second one with the same key is refused (409) rather than published
//! alongside it. Where keys live is the broker's: the embedded one keeps them in this
//! process ([`Idempotency`], at most [`MAX_KEYS`] keys taking [`MAX_BYTES`] with their
//! answers, the oldest forgotten first; a restart forgets them), a shared one where every
//! node sees them.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// How long a key's answer is kept.
pub const WINDOW: Duration = Duration::from_secs(5 * 60);
/// Most keys remembered at once.
pub const MAX_KEYS: usize = 100_000;
/// Most bytes keys and answers may take together.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 128;

enum Slot {
    InFlight,
    Done(Bytes),
}

#[derive(Default)]
struct Keys {
    slots: HashMap<String, Slot>,
    /// Answered keys, oldest first, with when they were answered.
    answered: VecDeque<(Instant, String)>,
    /// Bytes of the answered keys and their answers.
    bytes: usize,
}

/// The keys seen recently.
#[derive(Default)]
pub struct Idempotency {
    keys: Mutex<Keys>,
}

/// What to do with a publish carrying a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First time: publish, then [`Idempotency::answered`] or [`Idempotency::failed`].
    Fresh,
    /// Seen and answered: send this body again.
    Answered(Bytes),
    /// An attempt with this key is still in flight.
    InFlight,
}

impl Idempotency {
    /// Claims `key` at `now`.
    pub fn claim(&self, key: &str, now: Instant) -> Claim {
        let mut keys = self.lock();
        keys.forget_before(now);
        match keys.slots.get(key) {
            Some(Slot::Done(body)) => Claim::Answered(body.clone()),
            Some(Slot::InFlight) => Claim::InFlight,
            None => {
                keys.slots.insert(key.to_owned(), Slot::InFlight);
                Claim::Fresh
            }
        }
    }

    /// The publish claimed with `key` answered 200 with `body`.
    pub fn answered(&self, key: &str, body: Bytes, now: Instant) {
        let mut keys = self.lock();
        keys.bytes += key.len() + body.len();
        keys.slots.insert(key.to_owned(), Slot::Done(body));
        keys.answered.push_back((now, key.to_owned()));
        while keys.answered.len() > MAX_KEYS || keys.bytes > MAX_BYTES {
            if !keys.forget_oldest() {
                break;
            }
        }
    }

    /// The publish claimed with `key` did not succeed: a retry may publish.
    pub fn failed(&self, key: &str) {
        let mut keys = self.lock();
        if matches!(keys.slots.get(key), Some(Slot::InFlight)) {
            keys.slots.remove(key);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Keys> {
        // Every update leaves the maps consistent, so a poisoned lock is still usable.
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Keys {
    fn forget_before(&mut self, now: Instant) {
        while self
            .answered
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= WINDOW)
        {
            self.forget_oldest();
        }
    }

    /// Forgets the oldest answered key; false when there is none.
    fn forget_oldest(&mut self) -> bool {
        let Some((_, key)) = self.answered.pop_front() else {
            return false;
        };
        if let Some(Slot::Done(body)) = self.slots.remove(&key) {
            self.bytes -= key.len() + body.len();
        }
        true
    }
}

/// A key as sent: 1 to [`MAX_KEY_LEN`] visible ASCII characters.
pub fn check_key(key: &[u8]) -> Result<&str, String> {
    let ok = !key.is_empty() && key.len() <= MAX_KEY_LEN && key.iter().all(u8::is_ascii_graphic);
    match std::str::from_utf8(key) {
        Ok(text) if ok => Ok(text),
        _ => Err(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters (a UUID fits)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_answers_the_same_within_the_window_and_only_after_success() {
        let ids = Idempotency::default();
        let t0 = Instant::now();
        assert_eq!(ids.claim("a", t0), Claim::Fresh);
        assert_eq!(ids.claim("a", t0), Claim::InFlight);
        ids.failed("a");
        assert_eq!(ids.claim("a", t0), Claim::Fresh, "a failure frees the key");
        ids.answered("a", Bytes::from_static(b"{}"), t0);
        let later = t0 + WINDOW - Duration::from_millis(1);
        assert_eq!(
            ids.claim("a", later),
            Claim::Answered(Bytes::from_static(b"{}"))
        );
        ids.failed("a");
        assert_eq!(
            ids.claim("a", later),
            Claim::Answered(Bytes::from_static(b"{}")),
            "failed() leaves an answer alone"
        );
        assert_eq!(
            ids.claim("a", t0 + WINDOW),
            Claim::Fresh,
            "forgotten after the window"
        );
    }

    #[test]
    fn the_oldest_keys_go_beyond_the_cap() {
        let ids = Idempotency::default();
        let t0 = Instant::now();
        for i in 0..=MAX_KEYS {
            let key = i.to_string();
            assert_eq!(ids.claim(&key, t0), Claim::Fresh);
            ids.answered(&key, Bytes::new(), t0);
        }
        assert_eq!(ids.claim("0", t0), Claim::Fresh, "the oldest was forgotten");
        assert_eq!(ids.claim("1", t0), Claim::Answered(Bytes::new()));
    }

    #[test]
    fn answers_are_bounded_in_bytes_too() {
        let ids = Idempotency::default();
        let t0 = Instant::now();
        let big = Bytes::from(vec![b'x'; MAX_BYTES / 4]);
        for key in ["a", "b", "c", "d", "e"] {
            assert_eq!(ids.claim(key, t0), Claim::Fresh);
            ids.answered(key, big.clone(), t0);
        }
        assert_eq!(
            ids.claim("a", t0),
            Claim::Fresh,
            "over the byte bound: forgotten"
        );
        assert!(matches!(ids.claim("e", t0), Claim::Answered(_)));
        assert!(ids.lock().bytes <= MAX_BYTES);
    }

    #[test]
    fn keys_are_short_visible_ascii() {
        assert_eq!(check_key(b"9f1c-42"), Ok("9f1c-42"));
        for bad in [&b""[..], b"has space", b"\xff", &[b'a'; MAX_KEY_LEN + 1]] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }
}
