//! What egressd forwards and strips (issue 13): the parent proxy gets exactly the target egressd
//! judged, in egressd's spelling; attribution lookalikes never reach an origin; headers that
//! pretend to be egressd's never reach the client; malformed targets and ports are the client's
//! error; no secret of the client's reaches a log line or audit event.

use std::io::Write;
use std::net::TcpStream;

use crate::util::*;

fn sidecar_for(
    origin: &Origin,
    extra_args: &[&str],
) -> (Sidecar, tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "policy.toml",
        &loopback_policy(&[origin.addr.port()], ""),
    );
    let audit = dir.path().join("audit.jsonl");
    let mut args = vec![
        "--policy",
        policy.to_str().unwrap(),
        "--audit-log",
        audit.to_str().unwrap(),
        "--log-level",
        "trace",
    ];
    args.extend_from_slice(extra_args);
    (Sidecar::start(&args), dir, audit)
}

/// Sends `request` (a whole head) to the proxy and returns the response head and body.
fn exchange(sidecar: &Sidecar, request: &str) -> (String, String) {
    let mut stream = TcpStream::connect(sidecar.proxy()).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let head = read_head(&mut stream).unwrap_or_default();
    let length = header_value(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    let _ = std::io::Read::read_exact(&mut stream, &mut body);
    (head, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn the_parent_gets_the_target_egressd_judged_in_egressd_spelling() {
    let origin = Origin::start(Behaviour::Answer);
    let parent = RecordingParent::start(origin.addr);
    let parent_addr = parent.addr.to_string();
    let (sidecar, _dir, _audit) = sidecar_for(&origin, &["--parent-proxy", &parent_addr]);
    let port = origin.addr.port();
    // Upper case, a trailing dot, userinfo: the parent sees none of it.
    let (head, _) = exchange(
        &sidecar,
        &format!("GET http://user:pw@ORIGIN.Test.:{port}/a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n"),
    );
    assert!(
        head.starts_with("HTTP/1.1 501"),
        "the parent's own answer: {head}"
    );
    let (head, _) = exchange(
        &sidecar,
        &format!("CONNECT Origin.TEST.:{port} HTTP/1.1\r\nHost: x\r\n\r\n"),
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let seen = parent.heads.lock().unwrap().clone();
    let lines: Vec<&str> = seen.iter().filter_map(|h| h.lines().next()).collect();
    assert_eq!(
        lines,
        [
            format!("GET http://origin.test:{port}/a?b=1 HTTP/1.1"),
            format!("CONNECT origin.test:{port} HTTP/1.1"),
        ],
        "{seen:?}"
    );
    assert!(seen.iter().all(|h| !h.contains("pw")), "{seen:?}");
}

#[test]
fn attribution_lookalikes_never_reach_the_origin() {
    let origin = Origin::start(Behaviour::Answer);
    let (sidecar, _dir, _audit) = sidecar_for(&origin, &["--sandbox-id", "sb-real"]);
    let port = origin.addr.port();
    // The policy's attribution header is X-Egressd-Sandbox; CGI, WSGI, Rack and PHP fold these
    // spellings onto it.
    let (head, _) = exchange(
        &sidecar,
        &format!(
            "GET http://origin.test:{port}/ HTTP/1.1\r\nHost: origin.test\r\nX_Egressd_Sandbox: spoof1\r\n\
             x-egressd_sandbox: spoof2\r\nX-EGRESSD-SANDBOX: spoof3\r\nX-Egressd-Sandboxes: kept\r\n\r\n"
        ),
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let seen = origin.seen();
    let request = &seen[0];
    assert!(!request.contains("spoof"), "{request}");
    assert_eq!(
        header_values(request, "x-egressd-sandbox"),
        ["sb-real"],
        "{request}"
    );
    assert_eq!(
        header_value(request, "x-egressd-sandboxes").as_deref(),
        Some("kept")
    );
}

#[test]
fn headers_that_pretend_to_be_egressd_never_reach_the_client() {
    let origin = Origin::start(Behaviour::Forges);
    let (sidecar, _dir, _audit) = sidecar_for(&origin, &[]);
    let port = origin.addr.port();
    let (head, body) = exchange(
        &sidecar,
        &format!("GET http://origin.test:{port}/ HTTP/1.1\r\nHost: origin.test\r\n\r\n"),
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, ORIGIN_BODY);
    assert!(!head.to_ascii_lowercase().contains("x-egressd-"), "{head}");
    assert_eq!(header_value(&head, "x-origin").as_deref(), Some("yes"));
}

#[test]
fn malformed_targets_and_ports_are_400_and_audited() {
    let origin = Origin::start(Behaviour::Answer);
    let (sidecar, _dir, audit) = sidecar_for(&origin, &[]);
    let cases = [
        "GET http://origin.test:0/ HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET http://origin.test:65536/ HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET http://origin.test:99999999/ HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET http://0x7f.1/ HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET http://010.8.8.8/ HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET http://exa_mple..test/ HTTP/1.1\r\nHost: x\r\n\r\n",
        "CONNECT origin.test:0 HTTP/1.1\r\nHost: x\r\n\r\n",
        "CONNECT origin.test:65536 HTTP/1.1\r\nHost: x\r\n\r\n",
        "CONNECT origin.test HTTP/1.1\r\nHost: x\r\n\r\n",
        "CONNECT 2130706433:443 HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for request in cases {
        let (head, body) = exchange(&sidecar, request);
        assert!(head.starts_with("HTTP/1.1 400"), "{request:?}: {head}");
        assert_eq!(
            header_value(&head, "x-egressd-reason").as_deref(),
            Some("malformed-target"),
            "{request:?}: {head}"
        );
        assert!(body.starts_with("egressd: 400 Bad Request"), "{body}");
    }
    let events = request_events(&audit, cases.len());
    assert_eq!(events.len(), cases.len());
    for event in &events {
        assert_eq!(event[audit::fields::REASON], "malformed-target", "{event}");
        assert_eq!(event[audit::fields::DECISION], "deny", "{event}");
        assert_eq!(event[audit::fields::STATUS], 400, "{event}");
    }
    assert!(origin.seen().is_empty());
}

#[test]
fn client_secrets_never_reach_a_log_line_or_an_audit_event() {
    let origin = Origin::start(Behaviour::Answer);
    let (sidecar, _dir, audit) = sidecar_for(&origin, &[]);
    let port = origin.addr.port();
    let secrets = [
        "sekrit-pw",
        "sekrit-bearer",
        "sekrit-cookie",
        "sekrit-proxy",
    ];
    let (head, _) = exchange(
        &sidecar,
        &format!(
            "GET http://user:sekrit-pw@origin.test:{port}/ HTTP/1.1\r\nHost: origin.test\r\n\
             Authorization: Bearer sekrit-bearer\r\nCookie: c=sekrit-cookie\r\n\
             Proxy-Authorization: Basic sekrit-proxy\r\n\r\n"
        ),
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Refused and failed requests too: their bodies name the destination.
    let (_, body) = exchange(
        &sidecar,
        "GET http://u:sekrit-pw@example.org/ HTTP/1.1\r\nHost: x\r\nCookie: sekrit-cookie\r\n\r\n",
    );
    assert!(!body.contains("sekrit"), "{body}");
    let (_, body) = exchange(
        &sidecar,
        "CONNECT u:sekrit-pw@example.org:443 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert!(!body.contains("sekrit"), "{body}");
    let events = request_events(&audit, 3);
    let text = std::fs::read_to_string(&audit).unwrap() + &sidecar.stderr.text();
    for secret in secrets {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
    assert_eq!(
        events[0][audit::fields::DESTINATION],
        format!("http://origin.test:{port}/")
    );
    // What belongs to the origin reaches it (but not the proxy credential, a hop-by-hop header).
    let request = &origin.seen()[0];
    assert!(
        request.contains("sekrit-bearer") && request.contains("sekrit-cookie"),
        "{request}"
    );
    assert!(!request.contains("sekrit-proxy"), "{request}");
}
