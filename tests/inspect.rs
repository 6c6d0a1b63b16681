//! TLS inspection (docs/tls.md) through `egressd run`, against loopback TLS origins with their own
//! test CA: a Rust client (rustls, trusting egressd's CA from the readiness line) in plain tests,
//! and curl, Python `requests`, Go's `net/http` and Node's fetch, trusting the CA only through the
//! readiness line's `env`, in tests ignored for needing them.

use std::path::PathBuf;

use crate::util::*;

const SECRET: &str = "real-secret-value-0123456789";
const PLACEHOLDER: &str = "PLACEHOLDER_ORIGIN_TOKEN";

/// Four loopback TLS origins and an egressd inspecting three of them.
struct World {
    /// `origin.test`: inspected, `methods = ["GET", "POST"]`, `paths = ["/ok/*"]`, the credential's host.
    origin: TlsOrigin,
    /// `other.test`: inspected, no request rules, no credential.
    other: TlsOrigin,
    /// `plain.test`: allowed, not inspected.
    plain: TlsOrigin,
    /// `bad.test`: inspected; its certificate comes from a CA egressd does not trust.
    bad: TlsOrigin,
    origin_ca: TestCa,
    sidecar: Sidecar,
    audit: PathBuf,
    dir: tempfile::TempDir,
}

impl World {
    fn start() -> Self {
        Self::start_with(&[])
    }

    fn start_with(extra_args: &[&str]) -> Self {
        Self::start_editing(extra_args, |text| text)
    }

    /// [`World::start_with`], with the policy text changed by `edit`.
    fn start_editing(extra_args: &[&str], edit: impl Fn(String) -> String) -> Self {
        let origin_ca = TestCa::new("test origin CA");
        let rogue_ca = TestCa::new("rogue CA");
        let origin = TlsOrigin::start(&origin_ca, &["origin.test"]);
        let other = TlsOrigin::start(&origin_ca, &["other.test"]);
        let plain = TlsOrigin::start(&origin_ca, &["plain.test"]);
        let bad = TlsOrigin::start(&rogue_ca, &["bad.test"]);
        let dir = tempfile::tempdir().unwrap();
        let token = write(dir.path(), "token", &format!("{SECRET}\n"));
        let ports = [&origin, &other, &plain, &bad].map(|o| o.addr.port());
        let text = edit(inspect_policy(ports, &token.display().to_string()));
        let policy = write(dir.path(), "policy.toml", &text);
        let roots = origin_ca.write(dir.path(), "origin-ca.pem");
        let audit = dir.path().join("audit.jsonl");
        let ready = dir.path().join("egressd.json");
        let mut args = vec![
            "--policy",
            policy.to_str().unwrap(),
            "--sandbox-id",
            "sb-tls",
            "--inspect-upstream-roots",
            roots.to_str().unwrap(),
            "--audit-log",
            audit.to_str().unwrap(),
            "--ready-file",
            ready.to_str().unwrap(),
        ];
        args.extend_from_slice(extra_args);
        let sidecar = Sidecar::start(&args);
        Self {
            origin,
            other,
            plain,
            bad,
            origin_ca,
            sidecar,
            audit,
            dir,
        }
    }

    /// The CA certificate egressd wrote, as the readiness line names it.
    fn egressd_ca(&self) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        pem_certificates(std::path::Path::new(
            self.sidecar.ready["inspect_ca"].as_str().unwrap(),
        ))
    }

    /// `METHOD PATH` to `host` (one of the origins) through egressd, trusting egressd's CA.
    fn fetch(&self, host: &str, method: &str, path: &str, headers: &[&str]) -> Fetched {
        let authority = format!("{host}:{}", self.port(host));
        let request = request(method, path, &authority, headers);
        let config = client_config(&self.egressd_ca());
        fetch(self.sidecar.proxy(), &authority, host, config, &request)
            .unwrap_or_else(|e| panic!("{method} https://{authority}{path}: {e}"))
    }

    fn port(&self, host: &str) -> u16 {
        match host {
            "origin.test" => self.origin.addr.port(),
            "other.test" => self.other.addr.port(),
            "plain.test" => self.plain.addr.port(),
            "bad.test" => self.bad.addr.port(),
            _ => panic!("no origin {host}"),
        }
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.port(host))
    }
}

fn inspect_policy(ports: [u16; 4], token: &str) -> String {
    let [origin, other, plain, bad] = ports;
    format!(
        r#"version = 1
[defaults]
action = "deny"

[[allow]]
host = "origin.test"
ports = [{origin}]
inspect = true
methods = ["GET", "POST"]
paths = ["/ok/*"]

[[allow]]
host = "other.test"
ports = [{other}]
inspect = true

[[allow]]
host = "plain.test"
ports = [{plain}]

[[allow]]
host = "bad.test"
ports = [{bad}]
inspect = true

[[danger_carve_out]]
cidr = "127.0.0.1/32"
ports = [{origin}, {other}, {plain}, {bad}]

[[credential]]
host = "origin.test"
header = "Authorization"
placeholder = "{PLACEHOLDER}"
value_file = "{token}"

[headers]
"X-Egressd-Sandbox" = "{{sandbox_id}}"

[dns.static]
"origin.test" = ["127.0.0.1"]
"other.test" = ["127.0.0.1"]
"plain.test" = ["127.0.0.1"]
"bad.test" = ["127.0.0.1"]
{NO_RESOLVER}"#
    )
}

fn reason(head: &str) -> Option<String> {
    header_value(head, "x-egressd-reason")
}

#[test]
fn inspected_requests_are_attributed_checked_and_audited() {
    let world = World::start();
    let ok = world.fetch(
        "origin.test",
        "GET",
        "/ok/1?q=secret-query",
        &["X-Egressd-Sandbox: spoofed"],
    );
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(header_value(&ok.head, "x-origin").as_deref(), Some("tls"));
    let seen = world.origin.seen();
    assert_eq!(seen.len(), 1);
    let head = &seen[0];
    assert!(
        head.starts_with("GET /ok/1?q=secret-query HTTP/1.1\r\n"),
        "{head}"
    );
    assert_eq!(
        header_values(head, "x-egressd-sandbox"),
        ["sb-tls"],
        "attribution replaces the client's copy: {head}"
    );
    let port = world.origin.addr.port();
    assert_eq!(
        header_value(head, "host"),
        Some(format!("origin.test:{port}"))
    );

    let cases = [
        ("DELETE", "/ok/1", "method-not-allowed"),
        ("GET", "/admin", "path-not-allowed"),
        ("GET", "/ok/%2e%2e/admin", "path-not-allowed"),
    ];
    for (method, path, code) in cases {
        let refused = world.fetch("origin.test", method, path, &[]);
        assert_eq!(refused.status, 403, "{method} {path}: {refused:?}");
        assert_eq!(reason(&refused.head).as_deref(), Some(code), "{refused:?}");
        assert!(
            header_value(&refused.head, "x-egressd-rule")
                .is_some_and(|r| r.starts_with("allow[0] line")),
            "{refused:?}"
        );
        assert!(refused.body.contains("rule allow[0]"), "{refused:?}");
    }
    // The Host inside must be the CONNECT host.
    let authority = format!("origin.test:{port}");
    let config = client_config(&world.egressd_ca());
    let spoofed = request("GET", "/ok/1", &format!("other.test:{port}"), &[]);
    let refused = fetch(
        world.sidecar.proxy(),
        &authority,
        "origin.test",
        config,
        &spoofed,
    )
    .unwrap();
    assert_eq!(refused.status, 403);
    assert_eq!(reason(&refused.head).as_deref(), Some("host-mismatch"));
    assert_eq!(
        world.origin.seen().len(),
        1,
        "no refused request reached the origin"
    );

    // One event per inner request (the query is never logged), and one per CONNECT.
    let events = request_events(&world.audit, 10);
    let inner: Vec<_> = events.iter().filter(|e| e["method"] != "CONNECT").collect();
    let url = |path: &str| world.url("origin.test", path);
    let expect = [
        ("GET", url("/ok/1"), "allow", "allow-rule", 200),
        ("DELETE", url("/ok/1"), "deny", "method-not-allowed", 403),
        ("GET", url("/admin"), "deny", "path-not-allowed", 403),
        (
            "GET",
            url("/ok/%2e%2e/admin"),
            "deny",
            "path-not-allowed",
            403,
        ),
        ("GET", url("/ok/1"), "deny", "host-mismatch", 403),
    ];
    assert_eq!(inner.len(), expect.len(), "{inner:#?}");
    for (event, (method, destination, decision, code, status)) in inner.iter().zip(expect) {
        assert_eq!(
            (
                event["method"].as_str().unwrap(),
                event["destination"].as_str().unwrap(),
                event["decision"].as_str().unwrap(),
                event["reason"].as_str().unwrap(),
                event["status"].as_u64().unwrap(),
            ),
            (method, destination.as_str(), decision, code, status),
            "{event}"
        );
    }
    assert_eq!(inner[0]["resolved"], format!("127.0.0.1:{port}"));
    assert!(inner[0]["bytes_down"].as_u64().unwrap() > 0);
    let tunnels: Vec<_> = events.iter().filter(|e| e["method"] == "CONNECT").collect();
    assert_eq!(tunnels.len(), 5, "{tunnels:#?}");
    assert!(
        tunnels
            .iter()
            .all(|e| e["decision"] == "allow" && e["status"] == 200)
    );
    let log = std::fs::read_to_string(&world.audit).unwrap();
    assert!(
        !log.contains("secret-query"),
        "queries are not logged: {log}"
    );
}

/// Asserts a refusal inside the session: its status, reason header, and audit event (`decision`,
/// the reason, the status), and that the origin saw nothing.
fn assert_refused_inside(
    world: &World,
    refused: &[(Fetched, &str)],
    (status, code, decision): (u16, &str, &str),
) {
    for (fetched, what) in refused {
        assert_eq!(fetched.status, status, "{what}: {fetched:?}");
        assert_eq!(
            reason(&fetched.head).as_deref(),
            Some(code),
            "{what}: {fetched:?}"
        );
        assert!(
            fetched.body.starts_with(&format!("egressd: {status} ")),
            "{what}: {fetched:?}"
        );
    }
    // Each fetch is a session of its own: its CONNECT's event, and its one request's.
    let events: Vec<_> = request_events(&world.audit, 2 * refused.len())
        .into_iter()
        .filter(|e| {
            e["destination"]
                .as_str()
                .is_some_and(|d| d.starts_with("https://"))
        })
        .collect();
    assert_eq!(events.len(), refused.len(), "{events:#?}");
    for event in &events {
        assert_eq!(
            (
                event["decision"].as_str(),
                event["reason"].as_str(),
                event["status"].as_u64()
            ),
            (Some(decision), Some(code), Some(u64::from(status))),
            "{event}"
        );
    }
    assert!(world.origin.seen().is_empty(), "{:?}", world.origin.seen());
}

#[test]
fn path_parameters_are_refused_under_a_paths_rule() {
    let world = World::start();
    let refused: Vec<_> = [
        "/ok/..;/admin",
        "/ok/%2e%2e%3b/admin",
        "/ok/a;jsessionid=1",
        "/ok/a%3Bb",
        "/admin",
    ]
    .into_iter()
    .map(|path| (world.fetch("origin.test", "GET", path, &[]), path))
    .collect();
    assert_refused_inside(&world, &refused, (403, "path-not-allowed", "deny"));
    // Each body says what was refused, then what to do.
    let advice = [
        (0, "egressd: send the path without dot segments"),
        (
            2,
            "egressd: send the path without ';' parameters, or add a glob that writes ';'",
        ),
        (
            4,
            "egressd: to allow it, add a glob that matches the path to the `paths` of rule allow[0]",
        ),
    ];
    for (i, line) in advice {
        let body = &refused[i].0.body;
        assert!(
            body.lines().nth(1).is_some_and(|l| l.starts_with(line)),
            "{body}"
        );
    }
    assert!(
        refused[2].0.body.contains("';' parameters"),
        "{:?}",
        refused[2].0
    );
}

#[test]
fn a_method_override_outside_the_methods_rule_is_refused() {
    let world = World::start();
    let refused: Vec<_> = [
        "X-HTTP-Method-Override",
        "X-HTTP-Method",
        "x-method-override",
    ]
    .into_iter()
    .map(|name| {
        let header = format!("{name}: DELETE");
        (
            world.fetch("origin.test", "POST", "/ok/1", &[&header]),
            name,
        )
    })
    .collect();
    assert_refused_inside(&world, &refused, (403, "method-not-allowed", "deny"));
    // Plain HTTP to the inspected host obeys the same rule.
    let plain = Client::Rust.get_with(
        world.sidecar.proxy(),
        &format!("http://origin.test:{}/ok/1", world.origin.addr.port()),
        &["X-HTTP-Method-Override: DELETE"],
    );
    assert_eq!(plain.status, 403, "{plain:?}");
    assert_eq!(
        reason(&plain.headers).as_deref(),
        Some("method-not-allowed")
    );
    // Naming a method the rule allows is no override of it.
    let allowed = world.fetch(
        "origin.test",
        "POST",
        "/ok/1",
        &["X-HTTP-Method-Override: GET"],
    );
    assert_eq!(allowed.status, 200, "{allowed:?}");
}

#[test]
fn two_host_headers_are_a_bad_request() {
    let world = World::start();
    let port = world.origin.addr.port();
    let refused: Vec<_> = [
        format!("Host: origin.test:{port}"),
        "Host: other.test".to_owned(),
    ]
    .into_iter()
    .map(|second| {
        (
            world.fetch("origin.test", "GET", "/ok/1", &[&second]),
            "two Hosts",
        )
    })
    .collect();
    // A client error, audited as one (`error`), like every malformed request.
    assert_refused_inside(&world, &refused, (400, "bad-request", "error"));
}

#[test]
fn connect_inside_a_session_is_405() {
    let world = World::start();
    let authority = format!("origin.test:{}", world.origin.addr.port());
    let refused = vec![
        (
            world.fetch("origin.test", "CONNECT", &authority, &[]),
            "CONNECT",
        ),
        (
            world.fetch("origin.test", "GET", &authority, &[]),
            "GET in authority form",
        ),
    ];
    for (fetched, _) in &refused {
        assert!(header_value(&fetched.head, "allow").is_some_and(|a| a.contains("GET")));
    }
    assert_refused_inside(&world, &refused, (405, "connect-in-session", "deny"));
}

#[test]
fn credentials_are_swapped_on_their_host_and_refused_elsewhere() {
    let world = World::start();
    let bearer = format!("Authorization: Bearer {PLACEHOLDER}");
    let swapped = world.fetch("origin.test", "GET", "/ok/echo", &[&bearer]);
    assert_eq!(swapped.status, 200, "{swapped:?}");
    let head = &world.origin.seen()[0];
    assert_eq!(
        header_value(head, "authorization"),
        Some(format!("Bearer {SECRET}")),
        "the origin gets the real value"
    );
    // The origin echoes what it got; egressd hands the sandbox the placeholder back.
    assert!(
        swapped
            .body
            .contains(&format!("authorization=Bearer {PLACEHOLDER}")),
        "{swapped:?}"
    );
    assert_eq!(
        header_value(&swapped.head, "x-echo-authorization"),
        Some(format!("Bearer {PLACEHOLDER}"))
    );
    assert!(!swapped.body.contains(SECRET) && !swapped.head.contains(SECRET));

    // The placeholder sent to another inspected host, in any header or in the URL.
    let elsewhere = [
        world.fetch("other.test", "GET", "/", &[&bearer]),
        world.fetch(
            "other.test",
            "GET",
            "/",
            &[&format!("X-Note: {PLACEHOLDER}")],
        ),
        world.fetch("other.test", "GET", &format!("/?t={PLACEHOLDER}"), &[]),
    ];
    for refused in &elsewhere {
        assert_eq!(refused.status, 403, "{refused:?}");
        assert_eq!(
            reason(&refused.head).as_deref(),
            Some("credential-exfiltration")
        );
        assert!(!refused.body.contains(SECRET));
    }
    assert!(world.other.seen().is_empty());
    // ...or in plain HTTP to any host.
    let plain = Client::Rust.get_with(
        world.sidecar.proxy(),
        &format!("http://other.test:{}/", world.other.addr.port()),
        &[&bearer],
    );
    assert_eq!(plain.status, 403, "{plain:?}");
    assert_eq!(
        reason(&plain.headers).as_deref(),
        Some("credential-exfiltration")
    );

    // Four inspected requests, their four CONNECTs, one plain request.
    let events = request_events(&world.audit, 9);
    let refusals: Vec<_> = events
        .iter()
        .filter(|e| e["reason"] == "credential-exfiltration")
        .collect();
    assert_eq!(refusals.len(), 4, "{events:#?}");
    assert!(refusals.iter().all(|e| e["decision"] == "deny"));
    world.sidecar.assert_never_logged(&world.audit, &[SECRET]);
}

#[test]
fn nothing_of_a_brokered_value_comes_back_from_an_origin_that_echoes_it_everywhere() {
    let world = World::start();
    let bearer = format!("Authorization: Bearer {PLACEHOLDER}");
    let echoed = world.fetch(
        "origin.test",
        "GET",
        "/ok/echo-everywhere",
        &[
            &bearer,
            "TE: trailers",
            "Range: bytes=7-9",
            "If-Range: \"x\"",
        ],
    );
    assert_eq!(echoed.status, 200, "{echoed:?}");
    assert!(
        header_value(&world.origin.seen()[0], "authorization").is_some_and(|a| a.contains(SECRET)),
        "the origin got the value"
    );
    // A range of an echo could carry a slice of the value too short to recognise: the request
    // reaches the origin whole-body only.
    assert_eq!(header_value(&world.origin.seen()[0], "range"), None);
    assert_eq!(header_value(&world.origin.seen()[0], "if-range"), None);
    let everything = format!("{}{}", echoed.head, echoed.raw);
    assert!(!everything.contains(SECRET), "{everything}");
    assert!(
        echoed.head.starts_with("HTTP/1.1 200 OK\r\n"),
        "the standard reason phrase: {everything}"
    );
    assert_eq!(
        header_value(&echoed.head, "x-echo"),
        Some(format!("Bearer {PLACEHOLDER}"))
    );
    assert_eq!(echoed.body, format!("body Bearer {PLACEHOLDER}\n"));
    // The trailer is not passed on over HTTP/1.1 (`Trailer` is hop-by-hop); were it, scrubbed.
    let trailer = echoed.raw.lines().find(|l| l.starts_with("x-trailer-echo"));
    assert!(
        trailer.is_none_or(|t| t.ends_with(PLACEHOLDER)),
        "{everything}"
    );

    // Compressed although egressd asked for identity: refused, not passed on.
    let gzipped = world.fetch("origin.test", "GET", "/ok/echo-gzip", &[&bearer]);
    assert_eq!(gzipped.status, 502, "{gzipped:?}");
    assert_eq!(
        reason(&gzipped.head).as_deref(),
        Some("credential-encoding")
    );
    assert!(gzipped.body.starts_with("egressd: 502 "), "{gzipped:?}");
    assert!(header_value(&gzipped.head, "content-encoding").is_none());
    // Without a brokered value in the request, the same answer passes untouched.
    let plain = world.fetch("origin.test", "GET", "/ok/echo-gzip", &[]);
    assert_eq!(plain.status, 200, "{plain:?}");
    assert_eq!(
        header_value(&plain.head, "content-encoding").as_deref(),
        Some("gzip")
    );

    let events = request_events(&world.audit, 6);
    let refused: Vec<_> = events
        .iter()
        .filter(|e| e["reason"] == "credential-encoding")
        .collect();
    assert_eq!(refused.len(), 1, "{events:#?}");
    assert_eq!(
        (
            refused[0]["decision"].as_str(),
            refused[0]["status"].as_u64()
        ),
        (Some("deny"), Some(502))
    );
    world.sidecar.assert_never_logged(&world.audit, &[SECRET]);
}

/// CONNECT `authority` through the world's egressd, then TLS with `sni` trusting egressd's CA,
/// and one GET inside.
fn refused_inside_tls(world: &World, authority: &str, sni: &str) -> Result<Fetched, String> {
    let config = client_config(&world.egressd_ca());
    let request = request("GET", "/", authority, &[]);
    fetch(world.sidecar.proxy(), authority, sni, config, &request)
}

#[test]
fn a_refused_connect_to_an_inspected_name_is_answered_inside_tls() {
    let world = World::start();
    // origin.test is inspected on its own port only: port 1 is refused by the policy.
    let refused = refused_inside_tls(&world, "origin.test:1", "origin.test").unwrap();
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(
        refused
            .head
            .starts_with("HTTP/1.1 403 Forbidden by egressd: port-not-allowed"),
        "{refused:?}"
    );
    assert_eq!(reason(&refused.head).as_deref(), Some("port-not-allowed"));
    assert!(
        refused
            .body
            .starts_with("egressd: 403 Forbidden: origin.test:1: ")
            && refused.body.lines().count() >= 2,
        "the reason and what to do: {refused:?}"
    );
    // The leaf is egressd's, for the name.
    let leaf = rustls::pki_types::CertificateDer::from(refused.peer.to_vec());
    assert_ne!(leaf, world.origin.leaf, "not the origin's certificate");
    // A name no inspect rule covers keeps the plain 403 on the CONNECT.
    let plain = refused_inside_tls(&world, "plain.test:1", "plain.test").unwrap_err();
    assert!(
        plain.starts_with("CONNECT refused: HTTP/1.1 403"),
        "{plain}"
    );
    // Another SNI than the CONNECT name: the connection ends, no certificate is shown.
    assert!(refused_inside_tls(&world, "origin.test:1", "other.test").is_err());

    let events = request_events(&world.audit, 3);
    let origin: Vec<_> = events
        .iter()
        .filter(|e| e["destination"] == "origin.test:1")
        .collect();
    assert_eq!(origin.len(), 2, "{events:#?}");
    for event in origin {
        assert_eq!(
            (
                event["decision"].as_str(),
                event["reason"].as_str(),
                event["status"].as_u64()
            ),
            (Some("deny"), Some("port-not-allowed"), Some(403)),
            "{event}"
        );
    }
}

/// The reason egressd gives a refused CONNECT to origin.test on a port its rule does not name
/// (2: not 1, which fetch refuses to ask for at all, as a "bad port").
const PORT_REFUSAL: &str = "Forbidden by egressd: port-not-allowed port 2";

#[test]
#[ignore = "needs curl: run by .ci/run"]
fn curl_shows_a_refusal_answered_inside_tls() {
    let world = World::start();
    let env = ProxyEnv::from_ready(&world.sidecar.ready);
    let run = curl_env(&env, "https://origin.test:2/");
    // `-i` shows the CONNECT's 200, then the answer inside TLS.
    let inside = format!("\r\n\r\nHTTP/1.1 403 {PORT_REFUSAL}\r\n");
    assert!(run.stdout.contains(&inside), "{run:?}");
    assert!(
        run.stdout
            .contains("egressd: 403 Forbidden: origin.test:2: "),
        "{run:?}"
    );
}

#[test]
#[ignore = "needs git: run by .ci/run"]
fn git_shows_a_refusal_answered_inside_tls() {
    let world = World::start();
    let env = ProxyEnv::from_ready(&world.sidecar.ready);
    let run = git_ls_remote(&env, "https://origin.test:2/repo.git");
    assert_ne!(run.code, 0, "{run:?}");
    // git prints a text/plain error body as `remote:` lines.
    assert!(
        run.stderr
            .contains("remote: egressd: 403 Forbidden: origin.test:2: "),
        "{run:?}"
    );
}

#[test]
#[ignore = "needs wget: run by .ci/run"]
fn wget_with_the_documented_wgetrc_line_shows_a_refusal_answered_inside_tls() {
    let world = World::start();
    let env = ProxyEnv::from_ready(&world.sidecar.ready);
    let bundle = world.sidecar.ready["inspect_ca_bundle"].as_str().unwrap();
    let rc = write(
        world.dir.path(),
        "wgetrc",
        &format!("ca_certificate = {bundle}\n"),
    );
    let run = wget_with_rc(&env, "https://origin.test:2/", &rc);
    assert!(
        run.stderr.contains(&format!("ERROR 403: {PORT_REFUSAL}")),
        "{run:?}"
    );
    // Without the line wget trusts none of the env block's variables: a certificate error.
    let empty = write(world.dir.path(), "empty-wgetrc", "");
    let untrusted = wget_with_rc(&env, "https://origin.test:2/", &empty);
    assert!(!untrusted.stderr.contains("ERROR 403"), "{untrusted:?}");
    assert!(untrusted.stderr.contains("certificate"), "{untrusted:?}");
}

#[test]
#[ignore = "needs python3: run by .ci/run"]
fn python_urllib_shows_a_refusal_answered_inside_tls() {
    let world = World::start();
    let env = ProxyEnv::from_ready(&world.sidecar.ready);
    let run = python_urlopen(&env, "https://origin.test:2/");
    let parts: Vec<&str> = run.stdout.splitn(4, '|').collect();
    assert_eq!(
        parts[..3],
        ["403", PORT_REFUSAL, "port-not-allowed"],
        "{run:?}"
    );
    assert!(
        parts[3].starts_with("egressd: 403 Forbidden: origin.test:2: "),
        "{run:?}"
    );
}

#[test]
#[ignore = "needs cargo: run by .ci/run"]
fn cargo_shows_a_refusal_answered_inside_tls() {
    let world = World::start();
    let env = ProxyEnv::from_ready(&world.sidecar.ready);
    let home = tempfile::tempdir().unwrap();
    let run = cargo_search(&env, "https://origin.test:2/index/", home.path());
    assert_ne!(run.code, 0, "{run:?}");
    // cargo prints the status and the body of a failed index request.
    assert!(run.stderr.contains("got 403"), "{run:?}");
    assert!(
        run.stderr
            .contains("egressd: 403 Forbidden: origin.test:2: "),
        "{run:?}"
    );
}

#[test]
#[ignore = "needs node and the undici npm package: run by .ci/run"]
fn node_fetch_shows_a_refusal_answered_inside_tls() {
    let world = World::start();
    let env = ProxyEnv::from_ready(&world.sidecar.ready);
    let run = node_fetch(&env, "https://origin.test:2/");
    assert_eq!(run.code, 0, "{run:?}");
    let parts: Vec<&str> = run.stdout.splitn(4, '|').collect();
    assert_eq!(
        parts[..3],
        ["403", PORT_REFUSAL, "port-not-allowed"],
        "{run:?}"
    );
    assert!(
        parts[3].starts_with("egressd: 403 Forbidden: origin.test:2: "),
        "{run:?}"
    );
}

#[test]
fn refusals_inside_tls_for_every_name_is_opt_in() {
    let world = World::start_editing(&[], |text| {
        text.replacen("[defaults]", "[defaults]\nrefusals_inside_tls = true", 1)
    });
    for (authority, name) in [
        ("plain.test:1", "plain.test"),
        ("elsewhere.test:443", "elsewhere.test"),
    ] {
        let refused = refused_inside_tls(&world, authority, name).unwrap();
        assert_eq!(refused.status, 403, "{refused:?}");
        assert!(refused.body.contains(authority), "{refused:?}");
        assert!(reason(&refused.head).is_some(), "{refused:?}");
    }
}

#[test]
fn a_reload_that_refuses_the_origins_address_refuses_the_next_request_of_an_open_session() {
    let world = World::start();
    let authority = format!("origin.test:{}", world.origin.addr.port());
    let config = client_config(&world.egressd_ca());
    let mut session =
        Session::open(world.sidecar.proxy(), &authority, "origin.test", config).unwrap();
    let keep_alive = format!("GET /ok/1 HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    let first = session.send(&keep_alive).unwrap();
    assert_eq!(first.status, 200, "{}", first.head);
    // The name stays allowed; the carve-out that opened its loopback address goes.
    let path = world.dir.path().join("policy.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let (before, after) = text.split_once("[[danger_carve_out]]").unwrap();
    let (_, rest) = after.split_once("\n\n").unwrap();
    std::fs::write(&path, format!("{before}{rest}")).unwrap();
    world.sidecar.signal(Signal::SIGHUP);
    world.sidecar.stderr.wait_for("policy reloaded", 1);
    let second = session.send(&keep_alive).unwrap();
    assert_eq!(second.status, 403, "{}", second.head);
    assert_eq!(
        reason(&second.head).as_deref(),
        Some("special-range"),
        "{}",
        second.head
    );
    assert_eq!(
        world.origin.seen().len(),
        1,
        "the origin saw the second request"
    );
}

#[test]
fn an_inspected_upload_slower_than_the_response_timeout_is_answered() {
    // The response timeout runs from the end of the upload, as on the plain path: an upload
    // that takes three times as long, bytes moving all along, is not cut off.
    let world = World::start_with(&["--response-timeout", "1s"]);
    let authority = format!("origin.test:{}", world.origin.addr.port());
    let config = client_config(&world.egressd_ca());
    let mut session =
        Session::open(world.sidecar.proxy(), &authority, "origin.test", config).unwrap();
    let head = format!(
        "POST /ok/upload HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 12\r\nConnection: close\r\n\r\n"
    );
    let pieces = [head.as_str(), "abc", "def", "ghi", "jkl"];
    let fetched = session
        .send_in_pieces(&pieces, std::time::Duration::from_millis(750))
        .unwrap();
    assert_eq!(fetched.status, 200, "{}", fetched.head);
    let events = request_events(&world.audit, 1);
    let event = events.iter().find(|e| e["method"] == "POST").unwrap();
    assert_eq!(event["bytes_up"], 12, "{event}");
}

#[test]
fn the_sni_must_be_the_connect_host() {
    let world = World::start();
    let port = world.origin.addr.port();
    let authority = format!("origin.test:{port}");
    let config = client_config(&world.egressd_ca());
    let request = request("GET", "/ok/1", &authority, &[]);
    // Domain fronting: an allowed CONNECT, another name inside.
    let fronted = fetch(
        world.sidecar.proxy(),
        &authority,
        "other.test",
        config.clone(),
        &request,
    );
    assert!(fronted.is_err(), "{fronted:?}");
    // No SNI at all (an IP address as the TLS name sends none).
    let bare = fetch(
        world.sidecar.proxy(),
        &authority,
        "127.0.0.1",
        config,
        &request,
    );
    assert!(bare.is_err(), "{bare:?}");
    assert!(world.origin.seen().is_empty());
    let events = request_events(&world.audit, 2);
    // Each session's event is written when it ends, and the two may end in either order.
    let mut reasons: Vec<_> = events
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["sni-mismatch", "sni-missing"], "{events:#?}");
    assert!(
        events
            .iter()
            .all(|e| e["decision"] == "deny" && e["method"] == "CONNECT")
    );
}

#[test]
fn an_origin_certificate_egressd_cannot_verify_is_502_upstream_tls() {
    let world = World::start();
    let refused = world.fetch("bad.test", "GET", "/", &[]);
    assert_eq!(refused.status, 502, "{refused:?}");
    assert_eq!(reason(&refused.head).as_deref(), Some("upstream-tls"));
    assert!(refused.body.contains("origin TLS failed"), "{refused:?}");
    let events = request_events(&world.audit, 2);
    let inner = events.iter().find(|e| e["method"] == "GET").unwrap();
    assert_eq!(
        (&inner["decision"], &inner["reason"], &inner["status"]),
        (&"error".into(), &"upstream-tls".into(), &502.into())
    );
}

#[test]
fn a_host_not_marked_inspect_stays_an_opaque_tunnel() {
    let world = World::start();
    let authority = format!("plain.test:{}", world.plain.addr.port());
    // Trusting only the origin's own CA: the handshake succeeds, so nothing came between.
    let config = client_config(std::slice::from_ref(&world.origin_ca.der));
    let request = request("GET", "/anything", &authority, &["X-Egressd-Sandbox: mine"]);
    let got = fetch(
        world.sidecar.proxy(),
        &authority,
        "plain.test",
        config,
        &request,
    )
    .unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(
        got.peer, world.plain.leaf,
        "the client sees the origin's own certificate"
    );
    let head = &world.plain.seen()[0];
    assert_eq!(
        header_values(head, "x-egressd-sandbox"),
        ["mine"],
        "untouched"
    );
    // And egressd's CA would not do for it.
    let with_egressd_ca = client_config(&world.egressd_ca());
    let refused = fetch(
        world.sidecar.proxy(),
        &authority,
        "plain.test",
        with_egressd_ca,
        &request,
    );
    assert!(refused.is_err(), "{refused:?}");
}

#[test]
fn the_ca_files_are_announced_in_the_env_block_and_removed_at_exit() {
    let mut world = World::start();
    let ready = &world.sidecar.ready;
    let cert = PathBuf::from(ready["inspect_ca"].as_str().unwrap());
    let bundle = PathBuf::from(ready["inspect_ca_bundle"].as_str().unwrap());
    let ready_file = world.dir.path().join("egressd.json");
    assert_eq!(
        cert,
        PathBuf::from(format!("{}.ca.pem", ready_file.display()))
    );
    let env = &ready["env"];
    for var in [
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "GIT_SSL_CAINFO",
        "PIP_CERT",
        "CARGO_HTTP_CAINFO",
    ] {
        assert_eq!(env[var], bundle.display().to_string(), "{var}");
    }
    assert_eq!(env["NODE_EXTRA_CA_CERTS"], cert.display().to_string());
    let ca = std::fs::read_to_string(&cert).unwrap();
    let bundled = std::fs::read_to_string(&bundle).unwrap();
    assert!(bundled.ends_with(&ca), "the bundle ends with the CA");
    assert!(!ca.contains("PRIVATE KEY") && !bundled.contains("PRIVATE KEY"));
    world.sidecar.signal(Signal::SIGTERM);
    assert!(world.sidecar.wait().success());
    assert!(!cert.exists() && !bundle.exists(), "removed at exit");
}

#[test]
fn without_an_inspected_rule_there_is_no_ca() {
    let origin = Origin::start(Behaviour::Answer);
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "p.toml",
        &loopback_policy(&[origin.addr.port()], ""),
    );
    let sidecar = Sidecar::start(&["--policy", policy.to_str().unwrap()]);
    assert!(sidecar.ready["inspect_ca"].is_null());
    assert!(sidecar.ready["env"]["SSL_CERT_FILE"].is_null());
}

#[test]
fn a_launcher_ca_is_used_and_its_files_are_left_alone() {
    let launcher_ca = TestCa::new("launcher CA");
    let dir = tempfile::tempdir().unwrap();
    let cert = launcher_ca.write(dir.path(), "launcher-ca.pem");
    let key = write(dir.path(), "launcher-ca.key", &launcher_ca.key_pem);
    let mut world = World::start_with(&[
        "--inspect-ca-cert",
        cert.to_str().unwrap(),
        "--inspect-ca-key",
        key.to_str().unwrap(),
    ]);
    let port = world.origin.addr.port();
    let authority = format!("origin.test:{port}");
    let config = client_config(std::slice::from_ref(&launcher_ca.der));
    let request = request("GET", "/ok/1", &authority, &[]);
    let got = fetch(
        world.sidecar.proxy(),
        &authority,
        "origin.test",
        config,
        &request,
    )
    .unwrap();
    assert_eq!(got.status, 200);
    world.sidecar.signal(Signal::SIGTERM);
    assert!(world.sidecar.wait().success());
    assert!(cert.exists() && key.exists());
}

#[test]
fn a_missing_credential_value_exits_2_and_a_reload_without_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent-token");
    let text = inspect_policy([1001, 1002, 1003, 1004], &missing.display().to_string());
    let policy = write(dir.path(), "policy.toml", &text);
    let Err(run) = Sidecar::try_start(&["--policy", policy.to_str().unwrap()]) else {
        panic!("egressd started without the credential's value");
    };
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("credential[0] line"), "{run:?}");

    // Started with a value, reloaded into a policy whose value cannot be read: refused.
    let token = write(dir.path(), "token", SECRET);
    let good = inspect_policy([1001, 1002, 1003, 1004], &token.display().to_string());
    std::fs::write(&policy, &good).unwrap();
    let audit = dir.path().join("audit.jsonl");
    let sidecar = Sidecar::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--audit-log",
        audit.to_str().unwrap(),
    ]);
    std::fs::write(&policy, &text).unwrap();
    sidecar.signal(Signal::SIGHUP);
    sidecar.stderr.wait_for("policy reload failed", 1);
    // A policy without inspection in a sidecar without a CA cannot gain it by reload.
    let plain = Sidecar::start(&[
        "--policy",
        write(dir.path(), "plain.toml", &loopback_policy(&[1001], ""))
            .to_str()
            .unwrap(),
    ]);
    let plain_policy = dir.path().join("plain.toml");
    std::fs::write(&plain_policy, &good).unwrap();
    plain.signal(Signal::SIGHUP);
    plain.stderr.wait_for("egressd started without a CA", 1);
    assert!(!plain.stderr.text().contains(SECRET) && !sidecar.stderr.text().contains(SECRET));
}

/// The behaviours above through a real client that knows egressd only from the `env` block.
fn with_real_client(client: TlsClient) {
    let world = World::start();
    let env = &world.sidecar.ready["env"];
    let get = |method: &str, host: &str, path: &str, headers: &[&str]| -> Outcome {
        client.fetch(env, method, &world.url(host, path), headers)
    };
    let ok = get("GET", "origin.test", "/ok/1", &[]);
    assert_eq!(ok.status, 200, "{client:?}: {ok:?}");
    assert!(ok.body.contains("GET /ok/1 HTTP/1.1"), "{ok:?}");
    assert_eq!(
        header_values(&world.origin.seen()[0], "x-egressd-sandbox"),
        ["sb-tls"]
    );
    for (method, path, code) in [
        ("DELETE", "/ok/1", "method-not-allowed"),
        ("GET", "/admin", "path-not-allowed"),
    ] {
        let refused = get(method, "origin.test", path, &[]);
        assert_eq!(
            (refused.status, refused.reason.as_str()),
            (403, code),
            "{client:?}: {refused:?}"
        );
    }
    let bearer = format!("Authorization: Bearer {PLACEHOLDER}");
    let swapped = get("GET", "origin.test", "/ok/echo", &[&bearer]);
    assert_eq!(swapped.status, 200, "{client:?}: {swapped:?}");
    assert!(
        swapped
            .body
            .contains(&format!("authorization=Bearer {PLACEHOLDER}")),
        "{swapped:?}"
    );
    let last = world.origin.seen().pop().unwrap();
    assert_eq!(
        header_value(&last, "authorization"),
        Some(format!("Bearer {SECRET}"))
    );
    let exfiltrated = get("GET", "other.test", "/", &[&bearer]);
    assert_eq!(
        (exfiltrated.status, exfiltrated.reason.as_str()),
        (403, "credential-exfiltration"),
        "{client:?}: {exfiltrated:?}"
    );
    let bad = get("GET", "bad.test", "/", &[]);
    assert_eq!(
        (bad.status, bad.reason.as_str()),
        (502, "upstream-tls"),
        "{client:?}: {bad:?}"
    );
    // Not inspected: the origin's own certificate reaches the client, which trusts only what the
    // env block names (the system's roots and egressd's CA), so it refuses it.
    let opaque = get("GET", "plain.test", "/", &[]);
    assert_eq!(opaque.status, 0, "{client:?}: {opaque:?}");
    assert!(!opaque.error.is_empty(), "{client:?}: {opaque:?}");
    assert!(world.plain.seen().is_empty());
    world.sidecar.assert_never_logged(&world.audit, &[SECRET]);
}

#[test]
#[ignore = "needs curl: run by .ci/run"]
fn real_client_curl() {
    with_real_client(TlsClient::Curl);
}

#[test]
#[ignore = "needs python3 with requests: run by .ci/run"]
fn real_client_python_requests() {
    with_real_client(TlsClient::Requests);
}

#[test]
#[ignore = "needs go: run by .ci/run"]
fn real_client_go() {
    with_real_client(TlsClient::Go);
}

#[test]
#[ignore = "needs node and the undici npm package: run by .ci/run"]
fn real_client_node_fetch() {
    with_real_client(TlsClient::Node);
}

/// What only curl can be told to do: another name inside an allowed tunnel, and trusting the
/// origin's CA itself to show that an opaque tunnel carries the origin's certificate.
#[test]
#[ignore = "needs curl: run by .ci/run"]
fn curl_domain_fronting_is_refused_and_opaque_tunnels_show_the_origin_certificate() {
    let world = World::start();
    let env = world.sidecar.ready["env"].as_object().unwrap().clone();
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-v", "--max-time", "20"])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .envs(
                env.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())),
            )
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // curl CONNECTs to other.test (allowed, inspected) but says origin.test in its SNI.
    let (port_origin, port_other) = (world.origin.addr.port(), world.other.addr.port());
    let connect_to = format!("origin.test:{port_origin}:other.test:{port_other}");
    let (ok, log) = curl(&[
        "--connect-to",
        &connect_to,
        &world.url("origin.test", "/ok/1"),
    ]);
    assert!(!ok, "{log}");
    assert!(
        log.contains(&format!("CONNECT other.test:{port_other}")),
        "{log}"
    );
    assert!(world.origin.seen().is_empty() && world.other.seen().is_empty());
    let events = request_events(&world.audit, 1);
    assert_eq!(events[0]["reason"], "sni-mismatch", "{events:?}");

    let origin_ca = world
        .origin_ca
        .write(world.dir.path(), "only-origin-ca.pem");
    let (ok, log) = curl(&[
        "--cacert",
        origin_ca.to_str().unwrap(),
        &world.url("plain.test", "/"),
    ]);
    assert!(ok, "{log}");
    assert!(log.contains("issuer: CN=test origin CA"), "{log}");
}

#[test]
fn a_credential_value_comes_from_egressd_environment() {
    let dir = tempfile::tempdir().unwrap();
    let text = inspect_policy([1001, 1002, 1003, 1004], "unused").replace(
        "value_file = \"unused\"",
        "value_env = \"EGRESSD_TEST_ORIGIN_TOKEN\"",
    );
    let policy = write(dir.path(), "policy.toml", &text);
    let start = |value: Option<&str>| {
        let mut command = egressd();
        command
            .args([
                "run",
                "--no-proxy-credential",
                "--exit-on-stdin-eof",
                "--policy",
            ])
            .arg(&policy)
            .env_remove("EGRESSD_TEST_ORIGIN_TOKEN")
            .stdin(std::process::Stdio::null());
        if let Some(value) = value {
            command.env("EGRESSD_TEST_ORIGIN_TOKEN", value);
        }
        command.output().unwrap()
    };
    // Set: ready (then stdin's end of file stops it).
    let ok = start(Some(SECRET));
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    assert!(stdout.contains("\"inspect_ca\""), "{stdout}");
    assert!(!stdout.contains(SECRET) && !String::from_utf8_lossy(&ok.stderr).contains(SECRET));
    // Unset: exit 2, naming the credential and the variable.
    let missing = start(None);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("value_env EGRESSD_TEST_ORIGIN_TOKEN"),
        "{stderr}"
    );
    assert!(missing.stdout.is_empty(), "no readiness line");
}

/// A response body that stalls inside an inspected session is cut after
/// `--response-idle-timeout`: the client's read ends short, and the request's event says so.
#[test]
fn a_body_that_stalls_inside_an_inspected_session_is_cut_and_audited() {
    let world = World::start_with(&["--response-idle-timeout", "1s"]);
    let authority = format!("other.test:{}", world.port("other.test"));
    let config = client_config(&world.egressd_ca());
    let request = request("GET", "/stall", &authority, &[]);
    let cut = fetch(
        world.sidecar.proxy(),
        &authority,
        "other.test",
        config,
        &request,
    );
    assert!(cut.is_err(), "the body must end short: {cut:?}");
    let event = request_events(&world.audit, 2)
        .into_iter()
        .find(|e| {
            e["destination"]
                .as_str()
                .is_some_and(|d| d.ends_with("/stall"))
        })
        .expect("the inspected request's event");
    assert_eq!(event["status"], 200, "{event}");
    assert_eq!(event["response_end"], "cut-by-stall", "{event}");
    assert_eq!(event["bytes_down"], 100, "{event}");
}
