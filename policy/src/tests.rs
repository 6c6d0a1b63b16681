//! Decision tables over the fixtures in `testdata/`, and the invalid-policy corpus.

use std::path::Path;

use crate::{Action, Policy, Target, Verdict};

const RULES: &str = include_str!("../testdata/rules.toml");
const OPEN: &str = include_str!("../testdata/open.toml");

/// (target, verdict, reason code, line of the deciding rule)
type Case = (&'static str, Verdict, &'static str, Option<usize>);

fn check_table(policy: &Policy, cases: &[Case]) {
    for &(target, verdict, code, line) in cases {
        let target_parsed = Target::parse_loose(target, 443).unwrap();
        let decision = policy.decide(&target_parsed);
        assert_eq!(
            (
                decision.verdict(),
                decision.reason.code(),
                decision.rule.as_ref().map(|r| r.line)
            ),
            (verdict, code, line),
            "target {target}: {decision}"
        );
    }
}

#[test]
fn strict_allowlist_decisions() {
    use Verdict::{Allow, Deny};
    let policy = Policy::parse(RULES, "rules.toml").unwrap();
    check_table(
        &policy,
        &[
            // exact names, case and trailing dot
            ("github.com:443", Allow, "allow-rule", Some(9)),
            ("GitHub.COM.:22", Allow, "allow-rule", Some(9)),
            ("github.com:80", Deny, "port-not-allowed", Some(9)),
            ("api.github.com:443", Deny, "default-deny", None),
            // wildcards: below the suffix only, default ports apply
            ("raw.githubusercontent.com", Allow, "allow-rule", Some(13)),
            (
                "a.b.githubusercontent.com:443",
                Allow,
                "allow-rule",
                Some(13),
            ),
            ("githubusercontent.com:443", Deny, "default-deny", None),
            (
                "raw.githubusercontent.com:80",
                Deny,
                "port-not-allowed",
                Some(13),
            ),
            ("evilgithubusercontent.com:443", Deny, "default-deny", None),
            // deny wins over allow
            ("www.example.com:443", Allow, "allow-rule", Some(16)),
            ("secret.example.com:443", Deny, "deny-rule", Some(19)),
            ("SECRET.example.com.:443", Deny, "deny-rule", Some(19)),
            // CIDR rules on IP literals, deny CIDR with ports
            ("140.82.112.3:22", Allow, "allow-rule", Some(22)),
            ("140.82.113.3:443", Allow, "allow-rule", Some(22)),
            ("140.82.113.3:22", Deny, "deny-rule", Some(26)),
            ("[::ffff:140.82.113.3]:22", Deny, "deny-rule", Some(26)),
            ("8.8.8.8:443", Deny, "default-deny", None),
            // special ranges, in every unambiguous spelling of the address
            ("10.0.0.1:443", Deny, "special-range", None),
            ("[::ffff:0:10.0.0.1]:443", Deny, "special-range", None),
            // spellings parsers disagree on are malformed, whatever they would mean
            ("2130706433:443", Deny, "malformed-target", None),
            ("0x7f.1:443", Deny, "malformed-target", None),
            ("127.1:443", Deny, "malformed-target", None),
            ("010.8.8.8:443", Deny, "malformed-target", None),
            ("8.8.8.8.:443", Deny, "malformed-target", None),
            ("[::ffff:10.0.0.1]:443", Deny, "special-range", None),
            ("[64:ff9b::a9fe:a9fe]:80", Deny, "special-range", None),
            ("169.254.169.254:80", Deny, "special-range", None),
            ("[fd00::1]:443", Deny, "special-range", None),
            // carve-out: opens the special range, the allow rule still decides
            ("10.20.0.5:5432", Allow, "allow-rule", Some(38)),
            ("10.20.0.6:5432", Deny, "default-deny", None),
            ("10.20.0.5:22", Deny, "special-range", None),
            // IDN: either form matches
            ("bücher.example:443", Allow, "allow-rule", Some(42)),
            ("xn--bcher-kva.example:443", Allow, "allow-rule", Some(42)),
            // malformed hosts never match
            ("exa_mple..com:443", Deny, "malformed-target", None),
            ("1.2.3.256:443", Deny, "malformed-target", None),
            ("github.com.123:443", Deny, "malformed-target", None),
        ],
    );
}

#[test]
fn default_allow_decisions() {
    use Verdict::{Allow, Deny};
    let policy = Policy::parse(OPEN, "open.toml").unwrap();
    assert_eq!(policy.default_action(), Action::Allow);
    check_table(
        &policy,
        &[
            ("example.org:443", Allow, "default-allow", None),
            ("example.org:80", Allow, "default-allow", None),
            ("example.org:22", Deny, "port-not-allowed", None),
            ("x.tracker.test:443", Deny, "deny-rule", Some(8)),
            ("93.184.215.14:443", Allow, "default-allow", None),
            ("192.168.1.1:443", Deny, "special-range", None),
        ],
    );
}

#[test]
fn resolved_addresses_are_rechecked() {
    let policy = Policy::parse(RULES, "rules.toml").unwrap();
    let name = policy.decide(&Target::parse_authority("github.com:443").unwrap());
    assert!(name.is_allowed());
    let cases = [
        ("140.82.114.4", "allow-rule"),
        ("10.0.0.5", "special-range"),
        ("::ffff:192.168.0.1", "special-range"),
        ("169.254.169.254", "special-range"),
        ("2606:50c0:8000::154", "allow-rule"),
    ];
    for (addr, code) in cases {
        let d = policy.check_resolved(&name, addr.parse().unwrap(), 443);
        assert_eq!(d.reason.code(), code, "{addr}: {d}");
    }
    // CIDR deny rules apply to resolved addresses too.
    let ssh = policy.decide(&Target::parse_authority("github.com:22").unwrap());
    let d = policy.check_resolved(&ssh, "140.82.113.9".parse().unwrap(), 22);
    assert_eq!(
        (d.reason.code(), d.rule.map(|r| r.line)),
        ("deny-rule", Some(26))
    );
    // A carve-out is reported when it lets a resolved address through.
    let db = policy.decide(&Target::parse_authority("db.internal.test:5432").unwrap());
    let d = policy.check_resolved(&db, "10.20.1.1".parse().unwrap(), 5432);
    assert!(d.is_allowed());
    assert_eq!(d.carve_out.map(|c| c.rule.line), Some(34));
    // A denied name stays denied whatever it resolves to.
    let denied = policy.decide(&Target::parse_authority("example.org:443").unwrap());
    assert!(
        !policy
            .check_resolved(&denied, "8.8.8.8".parse().unwrap(), 443)
            .is_allowed()
    );
}

#[test]
fn builtin_policy_allows_public_and_denies_special() {
    let policy = Policy::builtin();
    let public = policy.decide(&Target::parse_authority("example.org:22").unwrap());
    assert_eq!(public.reason.code(), "default-allow");
    for lan in [
        "10.0.0.1:80",
        "[::1]:80",
        "169.254.169.254:80",
        "100.64.1.1:443",
    ] {
        let d = policy.decide(&Target::parse_authority(lan).unwrap());
        assert_eq!(d.reason.code(), "special-range", "{lan}");
    }
}

#[test]
fn all_errors_are_reported_with_positions() {
    let text = "version = 1\n[[allow]]\nhost = \"a b\"\n[[allow]]\ncidr = \"10.0.0.1/8\"\n[headers]\nHost = \"x\"\n";
    let errors = Policy::parse(text, "multi.toml").unwrap_err();
    let positions: Vec<_> = errors.0.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(positions, [(3, 8), (5, 8), (7, 8)], "{errors}");
    assert!(
        errors
            .to_string()
            .starts_with("multi.toml:3:8: invalid host pattern"),
        "{errors}"
    );
}

/// Every file in testdata/invalid starts with `# expect: LINE:COL TEXT`: the first error must be at
/// that position and its message must contain TEXT.
#[test]
fn invalid_policies_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/invalid");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap();
        let (position, message) = expect.split_once(' ').unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let errors = Policy::parse(&text, &name).expect_err(&name);
        let first = &errors.0[0];
        assert_eq!(
            format!("{}:{}", first.line, first.column),
            position,
            "{name}: {first}"
        );
        assert!(
            first.to_string().contains(message),
            "{name}: {first} lacks {message:?}"
        );
        assert!(
            first
                .to_string()
                .starts_with(&format!("{name}:{position}: ")),
            "{first}"
        );
        seen += 1;
    }
    assert!(seen >= 20, "only {seen} invalid fixtures found");
}

#[test]
fn resolution_is_decided_without_ports() {
    let policy = Policy::parse(RULES, "rules.toml").unwrap();
    let name = |n: &str| crate::DomainName::parse(n).unwrap();
    let cases = [
        ("github.com", "allow-rule", Some(9)),
        ("raw.githubusercontent.com", "allow-rule", Some(13)),
        ("secret.example.com", "deny-rule", Some(19)),
        ("db.internal.test", "allow-rule", Some(30)),
        ("example.org", "default-deny", None),
    ];
    for (n, code, line) in cases {
        let d = policy.decide_resolution(&name(n));
        assert_eq!(
            (d.reason.code(), d.rule.map(|r| r.line)),
            (code, line),
            "{n}"
        );
    }
    // A deny rule limited to some ports leaves the name resolvable.
    let open = Policy::parse(
        "version = 1\n[defaults]\naction = \"allow\"\n[[deny]]\nhost = \"x.test\"\nports = [22]\n",
        "t",
    )
    .unwrap();
    assert!(open.decide_resolution(&name("x.test")).is_allowed());
}

#[test]
fn answers_are_screened_without_ports() {
    let policy = Policy::parse(RULES, "rules.toml").unwrap();
    assert!(matches!(
        policy.screen_answer("140.82.114.4".parse().unwrap()),
        Ok(None)
    ));
    // The deny CIDR at line 26 covers only port 22: the address may still be answered.
    assert!(matches!(
        policy.screen_answer("140.82.113.4".parse().unwrap()),
        Ok(None)
    ));
    let private = policy
        .screen_answer("192.168.0.1".parse().unwrap())
        .unwrap_err();
    assert_eq!(private.reason.code(), "special-range");
    let carved = policy.screen_answer("10.20.3.4".parse().unwrap()).unwrap();
    assert_eq!(carved.map(|c| c.rule.line), Some(34));
    let mapped = policy
        .screen_answer("::ffff:10.0.0.1".parse().unwrap())
        .unwrap_err();
    assert_eq!(mapped.reason.code(), "special-range");
}

#[test]
fn inspected_rules_and_credentials() {
    use crate::{RequestMiss, ValueSource};
    let text = include_str!("../testdata/inspect.toml");
    let policy = Policy::parse(text, "inspect.toml").unwrap();
    assert!(policy.inspects());
    assert!(!Policy::parse(RULES, "rules.toml").unwrap().inspects());
    let decide = |t: &str| policy.decide(&Target::parse_authority(t).unwrap());
    let api = decide("api.example.com:443");
    let inspect = api.rule.as_ref().and_then(|r| r.inspect.as_ref()).unwrap();
    assert_eq!(inspect.check("GET", "/v1/repos/x"), Ok(()));
    assert_eq!(inspect.check("DELETE", "/v1/x"), Err(RequestMiss::Method));
    assert_eq!(inspect.check("GET", "/admin"), Err(RequestMiss::Path));
    let objects = decide("eu.objects.example.com:443");
    let any = objects
        .rule
        .as_ref()
        .and_then(|r| r.inspect.as_ref())
        .unwrap();
    assert_eq!(any.check("PUT", "/anything"), Ok(()));
    let name = |n: &str| crate::DomainName::parse(n).unwrap();
    assert!(policy.inspects_name(&name("api.example.com")));
    assert!(policy.inspects_name(&name("eu.objects.example.com")));
    assert!(!policy.inspects_name(&name("opaque.example.com")));
    assert!(!policy.inspects_name(&name("unknown.example.org")));
    assert!(!policy.refusals_inside_tls());
    let opted = text.replacen("[defaults]", "[defaults]\nrefusals_inside_tls = true", 1);
    assert!(
        Policy::parse(&opted, "inspect.toml")
            .unwrap()
            .refusals_inside_tls()
    );
    assert!(
        decide("opaque.example.com:443")
            .rule
            .unwrap()
            .inspect
            .is_none()
    );
    let credentials = policy.credentials();
    assert_eq!(credentials.len(), 2);
    assert_eq!(
        (credentials[0].line, credentials[0].label()),
        (19, "credential[0] line 19".to_owned())
    );
    assert_eq!(credentials[0].source, ValueSource::Env("API_TOKEN".into()));
    assert_eq!(
        credentials[1].source,
        ValueSource::File("/run/secrets/objects".into())
    );
    let name = |n: &str| crate::DomainName::parse(n).unwrap();
    assert!(credentials[1].applies_to(&name("eu.objects.example.com")));
    assert!(!credentials[1].applies_to(&name("objects.example.com")));
    assert!(api.rule.unwrap().to_string().ends_with(", inspected"));
}

/// `*.com`-like wildcards in allow rules are refused unless the rule says it means it; a
/// registrable domain's wildcard, a suffix the list does not know, and deny rules are not.
#[test]
fn public_suffix_wildcards() {
    let allow = |host: &str, extra: &str| {
        Policy::parse(
            &format!("version = 1\n[[allow]]\nhost = \"{host}\"\n{extra}"),
            "p.toml",
        )
    };
    for host in ["*.com", "*.co.uk", "*.github.io", "*.uk"] {
        let errors = allow(host, "").expect_err(host);
        assert!(
            errors.0[0].to_string().starts_with("p.toml:3:8: "),
            "{host}: {errors}"
        );
        assert!(errors.to_string().contains("public suffix"), "{errors}");
        let meant = allow(host, "danger_public_suffix_wildcard = true").expect(host);
        let target = Target::parse_authority("anyone.example.com:443").unwrap();
        assert_eq!(
            meant.decide(&target).is_allowed(),
            host == "*.com",
            "{host}"
        );
    }
    for host in [
        "*.example.com",
        "*.user.github.io",
        "*.test",
        "*.ci.internal",
    ] {
        assert!(allow(host, "").is_ok(), "{host}");
    }
    let deny = Policy::parse("version = 1\n[[deny]]\nhost = \"*.com\"\n", "p.toml");
    assert!(deny.is_ok());
    let on_deny = Policy::parse(
        "version = 1\n[[deny]]\nhost = \"*.com\"\ndanger_public_suffix_wildcard = true\n",
        "p.toml",
    );
    assert!(on_deny.is_err());
}
