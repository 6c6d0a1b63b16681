//! The sandbox-exec section read back the way the sandbox reads it: parsed as s-expressions and
//! evaluated last-match-wins against what a job does (connect to a port, look up a Mach
//! service), after base profiles that allow everything or even allow the resolver outright.
//! There is no macOS in CI, so this is what checks that the section's order holds.
#![allow(clippy::unwrap_used)]

use pf::sbpl::{Loopback, RESOLVER_SERVICES, SYSTEM_RESOLVER_SOCKET, render};

/// One s-expression: a list, a bare atom, or a string literal.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Sexp {
    List(Vec<Sexp>),
    Atom(String),
    Str(String),
}

/// Parses SBPL text into its top-level forms: `;` comments to the end of the line, strings with
/// backslash escapes, `#"..."` regex literals read as strings.
fn parse(text: &str) -> Result<Vec<Sexp>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut at = 0;
    let mut forms = Vec::new();
    loop {
        skip_blank(&chars, &mut at);
        if at == chars.len() {
            return Ok(forms);
        }
        forms.push(form(&chars, &mut at)?);
    }
}

fn skip_blank(chars: &[char], at: &mut usize) {
    while *at < chars.len() {
        match chars[*at] {
            ';' => {
                while *at < chars.len() && chars[*at] != '\n' {
                    *at += 1;
                }
            }
            c if c.is_whitespace() => *at += 1,
            _ => return,
        }
    }
}

fn form(chars: &[char], at: &mut usize) -> Result<Sexp, String> {
    match chars[*at] {
        '(' => {
            *at += 1;
            let mut items = Vec::new();
            loop {
                skip_blank(chars, at);
                match chars.get(*at) {
                    None => return Err("unclosed (".into()),
                    Some(')') => {
                        *at += 1;
                        return Ok(Sexp::List(items));
                    }
                    Some(_) => items.push(form(chars, at)?),
                }
            }
        }
        ')' => Err(format!("unexpected ) at {at}")),
        '"' => string(chars, at),
        '#' if chars.get(*at + 1) == Some(&'"') => {
            *at += 1;
            string(chars, at)
        }
        _ => {
            let start = *at;
            while *at < chars.len() && !chars[*at].is_whitespace() && !"()\";".contains(chars[*at])
            {
                *at += 1;
            }
            Ok(Sexp::Atom(chars[start..*at].iter().collect()))
        }
    }
}

fn string(chars: &[char], at: &mut usize) -> Result<Sexp, String> {
    *at += 1;
    let mut text = String::new();
    loop {
        match chars.get(*at) {
            None => return Err("unclosed string".into()),
            Some('"') => {
                *at += 1;
                return Ok(Sexp::Str(text));
            }
            Some('\\') => {
                text.push(*chars.get(*at + 1).ok_or("dangling backslash")?);
                *at += 2;
            }
            Some(&c) => {
                text.push(c);
                *at += 1;
            }
        }
    }
}

/// One `(allow|deny OPERATION... FILTER...)` rule.
#[derive(Debug)]
struct Rule {
    allow: bool,
    operations: Vec<String>,
    filters: Vec<Sexp>,
}

fn rules(forms: &[Sexp]) -> Vec<Rule> {
    let mut rules = Vec::new();
    for form in forms {
        let Sexp::List(items) = form else {
            panic!("top-level atom {form:?}");
        };
        let Some(Sexp::Atom(head)) = items.first() else {
            panic!("form without a head: {form:?}");
        };
        let allow = match head.as_str() {
            "version" => continue,
            "allow" => true,
            "deny" => false,
            other => panic!("unexpected form ({other} ...)"),
        };
        let mut operations = Vec::new();
        let mut filters = Vec::new();
        for item in &items[1..] {
            match item {
                Sexp::Atom(op) => operations.push(op.clone()),
                Sexp::List(_) => filters.push(item.clone()),
                Sexp::Str(_) => panic!("string where an operation or filter belongs: {form:?}"),
            }
        }
        assert!(
            !operations.is_empty(),
            "rule without an operation: {form:?}"
        );
        rules.push(Rule {
            allow,
            operations,
            filters,
        });
    }
    rules
}

/// What a job asks the sandbox for.
#[derive(Clone, Copy, Debug)]
enum Op<'a> {
    /// Connect or send to an IP address: `proto` is `tcp` or `udp`.
    Connect {
        proto: &'a str,
        loopback: bool,
        port: u16,
    },
    /// Connect to a Unix socket.
    UnixSocket(&'a str),
    /// Look up a Mach service.
    MachLookup(&'a str),
}

impl Op<'_> {
    fn operation(&self) -> &'static str {
        match self {
            Op::Connect { .. } | Op::UnixSocket(_) => "network-outbound",
            Op::MachLookup(_) => "mach-lookup",
        }
    }
}

fn operation_matches(pattern: &str, op: &Op) -> bool {
    let name = op.operation();
    pattern == "default"
        || pattern == name
        || pattern
            .strip_suffix('*')
            .is_some_and(|prefix| name.starts_with(prefix))
}

/// Whether `filter` matches `op`; a filter this evaluator does not know fails the test, so it
/// never guesses.
fn filter_matches(filter: &Sexp, op: &Op) -> bool {
    let Sexp::List(items) = filter else {
        panic!("filter {filter:?}");
    };
    let atom = |i: usize| match items.get(i) {
        Some(Sexp::Atom(a)) => Some(a.as_str()),
        _ => None,
    };
    match (atom(0), op) {
        (Some("global-name"), Op::MachLookup(name)) => items[1] == Sexp::Str((*name).into()),
        (Some("global-name"), _) => false,
        (Some("remote"), Op::MachLookup(_)) => false,
        (Some("remote"), Op::UnixSocket(path)) => match (atom(1), items.get(2)) {
            (Some("unix-socket"), None) => true,
            (Some("unix-socket"), Some(Sexp::List(p))) => {
                assert_eq!(p[0], Sexp::Atom("path-literal".into()), "{filter:?}");
                p[1] == Sexp::Str((*path).into())
            }
            (Some("ip" | "tcp" | "udp"), _) => false,
            _ => panic!("unknown remote filter {filter:?}"),
        },
        (
            Some("remote"),
            Op::Connect {
                proto,
                loopback,
                port,
            },
        ) => {
            let proto_ok = match atom(1) {
                Some("ip") => true,
                Some(p @ ("tcp" | "udp")) => p == *proto,
                Some("unix-socket") => return false,
                _ => panic!("unknown remote filter {filter:?}"),
            };
            let address_ok = match items.get(2) {
                None => true,
                Some(Sexp::Str(address)) => {
                    let (host, want) = address.rsplit_once(':').unwrap();
                    let host_ok = match host {
                        "*" => true,
                        "localhost" => *loopback,
                        _ => panic!("SBPL takes only * or localhost as a host: {address}"),
                    };
                    host_ok && (want == "*" || want.parse::<u16>().unwrap() == *port)
                }
                Some(other) => panic!("address {other:?}"),
            };
            proto_ok && address_ok
        }
        _ => panic!("unknown filter {filter:?}"),
    }
}

/// The verdict of the last rule that matches `op` (SBPL is last-match-wins); `None` if none does.
fn evaluate(rules: &[Rule], op: &Op) -> Option<bool> {
    rules
        .iter()
        .rev()
        .find(|rule| {
            rule.operations.iter().any(|o| operation_matches(o, op))
                && (rule.filters.is_empty() || rule.filters.iter().any(|f| filter_matches(f, op)))
        })
        .map(|rule| rule.allow)
}

/// Base profiles the section is appended to: one that allows everything, and one that goes out
/// of its way to allow the resolver (as profiles importing system.sb's `system-network` do).
const ALLOW_ALL: &str = "(version 1)\n(allow default)\n";
const ALLOW_RESOLVER: &str = r#"(version 1)
(deny default)
(allow network*)
(allow network-outbound (remote unix-socket (path-literal "/private/var/run/mDNSResponder")))
(allow mach-lookup
  (global-name "com.apple.dnssd.service")
  (global-name "com.apple.mDNSResponder.control")
  (global-name "com.apple.trustd.agent"))
"#;

/// Mach services TLS certificate verification needs (WebKit's and Chromium's network-process
/// profiles allow them, docs/sbpl.md): the section must never deny them.
const TRUST_SERVICES: [&str; 5] = [
    "com.apple.trustd.agent",
    "com.apple.trustd",
    "com.apple.ocspd",
    "com.apple.SecurityServer",
    "com.apple.securityd.xpc",
];

fn section(loopback: Loopback, dns_port: Option<u16>) -> String {
    render("egressd test", Some(3128), dns_port, loopback).unwrap()
}

fn tcp(loopback: bool, port: u16) -> Op<'static> {
    Op::Connect {
        proto: "tcp",
        loopback,
        port,
    }
}

fn udp(loopback: bool, port: u16) -> Op<'static> {
    Op::Connect {
        proto: "udp",
        loopback,
        port,
    }
}

#[test]
fn the_section_decides_what_the_job_reaches_whatever_comes_before_it() {
    use Loopback::{Open, SidecarOnly};
    let cases: &[(&str, Loopback, Option<u16>, Op, bool)] = &[
        ("proxy port", Open, Some(5353), tcp(true, 3128), true),
        ("DNS stub, UDP", Open, Some(5353), udp(true, 5353), true),
        ("DNS stub, TCP", Open, Some(5353), tcp(true, 5353), true),
        ("job's own server", Open, Some(5353), tcp(true, 8080), true),
        (
            "job's own server",
            SidecarOnly,
            Some(5353),
            tcp(true, 8080),
            false,
        ),
        ("loopback resolver", Open, Some(5353), udp(true, 53), false),
        (
            "loopback resolver, TCP",
            Open,
            Some(5353),
            tcp(true, 53),
            false,
        ),
        (
            "loopback resolver",
            SidecarOnly,
            Some(5353),
            udp(true, 53),
            false,
        ),
        ("stub on port 53", Open, Some(53), udp(true, 53), true),
        (
            "stub on port 53",
            SidecarOnly,
            Some(53),
            udp(true, 53),
            true,
        ),
        ("remote HTTPS", Open, Some(5353), tcp(false, 443), false),
        ("remote DNS", Open, Some(5353), udp(false, 53), false),
        ("remote HTTPS", SidecarOnly, None, tcp(false, 443), false),
        (
            "resolver socket",
            Open,
            Some(5353),
            Op::UnixSocket(SYSTEM_RESOLVER_SOCKET),
            false,
        ),
        (
            "resolver socket",
            SidecarOnly,
            None,
            Op::UnixSocket(SYSTEM_RESOLVER_SOCKET),
            false,
        ),
        (
            "another Unix socket",
            Open,
            None,
            Op::UnixSocket("/private/tmp/job.sock"),
            false,
        ),
        (
            "dnssd over XPC",
            Open,
            Some(5353),
            Op::MachLookup("com.apple.dnssd.service"),
            false,
        ),
        (
            "trust evaluation",
            Open,
            Some(5353),
            Op::MachLookup("com.apple.trustd.agent"),
            true,
        ),
    ];
    for base in [ALLOW_ALL, ALLOW_RESOLVER] {
        for (name, loopback, dns_port, op, allowed) in cases {
            let profile = format!("{base}{}", section(*loopback, *dns_port));
            let verdict = evaluate(&rules(&parse(&profile).unwrap()), op);
            assert_eq!(
                verdict,
                Some(*allowed),
                "{name} ({loopback:?}, dns {dns_port:?}, {op:?}) after\n{base}\n{profile}"
            );
        }
    }
}

#[test]
fn every_resolver_service_is_denied_and_no_trust_service_is() {
    for loopback in [Loopback::Open, Loopback::SidecarOnly] {
        let profile = format!("{ALLOW_RESOLVER}{}", section(loopback, Some(5353)));
        let rules = rules(&parse(&profile).unwrap());
        for service in RESOLVER_SERVICES {
            assert_eq!(
                evaluate(&rules, &Op::MachLookup(service.name)),
                Some(false),
                "{}",
                service.name
            );
        }
        let alone = rules_of_section(loopback);
        for name in TRUST_SERVICES {
            assert_eq!(
                evaluate(&alone, &Op::MachLookup(name)),
                None,
                "the section must leave {name} to the base profile"
            );
        }
    }
}

fn rules_of_section(loopback: Loopback) -> Vec<Rule> {
    rules(&parse(&section(loopback, Some(5353))).unwrap())
}

#[test]
fn the_order_is_deny_all_then_allows_then_the_resolver_last() {
    for loopback in [Loopback::Open, Loopback::SidecarOnly] {
        let rules = rules_of_section(loopback);
        let first = &rules[0];
        assert!(
            !first.allow && first.operations == ["network-outbound"] && first.filters.is_empty(),
            "the section opens with (deny network-outbound): {first:?}"
        );
        let last_allow = rules.iter().rposition(|r| r.allow).unwrap();
        let socket_deny = rules
            .iter()
            .position(|r| {
                r.filters
                    .iter()
                    .any(|f| filter_matches(f, &Op::UnixSocket(SYSTEM_RESOLVER_SOCKET)))
            })
            .unwrap();
        let first_mach = rules
            .iter()
            .position(|r| r.operations.iter().any(|o| o == "mach-lookup"))
            .unwrap();
        assert!(
            last_allow < socket_deny && socket_deny < first_mach,
            "allows, then the socket, then the Mach services: {rules:#?}"
        );
        for rule in &rules[socket_deny..] {
            assert!(
                !rule.allow,
                "nothing after the resolver denies allows: {rule:?}"
            );
        }
        assert!(
            rules
                .iter()
                .all(|r| !(r.allow && r.operations.iter().any(|o| o == "mach-lookup"))),
            "the section never allows a Mach service"
        );
        if loopback == Loopback::Open {
            let loopback_allow = rules
                .iter()
                .position(|r| r.allow && r.filters.iter().any(|f| filter_matches(f, &tcp(true, 9))))
                .unwrap();
            let port53_deny = rules
                .iter()
                .position(|r| {
                    !r.allow && r.filters.iter().any(|f| filter_matches(f, &udp(true, 53)))
                })
                .unwrap();
            assert!(loopback_allow < port53_deny && port53_deny < socket_deny);
        }
    }
}

#[test]
fn each_line_is_one_form_with_its_reason() {
    let text = section(Loopback::Open, Some(5353));
    for line in text.lines() {
        if line.starts_with(";;") {
            continue;
        }
        let forms = parse(line).unwrap();
        assert_eq!(forms.len(), 1, "one form per line: {line}");
        if line != "(deny network-outbound)" {
            let (_, note) = line.rsplit_once(") ; ").unwrap_or_else(|| panic!("{line}"));
            assert!(!note.trim().is_empty(), "{line}");
        }
    }
}

#[test]
fn docs_give_a_source_for_every_denied_name() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/sbpl.md")).unwrap();
    for name in RESOLVER_SERVICES
        .iter()
        .map(|s| s.name)
        .chain([SYSTEM_RESOLVER_SOCKET])
    {
        let row = doc
            .lines()
            .find(|l| l.starts_with("| `") && l.contains(&format!("`{name}`")))
            .unwrap_or_else(|| panic!("docs/sbpl.md has no table row for {name}"));
        assert!(
            row.contains("mDNSResponder-") || row.contains("Libinfo-"),
            "the row for {name} cites no source release: {row}"
        );
    }
    for name in TRUST_SERVICES {
        assert!(
            doc.contains(&format!("`{name}`")),
            "docs/sbpl.md omits {name}"
        );
    }
}

#[test]
fn the_parser_and_evaluator_are_strict_enough() {
    assert!(parse("(deny network-outbound").is_err());
    assert!(parse("(deny \"x)").is_err());
    assert_eq!(
        parse("(a \"b\\\"c\" #\"^d\") ; e").unwrap(),
        vec![Sexp::List(vec![
            Sexp::Atom("a".into()),
            Sexp::Str("b\"c".into()),
            Sexp::Str("^d".into())
        ])]
    );
    // Last match wins: a later allow reopens what an earlier deny closed.
    let rules = rules(
        &parse("(deny mach-lookup (global-name \"x\"))\n(allow mach-lookup (global-name \"x\"))")
            .unwrap(),
    );
    assert_eq!(evaluate(&rules, &Op::MachLookup("x")), Some(true));
    assert_eq!(evaluate(&rules, &Op::MachLookup("y")), None);
}
