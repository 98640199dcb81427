//! A minimal HTTP/1.1 client (one request per connection, `Connection: close`) for the
//! publish endpoint and the admin metrics: no connection outlives its request, so the
//! daemon's descriptor count is not skewed by the soak's own idle sockets.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Longest one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response read (the metrics page is a few KiB).
const MAX_RESPONSE: u64 = 4 * 1024 * 1024;

/// Sends one request and returns the status and body.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    timeout(REQUEST_TIMEOUT, request_once(addr, method, target, body))
        .await
        .with_context(|| format!("{method} {target}: no answer within {REQUEST_TIMEOUT:?}"))?
}

async fn request_once(
    addr: SocketAddr,
    method: &str,
    target: &str,
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    stream
        .write_all(&req)
        .await
        .context("writing the request")?;
    let mut raw = Vec::new();
    (&mut stream)
        .take(MAX_RESPONSE)
        .read_to_end(&mut raw)
        .await
        .context("reading the response")?;
    let text = String::from_utf8_lossy(&raw);
    let Some((head, rest)) = text.split_once("\r\n\r\n") else {
        bail!(
            "{method} {target}: truncated response ({} bytes)",
            raw.len()
        );
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{method} {target}: bad status line in {head:?}"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Ok((status, body))
}

/// Joins a chunked body (the metrics page may come chunked).
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// `queued` from a publish answer such as `{"queued": 3}`.
pub fn queued(body: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()?
        .get("queued")?
        .as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }

    #[test]
    fn queued_is_read_from_the_publish_answer() {
        assert_eq!(queued(r#"{"queued": 3}"#), Some(3));
        assert_eq!(queued(r#"{"queued":0}"#), Some(0));
        assert_eq!(queued(r#"{"error":"x"}"#), None);
        assert_eq!(queued("garbage"), None);
    }
}
