//! heartwire: a WebSocket push daemon.
//!
//! Clients connect to WebSocket routes; backends publish to them over HTTP; pluggable
//! heartbeats find dead peers. One port serves HTTP and WebSocket upgrades.
//!
//! The modules are layers; each imports only from the layers below it (checked by
//! `scripts/check-layers`), and data flows from the top of this list to the bottom:
//!
//! - [`daemon`]: the daemon's life (start, follow config changes, shut down in order);
//! - [`ops`]: what operators touch: signals, reload, admin listener, logging, systemd;
//! - [`edge`]: HTTP on the public listener: accept, dispatch, handshake, publish, limits;
//! - [`conn`]: one connection's supervisor: inbound, outbound batches, heartbeat, close;
//! - [`fanout`]: routes, channels and their subscribers, mailboxes, the broker, the drain;
//! - [`metrics`]: the counters every layer above pushes to;
//! - [`config`]: the file, validated; [`heartbeat`]: policies and strategies;
//!   [`channels`]: channel names, templates and route path patterns; [`auth`]: subscriber
//!   tokens (keys, verification, identities);
//! - leaves: [`wire`] (frames encoded once), [`envelope`] (the envelope format), [`http`] (responses), [`close`] (codes),
//!   [`duration`] (durations as written in the config), [`process`] (the process's own
//!   figures: memory, descriptors, CPU).
//!
//! See docs/architecture.md for the data flow and how to extend each layer.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod channels;
mod close;
pub mod config;
mod conn;
mod daemon;
pub mod duration;
mod edge;
mod envelope;
pub mod fanout;
pub mod heartbeat;
mod http;
mod metrics;
pub mod ops;
mod process;
mod wire;

pub use daemon::run_with;
