//! A per-connection rate limit on the runtime's clock: the generic cell rate algorithm in
//! one `Option<Instant>`. (governor, which the publish limit uses, keeps its own clock,
//! which paused-time tests cannot move, and takes more room per connection.)

use std::time::{Duration, Instant};

/// Whether an event at `now` is within a rate of one per `every` with bursts of `burst`,
/// counting it if so. `tat` is the limit's state: when the next event would conform,
/// starting `None`; each admitted event moves it an `every` later, and it may run at most
/// `burst` of them ahead of `now`.
pub(super) fn admit(tat: &mut Option<Instant>, now: Instant, every: Duration, burst: u32) -> bool {
    let next = tat.map_or(now, |t| t.max(now)) + every;
    if next > now + every * burst {
        return false;
    }
    *tat = Some(next);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let (every, burst) = (Duration::from_secs(1), 10);
        let start = Instant::now();
        let ms = Duration::from_millis;
        let mut tat = None;
        for i in 0..burst {
            assert!(
                admit(&mut tat, start, every, burst),
                "event {i} of the burst"
            );
        }
        assert!(!admit(&mut tat, start, every, burst), "one over the burst");
        assert!(
            !admit(&mut tat, start + ms(999), every, burst),
            "a second is not up"
        );
        assert!(admit(&mut tat, start + ms(1000), every, burst));
        assert!(!admit(&mut tat, start + ms(1000), every, burst));
        // One per `every` goes on for ever; a quiet spell refills the burst.
        for s in 2..100 {
            assert!(
                admit(&mut tat, start + ms(1000 * s), every, burst),
                "at {s} s"
            );
        }
        let later = start + ms(1000 * 99 + 10_000);
        for i in 0..burst {
            assert!(
                admit(&mut tat, later, every, burst),
                "event {i} of the second burst"
            );
        }
        assert!(!admit(&mut tat, later, every, burst));
    }

    #[test]
    fn a_fast_rate_spaces_events_by_its_fraction_of_a_second() {
        let (every, burst) = (Duration::from_secs(1) / 100, 100);
        let start = Instant::now();
        let mut tat = None;
        let admitted = (0..300)
            .filter(|_| admit(&mut tat, start, every, burst))
            .count();
        assert_eq!(admitted, 100, "a burst of 100 at once");
        let later = start + Duration::from_millis(50);
        let admitted = (0..300)
            .filter(|_| admit(&mut tat, later, every, burst))
            .count();
        assert_eq!(admitted, 5, "50 ms later: 5 more");
    }
}
