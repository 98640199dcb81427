//! The edge: everything that speaks HTTP to the outside. The accept loop and connection
//! limits ([`listener`], [`limits`]), TLS ([`tls`], on [`tls_stream`]), who the client is
//! behind a proxy ([`proxy_protocol`], [`forwarded`]), request routing ([`dispatch`]), the
//! WebSocket upgrade ([`handshake`]), who a connection is and what it holds ([`bearer`],
//! [`subscribe`]), the publish and kick endpoints ([`publish`], [`disconnect`], [`form`],
//! [`rate_limit`]), and the embedded browser client ([`assets`]).

mod assets;
mod bearer;
mod disconnect;
mod dispatch;
mod form;
mod forwarded;
mod handshake;
pub mod limits;
mod listener;
mod proxy_protocol;
mod publish;
mod rate_limit;
mod state;
mod subscribe;
mod tls;
mod tls_stream;

pub use listener::accept_loop;
pub use state::Edge;
