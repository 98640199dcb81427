//! The raw-socket floor: the least work a push server can do. It accepts WebSocket
//! handshakes, then writes each broadcast as one frame encoded once and sent with one
//! non-blocking `send` per socket, split across writer threads; frames published while
//! a pass is running are concatenated and go out with one `send` per socket in the next
//! pass. No WebSocket library touches the write path (tungstenite only derives the
//! handshake's accept key).
//!
//! Routes are free: `/NAME` subscribes to channel `NAME`; `/echo` echoes text with the
//! seed's prefix. `POST <publish>?channel=NAME` broadcasts the body (text/plain: text
//! frame, application/octet-stream: binary) and answers `{"queued": N}`. A ticker
//! sends one Ping frame (13-byte ms timestamp) per tick, and to channel `app` the
//! seed's gzip `{"ping": ms}` instead, each built once per tick. Peers are never timed
//! out: the floor detects nothing.

mod conn;
mod frame;
mod http;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use conn::Conn;

/// Settings of `floor`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:8092")]
    pub listen: SocketAddr,
    /// Path of the publish endpoint.
    #[arg(long, default_value = "/publish")]
    pub publish_path: String,
    /// Seconds between heartbeat ticks (0: none).
    #[arg(long, default_value_t = 0.0)]
    pub ping_interval: f64,
    /// Threads that write one broadcast (1: on the publishing task itself).
    #[arg(long, default_value_t = 2)]
    pub write_threads: usize,
    /// Prefix of echoed messages on /echo (the seed's).
    #[arg(long, default_value = "new message :")]
    pub echo_prefix: String,
}

/// Which connections a queued frame is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every connection.
    All,
    /// The connections of one channel.
    Only(String),
    /// Every connection except those of one channel.
    AllBut(String),
}

impl Target {
    fn matches(&self, channel: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(c) => c == channel,
            Self::AllBut(c) => c != channel,
        }
    }
}

/// Live connections by channel, and the frames waiting for the writer.
pub struct Floor {
    channels: Mutex<HashMap<String, HashMap<u64, Arc<Conn>>>>,
    queue: Mutex<Vec<(Target, Bytes)>>,
    queued: Condvar,
    next_id: AtomicU64,
    write_threads: usize,
    publish_path: String,
    echo_prefix: String,
}

impl Floor {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<u64, Arc<Conn>>>> {
        // A plain map, valid even if a holder panicked.
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn register(&self, channel: &str, conn: Arc<Conn>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock()
            .entry(channel.to_owned())
            .or_default()
            .insert(id, conn);
        id
    }

    fn unregister(&self, channel: &str, id: u64) {
        if let Some(m) = self.lock().get_mut(channel) {
            m.remove(&id);
        }
    }

    /// Queues `frame` for `target`'s connections; returns how many there are now.
    pub fn enqueue(&self, target: Target, frame: Bytes) -> usize {
        let count = self
            .lock()
            .iter()
            .filter(|(c, _)| target.matches(c))
            .map(|(_, m)| m.len())
            .sum();
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((target, frame));
        self.queued.notify_one();
        count
    }

    /// The writer: takes every queued frame, and per channel concatenates the frames
    /// meant for it into one buffer (built once), written to each socket with one send.
    /// Frames published while a pass runs go out together in the next pass, so under
    /// load each socket gets one send per pass, not one per frame.
    fn write_loop(&self) {
        loop {
            let batch = {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                while q.is_empty() {
                    q = self.queued.wait(q).unwrap_or_else(|p| p.into_inner());
                }
                std::mem::take(&mut *q)
            };
            let groups: Vec<(Bytes, Vec<Arc<Conn>>)> = {
                let map = self.lock();
                map.iter()
                    .filter_map(|(channel, conns)| {
                        let frames: Vec<&Bytes> = batch
                            .iter()
                            .filter(|(t, _)| t.matches(channel))
                            .map(|(_, f)| f)
                            .collect();
                        let bytes = match frames.as_slice() {
                            [] => return None,
                            [one] => (*one).clone(),
                            many => Bytes::from(
                                many.iter()
                                    .flat_map(|f| f.iter().copied())
                                    .collect::<Vec<u8>>(),
                            ),
                        };
                        Some((bytes, conns.values().cloned().collect()))
                    })
                    .collect()
            };
            for (bytes, conns) in &groups {
                self.write_all(conns, bytes);
            }
        }
    }

    fn write_all(&self, conns: &[Arc<Conn>], frame: &Bytes) {
        if self.write_threads <= 1 || conns.len() < 256 {
            conns.iter().for_each(|c| c.send(frame));
            return;
        }
        let chunk = conns.len().div_ceil(self.write_threads);
        std::thread::scope(|s| {
            for part in conns.chunks(chunk) {
                s.spawn(move || part.iter().for_each(|c| c.send(frame)));
            }
        });
    }

    fn tick(&self, token_ms: u64) {
        let mut payload = [0u8; 13];
        payload[5..].copy_from_slice(&token_ms.to_be_bytes());
        let ping = frame::encode(frame::PING, &payload);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let json = format!("{{\"ping\": {token_ms}}}");
        let app = match gz.write_all(json.as_bytes()).and_then(|()| gz.finish()) {
            Ok(bytes) => frame::encode(frame::BINARY, &bytes),
            Err(_) => ping.clone(),
        };
        self.enqueue(Target::AllBut("app".into()), ping);
        self.enqueue(Target::Only("app".into()), app);
    }
}

/// Runs the floor server until SIGTERM or SIGINT (SIGHUP is counted and ignored).
pub async fn run(a: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.listen.ip().is_loopback(),
        "the floor listens on loopback only, got {}",
        a.listen
    );
    let listener = TcpListener::bind(a.listen).await?;
    let floor = Arc::new(Floor {
        channels: Mutex::new(HashMap::new()),
        queue: Mutex::new(Vec::new()),
        queued: Condvar::new(),
        next_id: AtomicU64::new(0),
        write_threads: a.write_threads.max(1),
        publish_path: a.publish_path.clone(),
        echo_prefix: a.echo_prefix.clone(),
    });
    {
        let floor = floor.clone();
        std::thread::Builder::new()
            .name("floor-writer".into())
            .spawn(move || floor.write_loop())?;
    }
    if a.ping_interval > 0.0 {
        let floor = floor.clone();
        let period = Duration::from_secs_f64(a.ping_interval);
        tokio::spawn(async move {
            let mut iv = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                iv.tick().await;
                floor.tick(crate::stats::now_ns() / 1_000_000);
            }
        });
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    eprintln!("floor: listening on {}", a.listen);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => eprintln!("floor: SIGHUP (nothing to reload)"),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(http::serve(floor.clone(), stream));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
        }
    }
    Ok(())
}
