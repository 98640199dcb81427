//! Behind a reverse proxy or load balancer: `server.trusted_proxies` (X-Forwarded-For,
//! Forwarded) and `server.proxy_protocol` (PROXY v1 and v2) decide the client's address,
//! which the per-IP limit, the connection's logs and `/connections` use. A second peer
//! address comes from binding the client socket to 127.0.0.2.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use common::{Raw, Server, T, http};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

const PROXY_A: &str = "127.0.0.1";
const PROXY_B: &str = "127.0.0.2";

type Headers<'a> = &'a [(&'a str, &'a str)];

fn config(server: &str) -> String {
    format!(
        "[server]\nmax_connections_per_ip = 1\n{server}\n[[route]]\npath = \"/ws\"\non_message = \"ignore\"\n"
    )
}

/// A connection to the daemon from the loopback address `from`.
async fn connect_from(s: &Server, from: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    timeout(T, socket.connect(s.addr))
        .await
        .expect("connect timed out")
        .unwrap()
}

/// Writes `prefix` (a PROXY header, or nothing) then a WebSocket upgrade for /ws with
/// `headers`; returns the status, the body of a refusal, and the connection (a WebSocket
/// after a 101).
async fn upgrade(
    s: &Server,
    from: &str,
    prefix: &[u8],
    headers: &[(&str, &str)],
) -> (u16, String, Raw) {
    let mut stream = connect_from(s, from).await;
    let mut req = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {}\r\n",
        s.addr,
        common::HANDSHAKE_KEY
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream
        .write_all(&[prefix, req.as_bytes()].concat())
        .await
        .unwrap();
    let (status, body, rest) = read_response(&mut stream).await;
    (status, body, Raw { stream, buf: rest })
}

/// Reads one response: status, body (by Content-Length), and any bytes after it.
async fn read_response(stream: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut buf = Vec::new();
    timeout(T, async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if buf.len() >= end + 4 + len {
                    let status = head[9..12].parse().unwrap();
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                    return (status, body, buf[end + 4 + len..].to_vec());
                }
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "closed before a response: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("no response in time")
}

/// The `peer` of every live connection, from the admin listener.
async fn peers(s: &Server) -> BTreeSet<String> {
    let (status, body) = http(s.admin, "GET", "/connections", &[], b"").await;
    assert_eq!(status, 200, "{body}");
    let list: Vec<Value> = serde_json::from_str(&body).unwrap();
    list.iter()
        .map(|c| c["peer"].as_str().unwrap().to_owned())
        .collect()
}

fn ip_of(peer: &str) -> String {
    peer.parse::<SocketAddr>().unwrap().ip().to_string()
}

#[tokio::test]
async fn a_trusted_proxy_names_its_clients_for_the_per_ip_limit() {
    let s = Server::start(&config(&format!("trusted_proxies = [\"{PROXY_A}\"]"))).await;
    let xff = "X-Forwarded-For";
    let mut held = Vec::new();
    let accepted: &[(&str, Headers)] = &[
        (PROXY_A, &[(xff, "127.0.0.21")]),
        // A client's own entry on the left is not believed: the proxy's right-most is.
        (PROXY_A, &[(xff, "127.0.0.21, 127.0.0.22")]),
        (
            PROXY_A,
            &[("Forwarded", "for=\"127.0.0.23:4711\";proto=http")],
        ),
        // 127.0.0.2 is not trusted: its header is ignored and it counts as itself.
        (PROXY_B, &[(xff, "127.0.0.24")]),
    ];
    for (from, headers) in accepted {
        let (status, body, raw) = upgrade(&s, from, b"", headers).await;
        assert_eq!(status, 101, "{from} {headers:?}: {body}");
        held.push(raw);
    }
    let refused: &[(&str, Headers, &str)] = &[
        (PROXY_A, &[(xff, "127.0.0.21")], "127.0.0.21"),
        (PROXY_B, &[(xff, "127.0.0.25")], PROXY_B),
    ];
    for (from, headers, named) in refused {
        let (status, body, _) = upgrade(&s, from, b"", headers).await;
        assert_eq!(status, 503, "{from} {headers:?}: {body}");
        assert!(
            body.contains(&format!("too many connections from {named}:")),
            "{body}"
        );
    }
    let peers = peers(&s).await;
    let b = peers.iter().find(|p| ip_of(p) == PROXY_B).cloned();
    assert_eq!(
        peers,
        BTreeSet::from([
            "127.0.0.21:0".to_owned(),
            "127.0.0.22:0".to_owned(),
            "127.0.0.23:4711".to_owned(),
            b.expect("127.0.0.2 listed as itself"),
        ])
    );
    drop(held);
    s.stop().await;
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    // 127.0.0.1 is outside the trusted network; and with no trusted_proxies nobody is trusted.
    for trusted in ["trusted_proxies = [\"10.0.0.0/8\"]", ""] {
        let s = Server::start(&config(trusted)).await;
        let (status, body, held) =
            upgrade(&s, PROXY_A, b"", &[("X-Forwarded-For", "127.0.0.21")]).await;
        assert_eq!(status, 101, "{trusted}: {body}");
        let (status, body, _) = upgrade(&s, PROXY_A, b"", &[("Forwarded", "for=127.0.0.22")]).await;
        assert_eq!(status, 503, "{trusted}: {body}");
        assert!(
            body.contains("too many connections from 127.0.0.1:"),
            "{body}"
        );
        let peers = peers(&s).await;
        assert_eq!(peers.len(), 1, "{peers:?}");
        assert!(peers.iter().all(|p| ip_of(p) == PROXY_A), "{peers:?}");
        drop(held);
        s.stop().await;
    }
}

/// A PROXY v2 header (PROXY command, TCP over IPv4) from `src` to `dst`.
fn v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(src), SocketAddr::V4(dst)) = (src, dst) else {
        panic!("IPv4 only")
    };
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&src.ip().octets());
    h.extend_from_slice(&dst.ip().octets());
    h.extend_from_slice(&src.port().to_be_bytes());
    h.extend_from_slice(&dst.port().to_be_bytes());
    h
}

fn v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    format!(
        "PROXY TCP4 {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
    .into_bytes()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn proxy_protocol_v1_and_v2_name_the_client() {
    let s = Server::start(&config(&format!(
        "proxy_protocol = true\ntrusted_proxies = [\"{PROXY_A}\"]"
    )))
    .await;
    let v1_client = addr("127.0.0.31:40001");
    let v2_client = addr("127.0.0.32:40002");
    let mut clients = Vec::new();
    for header in [v1(v1_client, s.addr), v2(v2_client, s.addr)] {
        let (status, body, raw) = upgrade(&s, PROXY_A, &header, &[]).await;
        assert_eq!(status, 101, "{body}");
        clients.push(raw);
    }
    // The PROXY header's source is the proxy (trusted): its X-Forwarded-For is believed.
    let (status, body, raw) = upgrade(
        &s,
        PROXY_A,
        &v1(addr("127.0.0.1:40003"), s.addr),
        &[("X-Forwarded-For", "127.0.0.33")],
    )
    .await;
    assert_eq!(status, 101, "{body}");
    clients.push(raw);
    // The per-IP limit counts the PROXY header's client.
    let (status, body, _) = upgrade(&s, PROXY_A, &v2(addr("127.0.0.31:40009"), s.addr), &[]).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("too many connections from 127.0.0.31:"),
        "{body}"
    );
    assert_eq!(
        peers(&s).await,
        BTreeSet::from([
            "127.0.0.31:40001".to_owned(),
            "127.0.0.32:40002".to_owned(),
            "127.0.0.33:0".to_owned(),
        ])
    );

    // Plain HTTP behind a PROXY header works too, and the proxied WebSockets carry data.
    let mut publish = connect_from(&s, PROXY_A).await;
    let req = format!(
        "GET /publish?msg=through HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        s.addr
    );
    publish
        .write_all(&[&v1(addr("127.0.0.34:1"), s.addr)[..], req.as_bytes()].concat())
        .await
        .unwrap();
    let (status, body, _) = read_response(&mut publish).await;
    assert_eq!((status, body.as_str()), (200, "{\"queued\":3}\n"));
    for c in &mut clients {
        let (b0, payload) = c.frame().await.expect("a frame");
        assert_eq!((b0, payload.as_slice()), (0x81, &b"through"[..]));
    }
    drop(clients);
    s.stop().await;
}

/// Reads until the daemon closes the connection; returns what it sent first (nothing,
/// for a connection closed without an answer).
async fn until_closed(mut stream: TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = timeout(T, stream.read_to_end(&mut got))
        .await
        .expect("the connection stayed open");
    got
}

#[tokio::test]
async fn a_bad_or_untrusted_proxy_header_closes_the_connection_and_others_are_served() {
    let s = Server::start(&config(&format!(
        "proxy_protocol = true\ntrusted_proxies = [\"{PROXY_A}\"]\nhandshake_timeout = \"300ms\""
    )))
    .await;
    let plain = format!("GET /publish?msg=x HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr);
    let bad: Vec<(&str, Vec<u8>)> = vec![
        // Garbage, and a plain request with no header at all.
        (PROXY_A, b"HELLO PROXY\r\n\r\n".to_vec()),
        (PROXY_A, plain.clone().into_bytes()),
        // A header cut short, then silence: closed after handshake_timeout.
        (PROXY_A, b"PROXY TCP4 127.0.0.1".to_vec()),
        // A valid header from a peer that is not a trusted proxy.
        (
            PROXY_B,
            [&v1(addr("127.0.0.35:1"), s.addr)[..], plain.as_bytes()].concat(),
        ),
    ];
    for (from, bytes) in bad {
        let mut stream = connect_from(&s, from).await;
        // The daemon may close before the bytes arrive; a failed write says the same.
        let _ = stream.write_all(&bytes).await;
        let answer = until_closed(stream).await;
        assert!(
            answer.is_empty(),
            "{from} {:?} got an answer: {:?}",
            String::from_utf8_lossy(&bytes),
            String::from_utf8_lossy(&answer)
        );
    }
    let rejected =
        |reason: &str| format!("heartwire_connections_rejected_total{{reason=\"{reason}\"}}");
    assert_eq!(s.metric(&rejected("proxy_header")).await, 3.0);
    assert_eq!(s.metric(&rejected("untrusted_proxy")).await, 1.0);

    // The daemon still serves a well-behaved proxy.
    let (status, body, held) = upgrade(&s, PROXY_A, &v1(addr("127.0.0.36:1"), s.addr), &[]).await;
    assert_eq!(status, 101, "{body}");
    assert_eq!(peers(&s).await, BTreeSet::from(["127.0.0.36:1".to_owned()]));
    drop(held);
    s.stop().await;
}

#[tokio::test]
async fn without_trusted_proxies_any_peer_may_send_a_proxy_header() {
    let s = Server::start(&config("proxy_protocol = true")).await;
    let (status, body, held) = upgrade(
        &s,
        PROXY_B,
        &v1(addr("127.0.0.41:4141"), s.addr),
        &[("X-Forwarded-For", "127.0.0.42")],
    )
    .await;
    assert_eq!(status, 101, "{body}");
    // The header's client, and no forwarding header believed (no proxy is trusted).
    assert_eq!(
        peers(&s).await,
        BTreeSet::from(["127.0.0.41:4141".to_owned()])
    );
    drop(held);
    s.stop().await;
}
