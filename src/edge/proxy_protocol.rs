//! The PROXY protocol (v1 text, v2 binary) that load balancers put in front of a TCP
//! stream to say whose connection it carries (`server.proxy_protocol`). Read here, before
//! hyper sees the stream; parsed by the `ppp` crate.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use ppp::{HeaderResult, PartialResult, v1, v2};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// Longest header accepted. A v1 header is at most 107 bytes and a v2 header's addresses
/// at most 232; the rest is room for the TLVs load balancers add (TLS details, endpoint ids).
pub const MAX_HEADER: usize = 4096;

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The stream ended first.
    #[error("connection closed before a complete PROXY header")]
    Closed,
    /// Reading failed.
    #[error("reading the PROXY header failed: {0}")]
    Io(#[from] io::Error),
    /// Not a PROXY header at all, or a malformed one.
    #[error("no valid PROXY header (server.proxy_protocol is on): {0}")]
    Invalid(String),
    /// Longer than [`MAX_HEADER`].
    #[error("PROXY header longer than {MAX_HEADER} bytes")]
    TooLong,
}

/// What a PROXY header said.
#[derive(Debug)]
pub struct Header {
    /// The client's address; `None` for a `LOCAL` (v2) or `UNKNOWN` (v1) header, or a
    /// non-IP source: the proxy speaking for itself (health checks), so the peer is the client.
    pub source: Option<SocketAddr>,
    /// Bytes read past the header: the start of the HTTP request.
    pub rest: Bytes,
}

/// Reads and parses the PROXY header at the start of `io`, reading at most
/// [`MAX_HEADER`] bytes. The caller bounds it in time.
pub async fn read_header<S: AsyncRead + Unpin>(io: &mut S) -> Result<Header, HeaderError> {
    let mut buf = vec![0u8; MAX_HEADER];
    let mut filled = 0;
    loop {
        let n = io.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Err(HeaderError::Closed);
        }
        filled += n;
        if let Some((len, source)) = parse(&buf[..filled])? {
            return Ok(Header {
                source,
                rest: Bytes::copy_from_slice(&buf[len..filled]),
            });
        }
        if filled == buf.len() {
            return Err(HeaderError::TooLong);
        }
    }
}

/// The header's length and source address once `input` holds a whole header; `None` while
/// more bytes could complete it.
fn parse(input: &[u8]) -> Result<Option<(usize, Option<SocketAddr>)>, HeaderError> {
    let result = HeaderResult::parse(input);
    if result.is_incomplete() {
        // A v2 header announces its length: refuse one that cannot fit without waiting.
        if let HeaderResult::V2(Err(v2::ParseError::Partial(_, len))) = result
            && 16 + len > MAX_HEADER
        {
            return Err(HeaderError::TooLong);
        }
        return Ok(None);
    }
    match result {
        HeaderResult::V1(Ok(h)) => {
            let source = match h.addresses {
                v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Unknown => None,
            };
            Ok(Some((h.header.len(), source)))
        }
        HeaderResult::V2(Ok(h)) => {
            let source = match (h.command, h.addresses) {
                (v2::Command::Local, _) => None,
                (_, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (_, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (_, v2::Addresses::Unix(_) | v2::Addresses::Unspecified) => None,
            };
            Ok(Some((h.len(), source)))
        }
        HeaderResult::V1(Err(v1::BinaryParseError::Parse(v1::ParseError::HeaderTooLong))) => {
            Err(HeaderError::TooLong)
        }
        HeaderResult::V1(Err(err)) => Err(HeaderError::Invalid(err.to_string())),
        HeaderResult::V2(Err(err)) => Err(HeaderError::Invalid(err.to_string())),
    }
}

/// A stream that first yields the bytes read past its PROXY header, then the rest of the
/// stream; writes go straight through.
pub struct Prefixed<S> {
    rest: Bytes,
    io: S,
}

impl<S> Prefixed<S> {
    /// `io`, after `rest`.
    pub fn new(rest: Bytes, io: S) -> Self {
        Self { rest, io }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.rest.is_empty() {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let n = self.rest.len().min(buf.remaining());
        buf.put_slice(&self.rest[..n]);
        self.rest.advance(n);
        if self.rest.is_empty() {
            // Frees the buffer: an emptied `Bytes` would keep it for the connection's life.
            self.rest = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// A v2 header for TCP over IPv4 from `src` to `dst`, with `tlv` appended.
    fn v2(command: u8, src: ([u8; 4], u16), dst: ([u8; 4], u16), tlv: &[u8]) -> Vec<u8> {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.push(0x20 | command);
        h.push(0x11);
        h.extend_from_slice(&u16::try_from(12 + tlv.len()).unwrap().to_be_bytes());
        h.extend_from_slice(&src.0);
        h.extend_from_slice(&dst.0);
        h.extend_from_slice(&src.1.to_be_bytes());
        h.extend_from_slice(&dst.1.to_be_bytes());
        h.extend_from_slice(tlv);
        h
    }

    async fn read_all_of(input: &[u8]) -> Result<(Option<SocketAddr>, Vec<u8>), HeaderError> {
        let (mut client, mut server) = tokio::io::duplex(MAX_HEADER * 2);
        client.write_all(input).await.unwrap();
        drop(client);
        let header = read_header(&mut server).await?;
        let mut stream = Prefixed::new(header.rest, server);
        let mut after = Vec::new();
        stream.read_to_end(&mut after).await.unwrap();
        Ok((header.source, after))
    }

    #[tokio::test]
    async fn headers_give_the_source_and_keep_what_follows() {
        let get = b"GET / HTTP/1.1\r\n\r\n";
        let with = |h: &[u8]| [h, get].concat();
        let cases: Vec<(Vec<u8>, Option<&str>)> = vec![
            (
                with(b"PROXY TCP4 192.0.2.1 127.0.0.1 4711 80\r\n"),
                Some("192.0.2.1:4711"),
            ),
            (
                with(b"PROXY TCP6 2001:db8::1 ::1 4711 80\r\n"),
                Some("[2001:db8::1]:4711"),
            ),
            (with(b"PROXY UNKNOWN\r\n"), None),
            (
                with(&v2(1, ([192, 0, 2, 1], 4711), ([127, 0, 0, 1], 80), &[])),
                Some("192.0.2.1:4711"),
            ),
            // A NOOP TLV (type 4) after the addresses.
            (
                with(&v2(
                    1,
                    ([192, 0, 2, 1], 4711),
                    ([127, 0, 0, 1], 80),
                    &[4, 0, 2, 0, 0],
                )),
                Some("192.0.2.1:4711"),
            ),
            // LOCAL: the proxy's own connection (a health check).
            (
                with(&v2(0, ([192, 0, 2, 1], 4711), ([127, 0, 0, 1], 80), &[])),
                None,
            ),
        ];
        for (input, want) in cases {
            let (source, after) = read_all_of(&input).await.unwrap();
            assert_eq!(source.map(|s| s.to_string()).as_deref(), want, "{input:?}");
            assert_eq!(after, get, "{input:?}");
        }
    }

    #[tokio::test]
    async fn a_header_split_across_reads_is_waited_for() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let reading = tokio::spawn(async move { read_header(&mut server).await });
        for part in [
            &b"PRO"[..],
            b"XY TCP4 192.0.2.1 127.0",
            b".0.1 4711 80\r",
            b"\nGET",
        ] {
            client.write_all(part).await.unwrap();
            tokio::task::yield_now().await;
        }
        let header = reading.await.unwrap().unwrap();
        assert_eq!(header.source, Some("192.0.2.1:4711".parse().unwrap()));
        assert_eq!(&header.rest[..], b"GET");
    }

    #[tokio::test]
    async fn anything_else_is_refused() {
        let big_tlv = vec![0u8; MAX_HEADER];
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
                "no valid PROXY header",
            ),
            (
                b"PROXY TCP4 999.0.0.1 127.0.0.1 1 2\r\n".to_vec(),
                "no valid PROXY header",
            ),
            (
                b"PROXY TCP4 192.0.2.1 127.0.0.1 70000 80\r\n".to_vec(),
                "no valid PROXY header",
            ),
            (b"PROXY TCP4 192.0.2.1".to_vec(), "closed before"),
            (b"".to_vec(), "closed before"),
            ([b"PROXY TCP4 ", &[b'1'; 200][..]].concat(), "longer than"),
            (
                v2(1, ([192, 0, 2, 1], 1), ([127, 0, 0, 1], 2), &big_tlv),
                "longer than",
            ),
            (
                b"\r\n\r\n\0\r\nQUIT\n\x31\x11\0\x0c".to_vec(),
                "no valid PROXY header",
            ),
        ];
        for (input, want) in cases {
            let err = read_all_of(&input).await.unwrap_err().to_string();
            assert!(
                err.contains(want),
                "{:?}: {err}",
                String::from_utf8_lossy(&input)
            );
        }
    }

    proptest::proptest! {
        /// Arbitrary bytes, or a valid header's bytes cut or corrupted anywhere: the parser
        /// answers (wait, refuse, or a header no longer than the input) and never panics.
        #[test]
        fn arbitrary_input_never_panics(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            cut in 0usize..120,
            flip in 0usize..120,
        ) {
            if let Ok(Some((len, _))) = parse(&bytes) {
                proptest::prop_assert!(len <= bytes.len());
            }
            let mut v1 = b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 8080\r\nGET /".to_vec();
            v1.truncate(cut.min(v1.len()));
            let _ = parse(&v1);
            let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
            v2.extend_from_slice(&[0x21, 0x11, 0, 12, 127, 0, 0, 2, 127, 0, 0, 1, 0x9c, 0x40, 0x1f, 0x90]);
            if let Some(b) = v2.get_mut(flip % 28) {
                *b ^= 0x5a;
            }
            if let Ok(Some((len, _))) = parse(&v2) {
                proptest::prop_assert!(len <= v2.len());
            }
        }
    }
}
