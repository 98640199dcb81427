//! The WebSocket client side: dialing from several loopback source addresses, and the
//! per-connection driver that answers both heartbeat kinds and checks fan-out traffic.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpSocket;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};
use tokio_util::sync::CancellationToken;

use crate::jwt::{Minter, expand};
use crate::stats::{PingSeen, now_ns};
use crate::tls::{Stream, secure};
use tokio_rustls::TlsConnector;

/// A client connection.
pub type Ws = WebSocketStream<Stream>;

/// How long one TCP connect plus WebSocket handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest message a bench client accepts (the 64 KiB broadcast fits).
const MAX_MESSAGE: usize = 1 << 20;

/// Opens connections to one server, spreading them over loopback source addresses
/// (each 127.x.y.z has its own ~28 000 ephemeral ports).
pub struct Dialer {
    server: SocketAddr,
    sources: Vec<Ipv4Addr>,
    next: AtomicUsize,
    tls: Option<TlsConnector>,
    minter: Option<Minter>,
}

impl Dialer {
    /// `sources` addresses 127.B.k.1 (k = 0..sources), B picked from the process id so
    /// consecutive runs do not meet each other's TIME_WAIT sockets.
    /// With `tls`, every connection (WebSocket and publish) speaks TLS.
    pub fn new(server: SocketAddr, sources: u8, tls: Option<TlsConnector>) -> Self {
        let b = 10 + (std::process::id() % 200) as u8;
        Self {
            server,
            sources: (0..sources.max(1))
                .map(|k| Ipv4Addr::new(127, b, k, 1))
                .collect(),
            next: AtomicUsize::new(0),
            tls,
            minter: None,
        }
    }

    /// Signs a token for every path that says `{jwt}`.
    pub fn with_minter(mut self, minter: Option<Minter>) -> Self {
        self.minter = minter;
        self
    }

    /// The TLS connector, for `--tls` runs.
    pub fn tls(&self) -> Option<TlsConnector> {
        self.tls.clone()
    }

    /// `path` for connection `i`: `{i}` and `{jwt}` filled in (see [`expand`]).
    pub fn path_for(&self, path: &str, i: usize) -> anyhow::Result<String> {
        expand(path, i, self.minter.as_ref())
    }

    /// The server address.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Connects one WebSocket to `path`.
    pub async fn connect(&self, path: &str) -> anyhow::Result<Ws> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let src = self.sources[i % self.sources.len()];
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        let url = format!("{scheme}://{}{}", self.server, path);
        let attempt = async {
            let sock = TcpSocket::new_v4()?;
            sock.bind(SocketAddr::new(src.into(), 0))
                .context("binding the source address")?;
            let stream = sock.connect(self.server).await.context("TCP connect")?;
            stream.set_nodelay(true)?;
            let stream = secure(self.tls.as_ref(), stream)
                .await
                .context("TLS handshake")?;
            // Small buffers: the client holds up to 19 000 connections in one process.
            let config = WebSocketConfig::default()
                .read_buffer_size(4096)
                .write_buffer_size(0)
                .max_message_size(Some(MAX_MESSAGE))
                .max_frame_size(Some(MAX_MESSAGE));
            let (ws, _) = client_async_with_config(url.as_str(), stream, Some(config))
                .await
                .context("WebSocket handshake")?;
            anyhow::Ok(ws)
        };
        timeout(CONNECT_TIMEOUT, attempt)
            .await
            .context("connect timed out")?
    }
}

/// What `connect_all` produced.
pub struct Opened {
    /// The connections, each with the index of the path it used.
    pub conns: Vec<(usize, Ws)>,
    /// Connections that failed.
    pub failures: usize,
    /// Wall time from the first connect to the last.
    pub elapsed: Duration,
    /// The first failure, for the summary.
    pub first_error: Option<String>,
}

/// Opens `n` connections, path `paths[i % len]` (with `{i}` = i and `{jwt}` a token for
/// sub i), at most `concurrency` in flight.
pub async fn connect_all(
    dialer: &Arc<Dialer>,
    n: usize,
    paths: &[String],
    concurrency: usize,
) -> Opened {
    let start = Instant::now();
    let results: Vec<(usize, anyhow::Result<Ws>)> = futures_util::stream::iter(0..n)
        .map(|i| {
            let dialer = dialer.clone();
            let p = i % paths.len().max(1);
            let path = paths.get(p).map_or("/", String::as_str);
            let path = dialer.path_for(path, i);
            async move {
                match path {
                    Ok(path) => (p, dialer.connect(&path).await),
                    Err(e) => (p, Err(e)),
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let elapsed = start.elapsed();
    let mut conns = Vec::with_capacity(n);
    let mut failures = 0;
    let mut first_error = None;
    for (p, r) in results {
        match r {
            Ok(ws) => conns.push((p, ws)),
            Err(e) => {
                failures += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    Opened {
        conns,
        failures,
        elapsed,
        first_error,
    }
}

/// Counters every driver updates.
pub struct Shared {
    /// Fan-out messages received, all connections.
    pub delivered: AtomicU64,
    /// Large binary broadcasts received.
    pub big: AtomicU64,
    /// Connections that ended before the scenario stopped them.
    pub dropped: AtomicU64,
    /// Per fan-out sequence number: the largest latency seen (ns), i.e. when the last client had it.
    pub last_by_seq: Vec<AtomicU64>,
    /// Latest arrival of any fan-out message (ns since the epoch).
    pub last_arrival: AtomicU64,
    /// Latencies of sequence numbers from this one on go to `ConnReport::lat_late_us`
    /// (the `storm` scenario's second phase); `usize::MAX` for none.
    pub split: usize,
    /// Drivers that have started reading.
    pub started: tokio::sync::watch::Sender<usize>,
}

impl Shared {
    /// Counters for `expected` fan-out messages per client.
    pub fn new(expected: usize) -> Arc<Self> {
        Arc::new(Self {
            delivered: AtomicU64::new(0),
            big: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            last_by_seq: (0..expected).map(|_| AtomicU64::new(0)).collect(),
            last_arrival: AtomicU64::new(0),
            split: usize::MAX,
            started: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Like [`Shared::new`], latencies of sequence numbers `split..` kept apart.
    pub fn with_split(expected: usize, split: usize) -> Arc<Self> {
        let mut s = Self::new(expected);
        if let Some(s) = Arc::get_mut(&mut s) {
            s.split = split;
        }
        s
    }
}

/// What one connection saw.
#[derive(Debug, Default)]
pub struct ConnReport {
    /// Per-delivery latency, microseconds.
    pub lat_us: Vec<u32>,
    /// The same for sequence numbers from `Shared::split` on.
    pub lat_late_us: Vec<u32>,
    /// Bytes of the fan-out text frames counted (envelope frames included whole).
    pub frame_bytes: u64,
    /// Envelope position frames (`{"type":"position",...}`), not counted as messages.
    pub positions: u64,
    /// Distinct fan-out messages.
    pub unique: u64,
    /// Repeated fan-out messages.
    pub dups: u64,
    /// Fan-out messages that arrived after a later one.
    pub out_of_order: u64,
    /// Heartbeat pings seen (both kinds).
    pub pings: Vec<PingSeen>,
    /// Close code, if the server closed it.
    pub close_code: Option<u16>,
    /// Whether it ended before being told to stop.
    pub dropped: bool,
}

/// The fan-out payload: `F <seq> <send ns> ` padded with `x` to `size` bytes.
pub fn fanout_payload(seq: usize, size: usize) -> String {
    let mut s = format!("F {seq} {} ", now_ns());
    while s.len() < size {
        s.push('x');
    }
    s
}

/// A text frame as a route sends it: raw (the message itself) or envelope JSON.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A raw route's frame: the message as published.
    Raw(&'a str),
    /// An envelope `{"type":"message",...}`: its offset (channels with history) and its
    /// `data` string (the bench's payloads need no JSON escapes).
    Message { offset: Option<u64>, data: &'a str },
    /// An envelope `{"type":"position",...}`.
    Position,
    /// Any other envelope frame.
    Other,
}

/// Classifies a text frame without a JSON parse (the client reads ~500 000 frames/s):
/// heartwire writes envelope fields in a fixed order, `type` first.
pub fn frame(text: &str) -> Frame<'_> {
    let Some(rest) = text.strip_prefix(r#"{"type":""#) else {
        return Frame::Raw(text);
    };
    if rest.starts_with("position\"") {
        return Frame::Position;
    }
    if !rest.starts_with("message\"") {
        return Frame::Other;
    }
    let offset = json_u64(text, r#","offset":"#);
    let data = text
        .find(r#","data":""#)
        .map(|i| &text[i + 9..])
        .and_then(|d| d.find('"').map(|end| &d[..end]));
    match data {
        Some(data) => Frame::Message { offset, data },
        None => Frame::Other,
    }
}

/// The unsigned number after `key` (e.g. `,"offset":`) in a JSON text, if any.
pub fn json_u64(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let digits = text[at..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(&text[at..], |end| &text[at..at + end]);
    digits.parse().ok()
}

/// Parses a fan-out payload (see [`fanout_payload`]): sequence number and send time.
pub fn parse_fanout(text: &str) -> Option<(usize, u64)> {
    let mut it = text.strip_prefix("F ")?.split(' ');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The token of a gzip `{"ping": ms}` message, if `data` is one.
fn gzip_ping(data: &[u8]) -> Option<u64> {
    if !data.starts_with(&[0x1f, 0x8b]) {
        return None;
    }
    let mut text = String::new();
    flate2::read::GzDecoder::new(data)
        .read_to_string(&mut text)
        .ok()?;
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()?
        .get("ping")?
        .as_u64()
}

/// The 13-byte big-endian millisecond token of a protocol ping, 0 for any other payload.
fn protocol_token(payload: &[u8]) -> u64 {
    if payload.len() != 13 || payload[..5].iter().any(|&b| b != 0) {
        return 0;
    }
    payload[5..]
        .iter()
        .fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

/// Reads one connection until `stop`: answers gzip JSON pings with `{"pong": ms}`
/// (tungstenite answers protocol pings itself), checks fan-out sequence numbers.
pub async fn drive(mut ws: Ws, shared: Arc<Shared>, stop: CancellationToken) -> ConnReport {
    let mut r = ConnReport::default();
    let expected = shared.last_by_seq.len();
    let mut seen: Vec<u64> = Vec::new();
    let mut max_seq: Option<usize> = None;
    shared.started.send_modify(|n| *n += 1);
    loop {
        let msg = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            m = ws.next() => m,
        };
        match msg {
            Some(Ok(Message::Text(t))) => {
                let payload = match frame(t.as_str()) {
                    Frame::Raw(p) | Frame::Message { data: p, .. } => p,
                    Frame::Position => {
                        r.positions += 1;
                        continue;
                    }
                    Frame::Other => continue,
                };
                let Some((seq, sent)) = parse_fanout(payload) else {
                    continue;
                };
                let at = now_ns();
                let lat = at.saturating_sub(sent);
                shared.delivered.fetch_add(1, Ordering::Relaxed);
                shared.last_arrival.fetch_max(at, Ordering::Relaxed);
                if let Some(slot) = shared.last_by_seq.get(seq) {
                    slot.fetch_max(lat, Ordering::Relaxed);
                }
                r.frame_bytes += t.len() as u64;
                let lat_us = u32::try_from(lat / 1000).unwrap_or(u32::MAX);
                if seq >= shared.split {
                    r.lat_late_us.push(lat_us);
                } else {
                    r.lat_us.push(lat_us);
                }
                if seen.is_empty() {
                    seen = vec![0; expected.div_ceil(64).max(1)];
                }
                let (w, bit) = (seq / 64, 1u64 << (seq % 64));
                match seen.get_mut(w) {
                    Some(word) if *word & bit != 0 => r.dups += 1,
                    Some(word) => {
                        *word |= bit;
                        r.unique += 1;
                        if max_seq.is_some_and(|m| seq < m) {
                            r.out_of_order += 1;
                        }
                        max_seq = Some(max_seq.map_or(seq, |m| m.max(seq)));
                    }
                    None => {}
                }
            }
            Some(Ok(Message::Binary(b))) => {
                if let Some(token) = gzip_ping(&b) {
                    r.pings.push(PingSeen {
                        token_ms: token,
                        at_ns: now_ns(),
                    });
                    let pong = Message::text(format!("{{\"pong\": {token}}}"));
                    if ws.send(pong).await.is_err() {
                        r.dropped = true;
                        break;
                    }
                } else if b.len() >= 1024 {
                    shared.big.fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(Ok(Message::Ping(p))) => {
                r.pings.push(PingSeen {
                    token_ms: protocol_token(&p),
                    at_ns: now_ns(),
                });
            }
            Some(Ok(Message::Close(frame))) => {
                r.close_code = frame.map(|f| u16::from(f.code));
                r.dropped = true;
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => {
                r.dropped = true;
                break;
            }
        }
    }
    if r.dropped {
        shared.dropped.fetch_add(1, Ordering::Relaxed);
    }
    r
}

/// A peer that never answers: after the handshake nobody reads through tungstenite
/// (so no Pong is sent); the raw socket is watched for the server's Close frame or EOF.
/// Returns how long after `since` the server gave up on it, or `None` by `until`.
pub async fn silent(ws: Ws, since: Instant, until: Instant) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    // Read below tungstenite (through TLS when there is TLS), so nothing answers a ping.
    let mut stream = ws.into_inner();
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(until.into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(since.elapsed()),
            Ok(Ok(n)) => {
                pending.extend_from_slice(&buf[..n]);
                if scan_for_close(&mut pending) {
                    return Some(since.elapsed());
                }
            }
        }
    }
}

/// Consumes whole server frames from `buf`; true once a Close frame (opcode 8) is seen.
fn scan_for_close(buf: &mut Vec<u8>) -> bool {
    loop {
        if buf.len() < 2 {
            return false;
        }
        let opcode = buf[0] & 0x0f;
        let masked = buf[1] & 0x80 != 0;
        let (len, mut at) = match buf[1] & 0x7f {
            126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
            127 if buf.len() >= 10 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            126 | 127 => return false,
            n => (u64::from(n), 2),
        };
        if masked {
            at += 4;
        }
        if opcode == 8 {
            return true;
        }
        let Ok(end) = usize::try_from(len).map(|l| l.saturating_add(at)) else {
            return true;
        };
        if buf.len() < end {
            return false;
        }
        buf.drain(..end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fanout_payload_round_trips() {
        let p = fanout_payload(42, 100);
        assert_eq!(p.len(), 100);
        let (seq, sent) = parse_fanout(&p).unwrap();
        assert_eq!(seq, 42);
        assert!(sent > 0);
    }

    #[test]
    fn envelope_frames_are_classified() {
        let p = fanout_payload(7, 100);
        let env = format!(
            r#"{{"type":"message","channel":"hist","offset":42,"epoch":"k3j9x2ab","data":"{p}"}}"#
        );
        assert_eq!(
            frame(&env),
            Frame::Message {
                offset: Some(42),
                data: p.as_str()
            }
        );
        assert_eq!(parse_fanout(&p).map(|(s, _)| s), Some(7));
        assert_eq!(
            frame(r#"{"type":"position","channel":"hist","epoch":"e","offset":3}"#),
            Frame::Position
        );
        assert_eq!(frame(&p), Frame::Raw(p.as_str()));
        assert_eq!(
            json_u64(r#"{"offset":3,"replayed":50}"#, r#","replayed":"#),
            Some(50)
        );
    }

    #[test]
    fn protocol_tokens_are_13_byte_big_endian() {
        let mut p = [0u8; 13];
        p[5..].copy_from_slice(&1_492_420_473_027u64.to_be_bytes());
        assert_eq!(protocol_token(&p), 1_492_420_473_027);
        assert_eq!(protocol_token(b""), 0);
    }

    #[test]
    fn close_is_found_after_other_frames() {
        let mut buf = vec![0x89, 2, 1, 2, 0x88, 2, 0x0f, 0xa0];
        assert!(scan_for_close(&mut buf));
        let mut partial = vec![0x82, 126, 0x01];
        assert!(!scan_for_close(&mut partial));
    }

    #[test]
    fn gzip_pings_are_recognised() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(br#"{"ping": 1492420473027}"#).unwrap();
        let data = enc.finish().unwrap();
        assert_eq!(gzip_ping(&data), Some(1_492_420_473_027));
        assert_eq!(gzip_ping(b"plain"), None);
    }
}
