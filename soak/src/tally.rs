//! What the clients saw: per-stream sequence checks, close outcomes and failures,
//! added up per client kind.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::wire::Stream;

/// Most failure descriptions kept (the count is always exact).
const MAX_FAILURES_KEPT: usize = 25;

/// Checks one connection's view of a numbered stream: each message exactly once, in order.
#[derive(Debug)]
pub struct Sequence {
    stream: Stream,
    next: Option<u64>,
    seen: u64,
}

impl Sequence {
    /// A connection that must see the stream from message 0.
    pub fn from_start(stream: Stream) -> Self {
        Self {
            stream,
            next: Some(0),
            seen: 0,
        }
    }

    /// A connection that joined mid-stream: it must see a gapless run from its first message.
    pub fn joined(stream: Stream) -> Self {
        Self {
            stream,
            next: None,
            seen: 0,
        }
    }

    /// Records message `seq`; an error says what broke (gap, duplicate, reorder, wrong stream).
    pub fn see(&mut self, stream: Stream, seq: u64) -> Result<(), String> {
        if stream != self.stream {
            return Err(format!(
                "got {} message {seq} on a {} route",
                stream.channel(),
                self.stream.channel()
            ));
        }
        let want = self.next.unwrap_or(seq);
        if seq != want {
            let what = if seq < want {
                "duplicate or reordered"
            } else {
                "gap"
            };
            return Err(format!(
                "{what}: {} message {seq} where {want} was due",
                stream.channel()
            ));
        }
        self.next = Some(seq + 1);
        self.seen += 1;
        Ok(())
    }

    /// Messages checked so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Whether every message below `total` has been seen (for a from-start sequence).
    pub fn complete(&self, total: u64) -> bool {
        self.next == Some(total)
    }

    /// The next number due, if any message was seen (or from the start).
    pub fn next(&self) -> Option<u64> {
        self.next
    }
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ending {
    /// The client closed (1000) and the server answered.
    ClientClose,
    /// The server sent a Close frame with this code (0: no code).
    Server(u16),
    /// The connection ended without a Close frame (reset, EOF, write timeout on the server).
    Dropped,
}

impl Ending {
    fn key(self) -> String {
        match self {
            Ending::ClientClose => "client-1000".into(),
            Ending::Server(code) => code.to_string(),
            Ending::Dropped => "dropped".into(),
        }
    }
}

/// One client's (or one kind's) record.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Tally {
    /// Clients added into this tally.
    pub clients: u64,
    /// WebSocket sessions opened.
    pub sessions: u64,
    /// Published messages checked (order and uniqueness).
    pub checked: u64,
    /// Clients that saw every publish of their stream from the first to the last.
    pub complete: u64,
    /// json-gzip pings answered.
    pub pongs: u64,
    /// Session endings by close code, `client-1000` or `dropped`.
    pub endings: BTreeMap<String, u64>,
    /// Longest time from connecting to the server's 4000 close (silent clients), ms.
    pub max_close_ms: u64,
    /// Slow sessions that traffic outlasted before they fell far enough behind to judge.
    pub unjudged: u64,
    /// Failures found.
    pub failures: u64,
    /// The first failures, described.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failure_samples: Vec<String>,
}

impl Tally {
    /// A tally for one client.
    pub fn one() -> Self {
        Self {
            clients: 1,
            ..Self::default()
        }
    }

    /// Records a session ending.
    pub fn ended(&mut self, ending: Ending) {
        *self.endings.entry(ending.key()).or_default() += 1;
    }

    /// Records a failure.
    pub fn fail(&mut self, what: impl Into<String>) {
        self.failures += 1;
        if self.failure_samples.len() < MAX_FAILURES_KEPT {
            self.failure_samples.push(what.into());
        }
    }

    /// Adds `other` into this tally.
    pub fn add(&mut self, other: Tally) {
        self.clients += other.clients;
        self.sessions += other.sessions;
        self.checked += other.checked;
        self.complete += other.complete;
        self.pongs += other.pongs;
        for (k, v) in other.endings {
            *self.endings.entry(k).or_default() += v;
        }
        self.max_close_ms = self.max_close_ms.max(other.max_close_ms);
        self.unjudged += other.unjudged;
        self.failures += other.failures;
        for f in other.failure_samples {
            if self.failure_samples.len() < MAX_FAILURES_KEPT {
                self.failure_samples.push(f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_from_start_sequence_wants_every_number_once_in_order() {
        let mut s = Sequence::from_start(Stream::Soak);
        assert!(s.complete(0));
        assert!(s.see(Stream::Soak, 0).is_ok());
        assert!(s.see(Stream::Soak, 1).is_ok());
        assert!(s.see(Stream::Soak, 1).unwrap_err().contains("duplicate"));
        assert!(s.see(Stream::Soak, 3).unwrap_err().contains("gap"));
        assert!(s.see(Stream::Bulk, 2).unwrap_err().contains("bulk"));
        assert!(s.see(Stream::Soak, 2).is_ok());
        assert!(s.complete(3));
        assert!(!s.complete(4));
        assert_eq!(s.seen(), 3);
    }

    #[test]
    fn a_joined_sequence_starts_anywhere_then_wants_no_gap() {
        let mut s = Sequence::joined(Stream::Bulk);
        assert_eq!(s.next(), None);
        assert!(s.see(Stream::Bulk, 17).is_ok());
        assert!(s.see(Stream::Bulk, 18).is_ok());
        assert!(s.see(Stream::Bulk, 20).is_err());
    }

    #[test]
    fn tallies_add_up() {
        let mut a = Tally::one();
        a.ended(Ending::Server(4000));
        a.fail("x");
        let mut b = Tally::one();
        b.ended(Ending::Server(4000));
        b.ended(Ending::Dropped);
        b.max_close_ms = 7;
        a.add(b);
        assert_eq!(a.clients, 2);
        assert_eq!(a.endings["4000"], 2);
        assert_eq!(a.endings["dropped"], 1);
        assert_eq!(a.max_close_ms, 7);
        assert_eq!(a.failures, 1);
    }
}
