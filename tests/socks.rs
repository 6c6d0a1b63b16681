//! The SOCKS5 listener (`--socks-listen`, `--socks-unix`) through `egressd run`: the credential as
//! RFC 1929 login, `CONNECT` under the same policy as the HTTP proxy's (the adversarial cases of
//! tests/proxy.rs and tests/netns.rs, from the same tables), refused commands, audit events, the
//! connection limit and drain; then real clients configured from the readiness line (curl,
//! Python's PySocks, OpenSSH and git through a `ProxyCommand`), in tests ignored for needing them.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;

use policy::Target;

use crate::util::*;

/// An origin, and a sidecar with the SOCKS listener, the credential on (as launchers run it) and
/// an audit log, under a policy allowing the origin (and `extra`).
fn origin_and_sidecar(
    extra_policy: &str,
    dns: Option<&FakeDns>,
    extra_args: &[&str],
) -> (Origin, Sidecar, tempfile::TempDir) {
    let origin = Origin::start(Behaviour::Answer);
    let dir = tempfile::tempdir().unwrap();
    let mut text = loopback_policy(&[origin.addr.port()], extra_policy);
    if let Some(dns) = dns {
        text = text.replace("127.0.0.1:9", &dns.addr.to_string());
    }
    let policy = write(dir.path(), "policy.toml", &text);
    let audit = dir.path().join("audit.jsonl");
    let mut args = vec![
        "--policy",
        policy.to_str().unwrap(),
        "--sandbox-id",
        "sb-socks",
        "--socks-listen",
        "127.0.0.1:0",
        "--audit-log",
        audit.to_str().unwrap(),
        "--proxy-credential-default",
    ];
    args.extend_from_slice(extra_args);
    let sidecar = Sidecar::start(&args);
    (origin, sidecar, dir)
}

fn audit_log(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("audit.jsonl")
}

/// The SOCKS event for `destination`, once `count` have been written.
fn event_for(path: &Path, count: usize, destination: &str) -> serde_json::Value {
    let events = socks_events(path, count);
    events
        .iter()
        .find(|e| e["destination"] == destination)
        .unwrap_or_else(|| panic!("no event for {destination}: {events:#?}"))
        .clone()
}

/// One request to the test origin inside a tunnel (which it keeps open): the body it answered.
fn origin_exchange(tunnel: &mut (impl Read + Write), path: &str) -> String {
    write!(tunnel, "GET {path} HTTP/1.1\r\nHost: origin.test\r\n\r\n").unwrap();
    let head = read_head(tunnel).expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut body = vec![0u8; ORIGIN_BODY.len()];
    tunnel.read_exact(&mut body).unwrap();
    String::from_utf8(body).unwrap()
}

#[test]
fn the_readiness_line_announces_the_socks_listener_beside_the_http_proxy() {
    let (_origin, sidecar, _dir) = origin_and_sidecar("", None, &[]);
    let ready = &sidecar.ready;
    let secret = secret_of(ready);
    let socks = ready["socks"].as_str().unwrap();
    assert_eq!(
        ready["socks_url"],
        format!("socks5h://egressd:{secret}@{socks}")
    );
    assert_eq!(ready["env"]["EGRESSD_SOCKS_URL"], ready["socks_url"]);
    // HTTP clients keep reading the HTTP proxy from ALL_PROXY.
    assert_eq!(ready["env"]["ALL_PROXY"], ready["proxy_url"]);
    assert_eq!(ready["socks_unix"], serde_json::Value::Null);

    let off = Sidecar::start(&[]);
    assert_eq!(off.ready["socks"], serde_json::Value::Null);
    assert!(off.ready["env"].get("EGRESSD_SOCKS_URL").is_none());
}

#[test]
fn socks_connect_is_decided_tunneled_and_audited_like_connect() {
    let (origin, sidecar, dir) = origin_and_sidecar("", None, &[]);
    let client = SocksClient::from_ready(&sidecar.ready);
    let port = origin.addr.port();
    let ok = client
        .get(&format!("http://origin.test:{port}/tunneled"))
        .unwrap();
    assert_eq!((ok.status, ok.body.as_str()), (200, ORIGIN_BODY), "{ok:?}");
    assert!(origin.seen()[0].starts_with("GET /tunneled HTTP/1.1"));
    assert_eq!(
        client.connect("example.org", 443).unwrap_err(),
        Refused::Reply(2),
        "default-deny: connection not allowed by ruleset"
    );
    let secret = client.login.clone().unwrap().1;
    let wrong = client.with_login(Some(("egressd", &altered(&secret))));
    assert_eq!(
        wrong.connect("origin.test", port).unwrap_err(),
        Refused::Login(1)
    );
    assert_eq!(
        client
            .with_login(None)
            .connect("origin.test", port)
            .unwrap_err(),
        Refused::NoMethod,
        "without a login the client is told no method is acceptable"
    );
    assert_eq!(
        client.request(BIND, "origin.test", port).unwrap_err(),
        Refused::Reply(7)
    );
    assert_eq!(
        client.request(UDP_ASSOCIATE, "0.0.0.0", 0).unwrap_err(),
        Refused::Reply(7)
    );
    assert_eq!(origin.seen().len(), 1, "only the allowed tunnel reached it");

    let audit = audit_log(&dir);
    let events = socks_events(&audit, 6);
    let allowed = event_for(&audit, 6, &format!("origin.test:{port}"));
    assert_eq!(allowed["command"], "CONNECT");
    assert_eq!(allowed["decision"], "allow");
    assert_eq!(allowed["reason"], "allow-rule");
    assert_eq!(allowed["rule"], "allow[0] line 6");
    assert_eq!(allowed["resolved"], format!("127.0.0.1:{port}"));
    assert_eq!(allowed["reply"], 0);
    assert_eq!(allowed["sandbox_id"], "sb-socks");
    assert!(allowed["bytes_up"].as_u64().unwrap() > 0);
    assert!(allowed["bytes_down"].as_u64().unwrap() > ORIGIN_BODY.len() as u64);
    let denied = event_for(&audit, 6, "example.org:443");
    assert_eq!(
        (&denied["decision"], &denied["reason"], &denied["reply"]),
        (&"deny".into(), &"default-deny".into(), &2.into())
    );
    let by_reason = |reason: &str| {
        events
            .iter()
            .filter(|e| e["reason"] == reason)
            .cloned()
            .collect::<Vec<_>>()
    };
    for reason in ["proxy-auth-invalid", "proxy-auth-required"] {
        let refused = by_reason(reason);
        assert_eq!(refused.len(), 1, "{reason}: {events:#?}");
        assert_eq!(refused[0]["decision"], "deny");
        assert_eq!(refused[0]["destination"], "", "decided before the request");
        assert!(refused[0].get("reply").is_none(), "no request, no reply");
    }
    let commands = by_reason("socks-command-unsupported");
    let names: Vec<&str> = commands
        .iter()
        .map(|e| e["command"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{commands:#?}");
    assert!(names.contains(&"BIND") && names.contains(&"UDP ASSOCIATE"));
    assert!(
        commands
            .iter()
            .all(|e| e["reply"] == 7 && e["decision"] == "deny")
    );
    assert!(
        !std::fs::read_to_string(&audit).unwrap().contains(&secret),
        "the secret reached the audit log"
    );
    assert!(!sidecar.stderr.text().contains(&secret));
}

#[test]
fn the_connect_adversarial_cases_hold_through_socks() {
    // An allowed name whose DNS answer is loopback beyond the carve-out: refused after
    // resolution, never dialed (rebinding).
    let dns = FakeDns::start(&[("rebind.test", Ipv4Addr::new(127, 0, 0, 2))], false);
    let probe = Origin::start(Behaviour::Answer);
    let (origin, sidecar, dir) = origin_and_sidecar(
        "[[allow]]\nhost = \"rebind.test\"\nports = \"any\"\n",
        Some(&dns),
        &[],
    );
    let client = SocksClient::from_ready(&sidecar.ready);
    let port = origin.addr.port();
    let mut expected: Vec<(String, &str)> = Vec::new();
    // Events name the destination as egressd judged it (the policy crate's spelling).
    let mut refused = |host: &str, port: u16, reason: &'static str| {
        assert_eq!(
            client.connect(host, port).unwrap_err(),
            Refused::Reply(2),
            "{host}:{port}"
        );
        expected.push((Target::new(host, port).to_string(), reason));
    };
    for host in AMBIGUOUS_IPV4 {
        refused(host, port, "malformed-target");
    }
    for (host, port, reason) in refused_on_loopback(port) {
        refused(&host, port, reason);
    }
    refused("rebind.test", probe.addr.port(), "special-range");
    // Self loops: the sidecar's own listeners are loopback beyond the carve-out.
    for own in [sidecar.proxy(), client.addr] {
        refused(&own.ip().to_string(), own.port(), "special-range");
    }
    refused("origin.test", 0, "malformed-target");
    let ok = client.get(&format!("http://127.0.0.1:{port}/")).unwrap();
    assert_eq!(ok.status, 200, "the control reaches the origin: {ok:?}");
    assert_eq!(
        origin.seen().len(),
        1,
        "only the control reached the origin"
    );
    assert_eq!(probe.connections.get(), 0, "the rebound name was dialed");
    assert!(
        dns.seen().iter().any(|q| q.starts_with("rebind.test.")),
        "the allowed name was resolved: {:?}",
        dns.seen()
    );
    let audit = audit_log(&dir);
    let count = expected.len() + 1;
    for (destination, reason) in expected {
        let event = event_for(&audit, count, &destination);
        assert_eq!(
            (event["decision"].as_str(), event["reason"].as_str()),
            (Some("deny"), Some(reason)),
            "{destination}: {event}"
        );
        assert_eq!(event["reply"], 2, "{event}");
    }
}

#[test]
fn a_socks_tunnel_holds_its_place_under_the_limit_and_lives_through_the_drain() {
    let (origin, mut sidecar, dir) = origin_and_sidecar("", None, &["--max-connections", "1"]);
    let client = SocksClient::from_ready(&sidecar.ready);
    let port = origin.addr.port();
    let mut tunnel = client.connect("origin.test", port).unwrap();
    // The one place is the tunnel's: the next connection is turned away, with the one answer
    // a SOCKS5 client reads first.
    assert_eq!(
        client.connect("origin.test", port).unwrap_err(),
        Refused::NoMethod
    );
    let audit = audit_log(&dir);
    let overloaded = socks_events(&audit, 1);
    assert_eq!(overloaded[0]["reason"], "overloaded", "{overloaded:?}");
    assert_eq!(overloaded[0]["decision"], "error");
    // SIGTERM: no new connection, but the open tunnel still carries its request.
    sidecar.signal(Signal::SIGTERM);
    sidecar.stderr.wait_for("shutting down; draining", 1);
    assert!(
        TcpStream::connect(client.addr).is_err(),
        "the SOCKS listener still accepts"
    );
    assert_eq!(origin_exchange(&mut tunnel, "/late"), ORIGIN_BODY);
    drop(tunnel);
    assert!(sidecar.wait().success());
    let events = socks_events(&audit, 2);
    let tunnel = events.iter().find(|e| e["decision"] == "allow").unwrap();
    assert!(tunnel["bytes_down"].as_u64().unwrap() > 0, "{tunnel}");
}

#[test]
fn report_mode_lets_a_refused_socks_request_through_and_says_would_deny() {
    let other = Origin::start(Behaviour::Answer);
    let (origin, sidecar, dir) = origin_and_sidecar(
        &format!(
            "[[danger_carve_out]]\ncidr = \"127.0.0.1/32\"\nports = [{}]\n",
            other.addr.port()
        ),
        None,
        &["--mode", "report"],
    );
    let client = SocksClient::from_ready(&sidecar.ready);
    let url = format!("http://origin.test:{}/", other.addr.port());
    let r = client.get(&url).unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(other.seen().len(), 1);
    // Special ranges stay refused in report mode.
    assert_eq!(
        client.connect("127.0.0.2", origin.addr.port()).unwrap_err(),
        Refused::Reply(2)
    );
    let event = event_for(
        &audit_log(&dir),
        2,
        &format!("origin.test:{}", other.addr.port()),
    );
    assert_eq!(event["decision"], "would-deny", "{event}");
    assert_eq!(event["reason"], "port-not-allowed");
    assert_eq!(event["reply"], 0);
}

#[cfg(unix)]
#[test]
fn the_socks_unix_socket_serves_the_same_listener() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("socks.sock");
    let (origin, sidecar, _policy_dir) =
        origin_and_sidecar("", None, &["--socks-unix", socket.to_str().unwrap()]);
    assert_eq!(sidecar.ready["socks_unix"], socket.to_str().unwrap());
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let client = SocksClient::from_ready(&sidecar.ready);
    let mut stream = UnixStream::connect(&socket).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let port = origin.addr.port();
    client
        .handshake(&mut stream, CONNECT, "origin.test", port)
        .unwrap();
    assert_eq!(origin_exchange(&mut stream, "/"), ORIGIN_BODY);
    let mut refused = UnixStream::connect(&socket).unwrap();
    assert_eq!(
        client
            .with_login(None)
            .handshake(&mut refused, CONNECT, "origin.test", port)
            .unwrap_err(),
        Refused::NoMethod,
        "the credential is required on the Unix socket too"
    );
}

#[test]
fn a_non_loopback_socks_address_needs_the_danger_flag() {
    let r = run(&["run", "--socks-listen", "0.0.0.0:0"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--socks-listen"), "{r:?}");
    assert!(r.stdout.is_empty());
}
