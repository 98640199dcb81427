//! Writes to the client, each bounded by `write_timeout`: tungstenite messages, shared
//! pre-encoded frames, and the close handshake.

use std::io::IoSlice;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::step::{Step, written};
use crate::close;
use crate::wire::WireFrame;

/// Writes shared, pre-encoded frames straight to the socket (one syscall for a batch when
/// the stream supports vectored writes), after anything tungstenite itself has queued.
pub(super) async fn write_shared<S, F>(
    ws: &mut WebSocketStream<S>,
    frames: &[F],
    limit: Duration,
) -> Step
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: AsRef<WireFrame>,
{
    let result = time::timeout(limit, async {
        // tungstenite's own frames (pongs, echoes) go first, so frames never interleave.
        ws.flush().await.map_err(|e| e.to_string())?;
        let io = ws.get_mut();
        let written = match frames {
            [one] => io.write_all(one.as_ref().encoded()).await,
            many => write_all_vectored(io, many).await,
        };
        written.map_err(|e| e.to_string())?;
        io.flush().await.map_err(|e| e.to_string())
    })
    .await;
    written(result, limit)
}

async fn write_all_vectored<W: AsyncWrite + Unpin, F: AsRef<WireFrame>>(
    io: &mut W,
    frames: &[F],
) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = frames
        .iter()
        .map(|f| IoSlice::new(f.as_ref().encoded()))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = io.write_vectored(rest).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

/// Writes `msgs` then flushes once, within `limit`.
pub(super) async fn write<S, I>(ws: &mut WebSocketStream<S>, msgs: I, limit: Duration) -> Step
where
    S: AsyncRead + AsyncWrite + Unpin,
    I: IntoIterator<Item = Message>,
{
    let result = time::timeout(limit, async {
        for msg in msgs {
            ws.feed(msg).await?;
        }
        ws.flush().await
    })
    .await;
    written(result, limit)
}

/// Sends a close frame and waits up to `wait` for the peer's, then gives up the socket.
pub async fn close_with<S>(ws: &mut WebSocketStream<S>, code: u16, reason: &str, wait: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = time::timeout(wait, async {
        if ws.close(Some(close::frame(code, reason))).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}
