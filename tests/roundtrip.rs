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
        // The sidecar is killed at the end of this block: every event the suggestion reads must
        // be written first, the stub's query included (it is written after its answer is sent).
        request_events(&audit, 7);
        dns_events(&audit, 1);
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

/// Issue 22's simulated CI job: six CDN hosts on 443 and one on 80 under one registrable
/// domain, three GitHub subdomains, a private mirror, and a name that never resolves.
mod ci_job {
    use std::net::Ipv4Addr;

    use super::*;

    pub(super) const CDN: &str = "151.101.2.140";
    pub(super) const GITHUB: &str = "140.82.112.3";
    pub(super) const MIRROR: &str = "10.99.0.7";

    const CDN_HOSTS: [&str; 6] = [
        "s1.cdn.example-cdn.net",
        "s2.cdn.example-cdn.net",
        "s3.cdn.example-cdn.net",
        "s4.cdn.example-cdn.net",
        "s5.cdn.example-cdn.net",
        "s6.cdn.example-cdn.net",
    ];
    const GITHUB_HOSTS: [&str; 3] = [
        "api.github.com",
        "codeload.github.com",
        "uploads.github.com",
    ];

    /// The job's requests: (what, status).
    fn job(proxy: std::net::SocketAddr) -> Vec<(String, String)> {
        let mut seen = Vec::new();
        let mut saw = |what: String, response: Response| {
            seen.push((what, response.status.to_string()));
        };
        for host in CDN_HOSTS.iter().chain(&GITHUB_HOSTS) {
            let url = format!("http://{host}:443/x");
            saw(format!("{host}:443"), Client::Rust.tunnel_get(proxy, &url));
        }
        saw(
            "assets.example-cdn.net:80".to_owned(),
            Client::Rust.get(proxy, "http://assets.example-cdn.net/a.css"),
        );
        saw(
            "mirror.ci.example-corp.net:80".to_owned(),
            Client::Rust.get(proxy, "http://mirror.ci.example-corp.net/debian/"),
        );
        saw(
            "gone.example-cdn.net:80".to_owned(),
            Client::Rust.get(proxy, "http://gone.example-cdn.net/"),
        );
        seen
    }

    pub(super) fn scenario() {
        let cdn_ip: Ipv4Addr = CDN.parse().unwrap();
        let github_ip: Ipv4Addr = GITHUB.parse().unwrap();
        let cdn_443 = Origin::bind(format!("{CDN}:443").parse().unwrap(), Behaviour::Answer);
        let cdn_80 = Origin::bind(format!("{CDN}:80").parse().unwrap(), Behaviour::Answer);
        let github = Origin::bind(format!("{GITHUB}:443").parse().unwrap(), Behaviour::Answer);
        let mirror = Origin::bind(format!("{MIRROR}:80").parse().unwrap(), Behaviour::Answer);
        let mut records: Vec<(&'static str, Ipv4Addr)> = CDN_HOSTS
            .iter()
            .chain(&["assets.example-cdn.net", "attacker.example-cdn.net"])
            .map(|h| (*h, cdn_ip))
            .collect();
        records.extend(
            GITHUB_HOSTS
                .iter()
                .chain(&["gist.github.com"])
                .map(|h| (*h, github_ip)),
        );
        records.push(("mirror.ci.example-corp.net", MIRROR.parse().unwrap()));
        // gone.example-cdn.net is in no zone: NXDOMAIN.
        let dns = FakeDns::start(&records, false);
        let dir = tempfile::tempdir().unwrap();
        let start = write(
            dir.path(),
            "start.toml",
            &format!(
                "version = 1\n\n[defaults]\naction = \"deny\"\nports = [80, 443]\nmode = \"report\"\n\n\
                 [dns]\nupstreams = [\"{}\"]\n",
                dns.addr
            ),
        );
        let audit = dir.path().join("ci.jsonl");

        // 1. Report mode, the job twice: what the policy refuses goes through, but the private
        // mirror stays shut and the dead name reaches nothing.
        let mut observed = Vec::new();
        {
            let sidecar = sidecar(&start, &audit, &[]);
            for _ in 0..2 {
                let seen = job(sidecar.proxy());
                observed = seen.clone();
                for (what, status) in &seen {
                    let want = match what.as_str() {
                        "mirror.ci.example-corp.net:80" => "403",
                        "gone.example-cdn.net:80" => "502",
                        _ => "200",
                    };
                    assert_eq!(status, want, "{what} in report mode");
                }
            }
            request_events(&audit, 2 * observed.len());
        }
        assert_eq!(
            mirror.connections.get(),
            0,
            "report mode never opens the LAN"
        );

        // 2. The suggestion, the whole next policy, by default exact names only.
        let suggested = run(&[
            "suggest",
            "--policy",
            start.to_str().unwrap(),
            audit.to_str().unwrap(),
        ]);
        assert_eq!(suggested.code, 0, "{suggested:?}");
        let text = &suggested.stdout;
        assert!(
            !text.contains("host = \"*."),
            "no wildcard by default:\n{text}"
        );
        for host in CDN_HOSTS.iter().chain(&GITHUB_HOSTS) {
            let rule = format!("[[allow]]\nhost = \"{host}\"\nports = [443]\n");
            assert!(text.contains(&rule), "{rule}\n{text}");
        }
        assert!(
            text.contains("[[allow]]\nhost = \"assets.example-cdn.net\"\nports = [80]\n"),
            "{text}"
        );
        for never in ["mirror.ci.example-corp.net", "gone.example-cdn.net"] {
            assert!(
                !text.contains(&format!("[[allow]]\nhost = \"{never}\"")),
                "{never} is not suggested:\n{text}"
            );
        }
        assert!(
            text.contains("#   gone.example-cdn.net:80: never resolved"),
            "{text}"
        );
        assert!(
            text.contains("#   mirror.ci.example-corp.net:80:"),
            "{text}"
        );
        let next = write(dir.path(), "next.toml", text);
        assert_eq!(run(&["check", next.to_str().unwrap()]).code, 0);

        // 3. Enforce: exactly the observed traffic passes; siblings, other ports, the mirror and
        // the dead name are refused.
        let enforced_audit = dir.path().join("enforced.jsonl");
        let sidecar = sidecar(&next, &enforced_audit, &["--mode", "enforce"]);
        for (what, status) in job(sidecar.proxy()) {
            let want = match what.as_str() {
                "mirror.ci.example-corp.net:80" | "gone.example-cdn.net:80" => "403",
                _ => "200",
            };
            assert_eq!(status, want, "{what} enforced");
        }
        let proxy = sidecar.proxy();
        for sibling in [
            "http://attacker.example-cdn.net:443/",
            "http://gist.github.com:443/",
            "http://s1.cdn.example-cdn.net:80/",
            "http://assets.example-cdn.net:443/",
        ] {
            let status = if sibling.ends_with(":443/") {
                Client::Rust.tunnel_get(proxy, sibling).status
            } else {
                Client::Rust.get(proxy, sibling).status
            };
            assert_eq!(status, 403, "{sibling} is refused under enforce");
        }
        drop(sidecar);
        assert_eq!(mirror.connections.get(), 0);
        assert!(cdn_443.connections.get() > 0 && cdn_80.connections.get() > 0);
        assert!(github.connections.get() > 0);
        // Everything the enforcing run allowed was observed in report mode.
        let log = std::fs::read_to_string(&enforced_audit).unwrap();
        let observed: Vec<String> = observed.iter().map(|(what, _)| what.clone()).collect();
        for event in events_of(&log, audit::Request::MESSAGE) {
            if event[audit::fields::DECISION] == "allow" {
                let destination = event[audit::fields::DESTINATION].as_str().unwrap();
                let host_port = destination
                    .trim_start_matches("http://")
                    .split('/')
                    .next()
                    .unwrap();
                let host_port = if host_port.contains(':') {
                    host_port.to_owned()
                } else {
                    format!("{host_port}:80")
                };
                assert!(
                    observed.contains(&host_port),
                    "{destination} was not observed"
                );
            }
        }
    }
}

#[test]
#[ignore = "needs root and network namespaces: run by .ci/run"]
fn a_ci_job_suggested_and_enforced_allows_exactly_what_it_did() {
    in_netns(
        "roundtrip::a_ci_job_suggested_and_enforced_allows_exactly_what_it_did",
        &[
            &format!("{}/32", ci_job::CDN),
            &format!("{}/32", ci_job::GITHUB),
            &format!("{}/32", ci_job::MIRROR),
        ],
        ci_job::scenario,
    );
}
