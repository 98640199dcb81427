//! Prometheus metrics: plain counters shared through an `Arc<Metrics>` (no globals),
//! rendered as OpenMetrics text by the admin listener's `GET /metrics`.
//!
//! Hot paths never look a label set up: a connection resolves its route's counters once
//! at its handshake ([`RouteCounters`]) and its policy's when the policy changes
//! ([`PolicyCounters`]); each is a clone sharing the family's atomic.

mod counters;
mod labels;
mod registry;

pub use counters::{BrokerCounters, HistoryCounters, PolicyCounters, RouteCounters};
pub use labels::{Rejection, SlowAction};
pub use registry::{CONTENT_TYPE, Metrics};
