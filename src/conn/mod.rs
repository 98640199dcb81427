//! One connection: the [`supervise`] loop over its socket, what it was given at the
//! handshake ([`Session`]), its outbound batches and slow-consumer policy, inbound route
//! actions, token refresh and expiry, and bounded writes and closes.

mod inbound;
mod outbound;
mod rate;
mod refresh;
mod session;
mod step;
mod supervisor;
mod write;

pub use session::Session;
pub use supervisor::supervise;
pub use write::close_with;

#[cfg(test)]
mod tests;
