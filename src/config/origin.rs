//! Which browser origins may open a WebSocket: pure matching, no I/O.
//!
//! A request without an `Origin` header is not from a browser and is always allowed
//! (a browser always sends one on a WebSocket handshake, so the check only protects
//! browsers' users from cross-site pages, as Tornado's `check_origin` does).

/// A route's origin rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    /// The origin's host must equal the request's `Host` (the default, as in Tornado).
    SameOrigin,
    /// The origin must match one of these.
    List(Vec<OriginPattern>),
}

/// One entry of `origins`: `*`, `https://example.com`, or `https://*.example.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// `*`: any origin.
    Any,
    /// `scheme://host[:port]`, compared case-insensitively.
    Exact(String),
    /// `scheme://*.domain[:port]`: any subdomain of `domain` (not `domain` itself).
    Subdomains {
        /// `https://`
        scheme: String,
        /// `.example.com` (with the leading dot)
        suffix: String,
        /// `:8443` or empty.
        port: String,
    },
}

impl OriginPattern {
    /// Parses a config entry; the error says what a valid one looks like.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "*" {
            return Ok(Self::Any);
        }
        let bad = || {
            format!(
                "`{text}` is not an origin: use \"*\", \"https://example.com\", \"http://localhost:3000\" or \"https://*.example.com\" (scheme and host, no path)"
            )
        };
        let lower = text.to_ascii_lowercase();
        let (scheme, rest) = lower.split_once("://").ok_or_else(bad)?;
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return Err(bad());
        }
        let (host, port) = split_port(rest).ok_or_else(bad)?;
        let host_ok = |h: &str| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
        };
        match host.strip_prefix('*') {
            Some(domain) if domain.starts_with('.') && host_ok(&domain[1..]) => {
                Ok(Self::Subdomains {
                    scheme: format!("{scheme}://"),
                    suffix: domain.to_owned(),
                    port: port.to_owned(),
                })
            }
            Some(_) => Err(bad()),
            None if host_ok(host) => Ok(Self::Exact(lower)),
            None => Err(bad()),
        }
    }

    /// Whether `origin` (already lowercased) matches.
    fn matches(&self, origin: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(exact) => origin == exact,
            Self::Subdomains {
                scheme,
                suffix,
                port,
            } => {
                let Some(rest) = origin.strip_prefix(scheme.as_str()) else {
                    return false;
                };
                let Some((host, origin_port)) = split_port(rest) else {
                    return false;
                };
                origin_port == port
                    && host.len() > suffix.len()
                    && host.ends_with(suffix.as_str())
                    && !host[..host.len() - suffix.len()].is_empty()
            }
        }
    }
}

/// Splits `host[:port]` (IPv6 hosts in brackets); `None` when there is a path or junk.
fn split_port(authority: &str) -> Option<(&str, &str)> {
    if authority.contains(['/', '?', '#', '@']) {
        return None;
    }
    let colon = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => i,
        _ => return Some((authority, "")),
    };
    let port = &authority[colon..];
    if port.len() < 2 || !port[1..].bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((&authority[..colon], port))
}

impl Origins {
    /// Whether a handshake with this `Origin` (if any) and `Host` may proceed.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        let origin = origin.trim().to_ascii_lowercase();
        match self {
            Self::SameOrigin => {
                // Tornado compares the origin's netloc with the Host header.
                let netloc = origin.split_once("://").map(|(_, rest)| rest);
                matches!((netloc, host), (Some(n), Some(h)) if n == h.trim().to_ascii_lowercase())
            }
            Self::List(patterns) => patterns.iter().any(|p| p.matches(&origin)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn list(patterns: &[&str]) -> Origins {
        Origins::List(
            patterns
                .iter()
                .map(|p| OriginPattern::parse(p).unwrap())
                .collect(),
        )
    }

    #[test]
    fn matching_table() {
        let cases: &[(&Origins, Option<&str>, Option<&str>, bool)] = &[
            (&Origins::SameOrigin, None, Some("a.com"), true),
            (
                &Origins::SameOrigin,
                Some("http://a.com"),
                Some("a.com"),
                true,
            ),
            (
                &Origins::SameOrigin,
                Some("http://A.com:80"),
                Some("a.com:80"),
                true,
            ),
            (
                &Origins::SameOrigin,
                Some("http://evil.com"),
                Some("a.com"),
                false,
            ),
            (&Origins::SameOrigin, Some("null"), Some("a.com"), false),
            (&Origins::SameOrigin, Some("http://a.com"), None, false),
        ];
        for (rule, origin, host, want) in cases {
            assert_eq!(
                rule.allows(*origin, *host),
                *want,
                "{rule:?} {origin:?} {host:?}"
            );
        }
        let wild = list(&["https://*.example.com", "http://localhost:3000"]);
        for (origin, want) in [
            ("https://a.example.com", true),
            ("https://a.b.example.com", true),
            ("HTTPS://A.EXAMPLE.COM", true),
            ("https://example.com", false),
            ("https://.example.com", false),
            ("http://a.example.com", false),
            ("https://a.example.com:8443", false),
            ("https://evilexample.com", false),
            ("https://a.example.com.evil.com", false),
            ("http://localhost:3000", true),
            ("http://localhost:3001", false),
        ] {
            assert_eq!(wild.allows(Some(origin), Some("x")), want, "{origin}");
        }
        assert!(list(&["*"]).allows(Some("null"), None));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "example.com",
            "https://",
            "https://a.com/path",
            "https://*example.com",
            "https://a.com:x",
            "ftp://a b",
        ] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(pattern in ".{0,40}", origin in ".{0,60}", host in ".{0,30}") {
            if let Ok(p) = OriginPattern::parse(&pattern) {
                let _ = Origins::List(vec![p]).allows(Some(&origin), Some(&host));
            }
            let _ = Origins::SameOrigin.allows(Some(&origin), Some(&host));
        }

        #[test]
        fn an_exact_origin_matches_itself(host in "[a-z][a-z0-9-]{0,20}(\\.[a-z]{2,5}){0,2}", port in proptest::option::of(1u16..)) {
            let origin = match port { Some(p) => format!("https://{host}:{p}"), None => format!("https://{host}") };
            prop_assert!(list(&[&origin]).allows(Some(&origin), None));
            let sub = format!("https://x.{host}{}", port.map(|p| format!(":{p}")).unwrap_or_default());
            let pattern = format!("https://*.{host}{}", port.map(|p| format!(":{p}")).unwrap_or_default());
            prop_assert!(list(&[&pattern]).allows(Some(&sub), None));
            prop_assert!(!list(&[&pattern]).allows(Some(&origin), None));
        }
    }
}
