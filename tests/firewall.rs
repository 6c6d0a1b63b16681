//! `egressd pf`, `egressd nft`, `egressd sbpl`: golden output, bad input, and the nftables rules
//! enforced for real inside network namespaces.

use std::net::SocketAddr;

use crate::util::*;

/// Compares `actual` with `tests/golden/NAME`; `EGRESSD_BLESS=1` rewrites the file instead.
fn golden(name: &str, actual: &str) {
    let path = repo(&format!("tests/golden/{name}"));
    if std::env::var_os("EGRESSD_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{} is missing", path.display()));
    // The version in the header changes with releases; compare the rest exactly.
    let normalize = |s: &str| {
        s.replace(
            concat!("egressd ", env!("CARGO_PKG_VERSION")),
            "egressd VERSION",
        )
    };
    assert_eq!(
        normalize(actual),
        normalize(&expected),
        "{name} differs (EGRESSD_BLESS=1 to accept)"
    );
}

fn ok(args: &[&str]) -> String {
    let r = run(args);
    assert_eq!(r.code, 0, "{args:?}: {r:?}");
    r.stdout
}

#[test]
fn golden_outputs() {
    let carve = "tests/golden/carve.toml";
    golden("pf-lan-builtin.conf", &ok(&["pf", "--user", "601"]));
    golden(
        "pf-lan-carve.conf",
        &ok(&["pf", "--user", "601", "--policy", carve]),
    );
    golden(
        "pf-sidecar.conf",
        &ok(&[
            "pf",
            "--user",
            "601",
            "--mode",
            "sidecar-only",
            "--proxy-port",
            "3128",
            "--dns-port",
            "5353",
            "--block-icmp",
            "--block-policy",
            "drop",
            "--anchor",
            "egressd/sandbox-601",
        ]),
    );
    golden(
        "nft-lan-carve.nft",
        &ok(&["nft", "--user", "601", "--policy", carve]),
    );
    golden(
        "nft-sidecar.nft",
        &ok(&[
            "nft",
            "--user",
            "601",
            "--mode",
            "sidecar-only",
            "--proxy-port",
            "3128",
            "--allow-loopback",
        ]),
    );
    golden(
        "sbpl.sb",
        &ok(&["sbpl", "--proxy-port", "3128", "--dns-port", "5353"]),
    );
    for (name, format) in [
        ("pf-loopback-only.conf", "pf"),
        ("nft-loopback-only.nft", "nft"),
    ] {
        golden(
            name,
            &ok(&[format, "--user", "601", "--mode", "loopback-only"]),
        );
    }
}

#[test]
fn every_special_range_is_in_the_rules_for_both_families() {
    let pf = ok(&["pf", "--user", "601"]);
    let nft = ok(&["nft", "--user", "601"]);
    let nft_elements: Vec<ipnet::IpNet> = nft
        .lines()
        .map(|l| l.trim().trim_end_matches(','))
        .filter_map(|l| l.parse().ok())
        .collect();
    for (net, range, _) in policy::denied_networks() {
        assert!(
            pf.lines()
                .any(|l| l.trim().trim_end_matches(" \\").trim_end_matches(',') == net.to_string()),
            "pf lacks {net} ({})",
            range.name
        );
        assert!(
            nft_elements.iter().any(|e| e.contains(&net)),
            "nft lacks {net} ({})",
            range.name
        );
    }
    assert!(
        pf.contains("pass out quick inet proto { tcp udp } from any to 127.0.0.0/8 user 601"),
        "{pf}"
    );
    assert!(
        pf.contains("pass out quick inet6 proto { tcp udp } from any to ::1 user 601"),
        "{pf}"
    );
}

#[test]
fn bad_input_exits_two_with_one_line() {
    for (args, needle) in [
        (
            vec!["pf", "--user", "0"],
            "uid 0 is root or a system account",
        ),
        (vec!["pf", "--user", "499"], "uid 499"),
        (
            vec!["pf", "--user", "nosuchuser-egressd"],
            "unknown user \"nosuchuser-egressd\"",
        ),
        (
            vec!["pf", "--user", "601", "--anchor", "bad name"],
            "invalid anchor name \"bad name\"",
        ),
        (
            vec!["pf", "--user", "601", "--anchor", "with\"quote"],
            "invalid anchor name",
        ),
        (
            vec!["pf", "--user", "601", "--mode", "sidecar-only"],
            "sidecar-only mode needs the sidecar's ports",
        ),
        (
            vec!["pf", "--user", "601", "--proxy-port", "3128"],
            "only apply to --mode sidecar-only",
        ),
        (
            vec!["nft", "--user", "601", "--table", "1bad"],
            "invalid table name",
        ),
        (vec!["sbpl"], "needs the sidecar's ports"),
        (
            vec!["nft", "--user", "601", "--cgroup", "jobs/../other"],
            "invalid cgroup path \"jobs/../other\"",
        ),
        (
            vec!["nft", "--user", "601", "--cgroup", "jobs/a\"b"],
            "invalid cgroup path",
        ),
        (
            vec![
                "sbpl",
                "--proxy-port",
                "3128",
                "--deny-loopback-port",
                "3100-3200",
            ],
            "closes port 3128, one of this sandbox's own egressd ports",
        ),
        (
            vec![
                "nft",
                "--user",
                "601",
                "--mode",
                "sidecar-only",
                "--proxy-port",
                "3128",
                "--deny-loopback-port",
                "3128",
            ],
            "closes port 3128",
        ),
        (
            vec![
                "sbpl",
                "--proxy-port",
                "3128",
                "--allow-unix-socket",
                "tmp/job",
            ],
            "invalid --allow-unix-socket \"tmp/job\"",
        ),
        (
            vec![
                "sbpl",
                "--proxy-port",
                "3128",
                "--deny-loopback-port",
                "10000-11000",
            ],
            "names 1001 ports",
        ),
    ] {
        let r = run(&args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {r:?}");
        assert!(r.stderr.contains(needle), "{args:?}: {r:?}");
        assert!(r.stdout.is_empty());
    }
    let zero_port = run(&[
        "pf",
        "--user",
        "601",
        "--mode",
        "sidecar-only",
        "--proxy-port",
        "0",
    ]);
    assert_eq!(zero_port.code, 2, "{zero_port:?}");
    let system = run(&["pf", "--user", "0", "--allow-system-uid"]);
    assert_eq!(system.code, 0, "{system:?}");
    // Flag values clap rejects: exit 2, naming the flag (clap's own multi-line message).
    for (args, needle) in [
        (
            vec!["nft", "--user", "601", "--deny-loopback-port", "0"],
            "--deny-loopback-port",
        ),
        (
            vec!["nft", "--user", "601", "--deny-loopback-port", "5-4"],
            "--deny-loopback-port",
        ),
        (
            vec!["pf", "--user", "601", "--deny-loopback-port", "http"],
            "--deny-loopback-port",
        ),
        (
            vec!["nft", "--user", "601", "--allow-icmp", "--block-icmp"],
            "--allow-icmp",
        ),
    ] {
        let r = run(&args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stderr.contains(needle), "{args:?}: {r:?}");
        assert!(r.stdout.is_empty());
    }
}

/// `--block-icmp` on nft is a deprecated no-op (the user's ICMP is closed by default), said on
/// stderr; on pf it still adds the host-wide echo rule, the only ICMP rule pf can write.
#[test]
fn block_icmp_is_a_deprecated_no_op_for_nft_and_host_wide_on_pf() {
    let plain = run(&["nft", "--user", "601"]);
    let deprecated = run(&["nft", "--user", "601", "--block-icmp"]);
    assert_eq!(deprecated.code, 0, "{deprecated:?}");
    assert_eq!(deprecated.stdout, plain.stdout);
    assert!(
        deprecated
            .stderr
            .contains("--block-icmp is deprecated for nft and does nothing"),
        "{deprecated:?}"
    );
    let open = ok(&["nft", "--user", "601", "--allow-icmp"]);
    assert!(!open.contains("l4proto icmp"), "{open}");
    assert!(
        plain
            .stdout
            .contains("meta skuid 601 meta l4proto icmp ip daddr != 127.0.0.0/8 reject")
    );
    let pf = ok(&["pf", "--user", "601", "--block-icmp"]);
    assert!(
        pf.contains("block return out quick inet proto icmp icmp-type echoreq from any to <egressd_special4>"),
        "{pf}"
    );
}

#[test]
fn user_names_resolve_to_uids() {
    // `nobody` exists on Linux and macOS alike; its uid is system-range, hence the flag.
    let r = run(&["pf", "--user", "nobody", "--allow-system-uid"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("(nobody, resolved to this uid when the rules were generated)"),
        "{r:?}"
    );
    assert!(
        !r.stdout.contains("user nobody"),
        "rules carry the number, never the name"
    );
}

#[test]
fn sidecar_only_reads_the_live_ports_from_the_ready_file() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready.json");
    let sidecar = Sidecar::start(&["--ready-file", ready.to_str().unwrap()]);
    let port = sidecar.proxy().port();
    let pf = ok(&[
        "pf",
        "--user",
        "601",
        "--mode",
        "sidecar-only",
        "--from-ready",
        ready.to_str().unwrap(),
    ]);
    assert!(
        pf.contains(&format!(
            "pass out quick inet proto tcp from any to 127.0.0.1 port {{ {port} }} user 601"
        )),
        "{pf}"
    );
    let sbpl = ok(&["sbpl", "--from-ready", ready.to_str().unwrap()]);
    assert!(
        sbpl.contains(&format!("(remote tcp \"localhost:{port}\")")),
        "{sbpl}"
    );
}

const SANDBOX_UID: u32 = 60123;
const OTHER_UID: u32 = 60124;
const LAN4: &str = "10.99.0.1";
const LAN6: &str = "fd00::99";

fn lan(port: u16, v6: bool) -> SocketAddr {
    if v6 {
        format!("[{LAN6}]:{port}").parse().unwrap()
    } else {
        format!("{LAN4}:{port}").parse().unwrap()
    }
}

fn load_nft(args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.nft");
    let mut full = vec!["nft"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", file.to_str().unwrap()]);
    ok(&full);
    let out = std::process::Command::new("nft")
        .arg("-f")
        .arg(&file)
        .output()
        .expect("nft (nftables) is installed");
    assert!(
        out.status.success(),
        "nft -f failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs root, network namespaces, nft and setpriv: run by .ci/run"]
fn nft_lan_rules_are_enforced() {
    in_netns(
        "firewall::nft_lan_rules_are_enforced",
        &[&format!("{LAN4}/32"), &format!("{LAN6}/128")],
        nft_lan_rules,
    );
}

fn nft_lan_rules() {
    let prober = Prober::new();
    let tcp = [
        Origin::bind(lan(8080, false), Behaviour::Answer),
        Origin::bind(lan(8080, true), Behaviour::Answer),
    ];
    let udp = [
        UdpEcho::bind(lan(8080, false)),
        UdpEcho::bind(lan(8080, true)),
    ];
    let carved = [
        Origin::bind(lan(5432, false), Behaviour::Answer),
        Origin::bind(lan(5433, false), Behaviour::Answer),
    ];
    let proxy = Origin::start(Behaviour::Answer);
    load_nft(&[
        "--user",
        &SANDBOX_UID.to_string(),
        "--policy",
        "tests/golden/carve.toml",
    ]);

    for v6 in [false, true] {
        assert_eq!(
            prober.probe(SANDBOX_UID, false, lan(8080, v6)),
            "refused",
            "TCP v6={v6}"
        );
        assert_eq!(
            prober.probe(SANDBOX_UID, true, lan(8080, v6)),
            "refused",
            "UDP v6={v6}"
        );
    }
    for listener in &tcp {
        assert_eq!(
            listener.connections.get(),
            0,
            "a LAN listener saw the sandbox user"
        );
    }
    for listener in &udp {
        assert_eq!(
            listener.datagrams.get(),
            0,
            "a LAN listener saw the sandbox user"
        );
    }
    // The carve-out opens exactly its address and port.
    assert_eq!(prober.probe(SANDBOX_UID, false, lan(5432, false)), "ok");
    assert_eq!(
        prober.probe(SANDBOX_UID, false, lan(5433, false)),
        "refused"
    );
    assert_eq!(
        (
            carved[0].connections.wait_for(1),
            carved[1].connections.get()
        ),
        (1, 0)
    );
    // Loopback (where the proxy listens) stays open to the sandbox user.
    assert_eq!(prober.probe(SANDBOX_UID, false, proxy.addr), "ok");
    // Another user is untouched.
    for v6 in [false, true] {
        assert_eq!(
            prober.probe(OTHER_UID, false, lan(8080, v6)),
            "ok",
            "TCP v6={v6}"
        );
        assert_eq!(
            prober.probe(OTHER_UID, true, lan(8080, v6)),
            "ok",
            "UDP v6={v6}"
        );
    }
    assert_eq!(tcp[0].connections.wait_for(1), 1);
    assert_eq!(udp[1].datagrams.get(), 1);
}

#[test]
#[ignore = "needs root, network namespaces, nft and setpriv: run by .ci/run"]
fn nft_sidecar_only_rules_are_enforced() {
    in_netns(
        "firewall::nft_sidecar_only_rules_are_enforced",
        &[&format!("{LAN4}/32")],
        nft_sidecar_only_rules,
    );
}

fn nft_sidecar_only_rules() {
    let prober = Prober::new();
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready.json");
    let sidecar = Sidecar::start(&["--ready-file", ready.to_str().unwrap()]);
    let other_loopback = Origin::start(Behaviour::Answer);
    let lan_listener = Origin::bind(lan(8080, false), Behaviour::Answer);
    load_nft(&[
        "--user",
        &SANDBOX_UID.to_string(),
        "--mode",
        "sidecar-only",
        "--from-ready",
        ready.to_str().unwrap(),
    ]);

    assert_eq!(
        prober.probe(SANDBOX_UID, false, sidecar.proxy()),
        "ok",
        "the proxy port stays reachable"
    );
    assert_eq!(
        prober.probe(SANDBOX_UID, false, other_loopback.addr),
        "refused"
    );
    assert_eq!(
        prober.probe(SANDBOX_UID, false, lan(8080, false)),
        "refused"
    );
    assert_eq!(
        prober.probe(SANDBOX_UID, true, "127.0.0.1:53".parse().unwrap()),
        "refused"
    );
    assert_eq!(other_loopback.connections.get(), 0);
    assert_eq!(lan_listener.connections.get(), 0);
    assert_eq!(prober.probe(OTHER_UID, false, other_loopback.addr), "ok");
}

/// Many jobs of one service user (docs/pf.md, "Many jobs under one service user"): one
/// `loopback-only` rule set for the uid, loaded once, and two egressd sidecars on loopback. The job
/// user reaches both sidecars and nothing off loopback (a LAN address, a public one, IPv6 too;
/// TCP, UDP and UDP-Lite, the one other IP protocol a user may send without privilege here);
/// sidecars come and go with no rule change; reloading the rules, or another user's rules coming and
/// going, changes nothing for it; another user is untouched.
#[test]
#[ignore = "needs root, network namespaces, nft, setpriv and python3: run by .ci/run"]
fn nft_loopback_only_rules_hold_for_many_jobs_of_one_user() {
    in_netns(
        "firewall::nft_loopback_only_rules_hold_for_many_jobs_of_one_user",
        &[
            &format!("{LAN4}/32"),
            &format!("{PUBLIC4}/32"),
            &format!("{LAN6}/128"),
        ],
        loopback_only_rules,
    );
}

/// A public address in no special range: `lan` mode would let it through, `loopback-only` must not.
const PUBLIC4: &str = "11.0.0.7";

fn loopback_only_rules() {
    let public: std::net::IpAddr = PUBLIC4.parse().unwrap();
    assert!(
        policy::classify(public).is_none(),
        "{PUBLIC4} is in no special range"
    );
    let prober = Prober::new();
    let job1 = Sidecar::start(&[]);
    let job2 = Sidecar::start(&[]);
    let offsite = [
        Origin::bind(lan(8080, false), Behaviour::Answer),
        Origin::bind(
            format!("{PUBLIC4}:8080").parse().unwrap(),
            Behaviour::Answer,
        ),
        Origin::bind(lan(8080, true), Behaviour::Answer),
    ];
    let lan_udp = UdpEcho::bind(lan(8080, false));
    let rules = || {
        load_nft(&[
            "--user",
            &SANDBOX_UID.to_string(),
            "--mode",
            "loopback-only",
            "--service-user",
        ])
    };
    rules();
    let reach = |uid: u32, sidecars: &[&Sidecar]| -> Vec<String> {
        let mut seen: Vec<String> = sidecars
            .iter()
            .flat_map(|s| {
                let dns = s.ready["dns"].as_str().unwrap().parse().unwrap();
                [
                    prober.probe(uid, false, s.proxy()),
                    prober.probe(uid, false, dns),
                ]
            })
            .collect();
        seen.extend(offsite.iter().map(|o| prober.probe(uid, false, o.addr)));
        seen.push(prober.probe(uid, true, lan_udp.addr));
        seen
    };
    let shut = [
        "ok", "ok", "ok", "ok", "refused", "refused", "refused", "refused",
    ];
    assert_eq!(reach(SANDBOX_UID, &[&job1, &job2]), shut, "two jobs up");
    assert!(offsite.iter().all(|o| o.connections.get() == 0));
    assert_eq!(lan_udp.datagrams.get(), 0);
    // Every other IP protocol too: UDP-Lite (a user sends it without privilege) is refused off
    // loopback, both families, and sent to loopback; another user's is untouched.
    let public: SocketAddr = format!("{PUBLIC4}:8081").parse().unwrap();
    for (uid, to, want) in [
        (SANDBOX_UID, lan(8081, false), "refused"),
        (SANDBOX_UID, lan(8081, true), "refused"),
        (SANDBOX_UID, public, "refused"),
        (SANDBOX_UID, "127.0.0.1:8081".parse().unwrap(), "sent"),
        (SANDBOX_UID, "[::1]:8081".parse().unwrap(), "sent"),
        (OTHER_UID, lan(8081, false), "sent"),
        (OTHER_UID, public, "sent"),
    ] {
        assert_eq!(
            prober.run(uid, &[], &format!("udplite {to}")),
            want,
            "UDP-Lite as uid {uid} to {to}"
        );
    }

    // Job 2 ends and job 3 starts on new ports: no rule changes, and job 1 is unaffected.
    drop(job2);
    let job3 = Sidecar::start(&[]);
    assert_eq!(
        reach(SANDBOX_UID, &[&job1, &job3]),
        shut,
        "job 2 gone, job 3 up"
    );
    // Provisioning again replaces the table in one transaction: reach unchanged.
    rules();
    assert_eq!(reach(SANDBOX_UID, &[&job1, &job3]), shut, "rules reloaded");
    // Another user's table comes and goes: the job user's reach stays.
    load_nft(&[
        "--user",
        &OTHER_UID.to_string(),
        "--mode",
        "loopback-only",
        "--service-user",
    ]);
    let table = format!("egressd_{OTHER_UID}");
    let out = std::process::Command::new("nft")
        .args(["delete", "table", "inet", &table])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        reach(SANDBOX_UID, &[&job1, &job3]),
        shut,
        "after another user's table"
    );
    assert!(offsite.iter().all(|o| o.connections.get() == 0));
    // Another user is untouched by the job user's table.
    assert_eq!(prober.probe(OTHER_UID, false, offsite[1].addr), "ok");
    assert_eq!(offsite[1].connections.wait_for(1), 1);
}

/// With `EGRESSD_PROBE` set, the probe the enforcement tests run as another user ([`Prober`]):
/// it prints what it saw, and they assert on that. Without, it checks that it tells the outcomes
/// apart on loopback: a listener is "ok", a closed port "refused", a silent UDP socket "timeout".
#[test]
fn probe() {
    if let Ok(spec) = std::env::var("EGRESSD_PROBE") {
        println!("PROBE: {}", probe_once(&spec));
        return;
    }
    let probe = |udp: bool, addr: std::net::SocketAddr| {
        probe_once(&format!("{} {addr}", if udp { "udp" } else { "tcp" }))
    };
    let loopback: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let listener = std::net::TcpListener::bind(loopback).unwrap();
    assert_eq!(probe(false, listener.local_addr().unwrap()), "ok");
    let closed = std::net::TcpListener::bind(loopback)
        .unwrap()
        .local_addr()
        .unwrap();
    assert_eq!(probe(false, closed), "refused");
    let echo = UdpEcho::bind(loopback);
    assert_eq!(probe(true, echo.addr), "ok");
    assert_eq!(echo.datagrams.get(), 1);
    let silent = std::net::UdpSocket::bind(loopback).unwrap();
    assert_eq!(probe(true, silent.local_addr().unwrap()), "timeout");
    // Linux reports the ICMP port-unreachable of a closed UDP port to a connected socket; the
    // enforcement tests that read "refused" for UDP run on Linux only.
    if cfg!(target_os = "linux") {
        let closed = std::net::UdpSocket::bind(loopback)
            .unwrap()
            .local_addr()
            .unwrap();
        assert_eq!(probe(true, closed), "refused");
    }
}
