//! The forward proxy through `egressd run`, driven by the Rust test client, ureq and raw sockets
//! against loopback origins the tests start; each scenario again with curl (and one with Python),
//! in tests ignored for needing them.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};

use crate::util::*;

/// Starts an origin and a sidecar whose policy allows exactly that origin.
fn origin_and_sidecar(
    extra_policy: &str,
    extra_args: &[&str],
) -> (Origin, Sidecar, tempfile::TempDir) {
    let origin = Origin::start(Behaviour::Answer);
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "policy.toml",
        &loopback_policy(&[origin.addr.port()], extra_policy),
    );
    let mut args = vec![
        "--policy",
        policy.to_str().unwrap(),
        "--sandbox-id",
        "sb-test",
    ];
    args.extend_from_slice(extra_args);
    let sidecar = Sidecar::start(&args);
    (origin, sidecar, dir)
}

#[test]
fn absolute_form_allowed_and_denied() {
    absolute_form(Client::Rust);
}

#[test]
#[ignore = "needs curl: run by .ci/run"]
fn absolute_form_allowed_and_denied_with_curl() {
    absolute_form(Client::Curl);
}

fn absolute_form(client: Client) {
    let (origin, sidecar, _dir) = origin_and_sidecar("", &[]);
    let url = format!("http://origin.test:{}/path?q=1", origin.addr.port());
    let ok = client.get(sidecar.proxy(), &url);
    assert_eq!((ok.status, ok.body.as_str()), (200, ORIGIN_BODY), "{ok:?}");
    let head = &origin.seen()[0];
    assert!(
        head.starts_with("GET /path?q=1 HTTP/1.1\r\n"),
        "origin-form to the origin: {head}"
    );
    assert_eq!(
        header_value(head, "host").as_deref(),
        Some(format!("origin.test:{}", origin.addr.port()).as_str())
    );

    let denied = client.get(sidecar.proxy(), "http://example.org/");
    assert_eq!(denied.status, 403, "{denied:?}");
    assert!(
        denied
            .headers
            .to_ascii_lowercase()
            .contains("x-egressd-reason: default-deny"),
        "{denied:?}"
    );
    assert!(denied.body.contains("no rule names it"), "{denied:?}");
}

#[test]
fn connect_allowed_and_denied() {
    connect(Client::Rust);
}

#[test]
#[ignore = "needs curl: run by .ci/run"]
fn connect_allowed_and_denied_with_curl() {
    connect(Client::Curl);
}

fn connect(client: Client) {
    let (origin, sidecar, _dir) = origin_and_sidecar("", &[]);
    let url = format!("http://origin.test:{}/tunneled", origin.addr.port());
    let ok = client.tunnel_get(sidecar.proxy(), &url);
    assert_eq!((ok.status, ok.body.as_str()), (200, ORIGIN_BODY), "{ok:?}");
    assert!(origin.seen()[0].starts_with("GET /tunneled HTTP/1.1"));

    let mut stream = TcpStream::connect(sidecar.proxy()).unwrap();
    stream
        .write_all(b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n")
        .unwrap();
    let head = read_head(&mut stream).unwrap();
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert_eq!(
        header_value(&head, "x-egressd-reason").as_deref(),
        Some("default-deny")
    );
}

#[test]
fn rust_client_through_the_proxy() {
    let (origin, sidecar, _dir) = origin_and_sidecar("", &[]);
    let proxy = ureq::Proxy::new(&sidecar.proxy_url()).unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(Some(proxy))
        .http_status_as_error(false)
        .build()
        .into();
    let mut ok = agent
        .get(&format!("http://origin.test:{}/", origin.addr.port()))
        .call()
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.body_mut().read_to_string().unwrap(), ORIGIN_BODY);
    // ureq tunnels even http:// URLs through CONNECT (to port 80): egressd answers the policy's
    // refusal inside the tunnel, so ureq sees the 403 and its reason.
    let denied = agent.get("http://example.org/").call().unwrap();
    assert_eq!(denied.status(), 403);
    assert_eq!(
        denied
            .headers()
            .get("x-egressd-reason")
            .and_then(|v| v.to_str().ok()),
        Some("default-deny")
    );
    // Through the tunnel the origin still saw the request, without attribution headers: the
    // proxy cannot add headers inside an opaque tunnel (docs/launcher.md says so).
    let head = &origin.seen()[0];
    assert!(head.starts_with("GET / HTTP/1.1"), "{head}");
}

#[test]
fn attribution_headers_replace_spoofed_copies_and_hop_by_hop_headers_are_stripped() {
    attribution_and_hop_by_hop(Client::Rust);
}

#[test]
#[ignore = "needs curl: run by .ci/run"]
fn attribution_headers_replace_spoofed_copies_and_hop_by_hop_headers_are_stripped_with_curl() {
    attribution_and_hop_by_hop(Client::Curl);
}

fn attribution_and_hop_by_hop(client: Client) {
    let (origin, sidecar, _dir) =
        origin_and_sidecar("", &["--header", "X-Egressd-Agent: agent-{sandbox_id}"]);
    let url = format!("http://origin.test:{}/", origin.addr.port());
    let r = client.get_with(
        sidecar.proxy(),
        &url,
        &[
            "X-Egressd-Sandbox: spoofed",
            "X-Egressd-Agent: spoofed",
            "Connection: keep-alive, X-Drop-Me",
            "X-Drop-Me: secret",
            "Proxy-Authorization: Basic c2VjcmV0OnNlY3JldA==",
            "Proxy-Connection: keep-alive",
            "Keep-Alive: timeout=5",
            "X-Kept: yes",
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let head = &origin.seen()[0];
    assert_eq!(
        header_values(head, "x-egressd-sandbox"),
        ["sb-test"],
        "{head}"
    );
    assert_eq!(
        header_values(head, "x-egressd-agent"),
        ["agent-sb-test"],
        "{head}"
    );
    for gone in [
        "x-drop-me",
        "proxy-authorization",
        "proxy-connection",
        "keep-alive",
    ] {
        assert!(
            header_value(head, gone).is_none(),
            "{gone} reached the origin:\n{head}"
        );
    }
    assert_eq!(header_value(head, "x-kept").as_deref(), Some("yes"));
}

#[test]
fn port_rules_and_ip_literal_forms() {
    port_rules_and_ip_literals(Client::Rust);
}

#[test]
#[ignore = "needs curl: run by .ci/run"]
fn port_rules_and_ip_literal_forms_with_curl() {
    port_rules_and_ip_literals(Client::Curl);
}

fn port_rules_and_ip_literals(client: Client) {
    let (origin, sidecar, _dir) = origin_and_sidecar("", &[]);
    let port = origin.addr.port();
    // 127.0.0.1 is carved out on the origin's port only.
    let r = client.get(sidecar.proxy(), &format!("http://127.0.0.1:{port}/"));
    assert_eq!(r.status, 200, "{r:?}");
    // Spellings parsers disagree on are malformed when they reach egressd as written, whatever
    // they would mean. curl rewrites them to dotted decimal itself (its URL parser follows
    // WHATWG), so through curl they arrive as 127.0.0.1 and are judged as that.
    let ambiguous = AMBIGUOUS_IPV4;
    for host in ambiguous {
        let r = client.get(sidecar.proxy(), &format!("http://{host}:{port}/"));
        match client {
            Client::Rust => {
                assert_eq!(r.status, 400, "{host}: {r:?}");
                assert!(
                    r.headers.contains("x-egressd-reason: malformed-target"),
                    "{r:?}"
                );
                assert!(r.body.contains("ambiguous IPv4 spelling"), "{r:?}");
            }
            Client::Curl => assert_eq!(r.status, 200, "{host}: {r:?}"),
        }
    }
    for (host, port, reason) in refused_on_loopback(port) {
        let url = format!("http://{host}:{port}/");
        let r = client.get(sidecar.proxy(), &url);
        assert_eq!(r.status, 403, "{url}: {r:?}");
        assert!(
            r.headers.contains(&format!("x-egressd-reason: {reason}")),
            "{url}: {r:?}"
        );
    }
    let allowed = match client {
        Client::Rust => 1,
        Client::Curl => 1 + ambiguous.len(),
    };
    assert_eq!(
        origin.seen().len(),
        allowed,
        "only the allowed requests reached the origin"
    );
}

#[test]
fn denied_names_are_never_resolved_and_allowed_names_are() {
    denied_names_unresolved(Client::Rust);
}

#[test]
#[ignore = "needs curl: run by .ci/run"]
fn denied_names_are_never_resolved_and_allowed_names_are_with_curl() {
    denied_names_unresolved(Client::Curl);
}

fn denied_names_unresolved(client: Client) {
    let dns = FakeDns::start(&[("allowed.test", Ipv4Addr::new(127, 0, 0, 1))], false);
    let origin = Origin::start(Behaviour::Answer);
    let dir = tempfile::tempdir().unwrap();
    let port = origin.addr.port();
    let text = format!(
        "version = 1\n[defaults]\naction = \"deny\"\n[[allow]]\nhost = \"allowed.test\"\nports = [{port}]\n\
         [[danger_carve_out]]\ncidr = \"127.0.0.1/32\"\nports = [{port}]\n[dns]\nupstreams = [\"{}\"]\n",
        dns.addr
    );
    let policy = write(dir.path(), "policy.toml", &text);
    let sidecar = Sidecar::start(&["--policy", policy.to_str().unwrap()]);
    let denied = client.get(
        sidecar.proxy(),
        &format!("http://secret-exfil.denied.test:{port}/"),
    );
    assert_eq!(denied.status, 403);
    let tunneled = client.tunnel_get(
        sidecar.proxy(),
        &format!("http://another.denied.test:{port}/"),
    );
    assert_eq!(tunneled.status, 403, "CONNECT refused: {tunneled:?}");
    assert!(
        dns.seen().is_empty(),
        "denied names were sent to DNS: {:?}",
        dns.seen()
    );

    let allowed = client.get(sidecar.proxy(), &format!("http://allowed.test:{port}/"));
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert!(
        dns.seen().iter().any(|q| q.starts_with("allowed.test.")),
        "{:?}",
        dns.seen()
    );
    assert!(
        dns.seen().iter().all(|q| q.starts_with("allowed.test.")),
        "{:?}",
        dns.seen()
    );
}

#[test]
fn upstream_failures_are_502_and_504_with_reasons() {
    upstream_failures(Client::Rust);
}

#[test]
#[ignore = "needs curl: run by .ci/run"]
fn upstream_failures_are_502_and_504_with_reasons_with_curl() {
    upstream_failures(Client::Curl);
}

fn upstream_failures(client: Client) {
    let dns = FakeDns::start(&[], false);
    let silent_dns = FakeDns::start(&[], true);
    let silent = Origin::start(Behaviour::Silent);
    // A port that refuses: bind, learn the port, close.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let ports = [closed, silent.addr.port()];
    let text = loopback_policy(&ports, "[[allow]]\nhost = \"*.nx.test\"\nports = \"any\"\n")
        .replace("127.0.0.1:9", &dns.addr.to_string());
    let policy = write(dir.path(), "policy.toml", &text);
    let args = [
        "--policy",
        policy.to_str().unwrap(),
        "--response-timeout",
        "1s",
        "--dns-timeout",
        "1s",
    ];
    let sidecar = Sidecar::start(&args);
    let cases = [
        (
            format!("http://origin.test:{closed}/"),
            502,
            "upstream-refused",
        ),
        (
            format!("http://origin.test:{}/", silent.addr.port()),
            504,
            "upstream-timeout",
        ),
        ("http://missing.nx.test/".to_owned(), 502, "no-address"),
    ];
    for (url, status, reason) in cases {
        let r = client.get(sidecar.proxy(), &url);
        assert_eq!(r.status, status, "{url}: {r:?}");
        assert!(
            r.headers.contains(&format!("x-egressd-reason: {reason}")),
            "{url}: {r:?}"
        );
    }
    drop(sidecar);
    let text = format!(
        "version = 1\n[[allow]]\nhost = \"slow.test\"\n[dns]\nupstreams = [\"{}\"]\n",
        silent_dns.addr
    );
    let policy = write(dir.path(), "slow.toml", &text);
    let sidecar = Sidecar::start(&["--policy", policy.to_str().unwrap(), "--dns-timeout", "1s"]);
    let r = client.get(sidecar.proxy(), "http://slow.test/");
    assert_eq!(r.status, 504, "{r:?}");
    assert!(r.headers.contains("x-egressd-reason: dns-timeout"), "{r:?}");
}

#[test]
fn origin_form_requests_get_400_not_a_loop() {
    origin_form_and_own_address(Client::Rust);
}

#[test]
#[ignore = "needs curl: run by .ci/run"]
fn origin_form_requests_get_400_not_a_loop_with_curl() {
    origin_form_and_own_address(Client::Curl);
}

fn origin_form_and_own_address(client: Client) {
    let (_origin, sidecar, _dir) = origin_and_sidecar("", &[]);
    let mut stream = TcpStream::connect(sidecar.proxy()).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let head = read_head(&mut stream).unwrap();
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    // Absolute-form to the proxy's own address is loopback: refused, not looped.
    let own = client.get(sidecar.proxy(), &format!("http://{}/", sidecar.proxy()));
    assert_eq!(own.status, 403, "{own:?}");
}

#[test]
fn connection_limit_answers_503() {
    let (_origin, sidecar, _dir) = origin_and_sidecar("", &["--max-connections", "1"]);
    // The first connection takes the only slot; a request on it proves it was accepted.
    let mut first = TcpStream::connect(sidecar.proxy()).unwrap();
    first
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let head = read_head(&mut first).unwrap();
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let mut second = TcpStream::connect(sidecar.proxy()).unwrap();
    second.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut response = String::new();
    second.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(
        response.contains("x-egressd-reason: overloaded"),
        "{response}"
    );
    drop(first);
}

#[test]
fn slow_request_head_is_cut_off() {
    let (_origin, sidecar, _dir) = origin_and_sidecar("", &["--header-read-timeout", "1s"]);
    let mut stream = TcpStream::connect(sidecar.proxy()).unwrap();
    stream
        .write_all(b"GET http://origin.test/ HTTP/1.1\r\nHost: orig")
        .unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut rest = Vec::new();
    // The proxy closes the connection (hyper may first answer 408); a read error here means the
    // test's own patience ran out, which is the failure.
    stream
        .read_to_end(&mut rest)
        .expect("the proxy closed the slow connection");
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[test]
fn oversized_request_head_is_refused() {
    let (_origin, sidecar, _dir) = origin_and_sidecar("", &["--max-header-bytes", "8192"]);
    let mut stream = TcpStream::connect(sidecar.proxy()).unwrap();
    let big = "a".repeat(16 * 1024);
    let request =
        format!("GET http://origin.test/ HTTP/1.1\r\nHost: origin.test\r\nX-Big: {big}\r\n\r\n");
    let _ = stream.write_all(request.as_bytes());
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
}

#[test]
fn audit_log_has_one_json_line_per_request() {
    audit_log(Client::Rust);
}

#[test]
#[ignore = "needs curl: run by .ci/run"]
fn audit_log_has_one_json_line_per_request_with_curl() {
    audit_log(Client::Curl);
}

fn audit_log(client: Client) {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let (origin, sidecar, _policy_dir) =
        origin_and_sidecar("", &["--audit-log", audit.to_str().unwrap()]);
    let port = origin.addr.port();
    let url = format!("http://origin.test:{port}/");
    assert_eq!(client.get(sidecar.proxy(), &url).status, 200);
    assert_eq!(client.tunnel_get(sidecar.proxy(), &url).status, 200);
    assert_eq!(
        client.get(sidecar.proxy(), "http://example.org/").status,
        403
    );
    // Events are written when requests end; the tunnel's only after the client closed it.
    let events = request_events(&audit, 3);
    assert_eq!(events.len(), 3, "one event per request: {events:?}");
    let by_method = |m: &str| events.iter().find(|e| e["method"] == m).unwrap().clone();
    let get = events
        .iter()
        .find(|e| e["method"] == "GET" && e["decision"] == "allow")
        .unwrap();
    assert_eq!(get["sandbox_id"], "sb-test");
    assert_eq!(get["status"], 200);
    assert_eq!(get["resolved"], format!("127.0.0.1:{port}"));
    assert_eq!(get["bytes_down"], ORIGIN_BODY.len());
    assert_eq!(get["rule"], "allow[0] line 6");
    let tunnel = by_method("CONNECT");
    assert_eq!(tunnel["decision"], "allow");
    assert!(
        tunnel["bytes_up"].as_u64().unwrap() > 0 && tunnel["bytes_down"].as_u64().unwrap() > 0,
        "{tunnel}"
    );
    assert_eq!(tunnel["destination"], format!("origin.test:{port}"));
    let denied = events.iter().find(|e| e["decision"] == "deny").unwrap();
    assert_eq!(denied["destination"], "http://example.org/");
    assert_eq!(
        (denied["reason"].as_str(), denied["status"].as_u64()),
        (Some("default-deny"), Some(403))
    );
    assert!(
        denied["duration_ms"].is_number()
            && denied["client"].as_str().unwrap().starts_with("127.0.0.1:")
    );
    // With --audit-log, audit events stay out of the normal log.
    assert!(
        !sidecar.stderr.text().contains("egressd::audit"),
        "{}",
        sidecar.stderr.text()
    );
}

#[cfg(unix)]
#[test]
fn unix_socket_listener_serves_the_same_proxy() {
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("proxy.sock");
    let (origin, sidecar, _policy_dir) =
        origin_and_sidecar("", &["--proxy-unix", socket.to_str().unwrap()]);
    assert_eq!(sidecar.ready["proxy_unix"], socket.to_str().unwrap());
    let mut stream = UnixStream::connect(&socket).unwrap();
    let port = origin.addr.port();
    let request = format!(
        "GET http://origin.test:{port}/ HTTP/1.1\r\nHost: origin.test:{port}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(ORIGIN_BODY), "{response}");
}

#[test]
fn keep_alive_to_client_and_origin_and_http_1_0() {
    let (origin, sidecar, _dir) = origin_and_sidecar("", &[]);
    let port = origin.addr.port();
    let mut stream = TcpStream::connect(sidecar.proxy()).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    for path in ["/one", "/two"] {
        write!(
            stream,
            "GET http://origin.test:{port}{path} HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\n"
        )
        .unwrap();
        let head = read_head(&mut stream).unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let mut body = vec![0u8; ORIGIN_BODY.len()];
        stream.read_exact(&mut body).unwrap();
    }
    assert_eq!(origin.seen().len(), 2);
    assert_eq!(
        origin.connections.get(),
        1,
        "the origin connection was pooled and reused"
    );

    let mut old = TcpStream::connect(sidecar.proxy()).unwrap();
    old.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(old, "GET http://origin.test:{port}/old HTTP/1.0\r\n\r\n").unwrap();
    let mut response = String::new();
    old.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    assert!(response.ends_with(ORIGIN_BODY), "{response}");
}

/// The same egressd behaviour as [`absolute_form_allowed_and_denied`], seen by Python's urllib.
#[test]
#[ignore = "needs python3: run by .ci/run"]
fn python_urllib_through_the_proxy() {
    let (origin, sidecar, _dir) = origin_and_sidecar("", &[]);
    assert_eq!(
        python_urllib(
            sidecar.proxy(),
            &format!("http://origin.test:{}/", origin.addr.port())
        ),
        "200"
    );
    assert_eq!(
        python_urllib(sidecar.proxy(), "http://example.org/"),
        "403 default-deny"
    );
}
