//! Socket activation: serve the listeners systemd passes (`LISTEN_FDS`, see
//! systemd/heartwire.socket) instead of binding `server.listen`. The kernel keeps queueing
//! connection attempts on those sockets while the service restarts, so a restart refuses
//! none. The admin listener is always bound by the daemon itself.

use std::net::TcpListener;

use anyhow::Context;
use listenfd::ListenFd;

/// The sockets systemd passed, if any.
pub struct Inherited(ListenFd);

impl Inherited {
    /// Reads (and, as sd_listen_fds does, unsets) `LISTEN_FDS` and `LISTEN_PID`.
    /// Call it before any thread starts: unsetting environment variables is only sound then.
    pub fn from_env() -> Self {
        Self(ListenFd::from_env())
    }

    /// How many sockets were passed.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none were (the daemon binds `server.listen` itself).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every passed socket as a non-blocking listener, ready for tokio. Each must be a
    /// listening TCP socket (`ListenStream=` with an address, not a path).
    pub fn into_listeners(mut self) -> anyhow::Result<Vec<TcpListener>> {
        let mut out = Vec::with_capacity(self.len());
        for i in 0..self.len() {
            let std = self
                .0
                .take_tcp_listener(i)
                .with_context(|| {
                    format!("inherited socket {i} (LISTEN_FDS) is not a listening TCP socket")
                })?
                .with_context(|| format!("inherited socket {i} (LISTEN_FDS) was already taken"))?;
            std.set_nonblocking(true)
                .with_context(|| format!("inherited socket {i}: cannot make it non-blocking"))?;
            out.push(std);
        }
        Ok(out)
    }
}
