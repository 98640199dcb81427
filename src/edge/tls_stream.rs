//! A server-side TLS stream over rustls' unbuffered API that holds no buffer while idle.
//!
//! rustls' buffered `ServerConnection` (what tokio-rustls drives) sizes its receive buffer
//! to 4 KiB before every read and never below, and a WebSocket connection is always waiting
//! to read, so each idle connection kept 4 KiB (BENCHMARKS.md, TLS). Here the three buffers
//! are ours: what was received and not yet processed (at most one TLS record, or one
//! handshake message while handshaking), what was decrypted and not yet read (one record's
//! plaintext when a read leaves some, never more than the receive buffer held), and what
//! was encrypted and not yet sent (one record, or a handshake flight). Each grows to what is
//! in flight and is freed as soon as it drains, so an idle connection holds the session's
//! keys and state and nothing else. Socket reads go through a stack buffer, so a read that
//! finds nothing allocates nothing.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::ServerConfig;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, InsufficientSizeError,
    UnbufferedStatus,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Most bytes of one TLS record: a 5-byte header and 2^14 bytes of plaintext with the 2 048
/// bytes of expansion TLS allows (RFC 5246 6.2.3; rustls' own bound, which it enforces on
/// every header it reads). Outside the handshake, the receive buffer never holds more: it is
/// read into only while it holds no complete record.
const MAX_RECORD: usize = 5 + 16_384 + 2_048;

/// Most bytes received and held while handshaking. rustls joins a handshake message split
/// over several records in place, in the buffer it is given, and accepts messages up to
/// 64 KiB (the limit of its buffered API too): that message, its records' headers and the
/// start of the next record.
const MAX_HANDSHAKE: usize = 0x1_0000 + MAX_RECORD;

/// Most plaintext encrypted by one write: one full record, so that a peer that stops
/// reading leaves at most one record waiting here (the kernel's socket buffer holds the rest
/// of what it did not read, as for a plain connection).
const MAX_PLAIN_PER_WRITE: usize = 16_384;

/// What a record adds to its plaintext, a guess for the first try at encrypting (rustls
/// says what it really needs when the guess is short): header 5, TLS 1.2 explicit nonce 8,
/// AEAD tag 16, TLS 1.3 content type 1, with room to spare.
const RECORD_OVERHEAD: usize = 64;

/// A TLS session with a client over `io` (see the module documentation).
pub struct TlsStream<S> {
    io: S,
    conn: UnbufferedServerConnection,
    /// Received TLS bytes rustls has not consumed: part of a record, or records not yet
    /// processed. Empty (and unallocated) between messages.
    received: Vec<u8>,
    /// Decrypted bytes not yet read, from `plain_at` on.
    plain: Vec<u8>,
    plain_at: usize,
    /// TLS bytes not yet written to `io`, from `sent` on.
    outgoing: Vec<u8>,
    sent: usize,
    /// The client's close_notify has arrived: reads return end of file.
    read_closed: bool,
    /// Our close_notify is queued: no more writes.
    write_closed: bool,
}

/// What one pass over the received bytes came to.
enum Progress {
    /// Plaintext was delivered (to the reader, or kept in `plain`).
    Data,
    /// Nothing more can happen without more bytes from the peer.
    NeedBytes,
    /// The handshake is complete.
    Established,
    /// `n` bytes of plaintext were encrypted into `outgoing`.
    Encrypted(usize),
    /// Our close_notify is queued (or was sent before).
    CloseQueued,
}

/// What a pass is for, which decides where it stops.
enum Job<'a, 'b> {
    /// Finish the handshake.
    Handshake,
    /// Decrypt what was received, into `out` first.
    Read(&'a mut ReadBuf<'b>),
    /// Encrypt this plaintext.
    Write(&'a [u8]),
    /// Queue a close_notify.
    Close,
}

impl<S> TlsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Runs the server side of a handshake on `io` with `config`. Not bounded in time: the
    /// caller's deadline is.
    pub async fn accept(config: Arc<ServerConfig>, io: S) -> io::Result<Self> {
        let conn = UnbufferedServerConnection::new(config).map_err(invalid)?;
        let mut stream = Self {
            io,
            conn,
            received: Vec::new(),
            plain: Vec::new(),
            plain_at: 0,
            outgoing: Vec::new(),
            sent: 0,
            read_closed: false,
            write_closed: false,
        };
        std::future::poll_fn(|cx| stream.poll_handshake(cx)).await?;
        Ok(stream)
    }

    /// The protocol the client and we agreed on by ALPN, if any.
    #[cfg(test)]
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// The bytes this stream holds allocated (received, decrypted, to send), for tests.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.received.capacity() + self.plain.capacity() + self.outgoing.capacity()
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.advance(Job::Handshake) {
                Ok(Progress::Established) => {
                    // The last flight (TLS 1.2's Finished) must reach the client before it
                    // sends its request.
                    ready!(self.poll_send(cx))?;
                    return Pin::new(&mut self.io).poll_flush(cx);
                }
                Ok(_) => {
                    // Our flight goes out before we wait for the client's answer to it.
                    ready!(self.poll_send(cx))?;
                    if ready!(self.poll_receive(cx))? == 0 {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "tls handshake eof",
                        )));
                    }
                }
                Err(err) => return Poll::Ready(Err(self.fail(cx, err))),
            }
        }
    }

    /// Processes received records until `job` is done or more bytes are needed, queueing
    /// what rustls has to send (handshake flights, alerts, key updates) in `outgoing`.
    fn advance(&mut self, mut job: Job<'_, '_>) -> io::Result<Progress> {
        loop {
            let UnbufferedStatus { mut discard, state } =
                self.conn.process_tls_records(&mut self.received);
            let state = match state {
                Ok(state) => state,
                Err(err) => {
                    discard_front(&mut self.received, discard);
                    return Err(invalid(err));
                }
            };
            let done = match state {
                ConnectionState::ReadTraffic(mut traffic) => {
                    let mut delivered = false;
                    while let Some(record) = traffic.next_record() {
                        let record = record.map_err(invalid)?;
                        discard += record.discard;
                        let mut payload = record.payload;
                        if let Job::Read(out) = &mut job {
                            let n = payload.len().min(out.remaining());
                            out.put_slice(&payload[..n]);
                            payload = &payload[n..];
                        }
                        self.plain.extend_from_slice(payload);
                        delivered |= !record.payload.is_empty();
                    }
                    // A reader stops at one record, so that `plain` holds at most one.
                    (delivered && matches!(job, Job::Read(_))).then_some(Progress::Data)
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    encode_into(&mut encode, &mut self.outgoing)?;
                    None
                }
                // What was encoded is in `outgoing`, sent in order before anything after it.
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    None
                }
                ConnectionState::PeerClosed => {
                    self.read_closed = true;
                    None
                }
                ConnectionState::Closed => {
                    self.read_closed = true;
                    Some(match job {
                        Job::Close => Progress::CloseQueued,
                        Job::Write(_) => return Err(io::ErrorKind::BrokenPipe.into()),
                        _ => Progress::NeedBytes,
                    })
                }
                ConnectionState::BlockedHandshake => match job {
                    Job::Handshake | Job::Read(_) => Some(Progress::NeedBytes),
                    Job::Write(_) | Job::Close => {
                        return Err(io::Error::other("TLS handshake not complete"));
                    }
                },
                ConnectionState::WriteTraffic(mut traffic) => Some(match job {
                    // Unless the client's Finished is still to come (TLS 1.3 lets us send
                    // before it): checked below, once rustls is no longer borrowed.
                    Job::Handshake => Progress::Established,
                    Job::Read(_) => Progress::NeedBytes,
                    Job::Write(data) => {
                        let need = data.len() + RECORD_OVERHEAD;
                        seal(&mut self.outgoing, need, |buf| traffic.encrypt(data, buf))?;
                        Progress::Encrypted(data.len())
                    }
                    Job::Close => {
                        seal(&mut self.outgoing, RECORD_OVERHEAD, |buf| {
                            traffic.queue_close_notify(buf)
                        })?;
                        Progress::CloseQueued
                    }
                }),
                // Early data is off (rustls' default, which this server keeps).
                ConnectionState::ReadEarlyData(_) => {
                    return Err(invalid("unexpected TLS early data"));
                }
                other => return Err(io::Error::other(format!("unexpected TLS state {other:?}"))),
            };
            discard_front(&mut self.received, discard);
            if self.read_closed {
                // rustls ignores whatever follows a close_notify (RFC 8446 6.1): so do we.
                self.received = Vec::new();
            }
            match done {
                Some(Progress::Established) if self.conn.is_handshaking() => {
                    return Ok(Progress::NeedBytes);
                }
                Some(done) => return Ok(done),
                None => {}
            }
        }
    }

    /// After `err`, sends what rustls queued before and for it (an alert, mostly) as far
    /// as the socket takes it at once (the connection is over either way); returns `err`.
    fn fail(&mut self, cx: &mut Context<'_>, err: io::Error) -> io::Error {
        // Only while something is queued: rustls yields it before looking at the input
        // again, and looking again after some errors would only fail again.
        while self.conn.wants_write() {
            let UnbufferedStatus { state, .. } = self.conn.process_tls_records(&mut self.received);
            let Ok(ConnectionState::EncodeTlsData(mut encode)) = state else {
                break;
            };
            if encode_into(&mut encode, &mut self.outgoing).is_err() {
                break;
            }
        }
        let _ = self.poll_send(cx);
        err
    }

    /// Reads what the socket has (up to the buffer's ceiling) into `received`: the number
    /// of bytes, 0 at end of file.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let ceiling = if self.conn.is_handshaking() {
            MAX_HANDSHAKE
        } else {
            MAX_RECORD
        };
        let room = ceiling.saturating_sub(self.received.len());
        if room == 0 {
            // rustls refuses any header announcing more than a record, and any handshake
            // message over 64 KiB, before this: a peer cannot fill it with anything valid.
            return Poll::Ready(Err(invalid("TLS receive buffer full")));
        }
        let mut stack = [MaybeUninit::<u8>::uninit(); MAX_RECORD];
        let mut buf = ReadBuf::uninit(&mut stack[..room.min(MAX_RECORD)]);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
        let got = buf.filled();
        // Amortized growth, but never past the ceiling: a peer trickling a record in byte by
        // byte neither grows the buffer beyond it nor makes each byte a reallocation.
        let want = (self.received.len() + got.len())
            .max(self.received.capacity() * 2)
            .min(ceiling);
        self.received
            .reserve_exact(want.saturating_sub(self.received.len()));
        self.received.extend_from_slice(got);
        Poll::Ready(Ok(got.len()))
    }

    /// Writes `outgoing` to the socket; frees it once all is written.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.outgoing[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.outgoing = Vec::new();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Encrypts up to one record of `data` once what was queued before is on the socket;
    /// what the socket does not take at once goes out on the next write or flush.
    fn poll_seal(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // Until the socket has taken what is queued, nothing more is accepted.
        ready!(self.poll_send(cx))?;
        if self.write_closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let chunk = &data[..data.len().min(MAX_PLAIN_PER_WRITE)];
        let n = match self.advance(Job::Write(chunk)) {
            Ok(Progress::Encrypted(n)) => n,
            Ok(_) => return Poll::Ready(Err(io::Error::other("TLS record not encrypted"))),
            Err(err) => return Poll::Ready(Err(err)),
        };
        if let Poll::Ready(Err(err)) = self.poll_send(cx) {
            return Poll::Ready(Err(err));
        }
        Poll::Ready(Ok(n))
    }

    /// Copies kept plaintext into `out`; frees it once all is read. Whether any was there.
    fn take_plain(&mut self, out: &mut ReadBuf<'_>) -> bool {
        if self.plain_at == self.plain.len() {
            return false;
        }
        let n = (self.plain.len() - self.plain_at).min(out.remaining());
        out.put_slice(&self.plain[self.plain_at..self.plain_at + n]);
        self.plain_at += n;
        if self.plain_at == self.plain.len() {
            self.plain = Vec::new();
            self.plain_at = 0;
        }
        true
    }
}

impl<S> AsyncRead for TlsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if out.remaining() == 0 || this.take_plain(out) {
            return Poll::Ready(Ok(()));
        }
        loop {
            match this.advance(Job::Read(out)) {
                Ok(Progress::Data) => return Poll::Ready(Ok(())),
                Ok(_) => {}
                Err(err) => return Poll::Ready(Err(this.fail(cx, err))),
            }
            if this.read_closed {
                return Poll::Ready(Ok(()));
            }
            // Whatever processing queued (a key update's answer) goes out with the next
            // write or flush, not from here: a read that wrote would register the reader's
            // waker for the socket's writability, in place of a writer's (as tokio-rustls).
            if ready!(this.poll_receive(cx))? == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed connection without sending TLS close_notify",
                )));
            }
        }
    }
}

impl<S> AsyncWrite for TlsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_seal(cx, data)
    }

    /// Gathers the slices into one record (up to [`MAX_PLAIN_PER_WRITE`] bytes), so that a
    /// batch of small frames costs one record and one send, not one of each per frame.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut slices = bufs.iter().filter(|b| !b.is_empty()).peekable();
        let Some(first) = slices.next() else {
            return Poll::Ready(Ok(0));
        };
        if slices.peek().is_none() || first.len() >= MAX_PLAIN_PER_WRITE {
            return this.poll_seal(cx, first);
        }
        // Not gathered again while the socket is still full.
        ready!(this.poll_send(cx))?;
        let limit = bufs
            .iter()
            .map(|b| b.len())
            .sum::<usize>()
            .min(MAX_PLAIN_PER_WRITE);
        let mut record = Vec::with_capacity(limit);
        for slice in std::iter::once(first).chain(slices) {
            let room = limit - record.len();
            record.extend_from_slice(&slice[..slice.len().min(room)]);
            if record.len() == limit {
                break;
            }
        }
        this.poll_seal(cx, &record)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.write_closed {
            this.advance(Job::Close)?;
            this.write_closed = true;
        }
        ready!(this.poll_send(cx))?;
        match ready!(Pin::new(&mut this.io).poll_shutdown(cx)) {
            // Not connected any more is as shut down as it gets (tokio-rustls agrees).
            Err(err) if err.kind() == io::ErrorKind::NotConnected => Poll::Ready(Ok(())),
            result => Poll::Ready(result),
        }
    }
}

/// Appends the handshake record (or alert) rustls has for us to `out`.
fn encode_into(
    encode: &mut EncodeTlsData<'_, ServerConnectionData>,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    // Asked with no room, rustls says how much it needs (or encodes an empty record, which
    // leaves nothing to send).
    match encode.encode(&mut []) {
        Ok(_) => Ok(()),
        Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
            let at = out.len();
            out.resize(at + required_size, 0);
            let n = encode.encode(&mut out[at..]).map_err(io::Error::other)?;
            out.truncate(at + n);
            Ok(())
        }
        Err(err) => Err(io::Error::other(err)),
    }
}

/// Appends to `out` what `write` encrypts into the room it is given: `need` bytes at first,
/// what rustls asks for if that is short.
fn seal(
    out: &mut Vec<u8>,
    mut need: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> io::Result<()> {
    let at = out.len();
    loop {
        out.resize(at + need, 0);
        match write(&mut out[at..]) {
            Ok(n) => {
                out.truncate(at + n);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size }))
                if required_size > need =>
            {
                need = required_size;
            }
            Err(err) => {
                out.truncate(at);
                return Err(io::Error::other(err));
            }
        }
    }
}

/// Removes the first `n` bytes of `buf`, freeing it when nothing is left.
fn discard_front(buf: &mut Vec<u8>, n: usize) {
    if n >= buf.len() {
        *buf = Vec::new();
    } else if n > 0 {
        buf.drain(..n);
    }
}

fn invalid(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err)
}

#[cfg(test)]
mod tests {
    use std::task::Waker;
    use std::time::Duration;

    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use rustls::pki_types::{PrivatePkcs8KeyDer, ServerName};
    use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
    use tokio::time::timeout;
    use tokio_rustls::TlsConnector;
    use tokio_rustls::client::TlsStream as ClientStream;

    use super::*;
    use crate::config::tls_provider;

    /// Bounds every wait: a test that hangs fails instead.
    const T: Duration = Duration::from_secs(10);

    const TLS12: &SupportedProtocolVersion = &rustls::version::TLS12;
    const TLS13: &SupportedProtocolVersion = &rustls::version::TLS13;

    /// A server for `localhost` (ALPN http/1.1, as the listener's) and a client trusting it
    /// that offers `alpn` and speaks only `version`.
    fn configs(
        version: &'static SupportedProtocolVersion,
        alpn: &[u8],
    ) -> (Arc<ServerConfig>, TlsConnector) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_der = ca.self_signed(&ca_key).unwrap().der().clone();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &Issuer::new(ca, ca_key))
            .unwrap();
        let provider = Arc::new(tls_provider());
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[TLS13, TLS12])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            )
            .unwrap();
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut roots = RootCertStore::empty();
        roots.add(ca_der).unwrap();
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![alpn.to_vec()];
        (Arc::new(server), TlsConnector::from(Arc::new(client)))
    }

    /// Both ends of a handshake over an in-memory pipe holding at most `pipe` bytes each way.
    async fn handshake(
        server: Arc<ServerConfig>,
        client: &TlsConnector,
        pipe: usize,
    ) -> (
        io::Result<ClientStream<DuplexStream>>,
        io::Result<TlsStream<DuplexStream>>,
    ) {
        let (near, far) = duplex(pipe);
        let name = ServerName::try_from("localhost").unwrap();
        timeout(T, async {
            tokio::join!(client.connect(name, near), TlsStream::accept(server, far))
        })
        .await
        .expect("handshake in time")
    }

    async fn connected(
        version: &'static SupportedProtocolVersion,
        pipe: usize,
    ) -> (ClientStream<DuplexStream>, TlsStream<DuplexStream>) {
        let (server, client) = configs(version, b"http/1.1");
        let (client, server) = handshake(server, &client, pipe).await;
        (client.unwrap(), server.unwrap())
    }

    /// `n` bytes that are not all alike, so that a misplaced chunk shows.
    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test]
    async fn both_versions_carry_data_both_ways_and_an_idle_session_holds_no_buffer() {
        for version in [TLS12, TLS13] {
            let (mut client, mut server) = connected(version, 64 * 1024).await;
            assert_eq!(server.alpn_protocol(), Some(&b"http/1.1"[..]));
            assert_eq!(server.held(), 0, "{version:?}: after the handshake");
            timeout(T, async {
                client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
                let mut got = [0; 18];
                server.read_exact(&mut got).await.unwrap();
                assert_eq!(&got, b"GET / HTTP/1.1\r\n\r\n");
                server.write_all(b"HTTP/1.1 101\r\n\r\n").await.unwrap();
                server.flush().await.unwrap();
                let mut got = [0; 16];
                client.read_exact(&mut got).await.unwrap();
                assert_eq!(&got, b"HTTP/1.1 101\r\n\r\n");
            })
            .await
            .unwrap();
            assert_eq!(server.held(), 0, "{version:?}: after a message each way");
        }
    }

    #[tokio::test]
    async fn large_messages_cross_many_records_through_small_reads_and_a_narrow_pipe() {
        for version in [TLS12, TLS13] {
            // A 1 KiB pipe: every record is written in several parts, and most writes wait.
            let (mut client, mut server) = connected(version, 1024).await;
            let up = pattern(200_000);
            let down: Vec<u8> = up.iter().rev().copied().collect();
            timeout(T, async {
                let send = async {
                    client.write_all(&up).await.unwrap();
                    client.flush().await.unwrap();
                    let mut back = vec![0; down.len()];
                    client.read_exact(&mut back).await.unwrap();
                    back
                };
                let echo = async {
                    // 7 bytes at a time: each record is read in many parts.
                    let mut got = Vec::new();
                    let mut part = [0; 7];
                    while got.len() < up.len() {
                        let n = server.read(&mut part).await.unwrap();
                        assert_ne!(n, 0, "end of file after {} bytes", got.len());
                        got.extend_from_slice(&part[..n]);
                    }
                    server.write_all(&down).await.unwrap();
                    server.flush().await.unwrap();
                    got
                };
                let (back, got) = tokio::join!(send, echo);
                assert!(got == up, "{version:?}: upstream differs");
                assert!(back == down, "{version:?}: downstream differs");
            })
            .await
            .unwrap();
            assert_eq!(server.held(), 0);
        }
    }

    #[tokio::test]
    async fn close_notify_ends_reads_cleanly_both_ways() {
        for version in [TLS12, TLS13] {
            let (mut client, mut server) = connected(version, 64 * 1024).await;
            timeout(T, async {
                client.write_all(b"last").await.unwrap();
                client.shutdown().await.unwrap();
                let mut got = Vec::new();
                server.read_to_end(&mut got).await.unwrap();
                assert_eq!(got, b"last");
                // Our side may still write after the client's close_notify, then closes.
                server.write_all(b"bye").await.unwrap();
                server.shutdown().await.unwrap();
                let mut got = Vec::new();
                client.read_to_end(&mut got).await.unwrap();
                assert_eq!(got, b"bye");
                assert!(server.write_all(b"more").await.is_err());
            })
            .await
            .unwrap();
        }
    }

    #[tokio::test]
    async fn an_end_of_file_without_close_notify_is_an_error() {
        let (client, mut server) = connected(TLS13, 64 * 1024).await;
        drop(client.into_inner().0);
        let err = timeout(T, server.read(&mut [0; 16]))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn a_key_update_from_the_client_is_answered() {
        let (mut client, mut server) = connected(TLS13, 64 * 1024).await;
        timeout(T, async {
            client.get_mut().1.refresh_traffic_keys().unwrap();
            client.write_all(b"new keys").await.unwrap();
            let mut got = [0; 8];
            server.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"new keys");
            // Our answering key_update goes out before this, or the client could not read it.
            server.write_all(b"ours too").await.unwrap();
            client.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"ours too");
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn failed_handshakes_are_errors_and_the_client_hears_why() {
        // No protocol in common by ALPN: no_application_protocol, sent after the ServerHello
        // (so encrypted, in TLS 1.3).
        let (server, client) = configs(TLS13, b"h2");
        let (client_side, server_side) = handshake(server, &client, 64 * 1024).await;
        let err = server_side.err().expect("handshake refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        let err = client_side.expect_err("client refused").to_string();
        assert!(err.contains("NoApplicationProtocol"), "{err}");

        // A client that does not trust the certificate says so (another CA of the same
        // name signed it: bad signature, decrypt_error) and hangs up.
        let (server, _) = configs(TLS13, b"http/1.1");
        let (_, stranger) = configs(TLS13, b"http/1.1");
        let (client_side, server_side) = handshake(server, &stranger, 64 * 1024).await;
        assert!(client_side.is_err());
        let err = server_side.err().expect("handshake refused").to_string();
        assert!(err.contains("received fatal alert"), "{err}");
    }

    /// Runs the server side of a handshake against `bytes` written raw (then the end of
    /// file), ours and tokio-rustls' (what this replaced); returns our error, our answer and
    /// tokio-rustls' answer.
    async fn refused(bytes: &[u8]) -> (io::Error, Vec<u8>, Vec<u8>) {
        async fn answer(mut near: DuplexStream, bytes: &[u8]) -> Vec<u8> {
            // The server may hang up before it has read everything.
            let _ = near.write_all(bytes).await;
            let _ = near.shutdown().await;
            let mut answer = Vec::new();
            near.read_to_end(&mut answer).await.unwrap();
            answer
        }
        let (server, _) = configs(TLS13, b"http/1.1");
        let (near, far) = duplex(256 * 1024);
        let accept = TlsStream::accept(server.clone(), far);
        let (ours, answered) = timeout(T, async { tokio::join!(accept, answer(near, bytes)) })
            .await
            .expect("refused in time");
        let (near, far) = duplex(256 * 1024);
        let accept = tokio_rustls::TlsAcceptor::from(server).accept(far);
        let (theirs, theirs_answered) =
            timeout(T, async { tokio::join!(accept, answer(near, bytes)) })
                .await
                .expect("refused in time");
        assert!(theirs.is_err());
        (ours.err().expect("refused"), answered, theirs_answered)
    }

    #[tokio::test]
    async fn garbage_and_truncated_hellos_are_refused_as_tokio_rustls_refused_them() {
        // A handshake message a server never receives: an unexpected_message alert.
        let (err, answer, theirs) = refused(b"\x16\x03\x01\x00\x04\x02\x00\x00\x00").await;
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert_eq!(answer.first(), Some(&0x15), "an alert: {answer:?}");
        assert_eq!(answer, theirs);
        // Not a handshake message at all.
        let (err, answer, theirs) = refused(b"\x16\x03\x01\x00\x05hello").await;
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert_eq!(answer, theirs);
        // A record announcing more than TLS allows.
        let (err, answer, theirs) = refused(b"\x16\x03\x01\xff\xff").await;
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert_eq!(answer, theirs);
        // A handshake message announcing 16 MiB, sent in full records: refused long before
        // 64 KiB are held, let alone 16 MiB.
        let mut flood = Vec::new();
        let mut first = vec![1, 0xff, 0xff, 0xff];
        first.resize(16_384, 0);
        for record in 0..64 {
            flood.extend_from_slice(&[0x16, 0x03, 0x01, 0x40, 0x00]);
            flood.extend_from_slice(if record == 0 { &first } else { &[0; 16_384] });
        }
        let (err, answer, theirs) = refused(&flood).await;
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert_eq!(answer, theirs);
        // A hello cut short by the end of the connection.
        let (err, answer, theirs) = refused(b"\x16\x03\x01\x00\x40\x01\x00\x00\x3c\x03\x03").await;
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
        assert_eq!(answer, theirs);
    }

    #[tokio::test]
    async fn a_vectored_write_gathers_small_frames_into_one_record() {
        let (mut client, mut server) = connected(TLS13, 64 * 1024).await;
        let frames: Vec<Vec<u8>> = (0..64u8).map(|i| vec![i; 100]).collect();
        let slices: Vec<io::IoSlice<'_>> = frames.iter().map(|f| io::IoSlice::new(f)).collect();
        assert!(server.is_write_vectored());
        // All 64 frames in one call (one record, one send); then a batch larger than a
        // record is taken a record at a time.
        let n = timeout(T, server.write_vectored(&slices))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 6_400);
        let big: Vec<Vec<u8>> = (0..3).map(|i| pattern(7_000 + i)).collect();
        let big_slices: Vec<io::IoSlice<'_>> = big.iter().map(|f| io::IoSlice::new(f)).collect();
        let n = timeout(T, server.write_vectored(&big_slices))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, MAX_PLAIN_PER_WRITE);
        server.flush().await.unwrap();
        let mut want: Vec<u8> = frames.concat();
        want.extend_from_slice(&big.concat()[..n]);
        let mut got = vec![0; want.len()];
        timeout(T, client.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert!(got == want);
        assert_eq!(server.held(), 0);
    }

    /// Polls `f` once with a waker that does nothing.
    fn poll_once<T>(f: impl FnOnce(&mut Context<'_>) -> Poll<T>) -> Poll<T> {
        f(&mut Context::from_waker(Waker::noop()))
    }

    #[tokio::test]
    async fn a_reader_that_stops_leaves_at_most_one_record_here() {
        let (mut client, mut server) = connected(TLS13, 4096).await;
        let data = pattern(1 << 20);
        // Write until the pipe is full and the client reads nothing.
        let mut written = 0;
        while let Poll::Ready(n) =
            poll_once(|cx| Pin::new(&mut server).poll_write(cx, &data[written..]))
        {
            written += n.unwrap();
            assert!(written < data.len(), "a 4 KiB pipe took 1 MiB");
        }
        assert!(server.held() <= MAX_PLAIN_PER_WRITE + RECORD_OVERHEAD);
        // The client reads again: everything arrives, in order.
        timeout(T, async {
            let rest = async {
                server.write_all(&data[written..]).await.unwrap();
                server.flush().await.unwrap();
            };
            let mut got = vec![0; data.len()];
            let (_, read) = tokio::join!(rest, client.read_exact(&mut got));
            read.unwrap();
            assert!(got == data);
        })
        .await
        .unwrap();
        assert_eq!(server.held(), 0);
    }

    #[tokio::test]
    async fn a_peer_cannot_grow_the_receive_buffer_past_one_record() {
        // A record header announcing more than TLS allows is refused at once.
        let (mut client, mut server) = connected(TLS13, 64 * 1024).await;
        let raw = client.get_mut().0;
        raw.write_all(&[0x17, 0x03, 0x03, 0x48, 0x00])
            .await
            .unwrap();
        let err = timeout(T, server.read(&mut [0; 16]))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");

        // The largest TLS 1.3 record (2^14 + 256 bytes) is held until it is complete, and
        // no more than it.
        let (mut client, mut server) = connected(TLS13, 64 * 1024).await;
        let raw = client.get_mut().0;
        let len = 16_384 + 256;
        raw.write_all(&[0x17, 0x03, 0x03, (len >> 8) as u8, len as u8])
            .await
            .unwrap();
        raw.write_all(&vec![0; len - 1]).await.unwrap();
        let mut buf = [0; 16];
        loop {
            match poll_once(|cx| Pin::new(&mut server).poll_read(cx, &mut ReadBuf::new(&mut buf))) {
                Poll::Pending if server.received.len() == len + 4 => break,
                // The pipe hands the bytes over in parts.
                Poll::Pending => tokio::task::yield_now().await,
                Poll::Ready(r) => panic!("read ended early: {r:?}"),
            }
        }
        assert!(server.held() <= MAX_RECORD, "{} held", server.held());
        // The last byte completes a record that does not decrypt: an error, not more room.
        raw.write_all(&[0; 64]).await.unwrap();
        let err = timeout(T, server.read(&mut buf))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }
}
