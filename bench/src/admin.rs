//! Readings from heartwire's admin listener: `GET /metrics` (Prometheus text).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Largest /metrics answer read.
const MAX_BODY: u64 = 8 << 20;

/// The text of `GET /metrics` on `admin` (loopback only).
pub async fn metrics(admin: SocketAddr) -> anyhow::Result<String> {
    anyhow::ensure!(
        admin.ip().is_loopback(),
        "--admin must be a loopback address, got {admin}"
    );
    let fetch = async {
        let mut s = TcpStream::connect(admin)
            .await
            .context("connecting to the admin listener")?;
        let req = format!("GET /metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.take(MAX_BODY).read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = timeout(Duration::from_secs(10), fetch)
        .await
        .context("GET /metrics timed out")??;
    let text = String::from_utf8(buf).context("/metrics is not UTF-8")?;
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("no HTTP response from the admin listener");
    };
    if !head.starts_with("HTTP/1.1 200") {
        bail!("GET /metrics: {}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_owned())
}

/// The sum of every series of metric `name` (all label sets), if there is one.
pub fn sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let value = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let Some(v) = value {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_every_label_set_of_one_metric() {
        let text = "# HELP x\nheartwire_history_bytes 1200\nheartwire_history_bytes_other 5\n\
                    heartwire_history_evicted_total{reason=\"size\"} 3\n\
                    heartwire_history_evicted_total{reason=\"ttl\"} 4\n";
        assert_eq!(sum(text, "heartwire_history_bytes"), Some(1200.0));
        assert_eq!(sum(text, "heartwire_history_evicted_total"), Some(7.0));
        assert_eq!(sum(text, "heartwire_nothing"), None);
    }
}
