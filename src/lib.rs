//! heartwire: a WebSocket push daemon.
//!
//! Clients connect to WebSocket routes; backends publish to them over HTTP; pluggable
//! heartbeats find dead peers. One port serves HTTP and WebSocket upgrades.
//!
//! Reading order: [`config`] (what ops write) → [`server`] (accept, dispatch, shutdown;
//! [`limits`]) → [`handshake`] → [`supervisor`] (one connection) → [`heartbeat`] (strategies) →
//! [`hub`] / [`broker`] (fan-out) → [`publish`] ([`rate_limit`]). Operations: [`ops`]
//! ([`metrics`], [`notify`]), [`admin`], [`drain`], [`activation`], [`vitals`],
//! [`allocator`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod activation;
pub mod admin;
pub mod allocator;
pub mod broker;
pub mod close;
pub mod config;
pub mod drain;
pub mod handshake;
pub mod heartbeat;
pub mod http;
pub mod hub;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod ops;
pub mod origin;
pub mod publish;
pub mod rate_limit;
pub mod reload;
pub mod server;
pub mod signals;
pub mod supervisor;
pub mod vitals;
pub mod wire;

pub use server::{run, run_with};
