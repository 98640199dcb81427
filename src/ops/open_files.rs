//! The open-file limit against the connection limits. Every client is a descriptor, so
//! limits above `RLIMIT_NOFILE` are not reached: past it, accepting fails with "too many
//! open files" while the daemon believes it has room. Checked at start, and again when a
//! reload changes the limits.

use tracing::warn;

use crate::config::ServerConfig;
use crate::process;

/// `LimitNOFILE=` in the shipped systemd/heartwire.service (a test keeps them equal): the
/// warning names it, so an operator seeing a lower limit knows the process is not running
/// under that unit, or that a drop-in lowered it.
const UNIT_LIMIT_NOFILE: u64 = 262_144;

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
             files\"; raise LimitNOFILE= (the shipped heartwire.service sets \
             {UNIT_LIMIT_NOFILE}; `systemctl edit heartwire` overrides it) or ulimit -n \
             above {needed}, or lower the limits"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::{UNIT_LIMIT_NOFILE, shortfall};

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
        assert!(
            msg.contains(
                "raise LimitNOFILE= (the shipped heartwire.service sets 262144; `systemctl edit \
                 heartwire` overrides it) or ulimit -n above 11024"
            ),
            "{msg}"
        );
    }

    /// The figure the warning quotes is the unit's.
    #[test]
    fn names_the_units_limit() {
        let unit = include_str!("../../systemd/heartwire.service");
        let line = format!("LimitNOFILE={UNIT_LIMIT_NOFILE}");
        assert!(
            unit.lines().any(|l| l == line),
            "systemd/heartwire.service does not set {line}: update UNIT_LIMIT_NOFILE"
        );
    }
}
