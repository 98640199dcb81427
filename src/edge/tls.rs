//! TLS on the public listener (`[server.tls]`): rustls with the ring provider, TLS 1.2
//! and 1.3, ALPN `http/1.1`. The certificate is looked up per handshake in the config in
//! force, so a reload that brings a new pair applies to the next handshake while live
//! connections keep the session they have.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::{self, Config, TlsConfig};

/// The listener's TLS: built once at start, when the config has `[server.tls]`.
pub struct Tls {
    acceptor: TlsAcceptor,
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
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
        })
    }

    /// Runs the server side of the handshake on `io` (the caller bounds it in time).
    pub async fn accept<S>(&self, io: S) -> std::io::Result<TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.acceptor.accept(io).await
    }
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
