//! Test harness: the real daemon in-process on 127.0.0.1:0, real clients over real sockets.
//! Every wait is bounded by a timeout; nothing sleeps to synchronise.
#![allow(dead_code)]

pub mod daemon;
pub mod publisher;
pub mod python;
pub mod redis;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use heartwire::config::{self, Config};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// Upper bound for any single wait in a test.
pub const T: Duration = Duration::from_secs(10);

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Server {
    pub addr: SocketAddr,
    /// The admin listener: /healthz, /metrics, /connections.
    pub admin: SocketAddr,
    pub config_tx: watch::Sender<Arc<Config>>,
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<anyhow::Result<()>>,
}

/// Parses a test config. Tests hold clients they never read, which never answer the
/// shutdown close, so the grace is 1 s unless the test sets one.
pub fn parse(toml: &str) -> Config {
    let mut c = config::from_toml(toml, Path::new("test.toml"))
        .unwrap_or_else(|e| panic!("bad test config: {e}"));
    if !toml.contains("shutdown_grace") {
        c.server.shutdown_grace = Duration::from_secs(1);
    }
    // Shutdown closes everyone at once unless a test is about the drain's spread.
    if !toml.contains("drain_period") {
        c.server.drain_period = Duration::ZERO;
    }
    c
}

impl Server {
    pub async fn start(toml: &str) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = admin_listener.local_addr().unwrap();
        let (config_tx, config_rx) = watch::channel(Arc::new(parse(toml)));
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(heartwire::run_with(
            vec![listener],
            Some(admin_listener),
            config_rx,
            shutdown.clone(),
            heartwire::ops::Ops::default(),
            Arc::new(heartwire::fanout::MemoryBroker::default()),
        ));
        Server {
            addr,
            admin,
            config_tx,
            shutdown,
            handle,
        }
    }

    /// Applies a new config as a SIGHUP reload would.
    pub fn reload(&self, toml: &str) {
        self.config_tx.send_replace(Arc::new(parse(toml)));
    }

    pub async fn ws(&self, path: &str) -> Ws {
        connect(self.addr, path, None)
            .await
            .unwrap_or_else(|e| panic!("connect {path}: {e}"))
    }

    pub async fn http(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        http(self.addr, method, target, headers, body).await
    }

    pub async fn publish(&self, target: &str, body: &str) -> (u16, String) {
        self.http(
            "POST",
            target,
            &[("Content-Type", "text/plain")],
            body.as_bytes(),
        )
        .await
    }

    /// The value of one metric series, e.g. `heartwire_messages_dropped_total{route="/f"}`.
    pub async fn metric(&self, series: &str) -> f64 {
        let (status, text) = http(self.admin, "GET", "/metrics", &[], b"").await;
        assert_eq!(status, 200, "{text}");
        metric(&text, series)
    }

    /// Cancels and waits for `run` to return.
    pub async fn stop(self) {
        self.shutdown.cancel();
        timeout(T, self.handle)
            .await
            .expect("run did not return")
            .unwrap()
            .unwrap();
    }
}

pub async fn connect(
    addr: SocketAddr,
    path: &str,
    origin: Option<&str>,
) -> Result<Ws, tungstenite::Error> {
    let mut req = format!("ws://{addr}{path}").into_client_request()?;
    if let Some(o) = origin {
        req.headers_mut().insert("Origin", o.parse().unwrap());
    }
    let (ws, _) = timeout(T, tokio_tungstenite::connect_async(req))
        .await
        .expect("connect timed out")?;
    Ok(ws)
}

/// Next data or close message, skipping Ping/Pong frames (tungstenite answers pings itself).
pub async fn recv(ws: &mut Ws) -> Message {
    loop {
        let msg = timeout(T, ws.next())
            .await
            .expect("no message in time")
            .expect("stream ended")
            .expect("read error");
        if !matches!(msg, Message::Ping(_) | Message::Pong(_)) {
            return msg;
        }
    }
}

pub async fn recv_text(ws: &mut Ws) -> String {
    match recv(ws).await {
        Message::Text(t) => t.as_str().to_owned(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Reads until the server's close frame, answers it as a client does, and returns it.
pub async fn recv_close(ws: &mut Ws) -> CloseFrame {
    loop {
        match timeout(T, ws.next()).await.expect("no close in time") {
            Some(Ok(Message::Close(Some(frame)))) => {
                // Reading on flushes tungstenite's close reply and sees the socket end.
                let _ = timeout(T, async { while let Some(Ok(_)) = ws.next().await {} }).await;
                return frame;
            }
            Some(Ok(Message::Close(None))) => panic!("close without a code"),
            Some(Ok(_)) => continue,
            other => panic!("stream ended without a close frame: {other:?}"),
        }
    }
}

pub async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
}

/// The value of the series written exactly as `series` (name and labels), or panics.
pub fn metric(text: &str, series: &str) -> f64 {
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no series `{series}` in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Minimal HTTP/1.1 client: one request per connection; returns status and body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let (status, _, body) = http_with_head(addr, method, target, headers, body).await;
    (status, body)
}

/// Like [`http`], and also returns the response head (status line and headers).
pub async fn http_with_head(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut req = req.into_bytes();
    req.extend_from_slice(body);
    let (status, text) = exchange(&mut stream, &req).await;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_owned(), body.to_owned())
}

/// Writes a whole HTTP/1.1 `request` to `stream` (plain or TLS) and reads until the
/// server closes it; returns the status and the whole response.
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &[u8],
) -> (u16, String) {
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    timeout(T, stream.read_to_end(&mut out))
        .await
        .expect("no HTTP response in time")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad response: {text:?}"));
    (status, text)
}

/// A WebSocket client on a raw socket: it answers nothing unless told to, and can send
/// any bytes at all. Frames from the server are unmasked.
pub struct Raw {
    pub stream: TcpStream,
    /// Bytes read past the response head (or the last frame), not yet consumed.
    pub buf: Vec<u8>,
}

pub const HANDSHAKE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

impl Raw {
    /// Sends `request` and reads the response head. Returns the client and the head.
    pub async fn request(addr: SocketAddr, request: &str) -> (Raw, String) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let head = timeout(T, async {
            loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end + 4);
                    return head;
                }
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(
                    n > 0,
                    "connection closed before a response: {:?}",
                    String::from_utf8_lossy(&buf)
                );
                buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("no response head in time");
        (Raw { stream, buf }, head)
    }

    pub async fn connect(addr: SocketAddr, path: &str) -> Raw {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {HANDSHAKE_KEY}\r\n\r\n"
        );
        let (raw, head) = Raw::request(addr, &req).await;
        assert!(head.starts_with("HTTP/1.1 101"), "no upgrade: {head}");
        raw
    }

    /// Reads one frame: (fin+opcode byte, payload).
    pub async fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        timeout(T, async {
            loop {
                if let Some((frame, used)) = parse_frame(&self.buf) {
                    self.buf.drain(..used);
                    return Some(frame);
                }
                let mut chunk = [0u8; 4096];
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
        .expect("no frame in time")
    }

    /// Reads frames until a close frame; returns its code and reason.
    pub async fn close_code(&mut self) -> (u16, String) {
        loop {
            match self.frame().await {
                Some((b0, payload)) if b0 & 0x0f == 0x8 => {
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    return (code, String::from_utf8_lossy(&payload[2..]).into_owned());
                }
                Some(_) => continue,
                None => panic!("connection ended without a close frame"),
            }
        }
    }

    /// Reads past any frames until the server closes the TCP connection; panics if it
    /// stays open longer than the harness timeout.
    pub async fn until_closed(&mut self) {
        while self.frame().await.is_some() {}
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }
}

/// A masked client frame.
pub fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut out = vec![b0];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn parse_frame(buf: &[u8]) -> Option<((u8, Vec<u8>), usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (len, mut at) = match buf[1] & 0x7f {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    if buf[1] & 0x80 != 0 {
        at += 4;
    }
    let payload = buf.get(at..at + len)?.to_vec();
    Some(((buf[0], payload), at + len))
}

/// gunzips a heartbeat message.
pub fn gunzip(data: &[u8]) -> String {
    use std::io::Read;
    let mut out = String::new();
    flate2::read::GzDecoder::new(data)
        .read_to_string(&mut out)
        .unwrap();
    out
}
