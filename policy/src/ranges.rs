//! The always-denied special ranges: addresses a sandbox must never reach, whatever its policy says
//! about names, unless a `[[danger_carve_out]]` opens one CIDR on named ports.
//!
//! The list follows the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890) plus the
//! private and link-local ranges that every LAN uses. It is the one source of truth: the proxy, the
//! DNS stub and the generated pf/nftables rules all read [`SPECIAL_RANGES`].
//!
//! IPv6 ranges that carry an IPv4 address ([`Embedding`]) are not denied wholesale: the address
//! they carry is judged against the IPv4 list, so `::ffff:10.0.0.1` is refused as 10.0.0.1 and
//! `64:ff9b::8.8.8.8` is judged as 8.8.8.8.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::addr::{Embedding, embedded_ipv4};

/// One built-in special range.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SpecialRange {
    /// The network.
    pub net: IpNet,
    /// Stable short name, used in decisions, headers and logs (`private`, `link-local`, ...).
    pub name: &'static str,
    /// The RFC that defines it.
    pub rfc: &'static str,
    /// What lives there, in a few words.
    pub what: &'static str,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> IpNet {
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len))
}

#[allow(clippy::too_many_arguments)]
const fn v6(segments: [u16; 8], len: u8) -> IpNet {
    let [a, b, c, d, e, f, g, h] = segments;
    IpNet::V6(Ipv6Net::new_assert(
        Ipv6Addr::new(a, b, c, d, e, f, g, h),
        len,
    ))
}

const fn range(
    net: IpNet,
    name: &'static str,
    rfc: &'static str,
    what: &'static str,
) -> SpecialRange {
    SpecialRange {
        net,
        name,
        rfc,
        what,
    }
}

/// Every built-in special range. Where two overlap (broadcast inside reserved), the more specific
/// comes first, so explanations name it.
pub static SPECIAL_RANGES: [SpecialRange; 33] = [
    range(
        v4(0, 0, 0, 0, 8),
        "this-network",
        "RFC 791",
        "\"this network\"; 0.0.0.0 reaches the local host",
    ),
    range(v4(10, 0, 0, 0, 8), "private", "RFC 1918", "private network"),
    range(
        v4(100, 64, 0, 0, 10),
        "cgnat",
        "RFC 6598",
        "carrier-grade NAT shared space",
    ),
    range(
        v4(127, 0, 0, 0, 8),
        "loopback",
        "RFC 1122",
        "loopback: this host's own services",
    ),
    range(
        v4(169, 254, 0, 0, 16),
        "link-local",
        "RFC 3927",
        "link-local, incl. the 169.254.169.254 metadata service",
    ),
    range(
        v4(172, 16, 0, 0, 12),
        "private",
        "RFC 1918",
        "private network",
    ),
    range(
        v4(192, 0, 0, 0, 24),
        "ietf-protocol",
        "RFC 6890",
        "IETF protocol assignments",
    ),
    range(
        v4(192, 0, 2, 0, 24),
        "documentation",
        "RFC 5737",
        "TEST-NET-1 documentation",
    ),
    range(
        v4(192, 88, 99, 0, 24),
        "6to4-relay",
        "RFC 7526",
        "deprecated 6to4 relay anycast",
    ),
    range(
        v4(192, 168, 0, 0, 16),
        "private",
        "RFC 1918",
        "private network",
    ),
    range(
        v4(198, 18, 0, 0, 15),
        "benchmarking",
        "RFC 2544",
        "network benchmarking",
    ),
    range(
        v4(198, 51, 100, 0, 24),
        "documentation",
        "RFC 5737",
        "TEST-NET-2 documentation",
    ),
    range(
        v4(203, 0, 113, 0, 24),
        "documentation",
        "RFC 5737",
        "TEST-NET-3 documentation",
    ),
    range(v4(224, 0, 0, 0, 4), "multicast", "RFC 5771", "multicast"),
    range(
        v4(255, 255, 255, 255, 32),
        "broadcast",
        "RFC 919",
        "limited broadcast",
    ),
    range(
        v4(240, 0, 0, 0, 4),
        "reserved",
        "RFC 1112",
        "reserved for future use",
    ),
    range(
        v6([0, 0, 0, 0, 0, 0, 0, 0], 128),
        "unspecified",
        "RFC 4291",
        "unspecified address; reaches the local host",
    ),
    range(
        v6([0, 0, 0, 0, 0, 0, 0, 1], 128),
        "loopback",
        "RFC 4291",
        "loopback",
    ),
    range(
        v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        "nat64-local",
        "RFC 8215",
        "local-use NAT64",
    ),
    range(
        v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
        "discard",
        "RFC 6666",
        "discard-only",
    ),
    range(
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
        "ietf-protocol",
        "RFC 2928",
        "IETF protocol assignments, incl. Teredo",
    ),
    range(
        v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        "documentation",
        "RFC 3849",
        "documentation",
    ),
    range(
        v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
        "documentation",
        "RFC 9637",
        "documentation",
    ),
    range(
        v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16),
        "srv6-sid",
        "RFC 9602",
        "segment routing SIDs",
    ),
    range(
        v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        "unique-local",
        "RFC 4193",
        "unique local (the IPv6 private range)",
    ),
    range(
        v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        "link-local",
        "RFC 4291",
        "link-local",
    ),
    range(
        v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        "site-local",
        "RFC 3879",
        "deprecated site-local",
    ),
    range(
        v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
        "multicast",
        "RFC 4291",
        "multicast",
    ),
    // The prefixes that carry IPv4 (`Embedding`): never denied as a whole, see `classify`.
    range(
        v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96),
        "ipv4-mapped",
        "RFC 4291",
        "IPv4-mapped; judged by the IPv4 it carries",
    ),
    range(
        v6([0, 0, 0, 0, 0, 0, 0, 0], 96),
        "ipv4-compatible",
        "RFC 4291",
        "deprecated IPv4-compatible; judged by the IPv4 it carries",
    ),
    range(
        v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96),
        "nat64",
        "RFC 6052",
        "NAT64; judged by the IPv4 it carries",
    ),
    range(
        v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16),
        "6to4",
        "RFC 3056",
        "6to4; judged by the IPv4 it carries",
    ),
    range(
        v6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96),
        "ipv4-translated",
        "RFC 2765",
        "IPv4-translated (SIIT); judged by the IPv4 it carries",
    ),
];

impl SpecialRange {
    /// True for the IPv6 prefixes whose addresses are judged by the IPv4 they carry.
    pub fn carries_ipv4(&self) -> bool {
        matches!(
            self.name,
            "ipv4-mapped" | "ipv4-compatible" | "nat64" | "6to4" | "ipv4-translated"
        )
    }
}

/// Why an address is special.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecialMatch {
    /// The range that refuses it.
    pub range: &'static SpecialRange,
    /// Set when the address is IPv6 carrying the IPv4 address that `range` refuses.
    pub via: Option<(Embedding, Ipv4Addr)>,
}

/// The special range `addr` falls in, if any. IPv6 that carries IPv4 is judged by the IPv4.
pub fn classify(addr: IpAddr) -> Option<SpecialMatch> {
    match addr {
        IpAddr::V4(v4) => classify_v4(v4).map(|range| SpecialMatch { range, via: None }),
        IpAddr::V6(v6) => {
            if let Some((carried, embedding)) = embedded_ipv4(v6) {
                return classify_v4(carried).map(|range| SpecialMatch {
                    range,
                    via: Some((embedding, carried)),
                });
            }
            SPECIAL_RANGES
                .iter()
                .find(|r| !r.carries_ipv4() && r.net.contains(&IpAddr::V6(v6)))
                .map(|range| SpecialMatch { range, via: None })
        }
    }
}

fn classify_v4(v4: Ipv4Addr) -> Option<&'static SpecialRange> {
    SPECIAL_RANGES
        .iter()
        .find(|r| r.net.contains(&IpAddr::V4(v4)))
}

/// Every network a host firewall must refuse to express the special ranges: each range of the
/// table except the carrying prefixes, plus every IPv4 range as carried inside each
/// [`Embedding`] (for example 10.0.0.0/8 becomes `64:ff9b::a00:0/104` under NAT64).
pub fn denied_networks() -> Vec<(IpNet, &'static SpecialRange, Option<Embedding>)> {
    let mut nets = Vec::new();
    for range in SPECIAL_RANGES.iter().filter(|r| !r.carries_ipv4()) {
        nets.push((range.net, range, None));
    }
    for embedding in Embedding::ALL {
        for range in &SPECIAL_RANGES {
            if let IpNet::V4(v4net) = range.net {
                nets.push((IpNet::V6(embedding.embed(v4net)), range, Some(embedding)));
            }
        }
    }
    nets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(addr: &str) -> Option<&'static str> {
        classify(addr.parse().unwrap()).map(|m| m.range.name)
    }

    #[test]
    fn classification_table() {
        let cases = [
            ("10.1.2.3", Some("private")),
            ("172.31.255.255", Some("private")),
            ("172.32.0.1", None),
            ("192.168.0.1", Some("private")),
            ("127.0.0.1", Some("loopback")),
            ("169.254.169.254", Some("link-local")),
            ("100.64.0.1", Some("cgnat")),
            ("100.128.0.1", None),
            ("0.1.2.3", Some("this-network")),
            ("198.18.0.1", Some("benchmarking")),
            ("203.0.113.9", Some("documentation")),
            ("224.0.0.251", Some("multicast")),
            ("255.255.255.255", Some("broadcast")),
            ("250.1.1.1", Some("reserved")),
            ("8.8.8.8", None),
            ("::", Some("unspecified")),
            ("::1", Some("loopback")),
            ("fd00::1", Some("unique-local")),
            ("fe80::1", Some("link-local")),
            ("fec0::1", Some("site-local")),
            ("ff02::1", Some("multicast")),
            ("2001:db8::1", Some("documentation")),
            ("::ffff:10.0.0.1", Some("private")),
            ("::ffff:8.8.8.8", None),
            ("::127.0.0.1", Some("loopback")),
            ("64:ff9b::a9fe:a9fe", Some("link-local")),
            ("64:ff9b::808:808", None),
            ("2002:0a00:0001::1", Some("private")),
            ("2002:0808:0808::1", None),
            ("2606:4700::1111", None),
        ];
        for (addr, want) in cases {
            assert_eq!(class(addr), want, "{addr}");
        }
    }

    #[test]
    fn carried_ipv4_is_reported() {
        let m = classify("::ffff:192.168.1.1".parse().unwrap()).unwrap();
        assert_eq!(
            m.via,
            Some((Embedding::Mapped, Ipv4Addr::new(192, 168, 1, 1)))
        );
    }

    #[test]
    fn denied_networks_cover_every_range_and_embedding() {
        let nets = denied_networks();
        for range in SPECIAL_RANGES.iter().filter(|r| !r.carries_ipv4()) {
            assert!(
                nets.iter()
                    .any(|(n, _, via)| *n == range.net && via.is_none()),
                "{}",
                range.net
            );
        }
        let nat64_private: IpNet = "64:ff9b::a00:0/104".parse().unwrap();
        assert!(nets.iter().any(|(n, _, _)| *n == nat64_private));
        // Every address the classifier refuses lies in some denied network, and the reverse.
        for addr in [
            "::ffff:10.0.0.1",
            "2002:c0a8::1",
            "::169.254.169.254",
            "fd00::1",
            "10.9.9.9",
        ] {
            let ip: IpAddr = addr.parse().unwrap();
            assert!(classify(ip).is_some());
            assert!(nets.iter().any(|(n, _, _)| n.contains(&ip)), "{addr}");
        }
    }
}
