//! IP literals, and IPv6 addresses that carry IPv4.
//!
//! `inet_aton(3)` and the WHATWG URL standard read `2130706433`, `0x7f.1`, `127.1` and
//! `0177.0.0.1` as 127.0.0.1; Go and Python refuse leading zeros since their CVEs (CVE-2021-29923,
//! CVE-2021-29921), and other parsers read `010.8.8.8` as decimal 10.8.8.8. A spelling whose
//! meaning depends on the parser is never dialed: egressd accepts IPv4 only as plain dotted
//! decimal (`a.b.c.d`, no leading zeros) and refuses every other numeric spelling as malformed,
//! saying what an inet_aton reader would take it for ([`Ipv4Literal::Ambiguous`]).

use std::net::{Ipv4Addr, Ipv6Addr};

/// How an IPv6 address carries an IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Embedding {
    /// `::ffff:a.b.c.d` (RFC 4291 §2.5.5.2): a dual-stack socket sends this as plain IPv4.
    Mapped,
    /// `::a.b.c.d` (RFC 4291 §2.5.5.1, deprecated).
    Compatible,
    /// `64:ff9b::a.b.c.d` (RFC 6052): a NAT64 gateway forwards to the IPv4 address.
    Nat64,
    /// `2002:AABB:CCDD::/48` (RFC 3056): a 6to4 relay forwards to the IPv4 address.
    SixToFour,
    /// `::ffff:0:a.b.c.d` (RFC 2765 §2.1, SIIT): a translator forwards to the IPv4 address.
    Translated,
}

impl Embedding {
    /// The IPv6 prefix under which this embedding lives.
    pub const fn prefix(self) -> (Ipv6Addr, u8) {
        match self {
            Self::Mapped => (Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96),
            Self::Compatible => (Ipv6Addr::UNSPECIFIED, 96),
            Self::Nat64 => (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96),
            Self::SixToFour => (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16),
            Self::Translated => (Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, 0, 0), 96),
        }
    }

    /// Where the IPv4 address starts, in bits from the left of the IPv6 address.
    pub const fn offset(self) -> u8 {
        match self {
            Self::SixToFour => 16,
            Self::Mapped | Self::Compatible | Self::Nat64 | Self::Translated => 96,
        }
    }

    /// Every embedding, in the order egressd checks them.
    pub const ALL: [Embedding; 5] = [
        Self::Mapped,
        Self::Compatible,
        Self::Nat64,
        Self::SixToFour,
        Self::Translated,
    ];

    /// Short name used in explanations.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Mapped => "IPv4-mapped",
            Self::Compatible => "IPv4-compatible",
            Self::Nat64 => "NAT64",
            Self::SixToFour => "6to4",
            Self::Translated => "IPv4-translated",
        }
    }

    /// The IPv6 network that carries exactly the IPv4 network `v4`.
    pub fn embed(self, v4: ipnet::Ipv4Net) -> ipnet::Ipv6Net {
        let bits = u128::from(u32::from(v4.network())) << (96 - u32::from(self.offset()));
        let base = u128::from(self.prefix().0) | bits;
        // The prefix length stays within 128: offset is at most 96 and an IPv4 prefix at most 32.
        ipnet::Ipv6Net::new_assert(Ipv6Addr::from(base), self.offset() + v4.prefix_len())
    }
}

/// The IPv4 address an IPv6 address carries, if it lies in one of the [`Embedding`] prefixes.
/// `::` and `::1` carry nothing: they are IPv6's own unspecified and loopback addresses.
pub fn embedded_ipv4(v6: Ipv6Addr) -> Option<(Ipv4Addr, Embedding)> {
    let bits = u128::from(v6);
    if bits <= 1 {
        return None;
    }
    Embedding::ALL.into_iter().find_map(|embedding| {
        let (prefix, len) = embedding.prefix();
        let mask = u128::MAX << (128 - u32::from(len));
        (bits & mask == u128::from(prefix)).then(|| {
            let shift = 96 - u32::from(embedding.offset());
            // Truncation is the point: the 32 bits at the embedding's offset.
            (Ipv4Addr::from((bits >> shift) as u32), embedding)
        })
    })
}

/// Outcome of reading a host as an IPv4 literal.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ipv4Literal {
    /// The host is an IPv4 address in plain dotted decimal.
    Addr(Ipv4Addr),
    /// A numeric spelling other than plain dotted decimal (a single integer, short forms, octal
    /// or hex parts, leading zeros, a trailing dot): parsers disagree on what it means. Carries
    /// what inet_aton and WHATWG read it as. Refused as malformed.
    Ambiguous(Ipv4Addr),
    /// The host's last label is a number, so it can only be an IPv4 address, and it is not a valid
    /// one (`1.2.3.256`, `example.123`). Treated as malformed, like a browser does.
    Invalid,
    /// The host is not numeric: read it as a name.
    NotNumeric,
}

/// Reads `host` as an IPv4 literal: [`Ipv4Literal::Addr`] for plain dotted decimal only; any
/// other numeric spelling the WHATWG URL standard's IPv4 parser accepts (1 to 4 dot-separated
/// parts, each decimal, octal (leading `0`) or hex (`0x`), the last filling the remaining bytes)
/// is [`Ipv4Literal::Ambiguous`], with the address that parser reads.
pub(crate) fn parse_ipv4_literal(host: &str) -> Ipv4Literal {
    // The usual spelling, read without the general parser's allocations: every request to an
    // address goes through here.
    if let Some(addr) = plain_ipv4(host) {
        return Ipv4Literal::Addr(addr);
    }
    match whatwg_ipv4(host) {
        Ipv4Literal::Addr(addr) if !is_plain_dotted_decimal(host) => Ipv4Literal::Ambiguous(addr),
        other => other,
    }
}

/// `a.b.c.d` as [`is_plain_dotted_decimal`] has it, each part at most 255: the address; `None`
/// for anything else (which the general parser then reads). One pass over the bytes.
fn plain_ipv4(host: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut part = 0;
    // The current part's value and digit count.
    let (mut value, mut digits) = (0u16, 0);
    for &b in host.as_bytes() {
        match b {
            b'0'..=b'9' => {
                // A leading zero is plain only alone; more than three digits never are.
                if digits == 3 || (digits == 1 && value == 0) {
                    return None;
                }
                value = value * 10 + u16::from(b - b'0');
                digits += 1;
            }
            b'.' if digits > 0 && part < 3 => {
                *octets.get_mut(part)? = u8::try_from(value).ok()?;
                part += 1;
                (value, digits) = (0, 0);
            }
            _ => return None,
        }
    }
    if digits == 0 || part != 3 {
        return None;
    }
    octets[3] = u8::try_from(value).ok()?;
    Some(Ipv4Addr::from(octets))
}

/// `a.b.c.d`, four decimal parts without leading zeros (a lone `0` is fine), no trailing dot.
fn is_plain_dotted_decimal(host: &str) -> bool {
    let parts: Vec<&str> = host.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
        })
}

/// The WHATWG URL standard's IPv4 parser (what inet_aton also accepts).
fn whatwg_ipv4(host: &str) -> Ipv4Literal {
    let host = host.strip_suffix('.').unwrap_or(host);
    let Some(last) = host.rsplit('.').next() else {
        return Ipv4Literal::NotNumeric;
    };
    if !is_numeric_label(last) {
        return Ipv4Literal::NotNumeric;
    }
    let parts: Vec<&str> = host.split('.').collect();
    if parts.len() > 4 {
        return Ipv4Literal::Invalid;
    }
    let mut numbers = Vec::with_capacity(parts.len());
    for part in &parts {
        match parse_number(part) {
            Some(n) => numbers.push(n),
            None => return Ipv4Literal::Invalid,
        }
    }
    let (last, init) = match numbers.split_last() {
        Some(split) => split,
        None => return Ipv4Literal::Invalid,
    };
    if init.iter().any(|&n| n > 255) {
        return Ipv4Literal::Invalid;
    }
    let last_bits = 8 * (5 - numbers.len() as u32);
    if *last >= 1u64 << last_bits {
        return Ipv4Literal::Invalid;
    }
    let mut value = *last;
    for (i, &n) in init.iter().enumerate() {
        value += n << (8 * (3 - i as u32));
    }
    // The checks above bound value below 2^32.
    Ipv4Literal::Addr(Ipv4Addr::from(value as u32))
}

fn is_numeric_label(label: &str) -> bool {
    if label.is_empty() {
        return false;
    }
    if label.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    match label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"))
    {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => false,
    }
}

/// One part of an IPv4 literal; `None` if it is not a number or exceeds 32 bits.
fn parse_number(part: &str) -> Option<u64> {
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() {
        // "0x" alone is zero in the WHATWG parser; an empty part ("1..2") is not a number.
        return (radix == 16).then_some(0);
    }
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Some(0);
    }
    // More than 32 bits' worth of digits cannot be a valid part; stop before u64 overflows.
    if digits.len() > 11 {
        return None;
    }
    u64::from_str_radix(digits, radix)
        .ok()
        .filter(|n| *n <= u64::from(u32::MAX))
}

/// Reads an IPv6 literal with or without brackets. Zone identifiers (`%eth0`) are refused: they
/// name a local interface, which no sandbox should be steering.
pub(crate) fn parse_ipv6_literal(host: &str) -> Option<Ipv6Addr> {
    let inner = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    inner.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shortcut reads only what the general parser reads the same way.
    #[test]
    fn plain_addresses_read_as_the_general_parser_reads_them() {
        let mut inputs: Vec<String> = [
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "256.0.0.1",
            "1.2.3",
            "1.2.3.4.",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.2.3.04",
            "0x7f.0.0.1",
            "1..2.3",
            ".1.2.3",
            "1.2.3.-4",
            "1.2.3.+4",
            "1.2.3.4a",
            "",
            "10.0.0.00",
            "100.200.300.4",
            "1.2.3.999",
            "9.9.9.9",
        ]
        .map(str::to_owned)
        .to_vec();
        for a in [0, 1, 9, 10, 99, 100, 199, 255, 256, 999] {
            inputs.push(format!("{a}.{a}.0.{a}"));
        }
        // Every spelling of up to 7 of these characters.
        let alphabet = b"01259.";
        for len in 1..=7u32 {
            for mut n in 0..alphabet.len().pow(len) {
                let mut text = String::new();
                for _ in 0..len {
                    text.push(char::from(alphabet[n % alphabet.len()]));
                    n /= alphabet.len();
                }
                inputs.push(text);
            }
        }
        for input in &inputs {
            let general = match whatwg_ipv4(input) {
                Ipv4Literal::Addr(addr) if !is_plain_dotted_decimal(input) => {
                    Ipv4Literal::Ambiguous(addr)
                }
                other => other,
            };
            assert_eq!(parse_ipv4_literal(input), general, "{input}");
            if let Some(addr) = plain_ipv4(input) {
                assert_eq!(general, Ipv4Literal::Addr(addr), "{input}");
            }
        }
    }

    #[test]
    fn ipv4_literal_forms() {
        let plain: [(&str, [u8; 4]); 3] = [
            ("127.0.0.1", [127, 0, 0, 1]),
            ("0.0.0.0", [0, 0, 0, 0]),
            ("255.255.255.255", [255, 255, 255, 255]),
        ];
        for (input, octets) in plain {
            assert_eq!(
                parse_ipv4_literal(input),
                Ipv4Literal::Addr(octets.into()),
                "{input}"
            );
        }
        // What inet_aton and WHATWG read; other parsers refuse these or read them otherwise.
        let ambiguous: [(&str, [u8; 4]); 10] = [
            ("2130706433", [127, 0, 0, 1]),
            ("0x7f.1", [127, 0, 0, 1]),
            ("0x7F000001", [127, 0, 0, 1]),
            ("127.1", [127, 0, 0, 1]),
            ("0177.0.0.1", [127, 0, 0, 1]),
            ("010.8.8.8", [8, 8, 8, 8]),
            ("127.000.000.001", [127, 0, 0, 1]),
            ("10.0.0.1.", [10, 0, 0, 1]),
            ("0x", [0, 0, 0, 0]),
            ("1.2.3", [1, 2, 0, 3]),
        ];
        for (input, octets) in ambiguous {
            assert_eq!(
                parse_ipv4_literal(input),
                Ipv4Literal::Ambiguous(octets.into()),
                "{input}"
            );
        }
        let cases: [(&str, Option<[u8; 4]>); 8] = [
            ("1.2.3.256", None),
            ("1.2.3.4.5", None),
            ("4294967296", None),
            ("08.0.0.1", None),
            ("example.123", None),
            ("1..2", None),
            ("999999999999999999999999", None),
            ("0x100000000", None),
        ];
        for (input, want) in cases {
            let got = parse_ipv4_literal(input);
            match want {
                Some(octets) => assert_eq!(got, Ipv4Literal::Addr(octets.into()), "{input}"),
                None => assert_eq!(got, Ipv4Literal::Invalid, "{input}"),
            }
        }
        for name in ["example.com", "1.2.3.com", "0xg", "a"] {
            assert_eq!(parse_ipv4_literal(name), Ipv4Literal::NotNumeric, "{name}");
        }
    }

    #[test]
    fn embedded_ipv4_is_found() {
        let cases = [
            ("::ffff:10.0.0.1", Some(("10.0.0.1", Embedding::Mapped))),
            ("::10.0.0.1", Some(("10.0.0.1", Embedding::Compatible))),
            (
                "64:ff9b::a9fe:a9fe",
                Some(("169.254.169.254", Embedding::Nat64)),
            ),
            (
                "2002:c0a8:0101::1",
                Some(("192.168.1.1", Embedding::SixToFour)),
            ),
            (
                "::ffff:0:10.0.0.1",
                Some(("10.0.0.1", Embedding::Translated)),
            ),
            (
                "::ffff:0:a9fe:a9fe",
                Some(("169.254.169.254", Embedding::Translated)),
            ),
            ("::", None),
            ("::1", None),
            ("2001:db8::1", None),
        ];
        for (input, want) in cases {
            let got = embedded_ipv4(input.parse().unwrap());
            let want = want.map(|(v4, e)| (v4.parse().unwrap(), e));
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn embed_builds_the_matching_network() {
        let v4: ipnet::Ipv4Net = "10.0.0.0/8".parse().unwrap();
        assert_eq!(Embedding::Nat64.embed(v4).to_string(), "64:ff9b::a00:0/104");
        assert_eq!(Embedding::SixToFour.embed(v4).to_string(), "2002:a00::/24");
        assert_eq!(
            Embedding::Mapped.embed(v4).to_string(),
            "::ffff:10.0.0.0/104"
        );
    }

    #[test]
    fn zone_ids_are_refused() {
        assert_eq!(parse_ipv6_literal("[fe80::1%eth0]"), None);
        assert_eq!(parse_ipv6_literal("[::1]"), Some(Ipv6Addr::LOCALHOST));
    }
}
