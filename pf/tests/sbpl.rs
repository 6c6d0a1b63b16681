//! The sandbox-exec section read back the way the sandbox reads it: parsed as s-expressions and
//! evaluated last-match-wins against what a job does (connect to a port, look up a Mach
//! service), after base profiles that allow everything or even allow the resolver outright.
//! There is no macOS in CI, so this is what checks that the section's order holds.
#![allow(clippy::unwrap_used)]

use pf::sbpl::{
    DAEMON_SOCKETS, DaemonSocket, Loopback, RESOLVER_SERVICES, SYSTEM_RESOLVER_SOCKET, Section,
    UnixSockets, render,
};

/// One s-expression: a list, a bare atom, or a string literal.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Sexp {
    List(Vec<Sexp>),
    Atom(String),
    Str(String),
}

/// Parses SBPL text into its top-level forms: `;` comments to the end of the line, strings with
/// backslash escapes, `#"..."` regex literals read as strings with their backslashes kept (a
/// regex literal's backslash is the regex's own).
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
        '"' => string(chars, at, true),
        '#' if chars.get(*at + 1) == Some(&'"') => {
            *at += 1;
            string(chars, at, false)
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

fn string(chars: &[char], at: &mut usize, escapes: bool) -> Result<Sexp, String> {
    *at += 1;
    let mut text = String::new();
    loop {
        match chars.get(*at) {
            None => return Err("unclosed string".into()),
            Some('"') => {
                *at += 1;
                return Ok(Sexp::Str(text));
            }
            Some('\\') if escapes => {
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
    /// Read a sysctl by its name as the kernel spells it for the check (a numeric MIB's trailing
    /// numbers included: `kern.procargs2.PID`, XNU `bsd/kern/kern_newsysctl.c` `sysctl_root`).
    Sysctl(&'a str),
    /// A `process-info-*` operation on the job itself or on another process.
    ProcessInfo { operation: &'a str, own: bool },
}

impl<'a> Op<'a> {
    fn operation(&self) -> &'a str {
        match self {
            Op::Connect { .. } | Op::UnixSocket(_) => "network-outbound",
            Op::MachLookup(_) => "mach-lookup",
            Op::Sysctl(_) => "sysctl-read",
            Op::ProcessInfo { operation, .. } => operation,
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
    let string = |i: usize| match items.get(i) {
        Some(Sexp::Str(s)) => s.as_str(),
        _ => panic!("a string belongs at {i} of {filter:?}"),
    };
    match (atom(0), op) {
        // A path filter on network-outbound matches a Unix socket's path (Apple's older
        // application.sb: `(allow network-outbound (regex #"^/private/tmp/launch-..."))`).
        (Some("regex"), Op::UnixSocket(path)) => {
            regex::Regex::new(string(1)).unwrap().is_match(path)
        }
        (Some("regex"), Op::Connect { .. }) => false,
        (Some("require-not"), _) => {
            assert_eq!(items.len(), 2, "{filter:?}");
            !filter_matches(&items[1], op)
        }
        (Some("global-name"), Op::MachLookup(name)) => items[1] == Sexp::Str((*name).into()),
        (Some("global-name" | "remote"), Op::Sysctl(_) | Op::ProcessInfo { .. }) => false,
        (Some("global-name"), _) => false,
        (Some("sysctl-name"), Op::Sysctl(name)) => string(1) == *name,
        (Some("sysctl-name-prefix"), Op::Sysctl(name)) => name.starts_with(string(1)),
        (Some("sysctl-name" | "sysctl-name-prefix"), _) => false,
        (Some("target"), Op::ProcessInfo { own, .. }) => match atom(1) {
            Some("self") => *own,
            Some("others") => !*own,
            _ => panic!("unknown target {filter:?}"),
        },
        (Some("target"), _) => false,
        (Some("remote"), Op::MachLookup(_)) => false,
        (Some("remote"), Op::UnixSocket(path)) => match (atom(1), items.get(2)) {
            (Some("unix-socket"), None) => true,
            (Some("unix-socket"), Some(Sexp::List(p))) => {
                let Sexp::Str(want) = &p[1] else {
                    panic!("{filter:?}");
                };
                match &p[0] {
                    Sexp::Atom(a) if a == "path-literal" => path == want,
                    // A subpath holds the path itself and everything below it.
                    Sexp::Atom(a) if a == "subpath" => {
                        path.strip_prefix(want.as_str()).is_some_and(|rest| {
                            rest.is_empty() || rest.starts_with('/') || want.ends_with('/')
                        })
                    }
                    _ => panic!("unknown unix-socket filter {filter:?}"),
                }
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

/// Every operation name the allow and deny rules of macOS 10.15.2's (19C57) own profiles use,
/// the names they define for themselves left out: knightsc/sandbox_profiles, all 223 `.sb` files
/// under `System/Library/Sandbox/Profiles/` and `usr/share/sandbox/` (commit 9eb25ae, "macOS
/// 10.15.2 19C57"). A name outside this list is one Apple's profiles never use: a typo, or an
/// operation the sandbox may not know (an unknown name fails the whole profile).
const APPLE_OPERATIONS: [&str; 101] = [
    "appleevent-send",
    "authorization-right-obtain",
    "default",
    "device-camera",
    "device-microphone",
    "distributed-notification-post",
    "dynamic-code-generation",
    "file*",
    "file-chroot",
    "file-fsctl",
    "file-ioctl",
    "file-issue-extension",
    "file-link",
    "file-map-executable",
    "file-mknod",
    "file-mount",
    "file-read*",
    "file-read-data",
    "file-read-metadata",
    "file-read-xattr",
    "file-revoke",
    "file-search",
    "file-unlink",
    "file-unmount",
    "file-write*",
    "file-write-create",
    "file-write-data",
    "file-write-flags",
    "file-write-mode",
    "file-write-mount",
    "file-write-owner",
    "file-write-setugid",
    "file-write-umount",
    "file-write-unlink",
    "file-write-xattr",
    "generic-issue-extension",
    "hid-control",
    "iokit*",
    "iokit-get-properties",
    "iokit-open",
    "iokit-set-properties",
    "ipc-posix*",
    "ipc-posix-sem",
    "ipc-posix-shm",
    "ipc-posix-shm*",
    "ipc-posix-shm-read*",
    "ipc-posix-shm-read-data",
    "ipc-posix-shm-read-metadata",
    "ipc-posix-shm-write*",
    "ipc-posix-shm-write-create",
    "ipc-posix-shm-write-data",
    "ipc-posix-shm-write-unlink",
    "job-creation",
    "lsopen",
    "mach-lookup",
    "mach-per-user-lookup",
    "mach-priv-host-port",
    "mach-register",
    "mach-task-name",
    "managed-preference-read",
    "network*",
    "network-bind",
    "network-inbound",
    "network-outbound",
    "nvram*",
    "nvram-get",
    "nvram-set",
    "process-codesigning-status*",
    "process-codesigning-status-get",
    "process-exec",
    "process-exec*",
    "process-fork",
    "process-info*",
    "process-info-codesignature",
    "process-info-dirtycontrol",
    "process-info-listpids",
    "process-info-pidfdinfo",
    "process-info-pidfileportinfo",
    "process-info-pidinfo",
    "process-info-rusage",
    "process-info-setcontrol",
    "pseudo-tty",
    "qtn-user",
    "signal",
    "socket-ioctl",
    "sysctl*",
    "sysctl-read",
    "sysctl-write",
    "system-audit",
    "system-automount",
    "system-fsctl",
    "system-info",
    "system-kext*",
    "system-kext-load",
    "system-kext-query",
    "system-package-check",
    "system-sched",
    "system-socket",
    "user-preference*",
    "user-preference-read",
    "user-preference-write",
];
/// Every filter name of the same profiles: the head of each list inside an allow or deny rule,
/// at any depth (the Scheme helpers they call while building a filter left out).
const APPLE_FILTERS: [&str; 63] = [
    "appleevent-destination",
    "control-name",
    "device-conforms-to",
    "extension",
    "extension-class",
    "extension-class-regex",
    "extension-path-ancestor",
    "file-mode",
    "fsctl-command",
    "global-name",
    "global-name-prefix",
    "global-name-regex",
    "group-container-literal",
    "group-container-regex",
    "info-type",
    "iokit-connection",
    "iokit-property",
    "iokit-registry-entry-class",
    "iokit-registry-entry-class-prefix",
    "iokit-usb-interface-class",
    "iokit-user-client-class",
    "iokit-user-client-class-regex",
    "ipc-posix-name",
    "ipc-posix-name-prefix",
    "ipc-posix-name-regex",
    "kext-bundle-id",
    "literal",
    "local",
    "local-name",
    "local-name-prefix",
    "mount-relative-literal",
    "mount-relative-regex",
    "nvram-variable",
    "path",
    "path-ancestors",
    "path-literal",
    "preference-domain",
    "preference-domain-regex",
    "prefix",
    "process-attribute",
    "process-tmp-subpath",
    "regex",
    "remote",
    "require-all",
    "require-any",
    "require-not",
    "right-name",
    "right-name-regex",
    "socket-domain",
    "socket-protocol",
    "subpath",
    "sysctl-name",
    "sysctl-name-prefix",
    "system-attribute",
    "target",
    "target-signing-identifier",
    "vnode-type",
    "with",
    "xattr",
    "xattr-prefix",
    "xattr-regex",
    "xpc-service-name",
    "xpc-service-name-prefix",
];

/// What the same profiles put after `remote` and `target`.
const APPLE_REMOTE_KINDS: [&str; 4] = ["ip", "tcp", "udp", "unix-socket"];
const APPLE_TARGETS: [&str; 3] = ["self", "children", "same-sandbox"];

fn section(loopback: Loopback, dns_port: Option<u16>) -> String {
    render(&options(loopback, dns_port)).unwrap()
}

fn options(loopback: Loopback, dns_port: Option<u16>) -> Section {
    Section {
        generator: "egressd test".into(),
        proxy_port: Some(3128),
        dns_port,
        loopback,
        deny_loopback: Vec::new(),
        unix_sockets: UnixSockets::All,
    }
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
            "the job's own Unix socket",
            Open,
            None,
            Op::UnixSocket("/private/tmp/job.sock"),
            true,
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
                !r.allow
                    && r.filters
                        .iter()
                        .any(|f| filter_matches(f, &Op::UnixSocket(SYSTEM_RESOLVER_SOCKET)))
            })
            .unwrap();
        // The denies of other processes' arguments and details come after every allow (an
        // allow after them could reopen them) and never allow anything themselves.
        let procargs = rules
            .iter()
            .position(|r| r.operations.iter().any(|o| o == "sysctl-read"))
            .unwrap();
        let process_info = rules
            .iter()
            .position(|r| r.operations.iter().any(|o| o == "process-info*"))
            .unwrap();
        assert!(
            last_allow < procargs && last_allow < process_info,
            "{rules:#?}"
        );
        assert!(!rules[procargs].allow && !rules[process_info].allow);
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
        let (_, note) = line.rsplit_once(") ; ").unwrap_or_else(|| panic!("{line}"));
        assert!(!note.trim().is_empty(), "{line}");
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
    for socket in DAEMON_SOCKETS {
        let name = match socket {
            DaemonSocket::Literal { path, .. } => path,
            DaemonSocket::Regex { regex, .. } => regex,
        };
        assert!(
            doc.lines()
                .any(|l| l.starts_with("| `") && l.contains(&format!("`{name}`"))),
            "docs/sbpl.md has no table row for {name}"
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

/// Every name the section uses, in every shape it takes, is one macOS's own profiles use: each
/// operation, each filter, what follows `remote` and `target`. This is the check a compiler
/// would make; there is no macOS here to load the profile.
#[test]
fn every_name_is_one_apples_own_profiles_use() {
    let mut shapes = Vec::new();
    for loopback in [Loopback::Open, Loopback::SidecarOnly] {
        for dns_port in [None, Some(5353)] {
            let mut options = options(loopback, dns_port);
            shapes.push(options.clone());
            options.deny_loopback = vec![4000..=4001, 4010..=4011];
            options.unix_sockets =
                UnixSockets::under(vec!["/private/tmp/job-1".into(), "/Users/ci/job-1".into()])
                    .unwrap();
            shapes.push(options);
        }
    }
    for options in shapes {
        let text = render(&options).unwrap();
        for rule in rules(&parse(&text).unwrap()) {
            for operation in &rule.operations {
                assert!(
                    APPLE_OPERATIONS.contains(&operation.as_str()),
                    "operation {operation} is in no system profile:\n{text}"
                );
            }
            for filter in &rule.filters {
                check_filter_names(filter, &text);
            }
        }
    }
}

fn check_filter_names(filter: &Sexp, text: &str) {
    let Sexp::List(items) = filter else {
        panic!("filter {filter:?}");
    };
    let Some(Sexp::Atom(head)) = items.first() else {
        panic!("filter without a name {filter:?}");
    };
    assert!(
        APPLE_FILTERS.contains(&head.as_str()),
        "filter {head} is in no system profile:\n{text}"
    );
    match (head.as_str(), items.get(1)) {
        ("remote", Some(Sexp::Atom(kind))) => assert!(
            APPLE_REMOTE_KINDS.contains(&kind.as_str()),
            "remote {kind}:\n{text}"
        ),
        ("target", Some(Sexp::Atom(target))) => assert!(
            APPLE_TARGETS.contains(&target.as_str()),
            "target {target}:\n{text}"
        ),
        ("remote" | "target", other) => panic!("{head} {other:?}"),
        _ => {}
    }
    for item in &items[1..] {
        if let Sexp::List(_) = item {
            check_filter_names(item, text);
        }
    }
}

fn per_job(deny: &[std::ops::RangeInclusive<u16>], unix: UnixSockets) -> Vec<Rule> {
    let section = Section {
        deny_loopback: deny.to_vec(),
        unix_sockets: unix,
        ..options(Loopback::Open, Some(5353))
    };
    let profile = format!("{ALLOW_ALL}{}", render(&section).unwrap());
    rules(&parse(&profile).unwrap())
}

/// One job of four of one user: the other slots' egressd ports are closed, its own and the rest of
/// loopback open; Unix sockets only under the launcher's paths (with --allow-unix-socket), never
/// the resolver's; no other process's arguments, environment or details.
#[test]
fn a_job_reaches_its_own_sidecar_and_sockets_and_nothing_of_its_siblings() {
    let deny = [4000..=4001, 4010..=4011, 4020..=4021];
    let job_dir = "/private/tmp/job-1";
    let cases: &[(&str, UnixSockets, Op, Option<bool>)] = &[
        ("own proxy", UnixSockets::All, tcp(true, 3128), Some(true)),
        ("own stub", UnixSockets::All, udp(true, 5353), Some(true)),
        (
            "own test server",
            UnixSockets::All,
            tcp(true, 8080),
            Some(true),
        ),
        (
            "job 2's proxy",
            UnixSockets::All,
            tcp(true, 4000),
            Some(false),
        ),
        (
            "job 2's stub",
            UnixSockets::All,
            udp(true, 4001),
            Some(false),
        ),
        (
            "job 2's stub, TCP",
            UnixSockets::All,
            tcp(true, 4001),
            Some(false),
        ),
        (
            "job 4's stub",
            UnixSockets::All,
            udp(true, 4021),
            Some(false),
        ),
        (
            "next to a slot",
            UnixSockets::All,
            tcp(true, 4002),
            Some(true),
        ),
        (
            "a socket of the job's",
            UnixSockets::All,
            Op::UnixSocket("/private/tmp/job-1/pg/.s.PGSQL.5432"),
            Some(true),
        ),
        (
            "Docker's socket",
            UnixSockets::All,
            Op::UnixSocket("/private/var/run/docker.sock"),
            Some(false),
        ),
        (
            "resolver",
            UnixSockets::All,
            Op::UnixSocket(SYSTEM_RESOLVER_SOCKET),
            Some(false),
        ),
        (
            "socket in the job dir",
            UnixSockets::under(vec![job_dir.into()]).unwrap(),
            Op::UnixSocket("/private/tmp/job-1/pg/.s.PGSQL.5432"),
            Some(true),
        ),
        (
            "the job dir's sibling",
            UnixSockets::under(vec![job_dir.into()]).unwrap(),
            Op::UnixSocket("/private/tmp/job-10/x.sock"),
            Some(false),
        ),
        (
            "a container daemon",
            UnixSockets::under(vec![job_dir.into()]).unwrap(),
            Op::UnixSocket("/private/var/run/docker.sock"),
            Some(false),
        ),
        (
            "resolver under an allowed path",
            UnixSockets::under(vec!["/private/var/run".into()]).unwrap(),
            Op::UnixSocket(SYSTEM_RESOLVER_SOCKET),
            Some(false),
        ),
        (
            "a sibling's environment",
            UnixSockets::All,
            Op::Sysctl("kern.procargs2.4242"),
            Some(false),
        ),
        (
            "old procargs",
            UnixSockets::All,
            Op::Sysctl("kern.procargs.4242"),
            Some(false),
        ),
        (
            "other sysctls",
            UnixSockets::All,
            Op::Sysctl("kern.osversion"),
            Some(true),
        ),
        (
            "a sibling's details",
            UnixSockets::All,
            Op::ProcessInfo {
                operation: "process-info-pidinfo",
                own: false,
            },
            Some(false),
        ),
        (
            "a sibling's open files",
            UnixSockets::All,
            Op::ProcessInfo {
                operation: "process-info-pidfdinfo",
                own: false,
            },
            Some(false),
        ),
        (
            "its own details",
            UnixSockets::All,
            Op::ProcessInfo {
                operation: "process-info-pidinfo",
                own: true,
            },
            Some(true),
        ),
    ];
    for (name, unix, op, want) in cases {
        let rules = per_job(&deny, unix.clone());
        assert_eq!(evaluate(&rules, op), *want, "{name}: {op:?}");
    }
    // Alone (no base profile), the section decides nothing about the job's own process info or
    // other sysctls: it only denies.
    let alone = rules(
        &parse(
            &render(&Section {
                deny_loopback: deny.to_vec(),
                ..options(Loopback::Open, Some(5353))
            })
            .unwrap(),
        )
        .unwrap(),
    );
    assert_eq!(evaluate(&alone, &Op::Sysctl("kern.osversion")), None);
    assert_eq!(
        evaluate(
            &alone,
            &Op::ProcessInfo {
                operation: "process-info-pidinfo",
                own: true
            }
        ),
        None
    );
}

/// Where each well-known daemon socket lives on a real Mac, one path per [`DAEMON_SOCKETS`] entry
/// at least, and sockets of the job's that must stay open without `--allow-unix-socket`.
const DAEMON_PATHS: [&str; 12] = [
    "/var/run/docker.sock",
    "/private/var/run/docker.sock",
    "/Users/ci/.docker/run/docker.sock",
    "/Users/ci/.colima/default/docker.sock",
    "/Users/ci/.colima/work/docker.sock",
    "/Users/ci/.orbstack/run/docker.sock",
    "/Users/ci/.lima/default/sock/docker.sock",
    "/Users/ci/.lima/colima/ha.sock",
    "/Users/ci/.local/share/containers/podman/machine/qemu/podman.sock",
    "/private/var/folders/xy/abc/T/podman/podman-machine-default-api.sock",
    "/private/var/run/podman/podman.sock",
    "/Users/ci/.rd/docker.sock",
];
const JOB_SOCKETS: [&str; 4] = [
    "/private/tmp/job-1/pg/.s.PGSQL.5432",
    "/private/var/folders/xy/abc/T/tmp.x/redis.sock",
    "/Users/ci/work/job-1/docker-compose.yml.sock",
    "/Users/ci/.ssh/agent.sock",
];

/// Without `--allow-unix-socket` the job's own sockets stay open and every well-known container
/// daemon's and VM's socket is closed, whatever the base profile allows; with it, only the given
/// paths are open (a daemon's socket under one of them too: the launcher chose it).
#[test]
fn container_daemon_sockets_are_closed_by_default() {
    let base = format!("{ALLOW_RESOLVER}(allow network-outbound (remote unix-socket))\n");
    for loopback in [Loopback::Open, Loopback::SidecarOnly] {
        let text = render(&options(loopback, Some(5353))).unwrap();
        let profile = rules(&parse(&format!("{base}{text}")).unwrap());
        for path in DAEMON_PATHS {
            assert_eq!(
                evaluate(&profile, &Op::UnixSocket(path)),
                Some(false),
                "{path}:\n{text}"
            );
        }
        for path in JOB_SOCKETS {
            assert_eq!(
                evaluate(&profile, &Op::UnixSocket(path)),
                Some(true),
                "{path}:\n{text}"
            );
        }
        // Each denied line matches at least one real path, and comes after the allow of every
        // socket (later rules win).
        let allow = profile
            .iter()
            .rposition(|r| {
                r.allow
                    && r.filters
                        .iter()
                        .any(|f| filter_matches(f, &Op::UnixSocket("/x")))
            })
            .unwrap();
        for socket in DAEMON_SOCKETS {
            let (line, what) = match socket {
                DaemonSocket::Literal { path, what } => {
                    (format!("(path-literal \"{path}\")"), what)
                }
                DaemonSocket::Regex { regex, what } => (format!("(regex #\"{regex}\")"), what),
            };
            let at = text
                .lines()
                .find(|l| l.contains(&line))
                .unwrap_or_else(|| panic!("no line for {line}:\n{text}"));
            assert!(
                at.starts_with("(deny network-outbound") && at.ends_with(&format!(" ; {what}")),
                "{at}"
            );
            let rule = &rules(&parse(at).unwrap())[0];
            assert!(
                DAEMON_PATHS.iter().any(|p| rule
                    .filters
                    .iter()
                    .any(|f| filter_matches(f, &Op::UnixSocket(p)))),
                "{at} matches no known socket"
            );
            assert!(
                JOB_SOCKETS.iter().all(|p| !rule
                    .filters
                    .iter()
                    .any(|f| filter_matches(f, &Op::UnixSocket(p)))),
                "{at} closes a job's socket"
            );
        }
        let first_daemon = profile
            .iter()
            .position(|r| {
                !r.allow
                    && r.filters
                        .iter()
                        .any(|f| filter_matches(f, &Op::UnixSocket(DAEMON_PATHS[0])))
            })
            .unwrap();
        assert!(allow < first_daemon, "{text}");
    }
    // With --allow-unix-socket: only the paths given, and the job's choice is its own.
    let under = Section {
        unix_sockets: UnixSockets::under(vec![
            "/private/tmp/job-1".into(),
            "/Users/ci/.colima".into(),
        ])
        .unwrap(),
        ..options(Loopback::Open, Some(5353))
    };
    let text = render(&under).unwrap();
    let rules = rules(&parse(&format!("{ALLOW_ALL}{text}")).unwrap());
    for (path, want) in [
        (JOB_SOCKETS[0], true),
        (JOB_SOCKETS[1], false),
        ("/private/var/run/docker.sock", false),
        ("/Users/ci/.docker/run/docker.sock", false),
        ("/Users/ci/.colima/default/docker.sock", true),
    ] {
        assert_eq!(
            evaluate(&rules, &Op::UnixSocket(path)),
            Some(want),
            "{path}:\n{text}"
        );
    }
    assert!(
        !text.contains("(regex "),
        "no daemon denies with --allow-unix-socket:\n{text}"
    );
}

#[test]
fn bad_per_job_input_is_refused() {
    let own = Section {
        deny_loopback: vec![3000..=3200],
        ..options(Loopback::Open, Some(5353))
    };
    assert_eq!(render(&own), Err(pf::Error::DenyOwnPort(3128)));
    let many = Section {
        deny_loopback: vec![10000..=10300],
        ..options(Loopback::Open, Some(5353))
    };
    assert_eq!(render(&many), Err(pf::Error::TooManyPorts(301)));
    for path in ["relative/dir", "/a\"b", "/a\\b", "/a\nb"] {
        assert_eq!(
            UnixSockets::under(vec![path.into()]),
            Err(pf::Error::UnixSocketPath(path.into())),
            "{path:?}"
        );
    }
}
