//! One connection's liveness bookkeeping: pure, driven by the supervisor's events.

use std::time::{Duration, Instant};

use super::policy::Liveness;

/// Pings remembered for matching pongs: the current one and the one before, so a
/// pong that crosses the next ping on the wire still counts.
const REMEMBERED: usize = 2;

/// What to do on a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickAction {
    /// Send the tick's ping.
    Send,
    /// The peer missed too many pings: close it.
    Dead {
        /// Consecutive unanswered pings.
        missed: u32,
    },
}

/// Liveness state of one peer.
#[derive(Debug, Default, Clone)]
pub struct PeerBeat {
    sent: [Option<(u64, Instant)>; REMEMBERED],
    missed: u32,
    deadline: Option<Instant>,
    last_rtt: Option<Duration>,
}

impl PeerBeat {
    /// A tick came: send the ping, or declare the peer dead.
    pub fn on_tick(&mut self, rule: Liveness, token: u64, now: Instant) -> TickAction {
        match rule {
            Liveness::MaxMissed(max) if self.missed >= max.get() => {
                return TickAction::Dead {
                    missed: self.missed,
                };
            }
            Liveness::MaxMissed(_) => {}
            // Keep the earliest deadline: the first unanswered ping is the one that counts.
            Liveness::Timeout(t) => {
                self.deadline.get_or_insert(now + t);
            }
        }
        self.missed = self.missed.saturating_add(1);
        self.sent.rotate_right(1);
        self.sent[0] = Some((token, now));
        TickAction::Send
    }

    /// Any frame arrived: under a timeout rule that alone proves the peer alive.
    pub fn on_frame(&mut self, rule: Liveness) {
        if let Liveness::Timeout(_) = rule {
            self.deadline = None;
            self.missed = 0;
        }
    }

    /// A pong arrived. Returns the round-trip time when it answers a remembered ping.
    pub fn on_pong(&mut self, token: Option<u64>, now: Instant) -> Option<Duration> {
        let token = token?;
        let sent_at = self.sent.iter().flatten().find(|(t, _)| *t == token)?.1;
        let rtt = now.saturating_duration_since(sent_at);
        self.missed = 0;
        self.deadline = None;
        self.sent = Default::default();
        self.last_rtt = Some(rtt);
        Some(rtt)
    }

    /// When the peer is dead unless a frame arrives first.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Consecutive unanswered pings.
    pub fn missed(&self) -> u32 {
        self.missed
    }

    /// The last measured round-trip time.
    pub fn last_rtt(&self) -> Option<Duration> {
        self.last_rtt
    }

    /// Forget outstanding pings (the route's policy changed or was removed).
    pub fn reset(&mut self) {
        *self = Self {
            last_rtt: self.last_rtt,
            ..Self::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn max_missed_closes_on_the_tick_after_the_limit_like_the_seed() {
        let rule = Liveness::MaxMissed(NonZeroU32::new(2).unwrap());
        let t0 = Instant::now();
        let mut p = PeerBeat::default();
        assert_eq!(p.on_tick(rule, 1, t0), TickAction::Send);
        assert_eq!(p.on_tick(rule, 2, t0 + 5 * MS), TickAction::Send);
        assert_eq!(
            p.on_tick(rule, 3, t0 + 10 * MS),
            TickAction::Dead { missed: 2 }
        );
    }

    #[test]
    fn only_a_matching_pong_resets_the_count() {
        let rule = Liveness::MaxMissed(NonZeroU32::new(2).unwrap());
        let t0 = Instant::now();
        let mut p = PeerBeat::default();
        p.on_tick(rule, 10, t0);
        p.on_tick(rule, 20, t0 + 5 * MS);
        p.on_frame(rule);
        assert_eq!(p.on_pong(Some(99), t0 + 6 * MS), None);
        assert_eq!(p.on_pong(None, t0 + 6 * MS), None);
        assert_eq!(p.missed(), 2);
        // The previous ping still matches (its pong crossed the next ping).
        assert_eq!(p.on_pong(Some(10), t0 + 7 * MS), Some(7 * MS));
        assert_eq!(p.missed(), 0);
        assert_eq!(p.last_rtt(), Some(7 * MS));
        assert_eq!(p.on_tick(rule, 30, t0 + 10 * MS), TickAction::Send);
    }

    #[test]
    fn timeout_rule_arms_once_and_any_frame_disarms() {
        let rule = Liveness::Timeout(100 * MS);
        let t0 = Instant::now();
        let mut p = PeerBeat::default();
        assert_eq!(p.deadline(), None);
        p.on_tick(rule, 1, t0);
        p.on_tick(rule, 2, t0 + 50 * MS);
        assert_eq!(p.deadline(), Some(t0 + 100 * MS));
        p.on_frame(rule);
        assert_eq!(p.deadline(), None);
        p.on_tick(rule, 3, t0 + 150 * MS);
        assert_eq!(p.deadline(), Some(t0 + 250 * MS));
        assert_eq!(p.on_pong(Some(3), t0 + 160 * MS), Some(10 * MS));
        assert_eq!(p.deadline(), None);
    }

    #[test]
    fn reset_forgets_outstanding_pings() {
        let rule = Liveness::Timeout(100 * MS);
        let mut p = PeerBeat::default();
        p.on_tick(rule, 1, Instant::now());
        p.reset();
        assert_eq!((p.deadline(), p.missed()), (None, 0));
    }
}
