//! The floor's HTTP side: one request head parser for WebSocket upgrades and publishes
//! on the same port, keep-alive for publishers. Every input error closes the socket.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::conn::Conn;
use super::frame::{self, Parsed};
use super::{Floor, Target};

/// Largest request head.
const MAX_HEAD: usize = 8 * 1024;
/// Largest publish body and largest client frame.
const MAX_BODY: usize = 1 << 20;
/// How long a client may take to send a request head or body.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

struct Head {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn parse_head(raw: &[u8]) -> Option<Head> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let target = first.next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(Head {
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
    })
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let res = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(res.as_bytes()).await
}

/// Serves one accepted socket: publishes (keep-alive) or one WebSocket upgrade.
pub async fn serve(floor: Arc<Floor>, mut stream: TcpStream) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_HEAD {
                return;
            }
            let mut chunk = [0u8; 2048];
            match timeout(READ_TIMEOUT, stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        };
        let Some(head) = parse_head(&buf[..head_end]) else {
            return;
        };
        buf.drain(..head_end);
        let upgrade = head
            .header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        if head.method == "GET" && upgrade {
            let Some(key) = head.header("sec-websocket-key") else {
                return;
            };
            let accept = derive_accept_key(key.as_bytes());
            let res = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            if stream.write_all(res.as_bytes()).await.is_err() {
                return;
            }
            let channel = head.path.trim_start_matches('/').to_owned();
            // A task of its own, so the request parser's buffers are not kept per connection.
            tokio::spawn(websocket(floor, stream, channel, buf));
            return;
        }
        if head.path != floor.publish_path {
            if respond(&mut stream, "404 Not Found", "{\"error\": \"not found\"}")
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        let target = match query_param(&head.query, "channel") {
            Some(c) => Target::Only(c.to_owned()),
            None => Target::All,
        };
        let (opcode, body) = if head.method == "POST" {
            let Some(len) = head
                .header("content-length")
                .and_then(|v| v.parse::<usize>().ok())
            else {
                return;
            };
            if len > MAX_BODY {
                return;
            }
            while buf.len() < len {
                let mut chunk = [0u8; 8192];
                match timeout(READ_TIMEOUT, stream.read(&mut chunk)).await {
                    Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    _ => return,
                }
            }
            let body: Vec<u8> = buf.drain(..len).collect();
            let binary = head
                .header("content-type")
                .is_some_and(|v| v.starts_with("application/octet-stream"));
            (if binary { frame::BINARY } else { frame::TEXT }, body)
        } else {
            let msg = query_param(&head.query, "msg").unwrap_or_default();
            (frame::TEXT, msg.as_bytes().to_vec())
        };
        // Encoded once; every socket gets the same bytes.
        let encoded = frame::encode(opcode, &body);
        let queued = floor.enqueue(target, encoded);
        if respond(&mut stream, "200 OK", &format!("{{\"queued\": {queued}}}"))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Reads a WebSocket connection until it closes: echoes on `/echo`, answers pings and
/// closes, discards everything else.
async fn websocket(floor: Arc<Floor>, stream: TcpStream, channel: String, mut inbound: Vec<u8>) {
    let conn = Conn::new(stream, tokio::runtime::Handle::current());
    let id = floor.register(&channel, conn.clone());
    let echo = channel == "echo";
    'read: loop {
        loop {
            match frame::parse_client(&inbound, MAX_BODY) {
                Parsed::Incomplete => break,
                Parsed::Invalid => break 'read,
                Parsed::Frame(opcode, payload, used) => {
                    inbound.drain(..used);
                    match opcode {
                        frame::CLOSE => {
                            conn.send(&frame::encode(frame::CLOSE, &payload));
                            break 'read;
                        }
                        frame::PING => conn.send(&frame::encode(frame::PONG, &payload)),
                        frame::TEXT if echo => {
                            let mut out = floor.echo_prefix.as_bytes().to_vec();
                            out.extend_from_slice(&payload);
                            conn.send(&frame::encode(frame::TEXT, &out));
                        }
                        _ => {}
                    }
                }
            }
        }
        if inbound.is_empty() {
            // Give back the buffer of a frame that needed several reads.
            inbound = Vec::new();
        }
        if conn.stream.readable().await.is_err() {
            break;
        }
        let mut chunk = [0u8; 512];
        match conn.stream.try_read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => inbound.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
    floor.unregister(&channel, id);
}
