//! `server.trusted_proxies`: the reverse proxies and load balancers whose word on the
//! client's address (`X-Forwarded-For`, `Forwarded`, a PROXY protocol header) is believed.

use std::net::IpAddr;

use ipnet::IpNet;

/// Most entries `server.trusted_proxies` may hold: a list is checked on every request
/// from a proxy, and real deployments name a handful of networks.
pub const MAX_TRUSTED_PROXIES: usize = 256;

/// The addresses and networks of trusted proxies. Empty: nobody's forwarding headers are
/// believed (the default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Whether `ip` is a trusted proxy. An IPv4 address seen as IPv6 (`::ffff:a.b.c.d`, as
    /// on a dual-stack listener) counts as the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Parses `server.trusted_proxies`: each entry an address (`10.1.2.3`, `::1`) or a network
/// in CIDR notation (`10.0.0.0/8`, `fd00::/8`). The error says which entry and how to fix it.
pub fn trusted_proxies(entries: &[String]) -> Result<TrustedProxies, String> {
    if entries.len() > MAX_TRUSTED_PROXIES {
        return Err(format!(
            "{} entries is over the limit of {MAX_TRUSTED_PROXIES}: list networks (10.0.0.0/8) rather than single addresses",
            entries.len()
        ));
    }
    let mut nets = Vec::with_capacity(entries.len());
    for entry in entries {
        let text = entry.trim();
        let net = if text.contains('/') {
            let net: IpNet = text.parse().map_err(|_| {
                format!(
                    "`{entry}` is not an address or a network: write e.g. \"10.0.0.0/8\", \"fd00::/8\" or \"10.1.2.3\""
                )
            })?;
            // 10.0.0.1/8 is most likely a typo for 10.0.0.1 (/32) or for 10.0.0.0/8, and
            // the two trust very different sets of machines: ask rather than guess.
            if net.trunc() != net {
                return Err(format!(
                    "`{entry}` has bits set past its /{} prefix: write {} for the network, or the address alone for one machine",
                    net.prefix_len(),
                    net.trunc()
                ));
            }
            net
        } else {
            let ip: IpAddr = text.parse().map_err(|_| {
                format!(
                    "`{entry}` is not an address or a network: write e.g. \"10.1.2.3\", \"::1\" or \"10.0.0.0/8\""
                )
            })?;
            IpNet::from(ip)
        };
        nets.push(net);
    }
    Ok(TrustedProxies(nets))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(entries: &[&str]) -> Result<TrustedProxies, String> {
        trusted_proxies(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn addresses_and_networks() {
        let t = parse(&["127.0.0.1", "10.0.0.0/8", "fd00::/8", " ::1 "]).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for yes in [
            "127.0.0.1",
            "10.255.0.1",
            "fd12::1",
            "::1",
            "::ffff:10.1.2.3",
        ] {
            assert!(t.contains(ip(yes)), "{yes}");
        }
        for no in [
            "127.0.0.2",
            "11.0.0.1",
            "fe80::1",
            "::2",
            "::ffff:127.0.0.2",
        ] {
            assert!(!t.contains(ip(no)), "{no}");
        }
        assert!(parse(&[]).unwrap().is_empty());
        assert!(!parse(&[]).unwrap().contains(ip("127.0.0.1")));
    }

    #[test]
    fn bad_entries_are_named_with_a_fix() {
        let cases = [
            ("proxy.example", "is not an address or a network"),
            ("10.0.0.0/33", "is not an address or a network"),
            ("10.0.0.1/8", "write 10.0.0.0/8"),
            ("10.0.0.0:80", "is not an address or a network"),
            ("", "is not an address or a network"),
        ];
        for (entry, want) in cases {
            let err = parse(&[entry]).unwrap_err();
            assert!(err.contains(&format!("`{entry}`")), "{err}");
            assert!(err.contains(want), "{entry}: {err}");
        }
        let many: Vec<String> = (0..=MAX_TRUSTED_PROXIES)
            .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
            .collect();
        assert!(
            trusted_proxies(&many)
                .unwrap_err()
                .contains("over the limit")
        );
    }
}
