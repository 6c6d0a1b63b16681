//! `--mode loopback-only`: one rule set for a service user that runs many jobs at once, each with
//! its own egressd on loopback. The whole text of both renderers (golden files shared with the
//! binary's tests) and the check that pf and nft say the same thing. The rules enforced for real
//! are tested with the binary (tests/firewall.rs).
#![allow(clippy::unwrap_used)]

use std::path::Path;

use pf::{BlockPolicy, Icmp, Mode, Options, Plan, SandboxUser, UidRange};
use policy::Policy;

/// The uid the golden files are written for (what `egressd pf --user 601` prints).
const GOLDEN_UID: u32 = 601;

fn options(uid: u32, range: UidRange) -> Options {
    Options {
        user: SandboxUser::new(uid, None, range).unwrap(),
        mode: Mode::LoopbackOnly,
        block: BlockPolicy::Return,
        cgroup: None,
        deny_loopback: Vec::new(),
        icmp: Icmp::Closed,
        block_icmp: false,
        generator: concat!("egressd ", env!("CARGO_PKG_VERSION")).into(),
    }
}

fn plan(uid: u32) -> Plan {
    Plan::new(&Policy::builtin(), &options(uid, UidRange::Service)).unwrap()
}

fn nft_text(uid: u32) -> String {
    pf::nft::render(&plan(uid), &pf::nft::default_table(uid))
}

/// Compares `actual` with `tests/golden/NAME` (what the binary prints for the same flags);
/// `EGRESSD_BLESS=1` rewrites the file instead.
fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/golden")
        .join(name);
    if std::env::var_os("EGRESSD_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing (EGRESSD_BLESS=1 writes it)", path.display()));
    assert_eq!(
        actual, expected,
        "{name} differs (EGRESSD_BLESS=1 to accept)"
    );
}

#[test]
fn golden_loopback_only() {
    golden(
        "pf-loopback-only.conf",
        &pf::pf::render(&plan(GOLDEN_UID), pf::pf::DEFAULT_ANCHOR),
    );
    golden("nft-loopback-only.nft", &nft_text(GOLDEN_UID));
}

/// A rule as both firewalls mean it: verdict, family, destination (ports never appear here).
type Meaning = (&'static str, &'static str, String);

fn pf_meaning(text: &str, uid: u32) -> Vec<Meaning> {
    let user = format!(" user {uid}");
    text.lines()
        .filter(|l| l.starts_with("pass ") || l.starts_with("block "))
        .map(|line| {
            let body = line.strip_suffix(user.as_str()).unwrap();
            let verdict = if line.starts_with("pass ") {
                "pass"
            } else {
                "block"
            };
            let family = if body.contains(" inet6 ") { "v6" } else { "v4" };
            let dest = body.rsplit_once(" to ").unwrap().1.to_owned();
            (verdict, family, dest)
        })
        .collect()
}

fn nft_meaning(text: &str, uid: u32) -> Vec<Meaning> {
    let mut meanings: Vec<Meaning> = Vec::new();
    for line in text.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix(&format!("meta skuid {uid} ")) else {
            continue;
        };
        // pf writes no ICMP or other-protocol rule for a user (it cannot match one): compared
        // apart.
        if rest.contains("l4proto icmp")
            || rest.contains("l4proto ipv6-icmp")
            || rest.contains("l4proto != ")
        {
            continue;
        }
        let verdict = if rest.ends_with(" accept") {
            "pass"
        } else {
            "block"
        };
        let (family, dest) = if let Some(d) = rest.split(" ip daddr ").nth(1) {
            ("v4", d.split(' ').next().unwrap().to_owned())
        } else if let Some(d) = rest.split(" ip6 daddr ").nth(1) {
            let net = d.split(' ').next().unwrap();
            ("v6", net.strip_suffix("/128").unwrap_or(net).to_owned())
        } else if rest.contains("meta nfproto ipv4") {
            ("v4", "any".to_owned())
        } else {
            ("v6", "any".to_owned())
        };
        // nft writes a refusal once per protocol (TCP reset, UDP ICMP); pf once for both.
        let meaning = (verdict, family, dest);
        if meanings.last() != Some(&meaning) {
            meanings.push(meaning);
        }
    }
    meanings
}

#[test]
fn pf_and_nft_say_the_same_thing() {
    let plan = plan(GOLDEN_UID);
    let pf = pf_meaning(&pf::pf::render(&plan, pf::pf::DEFAULT_ANCHOR), GOLDEN_UID);
    let nft = nft_meaning(&nft_text(GOLDEN_UID), GOLDEN_UID);
    let expected: Vec<Meaning> = vec![
        ("pass", "v4", "127.0.0.0/8".into()),
        ("pass", "v6", "::1".into()),
        ("block", "v4", "any".into()),
        ("block", "v6", "any".into()),
    ];
    assert_eq!(pf, expected);
    assert_eq!(nft, expected);
}

/// nft refuses the user's own ICMP but to loopback, both families; pf cannot (its `user` matches
/// TCP and UDP only), and its header says so instead of pretending.
#[test]
fn icmp_is_closed_for_the_user_by_nft_and_pf_says_it_cannot() {
    let nft = nft_text(GOLDEN_UID);
    for line in [
        "meta skuid 601 meta l4proto icmp ip daddr != 127.0.0.0/8 reject",
        "meta skuid 601 meta l4proto ipv6-icmp ip6 daddr != ::1 reject",
    ] {
        assert!(nft.lines().any(|l| l.trim() == line), "{line}\n{nft}");
    }
    assert!(
        nft.contains("# icmp:   closed: every ICMP packet from this user"),
        "{nft}"
    );
    let pf = pf::pf::render(&plan(GOLDEN_UID), pf::pf::DEFAULT_ANCHOR);
    assert!(pf.contains("# icmp:   NOT closed by this anchor"), "{pf}");
    assert!(
        !pf.lines()
            .any(|l| l.contains("icmp") && !l.starts_with('#')),
        "{pf}"
    );
    let mut open = options(GOLDEN_UID, UidRange::Service);
    open.icmp = Icmp::Open;
    let nft_open = pf::nft::render(
        &Plan::new(&Policy::builtin(), &open).unwrap(),
        "egressd_601",
    );
    assert!(!nft_open.contains("l4proto icmp"), "{nft_open}");
}

/// Every other IP protocol (SCTP, UDP-Lite, raw IP) is refused off loopback too, both families,
/// after the TCP/UDP and ICMP rules, and never ICMP itself: `--allow-icmp` leaves ICMP open and
/// still closes the rest. In `--mode lan`, to the special ranges only, as its TCP and UDP. pf
/// cannot match them by user and says so.
#[test]
fn every_other_ip_protocol_is_closed_by_nft_and_pf_says_it_cannot() {
    let v4 = "meta skuid 601 meta l4proto != { tcp, udp, icmp } ip daddr != 127.0.0.0/8 reject";
    let v6 = "meta skuid 601 meta l4proto != { tcp, udp, ipv6-icmp } ip6 daddr != ::1 reject";
    for icmp in [Icmp::Closed, Icmp::Open] {
        let mut options = options(GOLDEN_UID, UidRange::Service);
        options.icmp = icmp;
        let nft = pf::nft::render(
            &Plan::new(&Policy::builtin(), &options).unwrap(),
            "egressd_601",
        );
        let lines: Vec<&str> = nft.lines().map(str::trim).collect();
        let at4 = lines.iter().position(|l| *l == v4);
        let at6 = lines.iter().position(|l| *l == v6);
        let (Some(at4), Some(at6)) = (at4, at6) else {
            panic!("{icmp:?}: no other-protocol rules\n{nft}");
        };
        // After every TCP/UDP rule (first match wins: the loopback passes come first anyway).
        let last_tcp_udp = lines
            .iter()
            .rposition(|l| l.contains("l4proto tcp") || l.contains("l4proto { tcp, udp }"))
            .unwrap();
        assert!(last_tcp_udp < at4 && at4 < at6, "{nft}");
        assert!(
            nft.contains("# other:  every other IP protocol from this user (SCTP, UDP-Lite, raw IP...) is refused\n#         everywhere (loopback excepted)."),
            "{nft}"
        );
    }
    let lan = Options {
        mode: Mode::Lan,
        ..options(GOLDEN_UID, UidRange::Service)
    };
    let nft = pf::nft::render(&Plan::new(&Policy::builtin(), &lan).unwrap(), "egressd_601");
    for line in [
        "meta skuid 601 meta l4proto != { tcp, udp, icmp } ip daddr != 127.0.0.0/8 ip daddr @special4 reject",
        "meta skuid 601 meta l4proto != { tcp, udp, ipv6-icmp } ip6 daddr != ::1 ip6 daddr @special6 reject",
    ] {
        assert!(nft.lines().any(|l| l.trim() == line), "{line}\n{nft}");
    }
    assert!(
        nft.contains("is refused\n#         to the special ranges (loopback excepted)."),
        "{nft}"
    );
    let pf = pf::pf::render(&plan(GOLDEN_UID), pf::pf::DEFAULT_ANCHOR);
    assert!(
        pf.contains("# other:  IP protocols but TCP and UDP (SCTP, raw IP...) NOT closed by user"),
        "{pf}"
    );
    for line in pf
        .lines()
        .filter(|l| l.starts_with("pass ") || l.starts_with("block "))
    {
        assert!(
            line.contains("proto { tcp udp }") || line.contains("proto tcp"),
            "{line}"
        );
    }
}

#[test]
fn the_rules_name_no_job() {
    // Nothing per job: no port, no table entry. The same text serves one job or forty.
    let text = nft_text(GOLDEN_UID);
    assert!(!text.contains("dport"), "{text}");
    assert!(!text.contains("set special"), "{text}");
}

#[test]
fn service_users_below_500_but_never_root() {
    assert_eq!(
        SandboxUser::new(450, None, UidRange::Regular),
        Err(pf::Error::SystemUid(450))
    );
    assert!(SandboxUser::new(450, None, UidRange::Service).is_ok());
    assert!(SandboxUser::new(1, None, UidRange::Service).is_ok());
    assert_eq!(
        SandboxUser::new(0, None, UidRange::Service),
        Err(pf::Error::RootAsServiceUser)
    );
    assert!(SandboxUser::new(0, None, UidRange::DangerAny).is_ok());
    assert!(SandboxUser::new(601, None, UidRange::Regular).is_ok());
}

// The rules enforced for real (nft in a network namespace, two egressd sidecars of one user):
// tests/firewall.rs, nft_loopback_only_rules_hold_for_many_jobs_of_one_user.
