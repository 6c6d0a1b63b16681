//! `egressd explain`: the decision, the reason and the rule's line, as text and JSON.

use crate::util::{repo, run};

const RULES: &str = "policy/testdata/rules.toml";

/// target, extra args, exit code, reason code, rule line
type Case = (
    &'static str,
    &'static [&'static str],
    i32,
    &'static str,
    Option<usize>,
);

const CASES: &[Case] = &[
    ("https://github.com/org/repo", &[], 0, "allow-rule", Some(9)),
    (
        "raw.githubusercontent.com:443",
        &[],
        0,
        "allow-rule",
        Some(13),
    ),
    ("githubusercontent.com:443", &[], 1, "default-deny", None),
    ("github.com:80", &[], 1, "port-not-allowed", Some(9)),
    ("140.82.113.3:443", &[], 0, "allow-rule", Some(22)),
    ("140.82.113.3:22", &[], 1, "deny-rule", Some(26)),
    ("secret.example.com", &[], 1, "deny-rule", Some(19)),
    (
        "http://169.254.169.254/latest/meta-data",
        &[],
        1,
        "special-range",
        None,
    ),
    ("0x7f.1", &["--port", "80"], 1, "malformed-target", None),
    ("127.0.0.1", &["--port", "80"], 1, "special-range", None),
    ("[::ffff:10.0.0.1]:443", &[], 1, "special-range", None),
    ("example.org", &[], 1, "default-deny", None),
    ("exa mple.com", &[], 1, "malformed-target", None),
];

#[test]
fn decisions_with_reasons_and_lines() {
    let policy = repo(RULES);
    for (target, extra, code, reason, line) in CASES {
        let mut args = vec!["explain", policy.to_str().unwrap(), target, "--json"];
        args.extend_from_slice(extra);
        let r = run(&args);
        assert_eq!(r.code, *code, "{target}: {r:?}");
        let json: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(json["decision"]["reason"], *reason, "{target}: {json}");
        assert_eq!(
            json["decision"]["rule"]["line"]
                .as_u64()
                .map(|l| l as usize),
            *line,
            "{target}: {json}"
        );
    }
}

#[test]
fn text_output_names_the_rule_and_its_line() {
    let policy = repo(RULES);
    let r = run(&[
        "explain",
        policy.to_str().unwrap(),
        "secret.example.com:443",
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.starts_with("deny secret.example.com:443\n"),
        "{r:?}"
    );
    assert!(
        r.stdout.contains(&format!(
            "rule: deny[0] at {}:19: host \"secret.example.com\"",
            policy.display()
        )),
        "{r:?}"
    );
}

#[test]
fn special_range_text_names_the_range_and_rfc() {
    let r = run(&[
        "explain",
        repo(RULES).to_str().unwrap(),
        "[64:ff9b::a00:1]:443",
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("(NAT64) carries 10.0.0.1"), "{r:?}");
    assert!(
        r.stdout.contains("range: 10.0.0.0/8 (private, RFC 1918"),
        "{r:?}"
    );
}

#[test]
fn resolved_addresses_are_checked_and_the_name_is_reachable_through_any_good_one() {
    let policy = repo(RULES);
    let p = policy.to_str().unwrap();
    let lan_only = run(&[
        "explain",
        p,
        "github.com:443",
        "--resolved",
        "10.1.1.1",
        "--json",
    ]);
    assert_eq!(lan_only.code, 1, "{lan_only:?}");
    let json: serde_json::Value = serde_json::from_str(&lan_only.stdout).unwrap();
    assert_eq!(json["verdict"], "deny");
    assert_eq!(json["resolved"][0]["decision"]["reason"], "special-range");
    let mixed = run(&[
        "explain",
        p,
        "github.com:443",
        "--resolved",
        "10.1.1.1",
        "--resolved",
        "140.82.112.4",
    ]);
    assert_eq!(mixed.code, 0, "{mixed:?}");
    assert!(
        mixed.stdout.contains("resolved 10.1.1.1: deny"),
        "{mixed:?}"
    );
    assert!(
        mixed.stdout.contains("resolved 140.82.112.4: allow"),
        "{mixed:?}"
    );
}

#[test]
fn carve_out_is_shown() {
    let r = run(&[
        "explain",
        repo(RULES).to_str().unwrap(),
        "10.20.0.5:5432",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let json: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(json["decision"]["carve_out"]["line"], 34);
    assert_eq!(json["decision"]["rule"]["line"], 38);
}

#[test]
fn default_allow_policy() {
    let p = repo("policy/testdata/open.toml");
    let r = run(&["explain", p.to_str().unwrap(), "example.org:443"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("reason: default-allow"), "{r:?}");
}

#[test]
fn bad_input_exits_two() {
    let p = repo(RULES);
    let p = p.to_str().unwrap();
    for args in [
        vec!["explain", p, "ftp://example.com/"],
        vec!["explain", p, "example.com:99999"],
        vec!["explain", p, ""],
        vec!["explain", "/nonexistent.toml", "example.com"],
        vec![
            "explain",
            repo("policy/testdata/invalid/version-2.toml")
                .to_str()
                .unwrap(),
            "example.com",
        ],
    ] {
        let r = run(&args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stdout.is_empty(), "{r:?}");
        assert!(r.stderr.starts_with("egressd: "), "{r:?}");
    }
}
