//! One WebSocket client connection as the soak sees it: connecting, and each frame the
//! server sends classified as an [`Event`].

use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use flate2::read::GzDecoder;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{WebSocketStream, client_async};

/// A client connection.
pub type Ws = WebSocketStream<TcpStream>;

/// Longest a TCP connect plus WebSocket handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a close handshake may take before the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes a json-gzip ping may inflate to (real ones are ~20).
const MAX_PING_JSON: u64 = 1024;

/// The text every soak route sends first; it proves the connection is subscribed.
pub const WELCOME: &str = "soak-welcome";

/// The numbered streams the publisher sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Small messages to the `/feed` and `/app` routes (channel `soak`).
    Soak,
    /// Large messages to the `/bulk` route (channel `bulk`), where the slow readers are.
    Bulk,
}

impl Stream {
    /// The channel name, also the body's first word.
    pub fn channel(self) -> &'static str {
        match self {
            Stream::Soak => "soak",
            Stream::Bulk => "bulk",
        }
    }

    /// Message number `seq`, padded to about `size` bytes: `soak 00000042 xxx...`.
    pub fn body(self, seq: u64, size: usize) -> String {
        let mut body = format!("{} {seq:08} ", self.channel());
        let pad = size.saturating_sub(body.len());
        body.extend(std::iter::repeat_n('x', pad));
        body
    }

    /// The stream and number of a published body.
    pub fn parse(text: &str) -> Option<(Stream, u64)> {
        let mut words = text.splitn(3, ' ');
        let stream = match words.next()? {
            "soak" => Stream::Soak,
            "bulk" => Stream::Bulk,
            _ => return None,
        };
        Some((stream, words.next()?.parse().ok()?))
    }
}

/// What one read from the server brought.
#[derive(Debug)]
pub enum Event {
    /// Published message `seq` of `stream`.
    Data(Stream, u64),
    /// The route's welcome.
    Welcome,
    /// A json-gzip heartbeat ping carrying this many milliseconds.
    Ping(u64),
    /// An RFC 6455 Ping or Pong (tungstenite answers Pings by itself).
    Control,
    /// The server sent a Close frame with this code (`None`: no code).
    Closed(Option<u16>),
    /// The connection ended or failed without a Close frame.
    Dropped(String),
    /// Something the soak never sends or publishes.
    Unexpected(String),
}

/// Opens a WebSocket to `path`.
///
/// Slow clients keep the default receive buffer: one far below the loopback MSS (64 KiB)
/// leaves the sender probing a zero window with exponential backoff, so what the daemon
/// already wrote arrives seconds apart and a cut-off looks like a hang.
pub async fn connect(addr: SocketAddr, path: &str) -> anyhow::Result<Ws> {
    let open = async {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let (ws, _) = client_async(format!("ws://{addr}{path}"), stream)
            .await
            .with_context(|| format!("handshake on {path}"))?;
        anyhow::Ok(ws)
    };
    timeout(CONNECT_TIMEOUT, open)
        .await
        .with_context(|| format!("connecting to {path}: no answer within {CONNECT_TIMEOUT:?}"))?
}

/// Reads the next event. Cancel-safe: its only await is the stream's `next()`.
pub async fn next_event(ws: &mut Ws) -> Event {
    match ws.next().await {
        None => Event::Dropped("stream ended".into()),
        Some(Err(err)) => Event::Dropped(dropped(&err)),
        Some(Ok(msg)) => classify(msg),
    }
}

/// Reads until the welcome arrives, within `limit`; pings may come first, anything else is an error.
pub async fn expect_welcome(ws: &mut Ws, limit: Duration) -> anyhow::Result<()> {
    let read = async {
        loop {
            match next_event(ws).await {
                Event::Welcome => return Ok(()),
                Event::Control | Event::Ping(_) => continue,
                other => anyhow::bail!("expected the welcome, got {other:?}"),
            }
        }
    };
    timeout(limit, read)
        .await
        .with_context(|| format!("no welcome within {limit:?}"))?
}

/// Answers json-gzip ping `ms` with `{"pong": ms}`.
pub async fn pong(ws: &mut Ws, ms: u64) -> anyhow::Result<()> {
    timeout(
        CLOSE_TIMEOUT,
        ws.send(Message::text(format!("{{\"pong\": {ms}}}"))),
    )
    .await
    .context("pong write blocked")?
    .context("pong write failed")
}

/// Closes from the client side (1000) and waits, bounded, for the server's answer.
/// Returns whether the server completed the close handshake.
pub async fn close(ws: &mut Ws) -> bool {
    let handshake = async {
        if ws.close(None).await.is_err() {
            return false;
        }
        loop {
            match ws.next().await {
                Some(Ok(_)) => continue,
                Some(Err(WsError::ConnectionClosed)) | None => return true,
                Some(Err(_)) => return false,
            }
        }
    };
    timeout(CLOSE_TIMEOUT, handshake).await.unwrap_or(false)
}

/// After the server's Close frame: lets tungstenite answer it and waits, bounded, for the end.
pub async fn finish(ws: &mut Ws) {
    let _ = timeout(CLOSE_TIMEOUT, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

fn classify(msg: Message) -> Event {
    match msg {
        Message::Text(text) => {
            let text = text.as_str();
            if text == WELCOME {
                return Event::Welcome;
            }
            match Stream::parse(text) {
                Some((stream, seq)) => Event::Data(stream, seq),
                None => Event::Unexpected(format!("text {:?}", preview(text))),
            }
        }
        Message::Binary(data) => match gzip_ping(&data) {
            Some(ms) => Event::Ping(ms),
            None => Event::Unexpected(format!("binary message of {} bytes", data.len())),
        },
        Message::Ping(_) | Message::Pong(_) => Event::Control,
        Message::Close(frame) => Event::Closed(frame.map(|f| u16::from(f.code))),
        Message::Frame(_) => Event::Unexpected("raw frame".into()),
    }
}

/// The milliseconds of a json-gzip ping: gzip of `{"ping": ms}`, inflated within a bound.
fn gzip_ping(data: &[u8]) -> Option<u64> {
    let mut json = Vec::new();
    GzDecoder::new(data)
        .take(MAX_PING_JSON)
        .read_to_end(&mut json)
        .ok()?;
    serde_json::from_slice::<serde_json::Value>(&json)
        .ok()?
        .get("ping")?
        .as_u64()
}

fn dropped(err: &WsError) -> String {
    match err {
        WsError::ConnectionClosed | WsError::AlreadyClosed => "closed".into(),
        other => other.to_string(),
    }
}

fn preview(text: &str) -> &str {
    let end = text.char_indices().nth(40).map_or(text.len(), |(i, _)| i);
    &text[..end]
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    #[test]
    fn bodies_parse_back_to_their_stream_and_number() {
        for stream in [Stream::Soak, Stream::Bulk] {
            for size in [0, 10, 64, 16 * 1024] {
                let body = stream.body(42, size);
                assert!(body.len() >= size);
                assert_eq!(Stream::parse(&body), Some((stream, 42)));
            }
        }
        assert_eq!(Stream::parse("news 1"), None);
        assert_eq!(Stream::parse("soak x"), None);
    }

    #[test]
    fn gzip_pings_are_read_and_junk_is_not() {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(br#"{"ping": 1234}"#).unwrap();
        let data = enc.finish().unwrap();
        assert_eq!(gzip_ping(&data), Some(1234));
        assert_eq!(gzip_ping(b"not gzip"), None);
    }

    #[test]
    fn messages_are_classified() {
        assert!(matches!(classify(Message::text(WELCOME)), Event::Welcome));
        assert!(matches!(
            classify(Message::text("bulk 00000007 xx")),
            Event::Data(Stream::Bulk, 7)
        ));
        assert!(matches!(
            classify(Message::text("hi")),
            Event::Unexpected(_)
        ));
    }
}
