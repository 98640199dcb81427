//! The client kinds and the script each one plays through the run.
//!
//! Every loop is bounded: sessions end by a timer, a server close, or a deadline, and a
//! kind only opens a new session while the traffic phase has time left for it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout_at};

use crate::tally::{Ending, Sequence, Tally};
use crate::wire::{self, Event, Stream, Ws};

/// Who a client is and what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// On `/feed` (protocol pings, answered by tungstenite) from first publish to last.
    Feed,
    /// On `/app` (json-gzip pings, answered) from first publish to last.
    App,
    /// On `/bulk` (large messages, no heartbeat) from first publish to last.
    Bulk,
    /// Connects, reads and answers for a few seconds, closes, reconnects (half on each of
    /// `/feed` and `/app`).
    Churn,
    /// On `/app`, reads everything but never answers a ping: must be closed with 4000.
    Silent,
    /// On `/bulk`, never reads: must be cut off (1008, or dropped after `write_timeout`).
    Stalled,
    /// On `/bulk`, reads one message a second: must be cut off too.
    Trickle,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 7] = [
        Kind::Feed,
        Kind::App,
        Kind::Bulk,
        Kind::Churn,
        Kind::Silent,
        Kind::Stalled,
        Kind::Trickle,
    ];

    /// Share of the clients, per mille; `Feed` takes what the rounding leaves.
    pub fn share(self) -> usize {
        match self {
            Kind::Feed => 440,
            Kind::App => 330,
            Kind::Bulk => 35,
            Kind::Churn => 100,
            Kind::Silent => 75,
            // Few: each backs up to ~4 MiB of kernel send buffer in the daemon before it
            // is cut off, and a few hundred of them put loopback TCP under memory pressure.
            Kind::Stalled => 15,
            Kind::Trickle => 5,
        }
    }
}

/// Where the run is; every client watches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Clients connecting; nothing published yet.
    Warmup,
    /// Publishing until `until`.
    Traffic {
        /// When publishing stops.
        until: Instant,
    },
    /// Publishing stopped after this many messages of each stream.
    Done {
        /// Messages published on the `soak` stream.
        soak: u64,
        /// Messages published on the `bulk` stream.
        bulk: u64,
    },
}

impl Phase {
    fn total(self, stream: Stream) -> Option<u64> {
        match (self, stream) {
            (Phase::Done { soak, .. }, Stream::Soak) => Some(soak),
            (Phase::Done { bulk, .. }, Stream::Bulk) => Some(bulk),
            _ => None,
        }
    }

    /// Whether a session starting now would outlast the traffic phase by `need`.
    fn has_room(self, need: Duration) -> bool {
        match self {
            Phase::Warmup => true,
            Phase::Traffic { until } => Instant::now() + need <= until,
            Phase::Done { .. } => false,
        }
    }

    /// When churning stops: the end of traffic (`None` while warming up).
    fn churn_end(self) -> Option<Instant> {
        match self {
            Phase::Warmup => None,
            Phase::Traffic { until } => Some(until),
            Phase::Done { .. } => Some(Instant::now()),
        }
    }
}

/// How long things may take.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Timing {
    /// From connect to welcome.
    #[serde(with = "ms")]
    pub welcome: Duration,
    /// Longest a reading client may go without any frame (pings come every second or two).
    #[serde(with = "ms")]
    pub idle: Duration,
    /// After publishing stops, how long a full-run client may take to get the last message.
    #[serde(with = "ms")]
    pub finish: Duration,
    /// Shortest churn session.
    #[serde(with = "ms")]
    pub churn_min: Duration,
    /// Longest churn session.
    #[serde(with = "ms")]
    pub churn_max: Duration,
    /// A silent client must get its 4000 within this of connecting.
    #[serde(with = "ms")]
    pub silent_limit: Duration,
    /// Traffic time a slow session is expected to need; none starts with less left.
    #[serde(with = "ms")]
    pub stall: Duration,
    /// Messages a slow client must be behind before it checks that it was cut off.
    pub lag: u64,
    /// How long it then waits (over the daemon's `write_timeout`) before checking.
    #[serde(with = "ms")]
    pub settle: Duration,
    /// A trickle client's pause between two reads.
    #[serde(with = "ms")]
    pub trickle_pause: Duration,
    /// Longest a cut-off client may take to read what was buffered up to the end.
    #[serde(with = "ms")]
    pub drain: Duration,
}

mod ms {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

/// What every client shares.
#[derive(Clone)]
pub struct Cast {
    /// The daemon's public address.
    pub addr: SocketAddr,
    /// Timeouts and pacing.
    pub timing: Timing,
    /// The run's phase.
    pub phase: watch::Receiver<Phase>,
    /// Bounds the initial connects in flight.
    pub gate: Arc<Semaphore>,
    /// Each client reports once whether its first session opened.
    pub ready: mpsc::UnboundedSender<bool>,
    /// Messages published so far on the `bulk` stream.
    pub published: Arc<AtomicU64>,
}

/// Plays client number `index` of `kind` to the end and returns its tally.
pub async fn play(cast: Cast, kind: Kind, index: usize) -> Tally {
    let mut t = Tally::one();
    let route = match kind {
        Kind::Feed => "/feed",
        Kind::App | Kind::Silent => "/app",
        Kind::Churn if index.is_multiple_of(2) => "/feed",
        Kind::Churn => "/app",
        Kind::Bulk | Kind::Stalled | Kind::Trickle => "/bulk",
    };
    let first = {
        // The permit only spaces out the first connects; it is never closed.
        let _permit = cast.gate.acquire().await;
        open(&cast, route).await
    };
    let ws = match first {
        Ok(ws) => ws,
        Err(err) => {
            t.fail(format!(
                "{kind:?} #{index}: first connect to {route}: {err:#}"
            ));
            let _ = cast.ready.send(false);
            return t;
        }
    };
    let _ = cast.ready.send(true);
    t.sessions += 1;
    let who = format!("{kind:?} #{index} on {route}");
    match kind {
        Kind::Feed | Kind::App | Kind::Bulk => full_run(&cast, ws, route, &who, &mut t).await,
        Kind::Churn => churn(&cast, ws, route, &who, &mut t).await,
        Kind::Silent => silent(&cast, ws, route, &who, &mut t).await,
        Kind::Stalled => slow(&cast, ws, route, None, &who, &mut t).await,
        Kind::Trickle => {
            let pace = cast.timing.trickle_pause;
            slow(&cast, ws, route, Some(pace), &who, &mut t).await;
        }
    }
    t
}

fn stream_of(route: &str) -> Stream {
    if route == "/bulk" {
        Stream::Bulk
    } else {
        Stream::Soak
    }
}

/// Connects and waits for the welcome, which the server sends only once the connection
/// is subscribed to its route: from then on it must get every publish.
async fn open(cast: &Cast, route: &str) -> anyhow::Result<Ws> {
    let mut ws = wire::connect(cast.addr, route).await?;
    wire::expect_welcome(&mut ws, cast.timing.welcome).await?;
    Ok(ws)
}

/// Connected before the first publish, reading (and answering) until the last.
async fn full_run(cast: &Cast, mut ws: Ws, route: &str, who: &str, t: &mut Tally) {
    let stream = stream_of(route);
    let mut seq = Sequence::from_start(stream);
    let mut phase = cast.phase.clone();
    let mut finish_by = None;
    loop {
        let now = *phase.borrow_and_update();
        if let Some(total) = now.total(stream) {
            if seq.complete(total) {
                t.complete += 1;
                close(&mut ws, who, t).await;
                break;
            }
            finish_by.get_or_insert(Instant::now() + cast.timing.finish);
        }
        let idle_by = Instant::now() + cast.timing.idle;
        let deadline = finish_by.map_or(idle_by, |f: Instant| f.min(idle_by));
        let event = tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    t.fail(format!("{who}: the run ended before its last message"));
                    break;
                }
                continue;
            }
            event = timeout_at(deadline, wire::next_event(&mut ws)) => event,
        };
        let Ok(event) = event else {
            match (finish_by, now.total(stream)) {
                (Some(_), Some(total)) => t.fail(format!(
                    "{who}: {} of {total} messages after waiting {:?}; next due {:?}",
                    seq.seen(),
                    cast.timing.finish,
                    seq.next()
                )),
                _ => t.fail(format!("{who}: no frame for {:?}", cast.timing.idle)),
            }
            close(&mut ws, who, t).await;
            break;
        };
        if !on_event(&mut ws, event, &mut seq, true, who, t).await {
            break;
        }
    }
    t.checked += seq.seen();
}

/// Handles one event of a reading client; `false` when the session is over (the
/// failure, if any, is recorded).
async fn on_event(
    ws: &mut Ws,
    event: Event,
    seq: &mut Sequence,
    answer: bool,
    who: &str,
    t: &mut Tally,
) -> bool {
    match event {
        Event::Data(stream, n) => {
            if let Err(err) = seq.see(stream, n) {
                t.fail(format!("{who}: {err}"));
                close(ws, who, t).await;
                return false;
            }
            true
        }
        Event::Ping(ms) if answer => match wire::pong(ws, ms).await {
            Ok(()) => {
                t.pongs += 1;
                true
            }
            Err(err) => {
                t.fail(format!("{who}: {err:#}"));
                t.ended(Ending::Dropped);
                false
            }
        },
        Event::Ping(_) | Event::Control => true,
        Event::Closed(code) => {
            let code = code.unwrap_or(0);
            t.fail(format!(
                "{who}: closed by the server with {code} after {} messages",
                seq.seen()
            ));
            t.ended(Ending::Server(code));
            wire::finish(ws).await;
            false
        }
        Event::Dropped(why) => {
            t.fail(format!(
                "{who}: dropped ({why}) after {} messages",
                seq.seen()
            ));
            t.ended(Ending::Dropped);
            false
        }
        Event::Welcome | Event::Unexpected(_) => {
            let what = match event {
                Event::Unexpected(what) => what,
                _ => "second welcome".into(),
            };
            t.fail(format!("{who}: unexpected {what}"));
            close(ws, who, t).await;
            false
        }
    }
}

async fn close(ws: &mut Ws, who: &str, t: &mut Tally) {
    if wire::close(ws).await {
        t.ended(Ending::ClientClose);
    } else {
        t.fail(format!("{who}: the server did not answer a client close"));
        t.ended(Ending::Dropped);
    }
}

/// Sessions of a few seconds, each gapless, closed by the client; until traffic ends.
async fn churn(cast: &Cast, mut ws: Ws, route: &str, who: &str, t: &mut Tally) {
    let stream = stream_of(route);
    let mut phase = cast.phase.clone();
    loop {
        let mut seq = Sequence::joined(stream);
        let length = cast.timing.churn_min
            + (cast.timing.churn_max - cast.timing.churn_min).mul_f64(fastrand::f64());
        let session_end = Instant::now() + length;
        let open = loop {
            let end = phase
                .borrow_and_update()
                .churn_end()
                .map_or(session_end, |e| e.min(session_end));
            let event = tokio::select! {
                changed = phase.changed() => match changed {
                    Ok(()) => continue,
                    Err(_) => None,
                },
                () = sleep_until(end) => None,
                event = wire::next_event(&mut ws) => Some(event),
            };
            match event {
                None => break true,
                Some(event) => {
                    if !on_event(&mut ws, event, &mut seq, true, who, t).await {
                        break false;
                    }
                }
            }
        };
        t.checked += seq.seen();
        if open {
            close(&mut ws, who, t).await;
        }
        if !phase.borrow().has_room(Duration::ZERO) {
            break;
        }
        sleep(Duration::from_millis(fastrand::u64(0..300))).await;
        ws = match open_again(cast, route, who, t).await {
            Some(ws) => ws,
            None => break,
        };
    }
}

async fn open_again(cast: &Cast, route: &str, who: &str, t: &mut Tally) -> Option<Ws> {
    match open(cast, route).await {
        Ok(ws) => {
            t.sessions += 1;
            Some(ws)
        }
        Err(err) => {
            t.fail(format!("{who}: reconnect: {err:#}"));
            None
        }
    }
}

/// Reads but never answers a json-gzip ping: each session must end with 4000 within
/// `silent_limit`; then it comes back while traffic lasts.
async fn silent(cast: &Cast, mut ws: Ws, route: &str, who: &str, t: &mut Tally) {
    let stream = stream_of(route);
    loop {
        let started = Instant::now();
        let limit = started + cast.timing.silent_limit;
        let mut seq = Sequence::joined(stream);
        loop {
            let Ok(event) = timeout_at(limit, wire::next_event(&mut ws)).await else {
                t.fail(format!(
                    "{who}: not closed within {:?} though it answers no ping",
                    cast.timing.silent_limit
                ));
                close(&mut ws, who, t).await;
                break;
            };
            match event {
                Event::Closed(Some(4000)) => {
                    t.ended(Ending::Server(4000));
                    t.max_close_ms = t.max_close_ms.max(started.elapsed().as_millis() as u64);
                    wire::finish(&mut ws).await;
                    break;
                }
                Event::Ping(_) => {}
                other => {
                    if !on_event(&mut ws, other, &mut seq, false, who, t).await {
                        break;
                    }
                }
            }
        }
        t.checked += seq.seen();
        if !cast.phase.borrow().has_room(Duration::ZERO) {
            break;
        }
        ws = match open_again(cast, route, who, t).await {
            Some(ws) => ws,
            None => break,
        };
    }
}

/// Waits (without reading) for traffic to start; `None` if the run is already over.
async fn traffic(phase: &mut watch::Receiver<Phase>) -> Option<Instant> {
    loop {
        match *phase.borrow_and_update() {
            Phase::Traffic { until } => return Some(until),
            Phase::Done { .. } => return None,
            Phase::Warmup => {}
        }
        phase.changed().await.ok()?;
    }
}

/// A slow client on `/bulk`: it never reads (`pace` `None`) or reads one message per
/// `pace` until the daemon has published `lag` messages it has not read, more than the
/// kernel's socket buffers can hold; after `settle` (over `write_timeout`) it reads fast
/// and must find the stream already cut (1008, or the end of a connection the server
/// dropped). Counting messages rather than seconds keeps the verdict fair when a loaded
/// machine publishes slower than asked. Again while traffic leaves room.
async fn slow(
    cast: &Cast,
    mut ws: Ws,
    route: &str,
    pace: Option<Duration>,
    who: &str,
    t: &mut Tally,
) {
    let mut phase = cast.phase.clone();
    loop {
        if traffic(&mut phase).await.is_none() {
            t.fail(format!("{who}: traffic ended before it could fall behind"));
            close(&mut ws, who, t).await;
            return;
        }
        // Subscribed (welcome seen) before this reading: every later message is due to it.
        let start = cast.published.load(Ordering::Relaxed);
        let mut seq = Sequence::joined(stream_of(route));
        let early = match pace {
            None => {
                while !seq_behind(&seq, start, cast) && phase.borrow().has_room(Duration::ZERO) {
                    sleep(POLL).await;
                }
                None
            }
            Some(pace) => trickled(&mut ws, &mut seq, pace, cast, start, &phase, who, t).await,
        };
        let cut = match early {
            Some(cut) => cut,
            None if seq_behind(&seq, start, cast) => {
                sleep(cast.timing.settle).await;
                drained(&mut ws, &mut seq, cast.timing.drain, who, t).await
            }
            None => {
                // Traffic ended before it fell far enough behind: no verdict either way.
                t.unjudged += 1;
                close(&mut ws, who, t).await;
                false
            }
        };
        t.checked += seq.seen();
        if !cut || !phase.borrow().has_room(cast.timing.stall) {
            return;
        }
        ws = match open_again(cast, route, who, t).await {
            Some(ws) => ws,
            None => return,
        };
    }
}

/// How often a stalled client looks at the publish count.
const POLL: Duration = Duration::from_millis(200);

/// Whether the daemon has published `lag` messages past what this client has read.
fn seq_behind(seq: &Sequence, start: u64, cast: &Cast) -> bool {
    let due = seq.next().unwrap_or(start);
    cast.published.load(Ordering::Relaxed).saturating_sub(due) >= cast.timing.lag
}

/// Reads one message per `pace` until the client is `lag` behind or traffic ends.
/// `Some(cut)` if the session ended on the way (`true`: cut off as a slow client should
/// be); `None` if still open.
#[allow(clippy::too_many_arguments)]
async fn trickled(
    ws: &mut Ws,
    seq: &mut Sequence,
    pace: Duration,
    cast: &Cast,
    start: u64,
    phase: &watch::Receiver<Phase>,
    who: &str,
    t: &mut Tally,
) -> Option<bool> {
    while !seq_behind(seq, start, cast) && phase.borrow().has_room(Duration::ZERO) {
        let Ok(event) = tokio::time::timeout(cast.timing.idle, wire::next_event(ws)).await else {
            t.fail(format!(
                "{who}: no frame for {:?} while trickling",
                cast.timing.idle
            ));
            close(ws, who, t).await;
            return Some(false);
        };
        if let Some(cut) = slow_event(ws, event, seq, who, t).await {
            return Some(cut);
        }
        sleep(pace).await;
    }
    None
}

/// A cut-off client's last look: reads what was buffered, in order, up to a 1008 close
/// or the end of the stream. `false` (and a failure) if the server is still sending.
async fn drained(
    ws: &mut Ws,
    seq: &mut Sequence,
    drain: Duration,
    who: &str,
    t: &mut Tally,
) -> bool {
    let start = Instant::now();
    let deadline = start + drain;
    let mut last = start;
    loop {
        let Ok(event) = timeout_at(deadline, wire::next_event(ws)).await else {
            t.fail(format!(
                "{who}: not cut off: no close and no end of stream {drain:?} into the drain \
                 ({} messages read, the last {} ms in)",
                seq.seen(),
                (last - start).as_millis()
            ));
            let _ = wire::close(ws).await;
            return false;
        };
        last = Instant::now();
        if let Some(cut) = slow_event(ws, event, seq, who, t).await {
            return cut;
        }
    }
}

/// One event of a slow client: `Some(true)` once cut off as it should be, `Some(false)`
/// on a failure (recorded), `None` to read on.
async fn slow_event(
    ws: &mut Ws,
    event: Event,
    seq: &mut Sequence,
    who: &str,
    t: &mut Tally,
) -> Option<bool> {
    match event {
        Event::Data(stream, n) => match seq.see(stream, n) {
            Ok(()) => None,
            Err(err) => {
                t.fail(format!("{who}: {err}"));
                close(ws, who, t).await;
                Some(false)
            }
        },
        Event::Control | Event::Ping(_) => None,
        Event::Closed(Some(1008)) => {
            t.ended(Ending::Server(1008));
            wire::finish(ws).await;
            Some(true)
        }
        Event::Dropped(_) => {
            t.ended(Ending::Dropped);
            Some(true)
        }
        Event::Closed(code) => {
            let code = code.unwrap_or(0);
            t.fail(format!("{who}: cut off with {code}, not 1008"));
            t.ended(Ending::Server(code));
            wire::finish(ws).await;
            Some(false)
        }
        Event::Welcome => {
            t.fail(format!("{who}: second welcome"));
            close(ws, who, t).await;
            Some(false)
        }
        Event::Unexpected(what) => {
            t.fail(format!("{who}: unexpected {what}"));
            close(ws, who, t).await;
            Some(false)
        }
    }
}
