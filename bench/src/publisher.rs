//! A minimal HTTP/1.1 keep-alive client for `POST /publish?channel=NAME`, so the
//! request latency measured is the server's, not a client library's.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::tls::{Stream, secure};
use tokio::time::timeout;

/// Longest a publish may take before the run counts it as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// One keep-alive connection to the publish endpoint.
pub struct Publisher {
    addr: SocketAddr,
    target: String,
    stream: Option<Stream>,
    buf: Vec<u8>,
    tls: Option<TlsConnector>,
}

/// What one publish returned.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    /// Request written to response read.
    pub latency: Duration,
    /// `queued` from the JSON response, when present.
    pub queued: Option<u64>,
}

impl Publisher {
    /// A publisher for `path` (e.g. `/publish`) and optional `channel`, over TLS with `tls`.
    pub fn new(
        addr: SocketAddr,
        path: &str,
        channel: Option<&str>,
        tls: Option<TlsConnector>,
    ) -> Self {
        let target = match channel {
            Some(c) => format!("{path}?channel={c}"),
            None => path.to_owned(),
        };
        Self {
            addr,
            target,
            stream: None,
            buf: Vec::with_capacity(1024),
            tls,
        }
    }

    /// Publishes to `channel` from now on (the same endpoint path).
    pub fn set_channel(&mut self, path: &str, channel: &str) {
        self.target.clear();
        self.target.push_str(path);
        self.target.push_str("?channel=");
        self.target.push_str(channel);
    }

    /// POSTs `body`; reconnects once if the kept-alive connection was closed.
    pub async fn post(&mut self, content_type: &str, body: &[u8]) -> anyhow::Result<Published> {
        match timeout(REQUEST_TIMEOUT, self.post_once(content_type, body)).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => {
                self.stream = None;
                timeout(REQUEST_TIMEOUT, self.post_once(content_type, body))
                    .await
                    .context("publish timed out")?
            }
            Err(_) => {
                self.stream = None;
                bail!("publish timed out after {REQUEST_TIMEOUT:?}")
            }
        }
    }

    async fn post_once(&mut self, content_type: &str, body: &[u8]) -> anyhow::Result<Published> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr)
                .await
                .context("connecting to the publish endpoint")?;
            s.set_nodelay(true)?;
            self.stream = Some(
                secure(self.tls.as_ref(), s)
                    .await
                    .context("TLS handshake")?,
            );
        }
        let Some(stream) = self.stream.as_mut() else {
            bail!("no connection")
        };
        let mut req = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            self.target,
            self.addr,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        let start = Instant::now();
        stream.write_all(&req).await?;
        self.buf.clear();
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > MAX_HEAD {
                bail!("response head too large");
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("connection closed before the response");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head =
            std::str::from_utf8(&self.buf[..head_end]).context("response head is not UTF-8")?;
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no status code")?;
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .context("response has no Content-Length")?;
        while self.buf.len() < head_end + len {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("connection closed inside the response body");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let latency = start.elapsed();
        let body = &self.buf[head_end..head_end + len];
        if status != 200 {
            bail!(
                "publish answered {status}: {}",
                String::from_utf8_lossy(body)
            );
        }
        let queued = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("queued").and_then(serde_json::Value::as_u64));
        Ok(Published { latency, queued })
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
