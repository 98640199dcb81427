//! The optional publish rate limit (`publish.rate_limit`, `publish.rate_burst`).
//!
//! One bucket for all publishers: it protects the fan-out, whose cost is per message,
//! not per publisher. The bucket survives reloads that leave the rate alone.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};

use crate::config::PublishRate;

/// The bucket for the rate in force, rebuilt when a reload changes the rate.
#[derive(Debug, Default)]
pub struct RateLimit {
    current: Mutex<Option<(PublishRate, Arc<DefaultDirectRateLimiter>)>>,
}

impl RateLimit {
    /// Takes one request from the bucket; `Err` holds how long until one is free.
    pub fn check(&self, rate: Option<PublishRate>) -> Result<(), Duration> {
        let Some(rate) = rate else {
            return Ok(());
        };
        let limiter = {
            let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
            match &*current {
                Some((r, limiter)) if *r == rate => limiter.clone(),
                _ => {
                    let quota = Quota::per_second(rate.per_second).allow_burst(rate.burst);
                    let limiter = Arc::new(DefaultDirectRateLimiter::direct(quota));
                    *current = Some((rate, limiter.clone()));
                    limiter
                }
            }
        };
        limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn rate(per_second: u32, burst: u32) -> Option<PublishRate> {
        Some(PublishRate {
            per_second: NonZeroU32::new(per_second).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        })
    }

    #[test]
    fn no_rate_never_refuses() {
        let limit = RateLimit::default();
        assert!((0..10_000).all(|_| limit.check(None).is_ok()));
    }

    #[test]
    fn burst_then_refused_with_the_wait() {
        let limit = RateLimit::default();
        // 1 per second: after the burst of 3 the next is at most 1 s away.
        for _ in 0..3 {
            assert_eq!(limit.check(rate(1, 3)), Ok(()));
        }
        let wait = limit.check(rate(1, 3)).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
    }

    #[test]
    fn a_new_rate_gets_a_fresh_bucket_and_the_same_rate_keeps_it() {
        let limit = RateLimit::default();
        assert!(limit.check(rate(1, 1)).is_ok());
        assert!(limit.check(rate(1, 1)).is_err());
        assert!(limit.check(rate(2, 1)).is_ok());
        assert!(limit.check(rate(2, 1)).is_err());
    }
}
