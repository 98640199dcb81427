//! `[server.tls]`: wss:// and https:// on the public listener, certificate rotation under
//! live connections, clients that do not speak TLS, and `heartwire check` on bad pairs.
//! Certificates come from a CA made in the test; clients trust only that CA.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{Server, T};
use futures_util::StreamExt;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SerialNumber};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;

/// A CA, and the files it writes leaf pairs to.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf written to disk.
struct Leaf {
    cert_file: PathBuf,
    key_file: PathBuf,
    der: CertificateDer<'static>,
}

impl Pki {
    fn new() -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        Pki {
            dir: tempfile::tempdir().unwrap(),
            ca: ca.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `localhost` with serial `serial`, its files named after `name`.
    fn leaf(&self, name: &str, serial: u64, edit: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        edit(&mut params);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let cert_file = self.dir.path().join(format!("{name}.crt"));
        let key_file = self.dir.path().join(format!("{name}.key"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        Leaf {
            cert_file,
            key_file,
            der: cert.der().clone(),
        }
    }

    fn connector(&self) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsConnector::from(Arc::new(config))
    }

    /// A TLS connection to `addr` as `localhost`.
    async fn connect(&self, addr: SocketAddr) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(addr).await.unwrap();
        self.handshake(tcp).await
    }

    async fn handshake(&self, tcp: TcpStream) -> TlsStream<TcpStream> {
        let name = ServerName::try_from("localhost").unwrap();
        timeout(T, self.connector().connect(name, tcp))
            .await
            .expect("no TLS handshake in time")
            .expect("TLS handshake")
    }
}

fn config(leaf: &Leaf, extra: &str) -> String {
    format!(
        "{extra}\n[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n\n[[route]]\npath = \"/ws\"\n",
        leaf.cert_file, leaf.key_file
    )
}

fn expiry_series(leaf: &Leaf) -> String {
    format!(
        "heartwire_tls_certificate_expiry_timestamp_seconds{{cert_file=\"{}\"}}",
        leaf.cert_file.display()
    )
}

type Wss = tokio_tungstenite::WebSocketStream<TlsStream<TcpStream>>;

async fn wss(pki: &Pki, addr: SocketAddr) -> Wss {
    let tls = pki.connect(addr).await;
    let (ws, response) = timeout(
        T,
        tokio_tungstenite::client_async("wss://localhost/ws", tls),
    )
    .await
    .expect("no WebSocket handshake in time")
    .expect("WebSocket handshake");
    assert_eq!(response.status(), 101);
    ws
}

/// The certificate the server presented on `ws`.
fn presented(ws: &Wss) -> CertificateDer<'static> {
    let (_, session) = ws.get_ref().get_ref();
    session.peer_certificates().expect("a certificate")[0].clone()
}

async fn recv_text(ws: &mut Wss) -> String {
    match timeout(T, ws.next()).await.expect("no message in time") {
        Some(Ok(Message::Text(text))) => text.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// POSTs `body` to `/publish?channel=/ws` over https; the status and body.
async fn https_publish(pki: &Pki, addr: SocketAddr, body: &str) -> (u16, String) {
    let mut tls = pki.connect(addr).await;
    let (_, session) = tls.get_ref();
    assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
    let request = format!(
        "POST /publish?channel=/ws HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    timeout(T, tls.read_to_end(&mut out))
        .await
        .expect("no HTTPS response in time")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad response: {text:?}"));
    (status, text)
}

/// Bytes the server sends before it closes a connection that opened with `bytes`.
async fn answer_to(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    // Closed promptly: well within the handshake timeout the test configures.
    let read = timeout(T, async {
        let mut chunk = [0u8; 1024];
        loop {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "connection not closed in time");
    out
}

#[tokio::test]
async fn wss_and_https_publish_share_the_port() {
    let pki = Pki::new();
    let leaf = pki.leaf("server", 1, |_| {});
    let s = Server::start(&config(&leaf, "")).await;
    let mut ws = wss(&pki, s.addr).await;
    assert_eq!(presented(&ws), leaf.der);
    let (status, text) = https_publish(&pki, s.addr, "over tls").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(recv_text(&mut ws).await, "over tls");
    // rcgen's default expiry: 4096-01-01.
    let expiry = s.metric(&expiry_series(&leaf)).await;
    assert_eq!(expiry, 67_090_118_400.0);
    s.stop().await;
}

#[tokio::test]
async fn a_new_pair_serves_new_handshakes_and_live_connections_stay() {
    let pki = Pki::new();
    let old = pki.leaf("server", 1, |_| {});
    let toml = config(&old, "");
    let s = Server::start(&toml).await;
    let mut before = wss(&pki, s.addr).await;
    assert_eq!(presented(&before), old.der);

    // As certbot renews: new files in the same place, then a reload.
    let new = pki.leaf("server", 2, |p| {
        p.not_after = rcgen::date_time_ymd(4000, 1, 1);
    });
    s.reload(&toml);

    let mut after = wss(&pki, s.addr).await;
    assert_eq!(presented(&after), new.der);
    let der = presented(&after);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(cert.raw_serial(), &[2]);
    let (status, text) = https_publish(&pki, s.addr, "after the reload").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(recv_text(&mut before).await, "after the reload");
    assert_eq!(recv_text(&mut after).await, "after the reload");
    assert_eq!(s.metric(&expiry_series(&new)).await, 64_060_588_800.0);
    s.stop().await;
}

#[tokio::test]
async fn plain_http_and_garbage_are_closed_and_others_served() {
    let pki = Pki::new();
    let leaf = pki.leaf("server", 1, |_| {});
    let s = Server::start(&config(&leaf, "[server]\nhandshake_timeout = \"60s\"")).await;
    let plain = answer_to(s.addr, b"GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(
        !plain.starts_with(b"HTTP/"),
        "plain HTTP answered: {:?}",
        String::from_utf8_lossy(&plain)
    );
    // A TLS record header announcing a handshake, then noise.
    let mut garbage = vec![0x16, 0x03, 0x01, 0x00, 0x40];
    garbage.extend(std::iter::repeat_n(0xAB, 64));
    answer_to(s.addr, &garbage).await;
    answer_to(s.addr, &[0xFF; 300]).await;

    let mut ws = wss(&pki, s.addr).await;
    let (status, _) = https_publish(&pki, s.addr, "still here").await;
    assert_eq!(status, 200);
    assert_eq!(recv_text(&mut ws).await, "still here");
    assert_eq!(
        s.metric(r#"heartwire_connections_rejected_total{reason="tls_handshake"}"#)
            .await,
        3.0
    );
    s.stop().await;
}

#[tokio::test]
async fn the_proxy_header_comes_before_tls() {
    let pki = Pki::new();
    let leaf = pki.leaf("server", 1, |_| {});
    let s = Server::start(&config(&leaf, "[server]\nproxy_protocol = true")).await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 5555 443\r\n")
        .await
        .unwrap();
    let tls = pki.handshake(tcp).await;
    let (mut ws, _) = timeout(
        T,
        tokio_tungstenite::client_async("wss://localhost/ws", tls),
    )
    .await
    .expect("no WebSocket handshake in time")
    .expect("WebSocket handshake");
    let (status, _) = {
        let mut tcp = TcpStream::connect(s.addr).await.unwrap();
        tcp.write_all(b"PROXY TCP4 192.0.2.8 127.0.0.1 5556 443\r\n")
            .await
            .unwrap();
        let mut tls = pki.handshake(tcp).await;
        let body = "through the proxy";
        let request = format!(
            "POST /publish?channel=/ws HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        timeout(T, tls.read_to_end(&mut out))
            .await
            .expect("no response in time")
            .unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        (text.split(' ').nth(1).map(str::to_owned), text)
    };
    assert_eq!(status.as_deref(), Some("200"));
    match timeout(T, ws.next()).await.expect("no message in time") {
        Some(Ok(Message::Text(text))) => assert_eq!(text.as_str(), "through the proxy"),
        other => panic!("expected text, got {other:?}"),
    }
    s.stop().await;
}

/// `heartwire check --config FILE`: exit code and stderr.
fn check(file: &Path) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_heartwire"))
        .args(["check", "--config"])
        .arg(file)
        .env_remove("HEARTWIRE_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_reports_expiry_and_refuses_expired_and_mismatched_pairs() {
    let pki = Pki::new();
    let good = pki.leaf("good", 1, |_| {});
    let expired = pki.leaf("expired", 2, |p| {
        p.not_before = rcgen::date_time_ymd(2000, 1, 1);
        p.not_after = rcgen::date_time_ymd(2001, 1, 1);
    });
    let other = pki.leaf("other", 3, |_| {});
    let file = pki.dir.path().join("heartwire.toml");

    std::fs::write(&file, config(&good, "")).unwrap();
    let (code, err) = check(&file);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("expires on 4096-01-01 00:00:00 UTC (in "),
        "{err}"
    );

    std::fs::write(&file, config(&expired, "")).unwrap();
    let (code, err) = check(&file);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`server.tls.cert_file`")
            && err.contains("the certificate expired on 2001-01-01 00:00:00 UTC"),
        "{err}"
    );

    let mismatched = Leaf {
        cert_file: good.cert_file.clone(),
        key_file: other.key_file.clone(),
        der: good.der.clone(),
    };
    std::fs::write(&file, config(&mismatched, "")).unwrap();
    let (code, err) = check(&file);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`server.tls.key_file`") && err.contains("does not match the certificate"),
        "{err}"
    );

    // Not PEM at all, and a missing key: each names its key.
    std::fs::write(&other.cert_file, "not a certificate").unwrap();
    std::fs::write(
        &file,
        format!(
            "[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            other.cert_file,
            pki.dir.path().join("missing.key")
        ),
    )
    .unwrap();
    let (code, err) = check(&file);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`server.tls.cert_file`") && err.contains("holds no PEM certificate"),
        "{err}"
    );
}

/// A reload whose pair is bad is refused whole: the config does not load.
#[test]
fn a_bad_pair_makes_the_config_invalid() {
    let pki = Pki::new();
    let good = pki.leaf("good", 1, |_| {});
    let other = pki.leaf("other", 2, |_| {});
    let text = format!(
        "[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        good.cert_file, other.key_file
    );
    let err = heartwire::config::from_toml(&text, Path::new("h.toml")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("h.toml: `server.tls.key_file`: "),
        "{err}"
    );
}
