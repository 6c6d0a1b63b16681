//! Property: for any valid policy and any options, the pf anchor stays inside the small subset of
//! pf.conf that docs/pf.md promises macOS accepts, and `user` never meets ICMP.
#![allow(clippy::unwrap_used)]

use pf::{BlockPolicy, Icmp, Mode, Options, Plan, SandboxUser, SidecarPort, UidRange};
use policy::Policy;
use proptest::prelude::*;

/// Checks one anchor against the subset; returns the first offending line.
fn check_subset(text: &str) -> Result<(), String> {
    // Join backslash continuations into logical lines, as pfctl does.
    let joined = text.replace("\\\n", " ");
    for line in joined.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        for forbidden in [
            "match",
            "nat-to",
            "rdr-to",
            "divert-to",
            "received-on",
            "group",
            "set ",
            "scrub",
            "anchor",
        ] {
            if line.split_whitespace().any(|w| w == forbidden.trim()) {
                return Err(format!("forbidden keyword {forbidden:?}: {line}"));
            }
        }
        if let Some(rest) = line.strip_prefix("table <") {
            check_table(rest).map_err(|e| format!("{e}: {line}"))?;
            continue;
        }
        check_rule(line).map_err(|e| format!("{e}: {line}"))?;
    }
    Ok(())
}

fn check_table(rest: &str) -> Result<(), String> {
    let (name, body) = rest
        .split_once("> const {")
        .ok_or("table without const body")?;
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err("bad table name".into());
    }
    let body = body.trim().strip_suffix('}').ok_or("unclosed table")?;
    for entry in body.split(',') {
        entry
            .trim()
            .parse::<ipnet::IpNet>()
            .map_err(|_| format!("bad table entry {entry:?}"))?;
    }
    Ok(())
}

fn check_rule(line: &str) -> Result<(), String> {
    let rest = ["pass ", "block return ", "block drop "]
        .iter()
        .find_map(|a| line.strip_prefix(a))
        .ok_or("not a comment, table, pass or block")?;
    let rest = rest.strip_prefix("out quick ").ok_or("not `out quick`")?;
    let rest = rest
        .strip_prefix("inet6 ")
        .or_else(|| rest.strip_prefix("inet "))
        .ok_or("no address family")?;
    let (icmp, rest) = if let Some(r) = rest.strip_prefix("proto icmp icmp-type echoreq ") {
        (true, r)
    } else if let Some(r) = rest.strip_prefix("proto icmp6 icmp6-type echoreq ") {
        (true, r)
    } else if let Some(r) = rest.strip_prefix("proto { tcp udp } ") {
        (false, r)
    } else if let Some(r) = rest.strip_prefix("proto tcp ") {
        (false, r)
    } else {
        return Err("unexpected proto".into());
    };
    let rest = rest
        .strip_prefix("from any to ")
        .ok_or("not `from any to`")?;
    let (dest, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let dest_ok = dest == "any"
        || (dest.starts_with('<') && dest.ends_with('>'))
        || dest.parse::<ipnet::IpNet>().is_ok()
        || dest.parse::<std::net::IpAddr>().is_ok();
    if !dest_ok {
        return Err(format!("bad destination {dest:?}"));
    }
    if let Some(ports) = rest.strip_prefix("port { ") {
        let (list, after) = ports.split_once(" }").ok_or("unclosed port list")?;
        for item in list.split(' ') {
            let ok = match item.split_once(':') {
                Some((lo, hi)) => lo.parse::<u16>().is_ok() && hi.parse::<u16>().is_ok(),
                None => item.parse::<u16>().is_ok(),
            };
            if !ok {
                return Err(format!("bad port {item:?}"));
            }
        }
        rest = after.trim_start();
    }
    match (icmp, rest.strip_prefix("user ")) {
        (true, Some(_)) => Err("`user` on an ICMP rule".into()),
        (true, None) if rest.is_empty() => Ok(()),
        (false, Some(uid)) if uid.parse::<u32>().is_ok() => Ok(()),
        (false, None) => Err("TCP/UDP rule without `user`".into()),
        _ => Err(format!("unexpected tail {rest:?}")),
    }
}

/// A random valid policy: deny CIDRs with ports, carve-outs inside special ranges.
fn policy_text() -> impl Strategy<Value = String> {
    let deny =
        (any::<[u8; 4]>(), 8u8..=32, prop::option::of(1u16..=65535)).prop_map(|(ip, len, port)| {
            let net = ipnet::Ipv4Net::new(ip.into(), len).unwrap().trunc();
            match port {
                Some(p) => format!(
                    "[[deny]]\ncidr = \"{net}\"\nports = [{p}, \"{}-{}\"]\n",
                    p / 2 + 1,
                    p / 2 + 1
                ),
                None => format!("[[deny]]\ncidr = \"{net}\"\n"),
            }
        });
    let carve = (any::<[u8; 2]>(), 16u8..=32, 1u16..=65535, any::<bool>()).prop_map(
        |(low, len, port, v6)| {
            if v6 {
                let ip = std::net::Ipv6Addr::new(
                    0xfd00,
                    u16::from(low[0]),
                    u16::from(low[1]),
                    0,
                    0,
                    0,
                    0,
                    1,
                );
                let net = ipnet::Ipv6Net::new(ip, 48 + len * 2).unwrap().trunc();
                format!("[[danger_carve_out]]\ncidr = \"{net}\"\nports = [{port}]\n")
            } else {
                let net = ipnet::Ipv4Net::new([10, low[0], low[1], 7].into(), len)
                    .unwrap()
                    .trunc();
                format!("[[danger_carve_out]]\ncidr = \"{net}\"\nports = [{port}]\n")
            }
        },
    );
    (
        prop::collection::vec(deny, 0..4),
        prop::collection::vec(carve, 0..4),
    )
        .prop_map(|(d, c)| format!("version = 1\n{}{}", d.concat(), c.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn pf_output_stays_in_the_subset(
        text in policy_text(),
        uid in 500u32..100_000,
        mode in 0u8..3,
        proxy_port in 1u16..,
        allow_loopback in any::<bool>(),
        drop in any::<bool>(),
        block_icmp in any::<bool>(),
        allow_icmp in any::<bool>(),
        deny in prop::collection::vec((1u16..60000, 0u16..4), 0..3),
    ) {
        let policy = Policy::parse(&text, "prop.toml").unwrap();
        let mode = match mode {
            0 => Mode::Lan,
            1 => Mode::LoopbackOnly,
            _ => Mode::SidecarOnly {
                ports: vec![SidecarPort { ip: None, port: proxy_port, udp: false }],
                allow_loopback,
            },
        };
        let options = Options {
            user: SandboxUser::new(uid, None, UidRange::Regular).unwrap(),
            mode,
            block: if drop { BlockPolicy::Drop } else { BlockPolicy::Return },
            cgroup: None,
            // Never the sidecar's own port (that is an error, tested apart).
            deny_loopback: deny
                .iter()
                .map(|(lo, len)| *lo..=lo + len)
                .filter(|r| !r.contains(&proxy_port))
                .collect(),
            icmp: if allow_icmp { Icmp::Open } else { Icmp::Closed },
            block_icmp,
            generator: "egressd test".into(),
        };
        let plan = Plan::new(&policy, &options).unwrap();
        let anchor = pf::pf::render(&plan, pf::pf::DEFAULT_ANCHOR);
        if let Err(e) = check_subset(&anchor) {
            prop_assert!(false, "{e}\n{anchor}");
        }
        // nft output mentions the uid on every rule and balances its braces.
        let nft = pf::nft::render(&plan, "egressd_test");
        prop_assert_eq!(nft.matches('{').count(), nft.matches('}').count());
        let verdicts = nft.lines().filter(|l| !l.contains(" hook ")).filter(|l| l.ends_with(" accept") || l.contains(" reject") || l.ends_with(" drop"));
        for line in verdicts {
            prop_assert!(line.contains(&format!("meta skuid {uid} ")), "{}", line);
        }
    }
}

#[test]
fn the_checker_rejects_what_it_must() {
    for bad in [
        "pass out quick inet proto icmp icmp-type echoreq from any to any user 601",
        "block return out quick inet proto { tcp udp } from any to any",
        "match out on en0 nat-to 1.2.3.4",
        "pass in quick inet proto tcp from any to any user 601",
        "block return out quick inet proto { tcp udp } from any to any group staff",
    ] {
        assert!(check_subset(bad).is_err(), "{bad}");
    }
    assert!(check_subset("block drop out quick inet6 proto { tcp udp } from any to <t> port { 22 80:90 } user 601").is_ok());
}
