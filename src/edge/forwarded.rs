//! Who the client is when a trusted reverse proxy forwarded the request: the right-most
//! address of `X-Forwarded-For` (or of RFC 7239 `Forwarded: for=`) that is not itself a
//! trusted proxy. From anyone else these headers are ignored.

use std::net::{IpAddr, SocketAddr};

use hyper::HeaderMap;
use hyper::header::{FORWARDED, HeaderValue};

use crate::config::TrustedProxies;

const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The client's address for a request that reached us from `peer`. `peer` itself unless it
/// is a trusted proxy; then each trusted hop's word about the hop before it is believed, and
/// the walk stops at the first address that is not trusted (the client), or at an entry that
/// is not an address (what is left of the chain cannot be vouched for: the last trusted
/// hop is the answer). A forwarded address carries port 0 when the header has none.
///
/// `X-Forwarded-For`, which every common proxy writes, is read when present; `Forwarded`
/// only otherwise. The headers are bounded by hyper's 16 KiB request head.
pub(super) fn client(
    peer: SocketAddr,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
) -> SocketAddr {
    if trusted.is_empty() || !trusted.contains(peer.ip()) {
        return peer;
    }
    if headers.contains_key(X_FORWARDED_FOR) {
        // Header lines in order make one list; the right-most entry was added last. A line
        // that is not text is one entry that is not an address.
        let hops = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .rev()
            .flat_map(|line| line.to_str().unwrap_or("").split(',').rev().map(parse_node));
        return walk(peer, hops, trusted);
    }
    let forwarded: Vec<Option<SocketAddr>> = headers
        .get_all(FORWARDED)
        .iter()
        .flat_map(forwarded_fors)
        .collect();
    walk(peer, forwarded.into_iter().rev(), trusted)
}

/// Walks `hops` from the right (nearest first), starting from the trusted `peer`.
fn walk(
    peer: SocketAddr,
    hops: impl Iterator<Item = Option<SocketAddr>>,
    trusted: &TrustedProxies,
) -> SocketAddr {
    let mut client = peer;
    for hop in hops {
        let Some(addr) = hop else { break };
        client = addr;
        if !trusted.contains(addr.ip()) {
            break;
        }
    }
    client
}

/// One address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:4711` (optionally quoted, as `Forwarded` requires for
/// the last three). `unknown`, obfuscated names (`_hidden`) and anything else are `None`.
fn parse_node(text: &str) -> Option<SocketAddr> {
    let text = text.trim();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    let addr = if let Some(rest) = text.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let ip: IpAddr = ip.parse().ok()?;
        let port = match after.strip_prefix(':') {
            // An obfuscated port (`_abc`) hides the port, not the address.
            Some(port) => port.parse().unwrap_or(0),
            None if after.is_empty() => 0,
            None => return None,
        };
        SocketAddr::new(ip, port)
    } else if let Ok(ip) = text.parse::<IpAddr>() {
        SocketAddr::new(ip, 0)
    } else if let Some((ip, port)) = text.rsplit_once(':') {
        let ip: std::net::Ipv4Addr = ip.parse().ok()?;
        SocketAddr::new(ip.into(), port.parse().unwrap_or(0))
    } else {
        return None;
    };
    Some(SocketAddr::new(addr.ip().to_canonical(), addr.port()))
}

/// The `for=` of each element of one `Forwarded` header line, in order; `None` for an
/// element without one or with a value that is not an address.
fn forwarded_fors(line: &HeaderValue) -> Vec<Option<SocketAddr>> {
    let Ok(text) = line.to_str() else {
        return vec![None];
    };
    let mut fors = Vec::new();
    let mut current: Option<Option<SocketAddr>> = None;
    let mut rest = text;
    loop {
        // One `name=value` pair; a quoted value may hold `,` and `;`.
        let (pair, sep) = split_pair(rest);
        if let Some((name, value)) = pair.split_once('=')
            && name.trim().eq_ignore_ascii_case("for")
            && current.is_none()
        {
            current = Some(parse_node(value));
        }
        match sep {
            Some((b',', after)) => {
                fors.push(current.take().flatten());
                rest = after;
            }
            Some((_, after)) => rest = after,
            None => {
                fors.push(current.take().flatten());
                return fors;
            }
        }
    }
}

/// Splits `text` at the first `;` or `,` outside double quotes: the pair before it, and the
/// separator with what follows.
fn split_pair(text: &str) -> (&str, Option<(u8, &str)>) {
    let mut quoted = false;
    let mut escaped = false;
    for (i, b) in text.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b';' | b',' if !quoted => return (&text[..i], Some((b, &text[i + 1..]))),
            _ => {}
        }
    }
    (text, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{TrustedProxies, trusted_proxies};

    fn trusted(list: &[&str]) -> TrustedProxies {
        trusted_proxies(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn client_of(peer: &str, headers: &[(&str, &str)], list: &[&str]) -> String {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
        }
        client(peer.parse().unwrap(), &map, &trusted(list)).to_string()
    }

    const XFF: &str = "X-Forwarded-For";

    type Headers<'a> = &'a [(&'a str, &'a str)];

    #[test]
    fn x_forwarded_for_from_trusted_proxies() {
        let proxy = "127.0.0.1:5000";
        let cases: &[(Headers, &[&str], &str)] = &[
            // Nobody trusted, or an untrusted peer: the headers mean nothing.
            (&[(XFF, "203.0.113.7")], &[], proxy),
            (&[(XFF, "203.0.113.7")], &["10.0.0.0/8"], proxy),
            // A trusted peer: the address it names.
            (&[(XFF, "203.0.113.7")], &["127.0.0.1"], "203.0.113.7:0"),
            (
                &[(XFF, " 203.0.113.7:4711 ")],
                &["127.0.0.1"],
                "203.0.113.7:4711",
            ),
            (&[(XFF, "2001:db8::7")], &["127.0.0.1"], "[2001:db8::7]:0"),
            (
                &[(XFF, "[2001:db8::7]:80")],
                &["127.0.0.1"],
                "[2001:db8::7]:80",
            ),
            (
                &[(XFF, "::ffff:203.0.113.7")],
                &["127.0.0.1"],
                "203.0.113.7:0",
            ),
            // The client wrote its own entry first: only the right-most untrusted one counts.
            (
                &[(XFF, "1.1.1.1, 203.0.113.7")],
                &["127.0.0.1"],
                "203.0.113.7:0",
            ),
            // Through two trusted proxies.
            (
                &[(XFF, "1.1.1.1, 203.0.113.7, 10.0.0.2")],
                &["127.0.0.1", "10.0.0.0/8"],
                "203.0.113.7:0",
            ),
            // Several header lines are one list, in order.
            (
                &[(XFF, "1.1.1.1"), (XFF, "203.0.113.7, 10.0.0.2")],
                &["127.0.0.1", "10.0.0.0/8"],
                "203.0.113.7:0",
            ),
            (
                &[(XFF, "203.0.113.7"), (XFF, "10.0.0.2")],
                &["127.0.0.1", "10.0.0.0/8"],
                "203.0.113.7:0",
            ),
            // Every hop trusted: the left-most.
            (
                &[(XFF, "10.0.0.3, 10.0.0.2")],
                &["127.0.0.1", "10.0.0.0/8"],
                "10.0.0.3:0",
            ),
            // Garbage stops the walk at the last hop that can be vouched for.
            (&[(XFF, "unknown")], &["127.0.0.1"], proxy),
            (&[(XFF, "")], &["127.0.0.1"], proxy),
            (
                &[(XFF, "203.0.113.7, nonsense, 10.0.0.2")],
                &["127.0.0.1", "10.0.0.0/8"],
                "10.0.0.2:0",
            ),
            // No header: the proxy itself.
            (&[], &["127.0.0.1"], proxy),
        ];
        for (headers, list, want) in cases {
            assert_eq!(
                client_of(proxy, headers, list),
                *want,
                "{headers:?} {list:?}"
            );
        }
    }

    #[test]
    fn forwarded_for_when_there_is_no_x_forwarded_for() {
        let proxy = "127.0.0.1:5000";
        let fw = "Forwarded";
        let t: &[&str] = &["127.0.0.1", "10.0.0.0/8"];
        let cases: &[(Headers, &str)] = &[
            (&[(fw, "for=203.0.113.7")], "203.0.113.7:0"),
            (
                &[(fw, "For=\"203.0.113.7:4711\";proto=https")],
                "203.0.113.7:4711",
            ),
            (&[(fw, "for=\"[2001:db8::7]:4711\"")], "[2001:db8::7]:4711"),
            (&[(fw, "for=\"[2001:db8::7]\"")], "[2001:db8::7]:0"),
            (&[(fw, "for=\"[2001:db8::7]:_p\"")], "[2001:db8::7]:0"),
            (
                &[(fw, "for=1.1.1.1, for=203.0.113.7;by=10.0.0.2, for=10.0.0.2")],
                "203.0.113.7:0",
            ),
            (
                &[(fw, "for=203.0.113.7"), (fw, "for=10.0.0.2")],
                "203.0.113.7:0",
            ),
            // A quoted `,` or `;` does not split.
            (&[(fw, "proto=\"a,b;c\";for=203.0.113.7")], "203.0.113.7:0"),
            // Obfuscated, unknown or missing `for`: the walk stops there.
            (&[(fw, "for=_hidden")], proxy),
            (&[(fw, "for=unknown, for=10.0.0.2")], "10.0.0.2:0"),
            (&[(fw, "proto=https")], proxy),
            // X-Forwarded-For wins when both are present.
            (
                &[(fw, "for=198.51.100.1"), (XFF, "203.0.113.7")],
                "203.0.113.7:0",
            ),
        ];
        for (headers, want) in cases {
            assert_eq!(client_of(proxy, headers, t), *want, "{headers:?}");
        }
    }

    #[test]
    fn hostile_headers_cost_a_walk_and_nothing_more() {
        let long = vec!["10.0.0.1"; 2000].join(",");
        assert_eq!(
            client_of(
                "127.0.0.1:1",
                &[(XFF, &long)],
                &["127.0.0.0/8", "10.0.0.0/8"]
            ),
            "10.0.0.1:0"
        );
        let quotes = "\"".repeat(5000);
        for v in [
            quotes.as_str(),
            "for=\"",
            "for=[",
            "for=\"[::1",
            ";;;,,,==",
            "for=[::1]x",
        ] {
            client_of("127.0.0.1:1", &[("Forwarded", v)], &["127.0.0.1"]);
            client_of("127.0.0.1:1", &[(XFF, v)], &["127.0.0.1"]);
        }
    }

    proptest::proptest! {
        /// Whatever a trusted peer writes, the answer is the peer or an address the headers
        /// named, and nothing panics.
        #[test]
        fn arbitrary_headers_never_panic(
            xff in proptest::collection::vec("[ -~]{0,40}", 0..4),
            fwd in proptest::collection::vec("[ -~]{0,60}", 0..4),
        ) {
            let mut map = HeaderMap::new();
            for v in &xff {
                if let Ok(v) = HeaderValue::from_str(v) {
                    map.append(X_FORWARDED_FOR, v);
                }
            }
            for v in &fwd {
                if let Ok(v) = HeaderValue::from_str(v) {
                    map.append(FORWARDED, v);
                }
            }
            let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
            let got = client(peer, &map, &trusted(&["127.0.0.0/8"]));
            let named = xff.iter().chain(&fwd).any(|h| h.contains(&got.ip().to_string()));
            proptest::prop_assert!(got == peer || named, "{got} from {xff:?} {fwd:?}");
        }
    }
}
