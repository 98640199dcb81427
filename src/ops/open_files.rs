//! The open-file limit against the connection limits. Every client is a descriptor, so
//! limits above `RLIMIT_NOFILE` are not reached: past it, accepting fails with "too many
//! open files" while the daemon believes it has room. Checked at start, and again when a
//! reload changes the limits.

use tracing::warn;

use crate::config::ServerConfig;
use crate::process;

/// Warns when `server`'s connection limits exceed this process's open-file limit.
pub fn check(server: &ServerConfig) {
    let Some(limit) = process::open_file_limit() else {
        return;
    };
    if let Some(msg) = shortfall(server.max_connections, server.max_http_connections, limit) {
        warn!(open_file_limit = limit, "{msg}");
    }
}

/// After a reload: checks again if the connection limits changed.
pub fn recheck(old: &ServerConfig, new: &ServerConfig) {
    let limits = |s: &ServerConfig| (s.max_connections, s.max_http_connections);
    if limits(old) != limits(new) {
        check(new);
    }
}

/// What is wrong and how to fix it, when `ws + http` connections need more descriptors
/// than `limit`.
fn shortfall(ws: usize, http: usize, limit: u64) -> Option<String> {
    let needed = u64::try_from(ws.saturating_add(http)).unwrap_or(u64::MAX);
    (needed > limit).then(|| {
        format!(
            "server.max_connections ({ws}) + server.max_http_connections ({http}) exceed the \
             open-file limit ({limit}): clients past it are refused with \"too many open \
             files\"; raise LimitNOFILE= in heartwire.service (or ulimit -n) above {needed}, \
             or lower the limits"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::shortfall;

    #[test]
    fn warns_only_above_the_limit() {
        let cases = [
            (10_000, 1024, 1024, true),
            (10_000, 1024, 11_023, true),
            (10_000, 1024, 11_024, false),
            (100, 100, 256, false),
            (usize::MAX, 1, u64::MAX, false),
        ];
        for (ws, http, limit, warns) in cases {
            assert_eq!(
                shortfall(ws, http, limit).is_some(),
                warns,
                "{ws} + {http} against {limit}"
            );
        }
        let msg = shortfall(10_000, 1024, 1024).unwrap_or_default();
        assert!(
            msg.starts_with(
                "server.max_connections (10000) + server.max_http_connections (1024) exceed \
                 the open-file limit (1024): "
            ),
            "{msg}"
        );
        assert!(msg.contains("LimitNOFILE= in heartwire.service (or ulimit -n) above 11024"));
    }
}
