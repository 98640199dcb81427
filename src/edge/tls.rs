//! TLS on the public listener (`[server.tls]`): rustls with the ring provider, TLS 1.2
//! and 1.3, ALPN `http/1.1`. The certificate is looked up per handshake in the config in
//! force, so a reload that brings a new pair applies to the next handshake while live
//! connections keep the session they have. A plain HTTP request is answered with a 400
//! saying to use `https://` / `wss://`, not left to guess at a TLS alert. The session itself
//! runs in [`TlsStream`], which holds no buffer while the connection is idle.

use std::sync::Arc;

use bytes::Bytes;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::proxy_protocol::Prefixed;
use super::tls_stream::TlsStream;
use crate::config::{self, Config, TlsConfig};

/// The first byte of a TLS record carrying a handshake message (a ClientHello).
const HANDSHAKE_RECORD: u8 = 0x16;

/// Most bytes of a plain HTTP request read (and dropped) after answering it, so that the
/// close does not reset the connection before the client has read the answer.
const PLAIN_DRAIN: u64 = 16 * 1024;

/// The answer to a plain HTTP request on a TLS port (nginx answers the same case with 400).
const PLAIN_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 67\r\n\
Connection: close\r\n\r\n\
This port speaks TLS: connect with https:// or wss://, not http://\n";

/// A TLS connection, its first byte read back in front of it.
pub type Secured<S> = TlsStream<Prefixed<S>>;

/// Why a connection did not become a TLS session.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// A plain HTTP request: answered with a 400 that says to use TLS.
    #[error("plain HTTP on the TLS port (answered 400: use https:// or wss://)")]
    PlainHttp,
    /// The first byte cannot start a TLS handshake (and is not HTTP).
    #[error("not a TLS handshake (first byte {0:#04x})")]
    NotTls(u8),
    /// The handshake failed (rustls' reason) or the connection ended first.
    #[error("TLS handshake failed: {0}")]
    Handshake(#[from] std::io::Error),
    /// Not done by the deadline (`server.handshake_timeout` from accept).
    #[error("no TLS handshake within server.handshake_timeout")]
    Timeout,
}

/// The listener's TLS: built once at start, when the config has `[server.tls]`.
pub struct Tls {
    server: Arc<ServerConfig>,
}

impl Tls {
    /// TLS serving the pair in `config`'s `[server.tls]` as it changes. `first` is the pair
    /// at start, kept for as long as a reloaded config has no `[server.tls]` (turning TLS
    /// off needs a restart).
    pub fn new(
        config: watch::Receiver<Arc<Config>>,
        first: &TlsConfig,
    ) -> Result<Self, rustls::Error> {
        let resolver = Arc::new(Current {
            config,
            first: first.key.clone(),
        });
        let mut server = ServerConfig::builder_with_provider(Arc::new(config::tls_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        // No session resumption: every handshake presents (and the client checks) the pair
        // in force, so after a rotation no client goes on resuming sessions made under the
        // old key (the reason to rotate may be that it leaked). It also keeps no state per
        // client past its connection and sends no tickets; a reconnect costs one full
        // handshake, rare next to the pushes a connection lives for.
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        server.send_tls13_tickets = 0;
        Ok(Self {
            server: Arc::new(server),
        })
    }

    /// Runs the server side of the handshake on `io`, done by `deadline`. A first byte that
    /// starts a plain HTTP request is answered with a 400 (then the request is drained, up
    /// to [`PLAIN_DRAIN`] bytes or the deadline, so the client can read the answer).
    pub async fn accept<S>(&self, mut io: S, deadline: Instant) -> Result<Secured<S>, Refused>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let bounded = async {
            let first = io.read_u8().await?;
            if first != HANDSHAKE_RECORD {
                return Err(refuse(io, first).await);
            }
            // Static: no allocation kept for the connection's life.
            let io = Prefixed::new(Bytes::from_static(&[HANDSHAKE_RECORD]), io);
            Ok(TlsStream::accept(self.server.clone(), io).await?)
        };
        tokio::time::timeout_at(deadline, bounded)
            .await
            .unwrap_or(Err(Refused::Timeout))
    }
}

/// Answers a connection whose first byte is `first` and not a TLS handshake.
async fn refuse<S>(mut io: S, first: u8) -> Refused
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Every HTTP method starts with an ASCII capital (GET, POST, PUT, HEAD, OPTIONS...).
    if !first.is_ascii_uppercase() {
        return Refused::NotTls(first);
    }
    // Failures here mean the client has gone: nothing more to tell it.
    if io.write_all(PLAIN_ANSWER).await.is_ok() && io.shutdown().await.is_ok() {
        let _ = tokio::io::copy(&mut (&mut io).take(PLAIN_DRAIN), &mut tokio::io::sink()).await;
    }
    Refused::PlainHttp
}

/// The pair to present: the config's now.
#[derive(Debug)]
struct Current {
    config: watch::Receiver<Arc<Config>>,
    first: Arc<CertifiedKey>,
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let config = self.config.borrow();
        Some(match &config.server.tls {
            Some(tls) => tls.key.clone(),
            None => self.first.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_answer_says_its_length() {
        let (head, body) = std::str::from_utf8(PLAIN_ANSWER)
            .unwrap()
            .split_once("\r\n\r\n")
            .unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }
}
