//! The adversarial destinations every tunnel is held to, one table each, tried through the HTTP
//! proxy (tests/proxy.rs, tests/netns.rs) and through the SOCKS5 listener (tests/socks.rs): a case
//! added here is tried through both.

/// IPv4 spellings parsers disagree on (one integer, hex, shorthand, octal, zero-padded): malformed
/// as written, so never resolved and never dialed, whatever they would mean.
pub const AMBIGUOUS_IPV4: [&str; 5] = [
    "2130706433",
    "0x7f.0.0.1",
    "127.1",
    "0177.0.0.1",
    "127.000.000.001",
];

/// Destinations refused under [`super::loopback_policy`] for the origin's `port`, with the
/// reason: a port the rule does not name, loopback beyond the carve-out (plain, IPv4-mapped and
/// IPv4-translated IPv6), and the carved-out address on another port.
pub fn refused_on_loopback(port: u16) -> [(String, u16, &'static str); 5] {
    let other = if port == 65535 { 65534 } else { port + 1 };
    [
        ("origin.test".to_owned(), other, "port-not-allowed"),
        ("127.0.0.2".to_owned(), port, "special-range"),
        ("[::ffff:127.0.0.2]".to_owned(), port, "special-range"),
        ("[::ffff:0:127.0.0.2]".to_owned(), port, "special-range"),
        ("127.0.0.1".to_owned(), other, "special-range"),
    ]
}

/// Hosts that reach a LAN address `v4`/`v6` (in a network namespace) under a policy that allows
/// every name: `lan.test`, a name whose DNS answer is the LAN (rebinding), and the literals in
/// every IPv6 spelling. Each is refused as a special range, without a connection attempt.
pub fn lan_hosts(v4: &str, v6: &str) -> [String; 5] {
    [
        "lan.test".to_owned(),
        v4.to_owned(),
        format!("[{v6}]"),
        format!("[::ffff:{v4}]"),
        format!("[::ffff:0:{v4}]"),
    ]
}

/// Special-range hosts the built-in policy refuses on any port, `v4`/`v6` being LAN addresses
/// that exist in the test's namespace: private, cloud metadata, CGNAT.
pub fn builtin_refused(v4: &str, v6: &str) -> [String; 5] {
    [
        v4.to_owned(),
        "192.168.1.1".to_owned(),
        format!("[{v6}]"),
        "169.254.169.254".to_owned(),
        "100.64.0.1".to_owned(),
    ]
}
