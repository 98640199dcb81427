//! One floor connection: writes go straight to the socket with one non-blocking send;
//! only a send that does not complete queues the rest behind a flush task.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::runtime::Handle;

/// Frames a connection may have waiting before it is given up as too slow.
const MAX_BACKLOG: usize = 4096;

/// A WebSocket connection after the handshake.
pub struct Conn {
    /// The socket; reads and writes both go through `&TcpStream`.
    pub stream: TcpStream,
    out: Mutex<Out>,
    rt: Handle,
}

#[derive(Default)]
struct Out {
    backlog: VecDeque<Bytes>,
    flushing: bool,
    dead: bool,
}

impl Conn {
    /// Wraps a socket; `rt` runs flush tasks started from writer threads.
    pub fn new(stream: TcpStream, rt: Handle) -> Arc<Self> {
        Arc::new(Self {
            stream,
            out: Mutex::new(Out::default()),
            rt,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Out> {
        // Out is a plain queue, valid even if a holder panicked.
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `frame`: one `send` when nothing is queued, else behind the queue.
    pub fn send(self: &Arc<Self>, frame: &Bytes) {
        let mut out = self.lock();
        if out.dead {
            return;
        }
        if out.flushing {
            if out.backlog.len() >= MAX_BACKLOG {
                out.dead = true;
                out.backlog.clear();
            } else {
                out.backlog.push_back(frame.clone());
            }
            return;
        }
        match self.stream.try_write(frame) {
            Ok(n) if n == frame.len() => return,
            Ok(n) => out.backlog.push_back(frame.slice(n..)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => out.backlog.push_back(frame.clone()),
            Err(_) => {
                out.dead = true;
                return;
            }
        }
        out.flushing = true;
        drop(out);
        self.rt.spawn(self.clone().flush());
    }

    async fn flush(self: Arc<Self>) {
        loop {
            if self.stream.writable().await.is_err() {
                self.lock().dead = true;
                return;
            }
            let mut out = self.lock();
            while let Some(front) = out.backlog.front_mut() {
                match self.stream.try_write(front) {
                    Ok(n) if n == front.len() => {
                        out.backlog.pop_front();
                    }
                    Ok(n) => {
                        let rest = front.slice(n..);
                        *front = rest;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        out.dead = true;
                        out.backlog.clear();
                    }
                }
            }
            if out.backlog.is_empty() {
                out.flushing = false;
                return;
            }
        }
    }
}
