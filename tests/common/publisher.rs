//! A backend publishing `{"n": 1}`, `{"n": 2}`, ... to one channel from a thread, at a
//! pace, over plain HTTP/1.1, taking the nodes given in turn; it reports each number and
//! whether it was answered 200.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use super::T;

pub struct Publisher {
    rx: mpsc::Receiver<(u64, bool)>,
    stop: Arc<AtomicBool>,
    /// The number of the publish under way (or last made).
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
    /// Numbers answered 200.
    pub ok: Vec<u64>,
    /// Numbers answered otherwise, or not at all.
    pub unanswered: Vec<u64>,
}

impl Publisher {
    /// Publishes to `channel` on `nodes` in turn, one every `pace` (a pace, not a wait),
    /// until [`Publisher::finish`].
    pub fn start(nodes: Vec<SocketAddr>, channel: &str, pace: Duration) -> Publisher {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let sent = Arc::new(AtomicU64::new(0));
        let sending = sent.clone();
        let channel = channel.to_owned();
        let thread = std::thread::spawn(move || {
            for (n, addr) in (1..).zip(nodes.iter().cycle()) {
                sending.store(n, Ordering::SeqCst);
                if stopped.load(Ordering::Relaxed)
                    || tx.send((n, publish(*addr, &channel, n))).is_err()
                {
                    return;
                }
                std::thread::sleep(pace);
            }
        });
        Publisher {
            rx,
            stop,
            sent,
            thread: Some(thread),
            ok: Vec::new(),
            unanswered: Vec::new(),
        }
    }

    /// Waits for `more` further publishes answered 200.
    pub fn accepted(&mut self, more: usize) {
        self.accepted_after(0, more);
    }

    /// A mark for [`Publisher::accepted_after`]: publishes numbered above it start later.
    pub fn mark(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// Waits for `more` further publishes numbered above `mark` answered 200 (publishes
    /// started before the mark may still be queued here, answered by an earlier daemon).
    pub fn accepted_after(&mut self, mark: u64, more: usize) {
        let above = |ok: &[u64]| ok.iter().filter(|&&n| n > mark).count();
        let want = above(&self.ok) + more;
        while above(&self.ok) < want {
            let (n, ok) = self.rx.recv_timeout(T).expect("the publisher stalled");
            self.record(n, ok);
        }
    }

    /// Waits for a publish numbered above `mark` that was not answered 200.
    pub fn refused_after(&mut self, mark: u64) {
        loop {
            let (n, ok) = self.rx.recv_timeout(T).expect("the publisher stalled");
            self.record(n, ok);
            if !ok && n > mark {
                return;
            }
        }
    }

    /// Stops; every publish is then either in `ok` or in `unanswered`.
    pub fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("publisher thread");
        }
        while let Ok((n, ok)) = self.rx.try_recv() {
            self.record(n, ok);
        }
    }

    fn record(&mut self, n: u64, ok: bool) {
        match ok {
            true => self.ok.push(n),
            false => self.unanswered.push(n),
        }
    }
}

/// One `POST /publish?channel=CHANNEL` of `{"n": n}`: whether it was answered 200.
pub fn publish(addr: SocketAddr, channel: &str, n: u64) -> bool {
    let body = format!("{{\"n\":{n}}}");
    let req = format!(
        "POST /publish?channel={channel} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, T) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(T));
    let mut head = [0u8; 12];
    stream.write_all(req.as_bytes()).is_ok()
        && stream.read_exact(&mut head).is_ok()
        && head.starts_with(b"HTTP/1.1 200")
}
