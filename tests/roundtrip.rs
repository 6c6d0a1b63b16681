//! The operator loop end to end (docs/report-mode.md): run a job in report mode, drive a mix of
//! traffic through the proxy and the DNS stub, `egressd suggest` the audit log, and run in enforce
//! mode with the suggestion: the same traffic passes, anything else is refused, and special ranges
//! were never reachable. Inside a fresh network namespace (public-looking addresses exist only on
//! its loopback, names come from a fake upstream resolver in it), so nothing leaves the machine.

use std::net::Ipv4Addr;
use std::path::Path;

use crate::util::*;

/// Addresses the namespace's loopback holds: two "public" origins and a "LAN" host.
const WEB: &str = "93.184.215.14";
const API: &str = "151.101.2.132";
const LAN: &str = "10.99.0.1";

/// Where the job starts: its own test origin allowed, a tracker denied, report mode on.
fn start_policy(dns: std::net::SocketAddr) -> String {
    format!(
        "version = 1\n\n[defaults]\naction = \"deny\"\nports = [443]\nmode = \"report\"\n\n\
         [[allow]]\nhost = \"allowed.example.test\"\nports = [8080]\n\n\
         [[deny]]\nhost = \"tracker.example.test\"\n\n\
         [dns]\nupstreams = [\"{dns}\"]\n"
    )
}

/// What the job does; each step's outcome is compared across the two runs.
struct Job<'a> {
    sidecar: &'a Sidecar,
}

impl Job<'_> {
    fn dns(&self) -> std::net::SocketAddr {
        self.sidecar.ready["dns"].as_str().unwrap().parse().unwrap()
    }

    /// The job's traffic: (what, status or rcode).
    fn run(&self) -> Vec<(String, String)> {
        let proxy = self.sidecar.proxy();
        let mut seen = Vec::new();
        let mut http = |what: &str, response: Response| {
            seen.push((what.to_owned(), response.status.to_string()));
        };
        http(
            "allowed",
            Client::Rust.get(proxy, "http://allowed.example.test:8080/"),
        );
        http(
            "web",
            Client::Rust.get(proxy, "http://web.example.test:8080/a"),
        );
        http(
            "api tunnel",
            Client::Rust.tunnel_get(proxy, "http://api.example.test:8443/v1"),
        );
        http(
            "address literal",
            Client::Rust.get(proxy, &format!("http://{WEB}:8080/b")),
        );
        http(
            "tracker",
            Client::Rust.get(proxy, "http://tracker.example.test:8080/"),
        );
        http(
            "lan",
            Client::Rust.get(proxy, &format!("http://{LAN}:8080/")),
        );
        http(
            "lan by name",
            Client::Rust.get(proxy, "http://lan.example.test:8080/"),
        );
        let answer = stub_query(self.dns(), "dns-only.example.test.");
        seen.push(("dns only".to_owned(), answer.rcode));
        seen
    }

    /// Traffic the job never sent in report mode: refused under the suggested policy.
    fn other(&self) -> Vec<(String, String)> {
        let proxy = self.sidecar.proxy();
        vec![
            (
                "other name".to_owned(),
                Client::Rust
                    .get(proxy, "http://other.example.test:8080/")
                    .status
                    .to_string(),
            ),
            (
                "web, other port".to_owned(),
                Client::Rust
                    .get(proxy, "http://web.example.test:9090/")
                    .status
                    .to_string(),
            ),
            (
                "other address".to_owned(),
                Client::Rust
                    .get(proxy, &format!("http://{API}:8080/"))
                    .status
                    .to_string(),
            ),
            (
                "other dns".to_owned(),
                stub_query(self.dns(), "other.example.test.").rcode,
            ),
        ]
    }
}

fn sidecar(policy: &Path, audit: &Path, flags: &[&str]) -> Sidecar {
    let mut args = vec![
        "--policy",
        policy.to_str().unwrap(),
        "--audit-log",
        audit.to_str().unwrap(),
        "--sandbox-id",
        "ci-42",
    ];
    args.extend_from_slice(flags);
    Sidecar::start(&args)
}

fn as_pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[test]
#[ignore = "needs root and network namespaces: run by .ci/run"]
fn report_suggest_enforce_round_trip() {
    in_netns(
        "roundtrip::report_suggest_enforce_round_trip",
        &[
            &format!("{WEB}/32"),
            &format!("{API}/32"),
            &format!("{LAN}/32"),
        ],
        round_trip,
    );
}

fn round_trip() {
    let web = Origin::bind(format!("{WEB}:8080").parse().unwrap(), Behaviour::Answer);
    let web_other_port = Origin::bind(format!("{WEB}:9090").parse().unwrap(), Behaviour::Answer);
    let api = Origin::bind(format!("{API}:8443").parse().unwrap(), Behaviour::Answer);
    let api_other_port = Origin::bind(format!("{API}:8080").parse().unwrap(), Behaviour::Answer);
    let lan = Origin::bind(format!("{LAN}:8080").parse().unwrap(), Behaviour::Answer);
    let web_ip: Ipv4Addr = WEB.parse().unwrap();
    let dns = FakeDns::start(
        &[
            ("allowed.example.test", web_ip),
            ("web.example.test", web_ip),
            ("tracker.example.test", web_ip),
            ("other.example.test", web_ip),
            ("dns-only.example.test", web_ip),
            ("api.example.test", API.parse().unwrap()),
            ("lan.example.test", LAN.parse().unwrap()),
        ],
        false,
    );
    let dir = tempfile::tempdir().unwrap();
    let start = write(dir.path(), "start.toml", &start_policy(dns.addr));
    let audit = dir.path().join("ci-42.jsonl");

    // 1. Report mode: everything a rule or the default refuses passes; special ranges do not.
    let reported = {
        let sidecar = sidecar(&start, &audit, &[]);
        assert_eq!(sidecar.ready["mode"], "report");
        let seen = Job { sidecar: &sidecar }.run();
        request_events(&audit, 7);
        seen
    };
    assert_eq!(
        reported,
        as_pairs(&[
            ("allowed", "200"),
            ("web", "200"),
            ("api tunnel", "200"),
            ("address literal", "200"),
            ("tracker", "200"),
            ("lan", "403"),
            ("lan by name", "403"),
            ("dns only", "NOERROR"),
        ])
    );
    assert_eq!(lan.connections.get(), 0, "report mode never opens the LAN");
    let log = std::fs::read_to_string(&audit).unwrap();
    let decisions: Vec<String> = events_of(&log, audit::Request::MESSAGE)
        .iter()
        .map(|e| e[audit::fields::DECISION].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        decisions.iter().filter(|d| *d == "would-deny").count(),
        4,
        "{log}"
    );

    // 2. The suggestion, appended to the start policy.
    let suggested = run(&[
        "suggest",
        "--group",
        "0",
        "--policy",
        start.to_str().unwrap(),
        audit.to_str().unwrap(),
    ]);
    assert_eq!(suggested.code, 0, "{suggested:?}");
    let next = write(dir.path(), "next.toml", &suggested.stdout);
    for expected in [
        "host = \"web.example.test\"\nports = [8080]",
        "host = \"api.example.test\"\nports = [8443]",
        &format!("cidr = \"{WEB}/32\"\nports = [8080]"),
        "host = \"dns-only.example.test\"\ncomment",
    ] {
        assert!(
            suggested.stdout.contains(expected),
            "{expected}\n{}",
            suggested.stdout
        );
    }
    assert!(
        !suggested.stdout.contains("[[allow]]\nhost = \"tracker"),
        "{}",
        suggested.stdout
    );
    assert!(
        !suggested.stdout.contains("[[allow]]\nhost = \"lan"),
        "{}",
        suggested.stdout
    );
    let check = run(&["check", next.to_str().unwrap()]);
    assert_eq!(check.code, 0, "{check:?}");

    // 3. Enforce mode under the suggestion (the file still says report; the flag wins): the same
    // traffic passes, the deny rule and the special ranges still refuse, and anything else is
    // refused.
    let enforced_audit = dir.path().join("enforced.jsonl");
    let sidecar = sidecar(&next, &enforced_audit, &["--mode", "enforce"]);
    assert_eq!(sidecar.ready["mode"], "enforce");
    let job = Job { sidecar: &sidecar };
    assert_eq!(
        job.run(),
        as_pairs(&[
            ("allowed", "200"),
            ("web", "200"),
            ("api tunnel", "200"),
            ("address literal", "200"),
            ("tracker", "403"),
            ("lan", "403"),
            ("lan by name", "403"),
            ("dns only", "NOERROR"),
        ])
    );
    assert_eq!(
        job.other(),
        as_pairs(&[
            ("other name", "403"),
            ("web, other port", "403"),
            ("other address", "403"),
            ("other dns", "REFUSED"),
        ])
    );
    assert_eq!(web_other_port.connections.get(), 0);
    assert_eq!(api_other_port.connections.get(), 0);
    assert_eq!(lan.connections.get(), 0);
    assert!(web.connections.get() > 0 && api.connections.get() > 0);
    let enforced = std::fs::read_to_string(&enforced_audit).unwrap();
    assert!(
        !enforced.contains("would-"),
        "enforce mode reports nothing as would-deny: {enforced}"
    );
}
