//! Property tests: no input panics the parser or the matcher, and the equivalences the policy
//! reference promises (case, trailing dot, IDN forms, IPv4 spellings, wildcards) hold.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};

use policy::{DomainName, Host, HostPattern, Policy, Target, classify};
use proptest::prelude::*;

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"
}

fn name() -> impl Strategy<Value = String> {
    // The last label is alphabetic so that the name is never read as an IPv4 literal.
    (prop::collection::vec(label(), 1..4), "[a-z]{2,6}").prop_map(|(mut labels, tld)| {
        labels.push(tld);
        labels.join(".")
    })
}

fn policy_with(allow_host: &str) -> Policy {
    let text = format!(
        "version = 1\n[defaults]\naction = \"deny\"\n[[allow]]\nhost = \"{allow_host}\"\nports = \"any\"\n"
    );
    Policy::parse(&text, "prop.toml").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn parser_never_panics(text in "\\PC{0,200}") {
        let _ = Policy::parse(&text, "fuzz.toml");
    }

    #[test]
    fn parser_never_panics_on_policy_shaped_text(
        host in "\\PC{0,40}", cidr in "\\PC{0,30}", ports in "\\PC{0,20}", value in "\\PC{0,20}",
    ) {
        let text = format!(
            "version = 1\n[[allow]]\nhost = {host:?}\nports = [{ports}]\n[[deny]]\ncidr = {cidr:?}\n\
             [[danger_carve_out]]\ncidr = {cidr:?}\nports = [{ports}]\n[headers]\nX-A = {value:?}\n"
        );
        if let Err(errors) = Policy::parse(&text, "fuzz.toml") {
            for e in &errors.0 {
                prop_assert!(e.line >= 1 && e.column >= 1);
            }
        }
    }

    #[test]
    fn matcher_never_panics(host in "\\PC{0,80}", port in any::<u16>()) {
        let policy = policy_with("*.example.com");
        let target = Target::new(&host, port);
        let _ = policy.decide(&target);
        let _ = Target::parse_authority(&host);
        let _ = Target::parse_loose(&host, 443);
    }

    #[test]
    fn case_and_trailing_dot_do_not_matter(n in name(), port in 1u16..) {
        let policy = policy_with(&n);
        let plain = policy.decide(&Target::new(&n, port));
        prop_assert!(plain.is_allowed());
        for variant in [n.to_uppercase(), format!("{n}."), format!("{}.", n.to_uppercase())] {
            prop_assert_eq!(&policy.decide(&Target::new(&variant, port)), &plain, "{}", variant);
        }
    }

    #[test]
    fn wildcard_matches_below_never_itself(prefix in label(), suffix in name()) {
        let pattern = HostPattern::parse(&format!("*.{suffix}")).unwrap();
        let below = DomainName::parse(&format!("{prefix}.{suffix}")).unwrap();
        let itself = DomainName::parse(&suffix).unwrap();
        let glued = DomainName::parse(&format!("{prefix}{suffix}")).unwrap();
        prop_assert!(pattern.matches(&below));
        prop_assert!(!pattern.matches(&itself));
        prop_assert!(!pattern.matches(&glued));
    }

    #[test]
    fn idn_forms_are_equivalent(unicode in "[a-zà-ÿ]{1,8}ü[a-z]{0,4}", tld in "[a-z]{2,4}") {
        let u_name = format!("{unicode}.{tld}");
        let a_name = DomainName::parse(&u_name).unwrap();
        prop_assert!(a_name.as_str().starts_with("xn--"));
        // A rule written in either form matches a target written in either form.
        for rule in [u_name.as_str(), a_name.as_str()] {
            let policy = policy_with(rule);
            for target in [u_name.as_str(), a_name.as_str()] {
                prop_assert!(policy.decide(&Target::new(target, 443)).is_allowed(), "{} vs {}", rule, target);
            }
        }
    }

    #[test]
    fn only_plain_dotted_decimal_is_an_ipv4_address(bits in any::<u32>()) {
        let addr = Ipv4Addr::from(bits);
        let [a, b, c, d] = addr.octets();
        for plain in [addr.to_string(), format!("[::ffff:{addr}]")] {
            let judged = match Host::parse(&plain) {
                Host::Ip(IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(IpAddr::V4),
                Host::Ip(ip) => Some(ip),
                _ => None,
            };
            prop_assert_eq!(judged, Some(IpAddr::V4(addr)), "{}", plain);
        }
        // Every other spelling inet_aton accepts is malformed, never some other address.
        let ambiguous = [
            bits.to_string(),
            format!("{bits:#x}"),
            format!("{a}.{}", u32::from_be_bytes([0, b, c, d])),
            format!("{a}.{b}.{}", u16::from_be_bytes([c, d])),
            format!("{a:#o}.{b:#x}.{c}.{d}").replace("0o", "0"),
            format!("{a:03}.{b}.{c}.{d}"),
            format!("{addr}."),
        ];
        for spelling in ambiguous {
            if spelling == addr.to_string() {
                continue;
            }
            let host = Host::parse(&spelling);
            prop_assert!(matches!(host, Host::Malformed(_)), "{} parsed as {:?}", spelling, host);
        }
    }

    #[test]
    fn special_ranges_hold_in_every_ipv6_wrapping(bits in any::<u32>()) {
        let v4 = Ipv4Addr::from(bits);
        let expected = classify(IpAddr::V4(v4)).map(|m| m.range.name);
        let [a, b, c, d] = v4.octets();
        let wraps = [
            format!("::ffff:{v4}"),
            format!("64:ff9b::{v4}"),
            format!("2002:{:02x}{:02x}:{:02x}{:02x}::1", a, b, c, d),
        ];
        for wrapped in wraps {
            let ip: IpAddr = wrapped.parse().unwrap();
            prop_assert_eq!(classify(ip).map(|m| m.range.name), expected, "{}", wrapped);
        }
    }
}
