//! A heartbeat policy: one variant per strategy, holding exactly that strategy's knobs,
//! and the serde mirror of `[heartbeat.NAME]` that each strategy validates for itself.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::json_gzip::JsonGzip;
use super::protocol::ProtocolPing;
use super::strategy::Heartbeat;
use crate::duration::HumanDuration;

/// Default heartbeat interval.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(5);
/// Default number of unanswered `json-gzip` pings before a peer is closed (the seed's 2).
pub const DEFAULT_MAX_MISSED: u32 = 2;
/// `protocol`'s default `ping_timeout`, in intervals (Tornado's default).
const DEFAULT_TIMEOUT_INTERVALS: u32 = 3;

/// A validated heartbeat policy. A policy with strategy `none` is no policy at all: the
/// config holds `None` for it, so every `Policy` has an interval and a liveness rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// RFC 6455 Ping frames; a peer silent for `timeout` after a ping is dead.
    Protocol {
        /// Time between pings.
        interval: Duration,
        /// How long after a ping a peer may stay silent.
        timeout: Duration,
    },
    /// gzip JSON pings; a peer that leaves `max_missed` in a row unanswered is dead.
    JsonGzip {
        /// Time between pings.
        interval: Duration,
        /// Consecutive unanswered pings tolerated.
        max_missed: NonZeroU32,
    },
}

/// When a peer counts as dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// No frame at all within this long of a ping.
    Timeout(Duration),
    /// This many consecutive pings without a matching pong.
    MaxMissed(NonZeroU32),
}

/// A strategy's name, for logs, metrics and `/connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// RFC 6455 Ping/Pong frames carrying a 13-byte timestamp.
    Protocol,
    /// gzip-compressed `{"ping": ms}` binary messages answered by `{"pong": ms}`.
    JsonGzip,
}

impl Strategy {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Protocol => "protocol",
            Self::JsonGzip => "json-gzip",
        }
    }
}

impl Policy {
    /// Time between pings.
    pub fn interval(&self) -> Duration {
        match *self {
            Self::Protocol { interval, .. } | Self::JsonGzip { interval, .. } => interval,
        }
    }

    /// The rule by which a peer is declared dead.
    pub fn liveness(&self) -> Liveness {
        match *self {
            Self::Protocol { timeout, .. } => Liveness::Timeout(timeout),
            Self::JsonGzip { max_missed, .. } => Liveness::MaxMissed(max_missed),
        }
    }

    /// Its strategy's name.
    pub fn strategy(&self) -> Strategy {
        match self {
            Self::Protocol { .. } => Strategy::Protocol,
            Self::JsonGzip { .. } => Strategy::JsonGzip,
        }
    }

    /// The strategy object that builds its pings and reads the answers.
    pub fn build(&self) -> Arc<dyn Heartbeat> {
        match self {
            Self::Protocol { .. } => Arc::new(ProtocolPing),
            Self::JsonGzip { .. } => Arc::new(JsonGzip),
        }
    }
}

/// The `strategy` key as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKey {
    /// See [`Policy::Protocol`].
    Protocol,
    /// See [`Policy::JsonGzip`].
    JsonGzip,
    /// No heartbeat.
    None,
}

/// `[heartbeat.NAME]` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Which strategy.
    pub strategy: StrategyKey,
    /// Time between pings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_interval: Option<HumanDuration>,
    /// `protocol` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_timeout: Option<HumanDuration>,
    /// `json-gzip` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_missed: Option<u32>,
}

/// A knob of a policy that does not fit its strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The key within `[heartbeat.NAME]`.
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub reason: String,
}

fn refuse<T>(field: &'static str, reason: &str) -> Result<T, PolicyError> {
    Err(PolicyError {
        field,
        reason: reason.to_owned(),
    })
}

impl RawPolicy {
    /// The policy this describes (`None` for strategy `none`), each strategy checking
    /// that only its own knobs are set. Ceilings on written durations are the caller's;
    /// a derived `ping_timeout` stops at `longest`.
    pub fn validate(&self, longest: Duration) -> Result<Option<Policy>, PolicyError> {
        const POSITIVE: &str = "must be greater than 0, e.g. \"5s\" or \"250ms\"";
        let interval = self
            .ping_interval
            .as_ref()
            .map_or(DEFAULT_PING_INTERVAL, HumanDuration::get);
        if interval.is_zero() {
            return refuse("ping_interval", POSITIVE);
        }
        match self.strategy {
            StrategyKey::None => {
                if self.ping_interval.is_some()
                    || self.ping_timeout.is_some()
                    || self.max_missed.is_some()
                {
                    return refuse(
                        "strategy",
                        "is `none`, which sends no pings: remove ping_interval, ping_timeout and max_missed",
                    );
                }
                Ok(None)
            }
            StrategyKey::Protocol => {
                if self.max_missed.is_some() {
                    return refuse(
                        "max_missed",
                        "applies to strategy `json-gzip`; `protocol` closes a peer silent for ping_timeout",
                    );
                }
                let timeout = self.ping_timeout.as_ref().map_or_else(
                    || {
                        interval
                            .saturating_mul(DEFAULT_TIMEOUT_INTERVALS)
                            .min(longest)
                    },
                    HumanDuration::get,
                );
                if timeout.is_zero() {
                    return refuse("ping_timeout", POSITIVE);
                }
                Ok(Some(Policy::Protocol { interval, timeout }))
            }
            StrategyKey::JsonGzip => {
                if self.ping_timeout.is_some() {
                    return refuse(
                        "ping_timeout",
                        "applies to strategy `protocol`; `json-gzip` closes a peer after max_missed unanswered pings",
                    );
                }
                let missed = self.max_missed.unwrap_or(DEFAULT_MAX_MISSED);
                let Some(max_missed) = NonZeroU32::new(missed) else {
                    return refuse("max_missed", "must be at least 1 (the seed uses 2)");
                };
                Ok(Some(Policy::JsonGzip {
                    interval,
                    max_missed,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn raw(strategy: StrategyKey) -> RawPolicy {
        RawPolicy {
            strategy,
            ping_interval: None,
            ping_timeout: None,
            max_missed: None,
        }
    }

    #[test]
    fn defaults_per_strategy() {
        let five = DEFAULT_PING_INTERVAL;
        assert_eq!(
            raw(StrategyKey::Protocol).validate(DAY),
            Ok(Some(Policy::Protocol {
                interval: five,
                timeout: five * 3
            }))
        );
        let p = raw(StrategyKey::JsonGzip).validate(DAY).unwrap().unwrap();
        assert_eq!(
            p.liveness(),
            Liveness::MaxMissed(NonZeroU32::new(2).unwrap())
        );
        assert_eq!(p.strategy(), Strategy::JsonGzip);
        assert_eq!(raw(StrategyKey::None).validate(DAY), Ok(None));
    }

    #[test]
    fn each_strategy_refuses_the_others_knobs() {
        let mut r = raw(StrategyKey::Protocol);
        r.max_missed = Some(3);
        assert_eq!(r.validate(DAY).unwrap_err().field, "max_missed");
        let mut r = raw(StrategyKey::JsonGzip);
        r.ping_timeout = Some(Duration::from_secs(1).into());
        assert_eq!(r.validate(DAY).unwrap_err().field, "ping_timeout");
        let mut r = raw(StrategyKey::None);
        r.ping_interval = Some(Duration::from_secs(1).into());
        assert_eq!(r.validate(DAY).unwrap_err().field, "strategy");
        let mut r = raw(StrategyKey::JsonGzip);
        r.max_missed = Some(0);
        assert_eq!(r.validate(DAY).unwrap_err().field, "max_missed");
    }
}
