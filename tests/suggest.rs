//! `egressd suggest`: a policy from audit logs. Audit lines are written here with the audit
//! crate's field names; every output is parsed back with the policy crate and asked about the
//! destinations it was made from.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use audit::fields as f;
use policy::{Policy, Target};
use serde_json::json;

use crate::util::{Run, egressd, run, write};

/// A request event: `destination` as the proxy logs it (CONNECT authority or absolute URL).
fn request(second: u32, sandbox: &str, destination: &str, decision: &str, reason: &str) -> String {
    let method = if destination.contains("://") {
        "GET"
    } else {
        "CONNECT"
    };
    json!({
        f::TIMESTAMP: format!("2026-05-01T10:00:{second:02}.000001Z"),
        f::LEVEL: "INFO",
        f::MESSAGE: audit::Request::MESSAGE,
        f::TARGET: audit::TARGET,
        f::SANDBOX_ID: sandbox,
        f::CLIENT: "127.0.0.1:40000",
        f::METHOD: method,
        f::DESTINATION: destination,
        f::RESOLVED: "",
        f::DECISION: decision,
        f::REASON: reason,
        f::RULE: if reason == "deny-rule" { "deny[0] line 7" } else { "" },
        f::STATUS: 403,
        f::BYTES_UP: 0,
        f::BYTES_DOWN: 0,
        f::DURATION_MS: 0.2,
    })
    .to_string()
}

/// A DNS query event; `name` with its trailing dot, as the stub logs it.
fn dns(second: u32, sandbox: &str, name: &str, decision: &str, reason: &str) -> String {
    json!({
        f::TIMESTAMP: format!("2026-05-01T10:01:{second:02}.000001Z"),
        f::LEVEL: "INFO",
        f::MESSAGE: audit::DnsQuery::MESSAGE,
        f::TARGET: audit::TARGET,
        f::SANDBOX_ID: sandbox,
        f::CLIENT: "127.0.0.1:40001",
        f::TRANSPORT: "udp",
        f::NAME: name,
        f::QTYPE: "A",
        f::DECISION: decision,
        f::REASON: reason,
        f::RULE: "",
        f::RCODE: "REFUSED",
        f::ANSWERS: 0,
        f::STRIPPED: 0,
        f::CACHED: false,
    })
    .to_string()
}

/// A SOCKS event: `destination` as the SOCKS listener logs it (`host:port`).
fn socks(second: u32, command: &str, destination: &str, decision: &str, reason: &str) -> String {
    json!({
        f::TIMESTAMP: format!("2026-05-01T10:02:{second:02}.000001Z"),
        f::LEVEL: "INFO",
        f::MESSAGE: audit::Socks::MESSAGE,
        f::TARGET: audit::TARGET,
        f::SANDBOX_ID: "ci-1",
        f::CLIENT: "127.0.0.1:40002",
        f::COMMAND: command,
        f::DESTINATION: destination,
        f::RESOLVED: "",
        f::DECISION: decision,
        f::REASON: reason,
        f::RULE: "",
        f::REPLY: 2,
        f::BYTES_UP: 0,
        f::BYTES_DOWN: 0,
        f::DURATION_MS: 0.2,
    })
    .to_string()
}

fn denied(second: u32, destination: &str) -> String {
    request(second, "ci-1", destination, "deny", "default-deny")
}

fn log(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    write(dir, name, &(lines.join("\n") + "\n"))
}

/// `egressd suggest ARGS...`, checked to succeed and to print a valid policy.
fn suggest(args: &[&str]) -> (String, Policy) {
    let r = run(&[&["suggest"], args].concat());
    assert_eq!(r.code, 0, "{r:?}");
    let policy = Policy::parse(&r.stdout, "suggested").unwrap_or_else(|e| panic!("{e}\n{r:?}"));
    (r.stdout, policy)
}

fn allows(policy: &Policy, authority: &str) -> bool {
    policy
        .decide(&Target::parse_authority(authority).unwrap())
        .is_allowed()
}

fn rules(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with("host = ") || l.starts_with("cidr = "))
        .collect()
}

#[test]
fn names_ports_and_ip_literals_become_rules_that_allow_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = log(
        dir.path(),
        "audit.jsonl",
        &[
            denied(1, "api.example.org:443"),
            denied(2, "api.example.org:8443"),
            denied(3, "http://files.example.net/a/b"),
            denied(4, "93.184.216.34:443"),
            denied(5, "[2606:4700::1111]:853"),
            request(6, "ci-2", "api.example.org:443", "deny", "default-deny"),
        ],
    );
    let (text, policy) = suggest(&[path.to_str().unwrap()]);
    assert_eq!(
        rules(&text),
        [
            "host = \"files.example.net\"",
            "host = \"api.example.org\"",
            "cidr = \"93.184.216.34/32\"",
            "cidr = \"2606:4700::1111/128\"",
        ],
        "{text}"
    );
    assert!(text.contains("ports = [443, 8443]\ncomment = \"refused 3 times in 2 sandboxes, 2026-05-01T10:00:01Z to 2026-05-01T10:00:06Z\""), "{text}");
    for authority in [
        "api.example.org:443",
        "api.example.org:8443",
        "files.example.net:80",
        "93.184.216.34:443",
        "[2606:4700::1111]:853",
    ] {
        assert!(allows(&policy, authority), "{authority}\n{text}");
    }
    assert!(!allows(&policy, "api.example.org:22"), "{text}");
    assert!(!allows(&policy, "example.org:443"), "{text}");
}

#[test]
fn socks_refusals_are_suggested_like_connect_ones_and_other_commands_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = log(
        dir.path(),
        "audit.jsonl",
        &[
            socks(1, "CONNECT", "git.example.org:22", "deny", "default-deny"),
            socks(
                2,
                "CONNECT",
                "db.example.org:5432",
                "would-deny",
                "default-deny",
            ),
            socks(
                3,
                "BIND",
                "bind.example.org:22",
                "deny",
                "socks-command-unsupported",
            ),
        ],
    );
    let (text, policy) = suggest(&[path.to_str().unwrap()]);
    assert_eq!(
        rules(&text),
        ["host = \"db.example.org\"", "host = \"git.example.org\""],
        "{text}"
    );
    assert!(allows(&policy, "git.example.org:22"), "{text}");
    assert!(allows(&policy, "db.example.org:5432"), "{text}");
    assert!(!allows(&policy, "bind.example.org:22"), "{text}");
}

#[test]
fn siblings_under_a_registrable_domain_become_one_wildcard_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let names = [
        "a.example.com",
        "b.example.com",
        "x.y.example.com",
        "example.com",
        "one.github.io",
        "two.github.io",
        "three.github.io",
        "a.shop.co.uk",
        "b.shop.co.uk",
        "c.shop.co.uk",
    ];
    let lines: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| denied(i as u32, &format!("{n}:443")))
        .collect();
    let path = log(dir.path(), "audit.jsonl", &lines);
    // By default: one exact rule per name, never a wildcard.
    let (text, _) = suggest(&[path.to_str().unwrap()]);
    assert_eq!(rules(&text).len(), names.len(), "{text}");
    assert!(!text.contains("host = \"*."), "{text}");
    let (text, policy) = suggest(&[path.to_str().unwrap(), "--group", "3"]);
    assert_eq!(
        rules(&text),
        [
            "host = \"example.com\"",
            "host = \"*.example.com\"",
            "host = \"one.github.io\"",
            "host = \"three.github.io\"",
            "host = \"two.github.io\"",
            "host = \"*.shop.co.uk\"",
        ],
        "{text}"
    );
    assert!(
        text.contains(
            "3 names: a.example.com, b.example.com, x.y.example.com; newly allows every other \
             name below example.com on the same ports, not only these;"
        ),
        "{text}"
    );
    for name in names {
        assert!(allows(&policy, &format!("{name}:443")), "{name}");
    }
    // Fewer siblings than --group, or --group 0: one rule per name.
    let (text, _) = suggest(&[path.to_str().unwrap(), "--group", "4"]);
    assert!(!text.contains("host = \"*."), "{text}");
    let (text, _) = suggest(&[path.to_str().unwrap(), "--group", "0"]);
    assert_eq!(rules(&text).len(), names.len(), "{text}");
}

#[test]
fn names_refused_only_in_dns_get_the_policys_default_ports() {
    let dir = tempfile::tempdir().unwrap();
    let path = log(
        dir.path(),
        "audit.jsonl",
        &[
            dns(1, "ci-1", "telemetry.vendor.test.", "deny", "default-deny"),
            dns(2, "ci-1", "api.example.org.", "deny", "default-deny"),
            denied(3, "api.example.org:443"),
        ],
    );
    let (text, policy) = suggest(&[path.to_str().unwrap()]);
    assert!(
        text.contains(
            "host = \"telemetry.vendor.test\"\ncomment = \"asked of the DNS stub only, so no port is known: defaults.ports;"
        ),
        "{text}"
    );
    assert!(
        text.contains("host = \"api.example.org\"\nports = [443]\n"),
        "{text}"
    );
    assert!(
        allows(&policy, "telemetry.vendor.test:80") && allows(&policy, "telemetry.vendor.test:443")
    );
    // With a policy, the rule takes that policy's defaults.ports.
    let current = write(
        dir.path(),
        "current.toml",
        "version = 1\n\n[defaults]\nports = [8443]\n",
    );
    let (_, policy) = suggest(&[
        path.to_str().unwrap(),
        "--policy",
        current.to_str().unwrap(),
    ]);
    assert!(allows(&policy, "telemetry.vendor.test:8443"));
    assert!(!allows(&policy, "telemetry.vendor.test:443"));
}

#[test]
fn special_ranges_and_deny_rules_are_comments_never_rules() {
    let dir = tempfile::tempdir().unwrap();
    let path = log(
        dir.path(),
        "audit.jsonl",
        &[
            request(1, "ci-1", "10.0.0.5:5432", "deny", "special-range"),
            request(
                2,
                "ci-1",
                "http://169.254.169.254/latest/",
                "deny",
                "special-range",
            ),
            request(
                3,
                "ci-1",
                "[::ffff:192.168.1.1]:443",
                "deny",
                "special-range",
            ),
            request(4, "ci-1", "db.corp.test:5432", "deny", "special-range"),
            request(5, "ci-1", "gist.github.com:443", "deny", "deny-rule"),
        ],
    );
    let (text, policy) = suggest(&[path.to_str().unwrap()]);
    assert!(rules(&text).is_empty(), "{text}");
    for line in [
        "#   10.0.0.5:5432: 10.0.0.0/8 private, RFC 1918: private network\n#     refused 1 time",
        "#   169.254.169.254:80: 169.254.0.0/16 link-local, RFC 3927:",
        "#   [::ffff:192.168.1.1]:443: carries 192.168.1.1 (IPv4-mapped); 192.168.0.0/16 private, RFC 1918:",
        "#   db.corp.test:5432: every address it resolved to is in a special range\n",
        "#   gist.github.com:443: deny[0] line 7\n#     refused 1 time",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
    assert!(text.contains("[[danger_carve_out]]"), "{text}");
    assert!(!allows(&policy, "gist.github.com:443"));
}

#[test]
fn failures_malformed_targets_and_other_refusals_are_not_suggested() {
    let dir = tempfile::tempdir().unwrap();
    let path = log(
        dir.path(),
        "audit.jsonl",
        &[
            request(1, "ci-1", "up.example.org:443", "error", "upstream-refused"),
            request(2, "ci-1", "exa mple.com:443", "deny", "malformed-target"),
            request(3, "ci-1", "1.2.3.256:443", "deny", "default-deny"),
            request(
                4,
                "ci-1",
                "auth.example.org:443",
                "deny",
                "proxy-auth-required",
            ),
            request(5, "ci-1", "ok.example.org:443", "allow", "allow-rule"),
            r#"{"message":"lifecycle","event":"ready"}"#.to_owned(),
        ],
    );
    let (text, _) = suggest(&[path.to_str().unwrap()]);
    assert!(rules(&text).is_empty(), "{text}");
    assert!(text.contains("from 5 audit events"), "{text}");
    assert!(
        text.ends_with(
            "# Not suggested, and not listed:\n#   malformed target or name: 2\n\
             #   failure, not a refusal: 1\n#   refused, but not by the policy: 1\n"
        ),
        "{text}"
    );
}

#[test]
fn report_mode_refusals_count_like_enforced_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = log(
        dir.path(),
        "audit.jsonl",
        &[
            request(
                1,
                "ci-1",
                "api.example.org:443",
                "would-deny",
                "default-deny",
            ),
            dns(
                2,
                "ci-1",
                "cdn.example.net.",
                "would-refuse",
                "default-deny",
            ),
        ],
    );
    let (_, policy) = suggest(&[path.to_str().unwrap()]);
    assert!(allows(&policy, "api.example.org:443") && allows(&policy, "cdn.example.net:443"));
}

#[test]
fn min_count_drops_rare_destinations() {
    let dir = tempfile::tempdir().unwrap();
    let path = log(
        dir.path(),
        "audit.jsonl",
        &[
            denied(1, "often.example.org:443"),
            denied(2, "often.example.org:443"),
            denied(3, "often.example.org:22"),
            denied(4, "once.example.org:443"),
        ],
    );
    let (text, policy) = suggest(&[path.to_str().unwrap(), "--min-count", "2"]);
    assert_eq!(rules(&text), ["host = \"often.example.org\""], "{text}");
    assert!(text.contains("ports = [443]\n"), "{text}");
    assert!(!allows(&policy, "often.example.org:22"));
    assert!(
        text.contains("seen fewer than --min-count 2 times: 2"),
        "{text}"
    );
}

#[test]
fn with_a_policy_its_text_is_kept_and_what_it_allows_is_not_suggested_again() {
    let dir = tempfile::tempdir().unwrap();
    let current_text = "# CI policy\nversion = 1\n\n[defaults]\naction = \"deny\"\nports = [443]\n\n\
        [[allow]]\nhost = \"github.com\" # the forge\n\n[[deny]]\nhost = \"gist.github.com\"\n\n\
        [dns.static]\n\"db.ci.test\" = [\"10.20.0.5\"]\n";
    let current = write(dir.path(), "current.toml", current_text);
    let path = log(
        dir.path(),
        "audit.jsonl",
        &[
            // Refused under an older policy; allowed now.
            denied(1, "github.com:443"),
            // Refused now: a port the rule does not name.
            request(2, "ci-1", "github.com:22", "deny", "port-not-allowed"),
            // Refused by a default-deny run, but the current policy denies it by rule.
            denied(3, "gist.github.com:443"),
            denied(4, "crates.io:443"),
            dns(5, "ci-1", "github.com.", "deny", "default-deny"),
            // Allowing the name would not help: its static address is in a special range.
            denied(6, "db.ci.test:5432"),
        ],
    );
    let (text, policy) = suggest(&[
        path.to_str().unwrap(),
        "--policy",
        current.to_str().unwrap(),
    ]);
    assert!(text.starts_with(current_text), "{text}");
    assert_eq!(
        rules(&text[current_text.len()..]),
        ["host = \"github.com\"", "host = \"crates.io\""],
        "{text}"
    );
    assert!(
        text.contains("host = \"github.com\"\nports = [22]\n"),
        "{text}"
    );
    assert!(
        text.contains("#   gist.github.com:443: deny[0] line 12\n"),
        "{text}"
    );
    assert!(text.contains("already allowed by the policy: 2"), "{text}");
    assert!(
        text.contains("#   db.ci.test:5432: its [dns.static] addresses are special: 10.20.0.5: 10.0.0.0/8 private, RFC 1918"),
        "{text}"
    );
    assert!(allows(&policy, "github.com:22") && allows(&policy, "crates.io:443"));
    // What egressd check says of it, too.
    let out = write(dir.path(), "suggested.toml", &text);
    let checked = run(&["check", out.to_str().unwrap()]);
    assert_eq!(checked.code, 0, "{checked:?}");
}

#[test]
fn several_files_gzip_and_stdin_in_any_order_give_the_same_output() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        denied(1, "a.example.org:443"),
        denied(2, "b.example.org:443"),
        request(3, "ci-2", "c.example.org:443", "deny", "default-deny"),
        denied(4, "93.184.216.34:80"),
    ];
    let whole = log(dir.path(), "audit.jsonl", &lines);
    let (expected, _) = suggest(&[whole.to_str().unwrap()]);
    let rotated = log(dir.path(), "audit.jsonl.1", &lines[2..]);
    let gz = dir.path().join("audit.jsonl.2.gz");
    let mut encoder =
        flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), Default::default());
    encoder
        .write_all((lines[..2].join("\n") + "\n").as_bytes())
        .unwrap();
    encoder.finish().unwrap();
    let (text, _) = suggest(&[rotated.to_str().unwrap(), gz.to_str().unwrap()]);
    assert_eq!(text, expected);
    let (text, _) = suggest(&[gz.to_str().unwrap(), rotated.to_str().unwrap()]);
    assert_eq!(text, expected);
    let mut reversed = lines.to_vec();
    reversed.reverse();
    let piped = with_stdin(&["suggest", "-"], &(reversed.join("\n") + "\n"));
    assert_eq!(piped.code, 0, "{piped:?}");
    assert_eq!(piped.stdout, expected);
}

#[test]
fn a_line_that_is_not_json_stops_with_file_and_line_but_a_truncated_last_line_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.jsonl",
        &format!(
            "{}\nnot json\n{}\n",
            denied(1, "a.test:443"),
            denied(2, "b.test:443")
        ),
    );
    let r = run(&["suggest", bad.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stdout.is_empty(), "{r:?}");
    assert!(
        r.stderr
            .contains(&format!("{}:2: not a JSON audit event", bad.display())),
        "{r:?}"
    );
    let live = write(
        dir.path(),
        "live.jsonl",
        &format!("{}\n{{\"timestamp\":\"2026-", denied(1, "a.test:443")),
    );
    let r = run(&["suggest", live.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("host = \"a.test\""), "{r:?}");
    assert!(
        r.stderr.contains(":2: skipped a truncated last line"),
        "{r:?}"
    );
    let missing = run(&["suggest", "/nonexistent/audit.jsonl"]);
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(
        missing
            .stderr
            .contains("cannot read audit log /nonexistent/audit.jsonl")
    );
    let no_policy = run(&[
        "suggest",
        live.to_str().unwrap(),
        "--policy",
        "/nonexistent.toml",
    ]);
    assert_eq!(no_policy.code, 2, "{no_policy:?}");
}

/// Runs egressd with `input` on its stdin.
fn with_stdin(args: &[&str], input: &str) -> Run {
    let mut child = egressd()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The simulated CI job of issue 22: six CDN hosts on 443 and one on 80 under one registrable
/// domain, three GitHub subdomains. Grouping never carries a port from one host to another, and
/// without --group nothing is a wildcard: a sibling host stays refused.
#[test]
fn grouping_never_merges_ports_across_hosts_and_default_suggests_exact_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines: Vec<String> = (1..=6)
        .map(|i| denied(i, &format!("s{i}.cdn.example-cdn.net:443")))
        .collect();
    lines.push(denied(7, "http://assets.example-cdn.net/a.css"));
    for (i, name) in ["api", "codeload", "uploads"].iter().enumerate() {
        lines.push(denied(10 + i as u32, &format!("{name}.github.com:443")));
    }
    let path = log(dir.path(), "audit.jsonl", &lines);
    let (text, policy) = suggest(&[path.to_str().unwrap()]);
    assert!(!text.contains("host = \"*."), "{text}");
    for denied in [
        "attacker.example-cdn.net:443",
        "gist.github.com:443",
        "s1.cdn.example-cdn.net:80",
        "assets.example-cdn.net:443",
    ] {
        assert!(!allows(&policy, denied), "{denied}\n{text}");
    }
    let (text, policy) = suggest(&[path.to_str().unwrap(), "--group", "3"]);
    // The nearest common parent, not the registrable domain; the comment says what it opens.
    assert!(
        text.contains("host = \"*.cdn.example-cdn.net\"\nports = [443]\n"),
        "{text}"
    );
    assert!(
        text.contains("newly allows every other name below cdn.example-cdn.net on the same ports"),
        "{text}"
    );
    assert!(!allows(&policy, "attacker.example-cdn.net:443"), "{text}");
    assert!(
        text.contains("host = \"assets.example-cdn.net\"\nports = [80]\n"),
        "{text}"
    );
    assert!(!allows(&policy, "s1.cdn.example-cdn.net:80"), "{text}");
    assert!(!allows(&policy, "assets.example-cdn.net:443"), "{text}");
    assert!(allows(&policy, "s6.cdn.example-cdn.net:443"), "{text}");
}

/// Report mode lets a refused request through; one that then reached nothing (502, no address)
/// is a comment, not a rule. A special-range address is offered as a commented carve-out.
#[test]
fn names_that_never_resolved_are_comments_and_special_ranges_offer_a_commented_carve_out() {
    let dir = tempfile::tempdir().unwrap();
    let failed = |second: u32, destination: &str| {
        let line = request(second, "ci-1", destination, "would-deny", "default-deny");
        line.replace("\"status\":403", "\"status\":502")
    };
    let path = log(
        dir.path(),
        "audit.jsonl",
        &[
            failed(1, "nowhere.example.org:443"),
            failed(2, "nowhere.example.org:443"),
            failed(3, "flaky.example.org:443"),
            request(
                4,
                "ci-1",
                "flaky.example.org:443",
                "would-deny",
                "default-deny",
            ),
            request(5, "ci-1", "10.99.0.5:5432", "deny", "special-range"),
        ],
    );
    let (text, policy) = suggest(&[path.to_str().unwrap()]);
    assert_eq!(rules(&text), ["host = \"flaky.example.org\""], "{text}");
    assert!(
        text.contains("#   nowhere.example.org:443: never resolved"),
        "{text}"
    );
    assert!(
        text.contains(
            "#     [[danger_carve_out]]\n#     cidr = \"10.99.0.5/32\"\n#     ports = [5432]\n\
             #     [[allow]]\n#     cidr = \"10.99.0.5/32\"\n#     ports = [5432]\n"
        ),
        "{text}"
    );
    // Uncommented, the offered carve-out opens exactly that address and port.
    let opened = text
        .replace("#     [[", "[[")
        .replace("#     cidr", "cidr")
        .replace("#     ports", "ports");
    let opened = Policy::parse(&opened, "opened").unwrap();
    assert!(allows(&opened, "10.99.0.5:5432"));
    assert!(!allows(&opened, "10.99.0.6:5432"));
    assert!(!allows(&policy, "10.99.0.5:5432"));
}

/// Without --policy, the output says it is not the whole next policy, and which hosts were
/// refused only for a port (the policy in force allows them on others, which this file lacks).
#[test]
fn without_a_policy_it_says_what_it_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = log(
        dir.path(),
        "audit.jsonl",
        &[request(
            1,
            "ci-1",
            "github.com:22",
            "deny",
            "port-not-allowed",
        )],
    );
    let (text, _) = suggest(&[path.to_str().unwrap()]);
    assert!(
        text.contains("# Written without --policy, this holds only what was refused"),
        "{text}"
    );
    assert!(text.contains("github.com:22"), "{text}");
    let current = write(
        dir.path(),
        "current.toml",
        "version = 1\n[[allow]]\nhost = \"github.com\"\nports = [443]\n",
    );
    let (text, policy) = suggest(&[
        "--policy",
        current.to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    assert!(!text.contains("Written without --policy"), "{text}");
    assert!(
        allows(&policy, "github.com:443") && allows(&policy, "github.com:22"),
        "{text}"
    );
}
