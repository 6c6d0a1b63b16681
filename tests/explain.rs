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

/// policy, target, suggested action (`None`: no suggestion), text that must appear in the
/// suggestion's text, text its `[[allow]]` rule must be (`""`: none).
type SuggestionCase = (
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    &'static str,
);

const DENY_ONLY: &str = "version = 1\n\n[[deny]]\nhost = \"x.test\"\n";

const STATIC_PRIVATE: &str = "version = 1\n\n[[allow]]\nhost = \"mirror.ci.test\"\nports = [443]\n\n\
    [dns.static]\n\"db.ci.test\" = [\"10.99.0.5\"]\n\"mirror.ci.test\" = [\"10.99.0.6\"]\n";

const SUGGESTIONS: &[SuggestionCase] = &[
    (
        RULES,
        "example.org",
        Some("add-rule"),
        "to allow it, add:",
        "[[allow]]\nhost = \"example.org\"\nports = [443]\n",
    ),
    (
        RULES,
        "http://93.184.216.34/",
        Some("add-rule"),
        "add:",
        "[[allow]]\ncidr = \"93.184.216.34/32\"\nports = [80]\n",
    ),
    (
        RULES,
        "[2606:4700::1]:8443",
        Some("add-rule"),
        "add:",
        "[[allow]]\ncidr = \"2606:4700::1/128\"\nports = [8443]\n",
    ),
    (
        RULES,
        "github.com:80",
        Some("add-port"),
        "add port 80 to allow[0] at ",
        "[[allow]]\nhost = \"github.com\"\nports = [80]\n",
    ),
    (
        "policy/testdata/open.toml",
        "example.org:8080",
        Some("add-port"),
        "add port 8080 to defaults.ports, or add:",
        "[[allow]]\nhost = \"example.org\"\nports = [8080]\n",
    ),
    (
        RULES,
        "secret.example.com",
        Some("remove-deny-rule"),
        "remove or narrow deny[0] at ",
        "",
    ),
    (
        "policy/testdata/open.toml",
        "a.tracker.test",
        Some("remove-deny-rule"),
        "then the default action allows it",
        "",
    ),
    (
        DENY_ONLY,
        "x.test",
        Some("remove-deny-rule"),
        "first (deny rules win over every allow rule); then add:",
        "[[allow]]\nhost = \"x.test\"\nports = [443]\n",
    ),
    (
        RULES,
        "10.1.1.1:443",
        Some("special-range"),
        "10.0.0.0/8 (private, RFC 1918) is reachable only through a [[danger_carve_out]] of the \
         address and port, with a rule that allows the destination",
        "[[danger_carve_out]]\ncidr = \"10.1.1.1/32\"\nports = [443]\n\
         [[allow]]\ncidr = \"10.1.1.1/32\"\nports = [443]\n",
    ),
    (
        RULES,
        "[fe80::1]:443",
        Some("special-range"),
        "fe80::/10 (link-local, RFC 4291)",
        "[[danger_carve_out]]\ncidr = \"fe80::1/128\"\nports = [443]\n\
         [[allow]]\ncidr = \"fe80::1/128\"\nports = [443]\n",
    ),
    // A name the policy does not allow, whose static record is private: the rule alone would
    // not open it.
    (
        STATIC_PRIVATE,
        "db.ci.test:5432",
        Some("add-rule"),
        "so the rule needs a [[danger_carve_out]] too",
        "[[danger_carve_out]]\ncidr = \"10.99.0.5/32\"\nports = [5432]\n\
         [[allow]]\nhost = \"db.ci.test\"\nports = [5432]\n",
    ),
    // A name the policy allows, whose static record is private: only the carve-out is missing.
    (
        STATIC_PRIVATE,
        "mirror.ci.test:443",
        Some("special-range"),
        "is reachable only through a [[danger_carve_out]] of the address and port (",
        "[[danger_carve_out]]\ncidr = \"10.99.0.6/32\"\nports = [443]\n",
    ),
    (RULES, "exa mple.com", None, "", ""),
    (RULES, "github.com:443", None, "", ""),
];

/// A policy path: a repository fixture, or (text with a newline) written to `dir`.
fn policy_path(dir: &std::path::Path, policy: &str) -> std::path::PathBuf {
    if policy.contains('\n') {
        crate::util::write(dir, "policy.toml", policy)
    } else {
        repo(policy)
    }
}

#[test]
fn a_denial_says_what_would_allow_it() {
    let dir = tempfile::tempdir().unwrap();
    for (policy, target, action, text, toml) in SUGGESTIONS {
        let path = policy_path(dir.path(), policy);
        let r = run(&["explain", path.to_str().unwrap(), target, "--json"]);
        let json: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let suggestion = &json["suggestion"];
        assert_eq!(suggestion["action"].as_str(), *action, "{target}: {json}");
        if action.is_none() {
            continue;
        }
        let said = suggestion["text"].as_str().unwrap();
        assert!(said.contains(text), "{target}: {said}");
        assert_eq!(suggestion["toml"].as_str().unwrap_or(""), *toml, "{target}");
        // The text output says the same, the rule unindented so it can be pasted.
        let plain = run(&["explain", path.to_str().unwrap(), target]);
        assert!(
            plain.stdout.contains(&format!("  {said}\n{toml}")),
            "{plain:?}"
        );
    }
}

#[test]
fn the_suggested_change_applied_to_the_policy_allows_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let mut applied = std::collections::BTreeSet::new();
    for (policy, target, action, _, _) in SUGGESTIONS {
        let Some(action) = action else { continue };
        let path = policy_path(dir.path(), policy);
        let r = run(&["explain", path.to_str().unwrap(), target, "--json"]);
        assert_eq!(r.code, 1, "{target}: {r:?}");
        let json: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let toml = json["suggestion"]["toml"].as_str().unwrap_or("");
        let mut text = std::fs::read_to_string(&path).unwrap();
        if *action == "remove-deny-rule" {
            // The change named first: the deny rule goes (its table, from its header to the
            // next blank line).
            let line = json["decision"]["rule"]["line"].as_u64().unwrap() as usize;
            text = without_table_at(&text, line);
        }
        // The TOML goes before any [dns] table, as an operator would paste it.
        let (rules, rest) = match text.find("\n[dns") {
            Some(at) => text.split_at(at),
            None => (text.as_str(), ""),
        };
        let fixed_text = format!("{rules}\n{toml}{rest}");
        let fixed = crate::util::write(dir.path(), "fixed.toml", &fixed_text);
        let r = run(&["explain", fixed.to_str().unwrap(), target]);
        assert_eq!(r.code, 0, "{target} after {action}:\n{fixed_text}\n{r:?}");
        applied.insert(*action);
    }
    // Every refusal reason with a fix was applied at least once.
    assert_eq!(
        applied.into_iter().collect::<Vec<_>>(),
        ["add-port", "add-rule", "remove-deny-rule", "special-range"]
    );
}

/// `text` without the TOML table that holds line `line` (1-based): from the `[[...]]` header at
/// or above it to the next blank line.
fn without_table_at(text: &str, line: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = (0..line)
        .rev()
        .find(|&i| lines[i].starts_with("[["))
        .unwrap();
    let end = (line..lines.len())
        .find(|&i| lines[i].trim().is_empty())
        .unwrap_or(lines.len());
    [&lines[..start], &lines[end..]].concat().join("\n") + "\n"
}

#[test]
fn a_name_whose_addresses_are_all_refused_gets_the_address_refusal() {
    let r = run(&[
        "explain",
        repo(RULES).to_str().unwrap(),
        "github.com:443",
        "--resolved",
        "169.254.169.254",
        "--json",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    let json: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(json["suggestion"]["action"], "special-range", "{json}");
    assert!(
        json["suggestion"]["text"]
            .as_str()
            .unwrap()
            .contains("169.254.0.0/16 (link-local, RFC 3927)")
    );
}
