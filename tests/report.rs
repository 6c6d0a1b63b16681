//! Report mode (`[defaults] mode = "report"`, `--mode`): what the policy refuses by a rule or its
//! default is let through and audited `would-deny` / `would-refuse`; special ranges and malformed
//! targets stay refused; a reload switches modes and its lifecycle event names the mode.

use crate::util::*;

/// A strict policy for two loopback origins: `origin.test` allowed on the first port only,
/// `other.test` and `denied.test` (a deny rule) pinned to loopback, which a carve-out opens on
/// the first port only. `mode` is the `[defaults] mode` line, or empty.
fn policy(allowed: u16, mode: &str) -> String {
    format!(
        "version = 1\n[defaults]\naction = \"deny\"\nports = [443]\n{mode}\n\n\
         [[allow]]\nhost = \"origin.test\"\nports = [{allowed}]\n\n\
         [[deny]]\nhost = \"denied.test\"\n\n\
         [[danger_carve_out]]\ncidr = \"127.0.0.1/32\"\nports = [{allowed}]\n\n\
         [dns.static]\n\"origin.test\" = [\"127.0.0.1\"]\n\"other.test\" = [\"127.0.0.1\"]\n\
         \"denied.test\" = [\"127.0.0.1\"]\n{NO_RESOLVER}"
    )
}

struct Setup {
    origin: Origin,
    closed: Origin,
    sidecar: Sidecar,
    audit: std::path::PathBuf,
    policy: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn start(mode_line: &str, flags: &[&str]) -> Setup {
    let origin = Origin::start(Behaviour::Answer);
    let closed = Origin::start(Behaviour::Answer);
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "policy.toml",
        &policy(origin.addr.port(), mode_line),
    );
    let audit = dir.path().join("audit.jsonl");
    let mut args = vec![
        "--policy",
        policy.to_str().unwrap(),
        "--audit-log",
        audit.to_str().unwrap(),
        "--sandbox-id",
        "sb-report",
    ];
    args.extend_from_slice(flags);
    let sidecar = Sidecar::start(&args);
    Setup {
        origin,
        closed,
        sidecar,
        audit,
        policy,
        _dir: dir,
    }
}

fn dns(sidecar: &Sidecar) -> std::net::SocketAddr {
    sidecar.ready["dns"].as_str().unwrap().parse().unwrap()
}

fn field<'a>(event: &'a serde_json::Value, name: &str) -> &'a str {
    event[name].as_str().unwrap_or_default()
}

/// The request event for `destination` (the latest one).
fn event_for<'a>(events: &'a [serde_json::Value], destination: &str) -> &'a serde_json::Value {
    events
        .iter()
        .rev()
        .find(|e| field(e, audit::fields::DESTINATION) == destination)
        .unwrap_or_else(|| panic!("no event for {destination} in {events:#?}"))
}

#[test]
fn report_mode_lets_rule_refusals_through_and_keeps_special_ranges_shut() {
    let s = start("mode = \"report\"", &[]);
    assert_eq!(s.sidecar.ready["mode"], "report");
    assert!(
        s.sidecar.ready["mode_detail"]
            .as_str()
            .unwrap()
            .contains("special ranges and malformed targets stay refused"),
        "{}",
        s.sidecar.ready
    );
    let port = s.origin.addr.port();
    let proxy = s.sidecar.proxy();
    // Refused by the default, and by a deny rule: served all the same.
    let other = format!("http://other.test:{port}/");
    let denied = format!("http://denied.test:{port}/");
    for url in [&other, &denied] {
        let r = Client::Rust.get(proxy, url);
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, ORIGIN_BODY),
            "{url}: {r:?}"
        );
    }
    let tunnel = Client::Rust.tunnel_get(proxy, &other);
    assert_eq!(tunnel.status, 200, "{tunnel:?}");
    // Refused for the port: let through, but its only address is loopback, which no carve-out
    // opens on that port: it stays shut.
    let closed = format!("http://origin.test:{}/", s.closed.addr.port());
    let r = Client::Rust.get(proxy, &closed);
    assert_eq!(r.status, 403, "{r:?}");
    assert!(
        r.headers.contains("x-egressd-reason: special-range"),
        "{r:?}"
    );
    assert_eq!(
        s.closed.connections.get(),
        0,
        "the closed origin was reached"
    );
    // Special ranges and malformed targets as named: refused.
    let metadata = Client::Rust.get(proxy, "http://169.254.169.254/latest/meta-data/");
    assert_eq!(metadata.status, 403, "{metadata:?}");
    let lan = Client::Rust.tunnel_get(proxy, "http://10.0.0.5:5432/");
    assert_eq!(lan.status, 403, "{lan:?}");
    let malformed = Client::Rust.get(proxy, "http://0177.0.0.1/");
    assert_eq!(malformed.status, 400, "{malformed:?}");
    // Let through, but the name resolves nowhere: the failure's status, and still the refusal
    // report mode is there to record.
    let unresolved = Client::Rust.get(proxy, "http://unresolved.test/");
    assert_eq!(unresolved.status, 502, "{unresolved:?}");

    let events = request_events(&s.audit, 8);
    let failed = event_for(&events, "http://unresolved.test/");
    assert_eq!(field(failed, audit::fields::DECISION), "would-deny");
    assert_eq!(field(failed, audit::fields::REASON), "default-deny");
    assert_eq!(failed[audit::fields::STATUS], 502);
    let would = event_for(&events, &other);
    assert_eq!(field(would, audit::fields::DECISION), "would-deny");
    assert_eq!(field(would, audit::fields::REASON), "default-deny");
    assert_eq!(would[audit::fields::STATUS], 200);
    let ruled = event_for(&events, &denied);
    assert_eq!(field(ruled, audit::fields::DECISION), "would-deny");
    assert_eq!(field(ruled, audit::fields::REASON), "deny-rule");
    assert_eq!(field(ruled, audit::fields::RULE), "deny[0] line 12");
    let connect = event_for(&events, &format!("other.test:{port}"));
    assert_eq!(field(connect, audit::fields::DECISION), "would-deny");
    for (destination, reason) in [
        (closed.as_str(), "special-range"),
        ("http://169.254.169.254/latest/meta-data/", "special-range"),
        ("10.0.0.5:5432", "special-range"),
        ("http://0177.0.0.1/", "malformed-target"),
    ] {
        let e = event_for(&events, destination);
        assert_eq!(field(e, audit::fields::DECISION), "deny", "{e}");
        assert_eq!(field(e, audit::fields::REASON), reason, "{e}");
    }
}

#[test]
fn report_mode_answers_refused_names_in_dns_filtered_as_usual() {
    let s = start("mode = \"report\"", &[]);
    let answer = stub_query(dns(&s.sidecar), "other.test.");
    assert_eq!(answer.rcode, "NOERROR");
    // The carve-out opens loopback (on some port), so the static address is kept.
    assert_eq!(answer.addresses, ["127.0.0.1"]);
    let log = || std::fs::read_to_string(&s.audit).unwrap_or_default();
    let deadline = std::time::Instant::now() + PATIENCE;
    let event = loop {
        let found = events_of(&log(), audit::DnsQuery::MESSAGE);
        if let Some(e) = found
            .into_iter()
            .find(|e| field(e, "name") == "other.test.")
        {
            break e;
        }
        assert!(std::time::Instant::now() < deadline, "{}", log());
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert_eq!(field(&event, audit::fields::DECISION), "would-refuse");
    assert_eq!(field(&event, audit::fields::REASON), "default-deny");
    assert_eq!(field(&event, audit::fields::RCODE), "NOERROR");
    // A name that resolves nowhere: SERVFAIL, still recorded as the refusal it would have been.
    assert_eq!(
        stub_query(dns(&s.sidecar), "unresolved.test.").rcode,
        "SERVFAIL"
    );
    let deadline = std::time::Instant::now() + PATIENCE;
    let failed = loop {
        let found = events_of(&log(), audit::DnsQuery::MESSAGE);
        if let Some(e) = found
            .into_iter()
            .find(|e| field(e, "name") == "unresolved.test.")
        {
            break e;
        }
        assert!(std::time::Instant::now() < deadline, "{}", log());
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert_eq!(field(&failed, audit::fields::DECISION), "would-refuse");
    assert_eq!(field(&failed, audit::fields::RCODE), "SERVFAIL");
}

#[test]
fn the_flag_wins_and_a_reload_switches_modes() {
    // The file says report, the flag enforce: enforced.
    let s = start("mode = \"report\"", &["--mode", "enforce"]);
    assert_eq!(s.sidecar.ready["mode"], "enforce");
    assert!(s.sidecar.ready["mode_detail"].is_null());
    let url = format!("http://other.test:{}/", s.origin.addr.port());
    assert_eq!(Client::Rust.get(s.sidecar.proxy(), &url).status, 403);
    assert_eq!(stub_query(dns(&s.sidecar), "other.test.").rcode, "REFUSED");
    drop(s);

    // No flag: the file decides, and a reload switches.
    let s = start("", &[]);
    assert_eq!(s.sidecar.ready["mode"], "enforce");
    let url = format!("http://other.test:{}/", s.origin.addr.port());
    assert_eq!(Client::Rust.get(s.sidecar.proxy(), &url).status, 403);
    let text = std::fs::read_to_string(&s.policy).unwrap();
    std::fs::write(
        &s.policy,
        text.replacen("ports = [443]\n", "ports = [443]\nmode = \"report\"\n", 1),
    )
    .unwrap();
    s.sidecar.signal(Signal::SIGHUP);
    s.sidecar.stderr.wait_for("SIGHUP: policy reloaded", 1);
    assert_eq!(Client::Rust.get(s.sidecar.proxy(), &url).status, 200);
    // The request's own event is written after the reload's: once it is in the file, so is that.
    request_events(&s.audit, 2);
    let events = events_of(
        &std::fs::read_to_string(&s.audit).unwrap(),
        audit::Lifecycle::MESSAGE,
    );
    let modes: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                field(e, audit::fields::EVENT),
                field(e, audit::fields::MODE),
            )
        })
        .collect();
    assert_eq!(modes, [("ready", "enforce"), ("reloaded", "report")]);
    assert!(
        s.sidecar.stderr.text().contains("report mode:"),
        "a warning says report mode is on"
    );
}
