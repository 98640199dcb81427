//! `[server.tls]`: wss:// and https:// on the public listener, certificate rotation under
//! live connections, clients that do not speak TLS, and `heartwire check` on bad pairs.
//! Certificates come from a CA made in the test; clients trust only that CA.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::daemon::{self, BIN, message};
use common::{Server, T, exchange};
use futures_util::StreamExt;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SerialNumber};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
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

    /// A client trusting only this CA.
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
}

/// A TLS connection to `addr` as `localhost`.
async fn connect(tls: &TlsConnector, addr: SocketAddr) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    handshake(tls, tcp).await
}

async fn handshake(tls: &TlsConnector, tcp: TcpStream) -> TlsStream<TcpStream> {
    let name = ServerName::try_from("localhost").unwrap();
    timeout(T, tls.connect(name, tcp))
        .await
        .expect("no TLS handshake in time")
        .expect("TLS handshake")
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

async fn wss(tls: &TlsConnector, addr: SocketAddr) -> Wss {
    let tls = connect(tls, addr).await;
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

/// A request that publishes `body` to channel `/ws`.
fn publish_request(body: &str) -> String {
    format!(
        "POST /publish?channel=/ws HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// POSTs `body` to `/publish?channel=/ws` over https; the status and the response.
async fn https_publish(tls: &TlsConnector, addr: SocketAddr, body: &str) -> (u16, String) {
    let mut tls = connect(tls, addr).await;
    let (_, session) = tls.get_ref();
    assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
    exchange(&mut tls, publish_request(body).as_bytes()).await
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

const TLS_REJECTED: &str = r#"heartwire_connections_rejected_total{reason="tls_handshake"}"#;

/// Waits (bounded) until `series` reads `want`.
async fn wait_metric(s: &Server, series: &str, want: f64) {
    let deadline = Instant::now() + T;
    loop {
        let now = s.metric(series).await;
        if now == want {
            return;
        }
        assert!(Instant::now() < deadline, "{series} is {now}, not {want}");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn wss_and_https_publish_share_the_port() {
    let pki = Pki::new();
    let tls = pki.connector();
    let leaf = pki.leaf("server", 1, |_| {});
    let s = Server::start(&config(&leaf, "")).await;
    let mut ws = wss(&tls, s.addr).await;
    assert_eq!(presented(&ws), leaf.der);
    let (status, text) = https_publish(&tls, s.addr, "over tls").await;
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
    let tls = pki.connector();
    let old = pki.leaf("server", 1, |_| {});
    let toml = config(&old, "");
    let s = Server::start(&toml).await;
    let mut before = wss(&tls, s.addr).await;
    assert_eq!(presented(&before), old.der);

    // As certbot renews: new files in the same place, then a reload.
    let new = pki.leaf("server", 2, |p| {
        p.not_after = rcgen::date_time_ymd(4000, 1, 1);
    });
    s.reload(&toml);

    let mut after = wss(&tls, s.addr).await;
    assert_eq!(presented(&after), new.der);
    let der = presented(&after);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(cert.raw_serial(), &[2]);
    let (status, text) = https_publish(&tls, s.addr, "after the reload").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(recv_text(&mut before).await, "after the reload");
    assert_eq!(recv_text(&mut after).await, "after the reload");
    assert_eq!(s.metric(&expiry_series(&new)).await, 64_060_588_800.0);
    s.stop().await;
}

#[tokio::test]
async fn plain_http_and_garbage_are_closed_and_others_served() {
    let pki = Pki::new();
    let tls = pki.connector();
    let leaf = pki.leaf("server", 1, |_| {});
    let s = Server::start(&config(&leaf, "[server]\nhandshake_timeout = \"60s\"")).await;
    // A plain HTTP request is told what is wrong, then closed.
    let plain = answer_to(s.addr, b"GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    let plain = String::from_utf8_lossy(&plain);
    assert!(
        plain.starts_with("HTTP/1.1 400 Bad Request\r\n")
            && plain
                .ends_with("This port speaks TLS: connect with https:// or wss://, not http://\n"),
        "{plain}"
    );
    // A TLS record header announcing a handshake, then noise.
    let mut garbage = vec![0x16, 0x03, 0x01, 0x00, 0x40];
    garbage.extend(std::iter::repeat_n(0xAB, 64));
    answer_to(s.addr, &garbage).await;
    answer_to(s.addr, &[0xFF; 300]).await;

    let mut ws = wss(&tls, s.addr).await;
    let (status, _) = https_publish(&tls, s.addr, "still here").await;
    assert_eq!(status, 200);
    assert_eq!(recv_text(&mut ws).await, "still here");
    wait_metric(&s, TLS_REJECTED, 3.0).await;
    s.stop().await;
}

#[tokio::test]
async fn the_proxy_header_comes_before_tls() {
    let pki = Pki::new();
    let tls = pki.connector();
    let leaf = pki.leaf("server", 1, |_| {});
    let s = Server::start(&config(&leaf, "[server]\nproxy_protocol = true")).await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 5555 443\r\n")
        .await
        .unwrap();
    let stream = handshake(&tls, tcp).await;
    let (mut ws, _) = timeout(
        T,
        tokio_tungstenite::client_async("wss://localhost/ws", stream),
    )
    .await
    .expect("no WebSocket handshake in time")
    .expect("WebSocket handshake");
    let (status, text) = {
        let mut tcp = TcpStream::connect(s.addr).await.unwrap();
        tcp.write_all(b"PROXY TCP4 192.0.2.8 127.0.0.1 5556 443\r\n")
            .await
            .unwrap();
        let mut stream = handshake(&tls, tcp).await;
        exchange(&mut stream, publish_request("through the proxy").as_bytes()).await
    };
    assert_eq!(status, 200, "{text}");
    match timeout(T, ws.next()).await.expect("no message in time") {
        Some(Ok(Message::Text(text))) => assert_eq!(text.as_str(), "through the proxy"),
        other => panic!("expected text, got {other:?}"),
    }
    s.stop().await;
}

/// `heartwire check --config FILE`: exit code and stderr.
fn check(file: &Path) -> (i32, String) {
    let out = std::process::Command::new(BIN)
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

#[tokio::test]
async fn a_stalled_tls_handshake_counts_against_the_handshake_timeout_and_http_places() {
    let pki = Pki::new();
    let tls = pki.connector();
    let leaf = pki.leaf("server", 1, |_| {});
    let s = Server::start(&config(
        &leaf,
        "[server]\nhandshake_timeout = \"500ms\"\nmax_http_connections = 2",
    ))
    .await;
    // Two clients take both HTTP places: one silent, one stopping in its ClientHello (a
    // record header announcing 512 bytes, one byte of them).
    let silent = TcpStream::connect(s.addr).await.unwrap();
    let mut halfway = TcpStream::connect(s.addr).await.unwrap();
    halfway
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    wait_metric(&s, "heartwire_http_connections", 2.0).await;

    // A third waits in the listen queue until the first stalled one is dropped.
    let started = Instant::now();
    let mut ws = wss(&tls, s.addr).await;
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(350),
        "served after {waited:?}: the stalled handshakes held no place"
    );
    assert!(
        waited < std::time::Duration::from_secs(3),
        "served after {waited:?}: the stalled handshakes were not timed out"
    );
    for mut stalled in [silent, halfway] {
        let mut rest = Vec::new();
        let read = timeout(T, stalled.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "a stalled handshake was never closed");
    }
    wait_metric(&s, TLS_REJECTED, 2.0).await;
    let (status, _) = https_publish(&tls, s.addr, "after the stall").await;
    assert_eq!(status, 200);
    assert_eq!(recv_text(&mut ws).await, "after the stall");
    s.stop().await;
}

/// Reads text messages from `ws` until `end`; returns them and the connection.
async fn read_until(mut ws: Wss, end: &str) -> (Vec<String>, Wss) {
    let mut got = Vec::new();
    loop {
        let text = recv_text(&mut ws).await;
        if text == end {
            return (got, ws);
        }
        got.push(text);
    }
}

/// The serial of the certificate presented on `ws`.
fn serial(ws: &Wss) -> Vec<u8> {
    let der = presented(ws);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    cert.raw_serial().to_vec()
}

/// The real binary: SIGHUP after certbot-style renewal (new files in the same place)
/// switches new handshakes to the new certificate while publishes flow; connections made
/// before it keep receiving every message in order. A broken file on a later SIGHUP is
/// refused (logged with the path and why) and the running pair stays; the same broken
/// file at start exits 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rotates_the_pair_under_live_traffic_and_a_broken_file_keeps_the_old_one() {
    let pki = Pki::new();
    let tls = pki.connector();
    let old = pki.leaf("server", 1, |_| {});
    let toml = config(
        &old,
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"1s\"\ndrain_period = \"0s\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[log]\nformat = \"json\"",
    );
    let mut d = daemon::start(&toml, &[]);
    let mut before = Vec::new();
    for _ in 0..2 {
        let ws = wss(&tls, d.public).await;
        assert_eq!(serial(&ws), [1]);
        before.push(tokio::spawn(read_until(ws, "end")));
    }

    // Publishes over https, one connection each, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let (tls, stop, sent, addr) = (tls.clone(), stop.clone(), sent.clone(), d.public);
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = sent.load(Ordering::Relaxed);
                let (status, text) = https_publish(&tls, addr, &n.to_string()).await;
                assert_eq!(status, 200, "{text}");
                sent.fetch_add(1, Ordering::Relaxed);
            }
            let (status, text) = https_publish(&tls, addr, "end").await;
            assert_eq!(status, 200, "{text}");
        })
    };
    let published = |at_least: usize| {
        let sent = sent.clone();
        async move {
            timeout(T, async {
                while sent.load(Ordering::Relaxed) < at_least {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .expect("the publisher stalled");
        }
    };
    published(5).await;

    let new = pki.leaf("server", 2, |_| {});
    d.signal("HUP");
    let line = tokio::task::block_in_place(|| d.wait_message("TLS certificate reloaded"));
    assert_eq!(
        line["fields"]["cert_file"].as_str(),
        Some(&*new.cert_file.to_string_lossy()),
        "{line}"
    );
    let after = wss(&tls, d.public).await;
    assert_eq!(serial(&after), [2]);
    assert_eq!(presented(&after), new.der);
    let reloaded_at = sent.load(Ordering::Relaxed);
    published(reloaded_at + 5).await;
    stop.store(true, Ordering::Relaxed);
    timeout(T, publisher)
        .await
        .expect("publisher stuck")
        .unwrap();

    let total = sent.load(Ordering::Relaxed);
    let want: Vec<String> = (0..total).map(|n| n.to_string()).collect();
    let mut kept = Vec::new();
    for reader in before {
        let (got, ws) = timeout(T, reader).await.expect("reader stuck").unwrap();
        assert_eq!(
            got, want,
            "a connection from before the reload lost or reordered"
        );
        kept.push(ws);
    }

    // A broken certificate file: the reload is refused and the pair in use stays.
    std::fs::write(&new.cert_file, "-----BEGIN CERTIFICATE-----\ntruncated").unwrap();
    d.signal("HUP");
    let refused = tokio::task::block_in_place(|| d.wait_message("reload refused"));
    let refused = message(&refused);
    assert!(
        refused.contains("server.tls.cert_file")
            && refused.contains(&*new.cert_file.to_string_lossy()),
        "{refused}"
    );
    let mut later = wss(&tls, d.public).await;
    assert_eq!(serial(&later), [2]);
    let (status, _) = https_publish(&tls, d.public, "still serving").await;
    assert_eq!(status, 200);
    for ws in kept.iter_mut().chain([&mut later]) {
        assert_eq!(recv_text(ws).await, "still serving");
    }
    drop(d);

    // The same file at start: exit 2, naming the key, the file and the reason.
    let file = pki.dir.path().join("heartwire.toml");
    std::fs::write(&file, &toml).unwrap();
    let run = std::process::Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output();
    let out = timeout(T, tokio::task::spawn_blocking(move || run))
        .await
        .expect("heartwire did not exit")
        .unwrap()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("`server.tls.cert_file`")
            && err.contains(&*new.cert_file.to_string_lossy())
            && err.contains("is not valid PEM"),
        "{err}"
    );
}
