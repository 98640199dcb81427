//! The pub/sub side of the Redis broker: one connection subscribed to exactly the
//! channels this node's connections hold, its messages fanned out through the hub.
//!
//! The link is made again (jittered backoff) whenever it fails or goes quiet: a probe
//! this node publishes to itself must come back within `broker.timeout`. Each new link
//! subscribes to every held channel, then catches each channel with history up from
//! Redis from the last offset this node has, before it reports ready. A live message
//! that skips an offset is a gap: the channel is read from Redis first.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::PubSubSink;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::bus::{Bus, now_ms};
use super::codec;
use super::holds::{Holds, Waiters};
use crate::fanout::{Hub, Placed, Target};

/// Shortest and longest wait before the link is made again.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Channels per SUBSCRIBE.
const BATCH: usize = 256;

/// Whether the link delivers, and why not.
#[derive(Default)]
pub(super) struct Status {
    up: AtomicBool,
    why: Mutex<String>,
}

impl Status {
    /// `Ok` while publishes reach this node; else why not.
    pub fn ready(&self) -> Result<(), String> {
        if self.up.load(Ordering::Acquire) {
            return Ok(());
        }
        let why = self.why.lock().unwrap_or_else(|p| p.into_inner());
        Err(match why.is_empty() {
            true => "not connected to Redis yet".into(),
            false => why.clone(),
        })
    }

    fn set(&self, up: bool, why: &str) {
        *self.why.lock().unwrap_or_else(|p| p.into_inner()) = why.to_owned();
        self.up.store(up, Ordering::Release);
    }
}

/// What the link works with.
pub(super) struct Link {
    pub bus: Arc<Bus>,
    pub holds: Arc<Holds>,
    pub status: Arc<Status>,
    pub hub: Arc<Hub>,
}

impl Link {
    /// Keeps a link up until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = MIN_BACKOFF;
        let mut down_since: Option<Instant> = None;
        let mut first = true;
        loop {
            let ended = self
                .session(&stop, &mut || {
                    backoff = MIN_BACKOFF;
                    match down_since.take() {
                        Some(since) => info!(
                            down_for = ?since.elapsed(),
                            "broker back: Redis reachable again, channels subscribed and caught up"
                        ),
                        None if first => info!("broker connected: Redis pub/sub subscribed"),
                        None => {}
                    }
                    first = false;
                })
                .await;
            let why = match ended {
                Ok(()) => return,
                Err(why) => why,
            };
            self.bus.counters.up.set(0);
            self.status.set(false, &why);
            if down_since.is_none() {
                // One line per outage; the recovery logs one more.
                warn!(error = %why, "broker down: publishes answer 503 and /healthz reports not ready until Redis is back");
                down_since = Some(Instant::now());
            }
            let (wait, next) = retry(backoff, fastrand::f64());
            backoff = next;
            let until = Instant::now() + wait;
            // Handshakes that arrive meanwhile are told at once.
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep_until(until) => break,
                    () = self.holds.changed() => {
                        answer(self.holds.changes().waiters, &Err(why.clone()));
                    }
                }
            }
            self.bus.counters.reconnects.inc();
        }
    }

    /// One pub/sub connection, from subscribing until it fails (`Err`) or `stop`.
    async fn session(
        &self,
        stop: &CancellationToken,
        on_up: &mut (dyn FnMut() + Send),
    ) -> Result<(), String> {
        let bus = &self.bus;
        let started = Instant::now();
        let pubsub = match tokio::time::timeout(bus.timeout, bus.client().get_async_pubsub()).await
        {
            Ok(Ok(p)) => p,
            Ok(Err(e)) if e.kind() == redis::ErrorKind::AuthenticationFailed => {
                return Err(format!(
                    "cannot connect to Redis: {e}: check the password in broker.password_file"
                ));
            }
            Ok(Err(e)) => return Err(format!("cannot connect to Redis: {e}")),
            Err(_) => {
                return Err(format!(
                    "cannot connect to Redis: no answer within {:?} (broker.timeout)",
                    bus.timeout
                ));
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let (held, waiters) = self.holds.all();
        let mut names: Vec<String> = [&bus.keys.all, &bus.keys.kick, &bus.keys.probe]
            .map(String::clone)
            .to_vec();
        names.extend(held.iter().map(|c| bus.keys.channel(c)));
        let ready = async {
            for batch in names.chunks(BATCH) {
                self.subscribe(&mut sink, batch, true).await?;
            }
            // Everything published from here on arrives; what came before is read from Redis.
            let wants: Vec<(Arc<str>, u64)> = held
                .iter()
                .filter_map(|c| Some((c.clone(), self.hub.last_offset(c)?)))
                .collect();
            bus.sync(&self.hub, &wants).await
        }
        .await;
        answer(waiters, &ready);
        ready?;
        self.status.set(true, "");
        bus.counters.up.set(1);
        bus.counters
            .resubscribe_seconds
            .observe(started.elapsed().as_secs_f64());
        on_up();

        let mut ticks = tokio::time::interval(bus.probe_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut probe = Probe::default();
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                msg = stream.next() => {
                    let Some(msg) = msg else {
                        return Err("the Redis pub/sub connection closed".into());
                    };
                    if msg.get_channel_name() == bus.keys.probe {
                        let back = std::str::from_utf8(msg.get_payload_bytes())
                            .ok()
                            .and_then(|s| s.parse().ok());
                        probe.back(back);
                        continue;
                    }
                    self.handle(msg.get_channel_name(), msg.get_payload_bytes()).await?;
                }
                () = self.holds.changed() => {
                    let changes = self.holds.changes();
                    let gone: Vec<String> =
                        changes.unsubscribe.iter().map(|c| bus.keys.channel(c)).collect();
                    let new: Vec<String> =
                        changes.subscribe.iter().map(|c| bus.keys.channel(c)).collect();
                    let mut done = Ok(());
                    for batch in gone.chunks(BATCH) {
                        done = done.and(self.subscribe(&mut sink, batch, false).await);
                    }
                    for batch in new.chunks(BATCH) {
                        done = done.and(self.subscribe(&mut sink, batch, true).await);
                    }
                    answer(changes.waiters, &done);
                    done?;
                }
                _ = ticks.tick() => match probe.tick(Instant::now(), bus.timeout) {
                    Tick::Send(seq) => bus.probe(seq).await?,
                    Tick::Wait => {}
                    Tick::Lost => {
                        bus.counters.probes_lost.inc();
                        return Err(format!(
                            "a probe published to Redis did not come back through pub/sub within {:?} (broker.timeout)",
                            bus.timeout
                        ));
                    }
                },
            }
        }
    }

    /// SUBSCRIBE (or UNSUBSCRIBE) `names`, waiting for Redis to confirm.
    async fn subscribe(
        &self,
        sink: &mut PubSubSink,
        names: &[String],
        on: bool,
    ) -> Result<(), String> {
        let what = if on { "subscribe" } else { "unsubscribe" };
        let call = async {
            match on {
                true => sink.subscribe(names).await,
                false => sink.unsubscribe(names).await,
            }
        };
        match tokio::time::timeout(self.bus.timeout, call).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("cannot {what} on Redis: {e}")),
            Err(_) => Err(format!(
                "cannot {what} on Redis: no answer within {:?} (broker.timeout)",
                self.bus.timeout
            )),
        }
    }

    /// One message from Redis, fanned out here; a gap is read from Redis first.
    async fn handle(&self, channel: &str, bytes: &[u8]) -> Result<(), String> {
        let bus = &self.bus;
        if channel == bus.keys.kick {
            match codec::kick_of(bytes) {
                Some((kick, reason)) => {
                    self.hub.kick(&kick, reason);
                }
                None => warn!(channel, "ignored a message heartwire did not write"),
            }
            return Ok(());
        }
        let published = if channel == bus.keys.all {
            let Some((route, ms, payload)) = codec::broadcast_of(bytes) else {
                warn!(channel, "ignored a message heartwire did not write");
                return Ok(());
            };
            let target = match route {
                Some(path) => Target::Route(path.to_owned()),
                None => Target::All,
            };
            self.hub.deliver(&target, &payload);
            ms
        } else {
            let (Some(name), Some(m)) = (bus.keys.channel_of(channel), codec::numbered(bytes))
            else {
                warn!(channel, "ignored a message heartwire did not write");
                return Ok(());
            };
            match m.at {
                None => {
                    self.hub
                        .deliver(&Target::Channels(vec![name.to_owned()]), &m.payload);
                }
                Some((epoch, offset)) => {
                    if let Placed::Behind { from } =
                        self.hub.deliver_at(name, epoch, offset, &m.payload)
                    {
                        bus.sync(&self.hub, &[(Arc::from(name), from)]).await?;
                    }
                }
            }
            m.published_ms
        };
        let lag = now_ms().saturating_sub(published);
        bus.counters.lag_seconds.observe(lag as f64 / 1000.0);
        Ok(())
    }
}

/// The wait before the next attempt (half to all of `backoff`, by `jitter` in 0..1) and
/// the backoff after it (doubled, up to [`MAX_BACKOFF`]).
fn retry(backoff: Duration, jitter: f64) -> (Duration, Duration) {
    let wait = backoff.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0);
    (wait, (backoff * 2).min(MAX_BACKOFF))
}

/// The probe a node sends itself through pub/sub: one at a time, each due back within
/// `broker.timeout`.
#[derive(Debug, Default)]
struct Probe {
    seq: u64,
    pending: Option<(u64, Instant)>,
}

/// What a probe tick calls for.
#[derive(Debug, PartialEq, Eq)]
enum Tick {
    /// Publish probe number .0.
    Send(u64),
    /// The last one is out and not yet late.
    Wait,
    /// The last one is late: pub/sub is silent.
    Lost,
}

impl Probe {
    fn tick(&mut self, now: Instant, timeout: Duration) -> Tick {
        match self.pending {
            Some((_, sent)) if now.saturating_duration_since(sent) > timeout => Tick::Lost,
            Some(_) => Tick::Wait,
            None => {
                self.seq += 1;
                self.pending = Some((self.seq, now));
                Tick::Send(self.seq)
            }
        }
    }

    /// Probe `seq` came back (anything else is ignored).
    fn back(&mut self, seq: Option<u64>) {
        if self.pending.is_some_and(|(s, _)| Some(s) == seq) {
            self.pending = None;
        }
    }
}

/// Tells each waiting handshake how its subscription went.
fn answer(waiters: Waiters, result: &Result<(), String>) {
    for w in waiters {
        let _ = w.send(result.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_half_to_all_of_a_doubling_backoff_up_to_five_seconds() {
        let mut backoff = MIN_BACKOFF;
        let mut seen = Vec::new();
        for jitter in [0.0, 1.0, 0.5, 0.0, 1.0, 0.25, 0.0, 1.0] {
            let (wait, next) = retry(backoff, jitter);
            assert!(
                wait >= backoff / 2 && wait <= backoff,
                "{wait:?} of {backoff:?}"
            );
            seen.push(next);
            backoff = next;
        }
        let ms: Vec<u128> = seen.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(retry(MIN_BACKOFF, 7.0).0, MIN_BACKOFF, "jitter is clamped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_not_back_within_the_timeout_is_lost_and_one_back_starts_the_next() {
        let timeout = Duration::from_millis(500);
        let mut p = Probe::default();
        let t0 = Instant::now();
        assert_eq!(p.tick(t0, timeout), Tick::Send(1));
        tokio::time::advance(Duration::from_millis(200)).await;
        assert_eq!(p.tick(Instant::now(), timeout), Tick::Wait, "one at a time");
        p.back(Some(7));
        assert_eq!(p.tick(Instant::now(), timeout), Tick::Wait, "not ours");
        p.back(Some(1));
        assert_eq!(p.tick(Instant::now(), timeout), Tick::Send(2));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(
            p.tick(Instant::now(), timeout),
            Tick::Wait,
            "exactly the timeout"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(p.tick(Instant::now(), timeout), Tick::Lost);
    }
}
