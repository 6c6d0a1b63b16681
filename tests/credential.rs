//! The per-sandbox proxy credential (issue 12): what the readiness line hands the launcher, what
//! the proxy asks of every request (absolute-form, CONNECT, each request of a keep-alive
//! connection, the Unix socket), how refusals look and are audited, that the secret is never
//! written anywhere nor forwarded, and that one job cannot use another's proxy. The last tests
//! run real clients configured only from the readiness line's `env`; they are ignored for needing
//! the clients .ci/run installs.

use std::io::{Read, Write};
use std::path::PathBuf;

use audit::fields as f;
use tempfile::TempDir;

use crate::util::*;

/// A sandbox's egressd with its default, generated credential, and an origin its policy allows as
/// `origin.test`; audit events go to a file.
struct Job {
    origin: Origin,
    sidecar: Sidecar,
    secret: String,
    dir: TempDir,
}

impl Job {
    fn start(extra_args: &[&str]) -> Self {
        let origin = Origin::start(Behaviour::Answer);
        let dir = tempfile::tempdir().unwrap();
        let policy = write(
            dir.path(),
            "policy.toml",
            &loopback_policy(&[origin.addr.port()], ""),
        );
        let audit = dir.path().join("audit.jsonl");
        let mut args = vec![
            "--proxy-credential-default",
            "--sandbox-id",
            "sb-cred",
            "--policy",
            policy.to_str().unwrap(),
            "--audit-log",
            audit.to_str().unwrap(),
        ];
        args.extend_from_slice(extra_args);
        let sidecar = Sidecar::start(&args);
        let secret = secret_of(&sidecar.ready);
        Self {
            origin,
            sidecar,
            secret,
            dir,
        }
    }

    fn audit_log(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }

    /// `origin.test:PORT`.
    fn authority(&self) -> String {
        format!("origin.test:{}", self.origin.addr.port())
    }

    /// `http://origin.test:PORT{path}`.
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.authority())
    }

    /// `GET URL` in absolute form on a new connection, with `headers`.
    fn get(&self, url: &str, headers: &[&str]) -> Response {
        let mut stream = connect_tcp(self.sidecar.proxy());
        exchange(
            &mut stream,
            &request_head("GET", url, &self.authority(), headers),
        )
    }

    /// Stops egressd gracefully, which writes every audit event, and returns the request events.
    fn stop(&mut self) -> Vec<serde_json::Value> {
        self.sidecar.signal(Signal::SIGTERM);
        assert!(
            self.sidecar.wait().success(),
            "{}",
            self.sidecar.stderr.text()
        );
        let log = std::fs::read_to_string(self.audit_log()).unwrap();
        events_of(&log, audit::Request::MESSAGE)
    }
}

/// A 407 as the contract describes it: the challenge, the reason, a readable text body.
fn assert_auth_refusal(r: &Response, reason: &str) {
    assert_eq!(r.status, 407, "{r:?}");
    assert_eq!(
        header_value(&r.headers, "proxy-authenticate").as_deref(),
        Some("Basic realm=\"egressd\""),
        "{r:?}"
    );
    assert_eq!(
        header_value(&r.headers, "x-egressd-reason").as_deref(),
        Some(reason),
        "{r:?}"
    );
    assert!(
        header_value(&r.headers, "content-type").is_some_and(|t| t.starts_with("text/plain")),
        "{r:?}"
    );
    assert!(
        r.body
            .starts_with("egressd: 407 Proxy Authentication Required: ")
            && r.body.contains("proxy URL from egressd's readiness line"),
        "{r:?}"
    );
}

/// Panics if `text` (named `place`) holds any of `secrets`, plain or in a `Basic` token.
fn assert_no_secret(place: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        for form in leak_forms(secret) {
            assert!(!text.contains(&form), "{place} holds {form:?}:\n{text}");
        }
    }
}

#[test]
fn readiness_line_hands_out_a_generated_secret_in_every_proxy_variable() {
    let dir = tempfile::tempdir().unwrap();
    let ready_file = dir.path().join("ready.json");
    let sidecar = Sidecar::start(&[
        "--proxy-credential-default",
        "--ready-file",
        ready_file.to_str().unwrap(),
    ]);
    let ready = &sidecar.ready;
    assert_eq!(ready["proxy_credential"], "generated");
    let secret = secret_of(ready);
    assert!(
        secret.len() == 32
            && secret
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "128 bits in lower-case hex: {secret}"
    );
    let url = format!("http://egressd:{secret}@{}", sidecar.proxy());
    assert_eq!(ready["proxy_url"], url);
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        assert_eq!(ready["env"][var], url, "{var}");
    }
    for var in ["NO_PROXY", "no_proxy"] {
        assert_no_secret(var, ready["env"][var].as_str().unwrap(), &[&secret]);
    }
    // The ready file carries the secret too, so only egressd's user may read it.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&ready_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let from_file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ready_file).unwrap()).unwrap();
    assert_eq!(&from_file, ready);
}

#[test]
fn a_credential_file_is_used_verbatim_and_reported() {
    let origin = Origin::start(Behaviour::Answer);
    let dir = tempfile::tempdir().unwrap();
    let port = origin.addr.port();
    let policy = write(dir.path(), "policy.toml", &loopback_policy(&[port], ""));
    let secret = "Launcher-chosen_secret-0123456789";
    // The launcher's file may end with a newline; the secret is the line.
    let file = write(dir.path(), "credential", &format!("{secret}\n"));
    let sidecar = Sidecar::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--proxy-credential-file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(sidecar.ready["proxy_credential"], "file");
    assert_eq!(
        sidecar.ready["proxy_url"],
        format!("http://egressd:{secret}@{}", sidecar.proxy())
    );
    let url = format!("http://origin.test:{port}/");
    let ok = Client::Rust.get_with(sidecar.proxy(), &url, &[&proxy_authorization(secret)]);
    assert_eq!((ok.status, ok.body.as_str()), (200, ORIGIN_BODY), "{ok:?}");
    let wrong = Client::Rust.get_with(
        sidecar.proxy(),
        &url,
        &[&proxy_authorization(&altered(secret))],
    );
    assert_auth_refusal(&wrong, "proxy-auth-invalid");
}

#[test]
fn an_unusable_credential_file_exits_2_naming_the_flag_without_echoing_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("short", "Short_secret-21-chars"),
        ("empty", ""),
        ("spaces", "a secret with spaces, and long enough"),
        ("percent", "pct%40encoded-secret-0123456789"),
        ("slash", "slash/in/secret-0123456789abcdef"),
        (
            "two lines",
            "first-line-0123456789abcdef\nsecond-line-0123456789abcdef\n",
        ),
    ];
    for (i, (case, content)) in cases.iter().enumerate() {
        let file = write(dir.path(), &format!("case-{i}"), content);
        let run = Sidecar::try_start(&["--proxy-credential-file", file.to_str().unwrap()])
            .err()
            .unwrap_or_else(|| panic!("{case}: must not become ready"));
        assert_eq!(run.code, 2, "{case}: {run:?}");
        assert!(run.stdout.is_empty(), "{case}: {run:?}");
        assert_eq!(run.stderr.trim_end().lines().count(), 1, "{case}: {run:?}");
        assert!(
            run.stderr.contains("--proxy-credential-file"),
            "{case}: {run:?}"
        );
        for line in content.lines() {
            assert!(!run.stderr.contains(line), "{case}: echoed: {run:?}");
        }
    }
    let missing = dir.path().join("missing");
    let run = Sidecar::try_start(&["--proxy-credential-file", missing.to_str().unwrap()])
        .err()
        .expect("must not become ready");
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--proxy-credential-file"), "{run:?}");
}

#[test]
fn without_a_credential_the_proxy_serves_requests_without_the_header() {
    let origin = Origin::start(Behaviour::Answer);
    let dir = tempfile::tempdir().unwrap();
    let port = origin.addr.port();
    let policy = write(dir.path(), "policy.toml", &loopback_policy(&[port], ""));
    let sidecar = Sidecar::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--no-proxy-credential",
    ]);
    let ready = &sidecar.ready;
    assert_eq!(ready["proxy_credential"], "none");
    assert_eq!(ready["proxy_url"], format!("http://{}", sidecar.proxy()));
    for (var, value) in ready["env"].as_object().unwrap() {
        assert!(!value.as_str().unwrap().contains('@'), "{var}: {value}");
    }
    let url = format!("http://origin.test:{port}/");
    let ok = Client::Rust.get(sidecar.proxy(), &url);
    assert_eq!((ok.status, ok.body.as_str()), (200, ORIGIN_BODY), "{ok:?}");
    let tunneled = Client::Rust.tunnel_get(sidecar.proxy(), &url);
    assert_eq!(tunneled.status, 200, "{tunneled:?}");
}

#[test]
fn absolute_form_requests_need_the_credential() {
    let job = Job::start(&[]);
    let url = job.url("/absolute");
    assert_auth_refusal(&job.get(&url, &[]), "proxy-auth-required");
    // Checked before the policy: without the credential, nothing says what the policy allows.
    assert_auth_refusal(&job.get("http://example.org/", &[]), "proxy-auth-required");
    let token = basic(&job.secret);
    let token = token.strip_prefix("Basic ").unwrap();
    for wrong in [
        proxy_authorization(&altered(&job.secret)),
        format!("Proxy-Authorization: Bearer {token}"),
        format!("Proxy-Authorization: Bearer {}", job.secret),
        "Proxy-Authorization: Basic".to_owned(),
        format!("Proxy-Authorization: Basic {token}x"),
    ] {
        assert_auth_refusal(&job.get(&url, &[&wrong]), "proxy-auth-invalid");
    }
    // Two fields are invalid even when one is right, in either order.
    let (right, wrong) = (
        proxy_authorization(&job.secret),
        proxy_authorization(&altered(&job.secret)),
    );
    for pair in [[&right, &wrong], [&wrong, &right], [&right, &right]] {
        let pair = pair.map(String::as_str);
        assert_auth_refusal(&job.get(&url, &pair), "proxy-auth-invalid");
    }
    for right in [
        proxy_authorization(&job.secret),
        format!("Proxy-Authorization: basic {token}"),
    ] {
        let ok = job.get(&url, &[&right]);
        assert_eq!((ok.status, ok.body.as_str()), (200, ORIGIN_BODY), "{ok:?}");
    }
    let seen = job.origin.seen();
    assert_eq!(
        seen.len(),
        2,
        "only the requests with the credential: {seen:?}"
    );
    for head in &seen {
        assert!(
            header_value(head, "proxy-authorization").is_none(),
            "{head}"
        );
    }
}

#[test]
fn connect_requests_need_the_credential() {
    let job = Job::start(&[]);
    let authority = job.authority();
    let connect = |headers: &[&str]| {
        let mut stream = connect_tcp(job.sidecar.proxy());
        let answer = exchange(
            &mut stream,
            &request_head("CONNECT", &authority, &authority, headers),
        );
        (stream, answer)
    };
    assert_auth_refusal(&connect(&[]).1, "proxy-auth-required");
    let wrong = proxy_authorization(&altered(&job.secret));
    assert_auth_refusal(&connect(&[&wrong]).1, "proxy-auth-invalid");
    let right = proxy_authorization(&job.secret);
    assert_auth_refusal(&connect(&[&right, &wrong]).1, "proxy-auth-invalid");
    assert_auth_refusal(&connect(&[&wrong, &right]).1, "proxy-auth-invalid");
    let token = basic(&job.secret).replacen("Basic", "basic", 1);
    for right in [
        proxy_authorization(&job.secret),
        format!("Proxy-Authorization: {token}"),
    ] {
        let (mut tunnel, answer) = connect(&[&right]);
        assert_eq!(answer.status, 200, "{answer:?}");
        let inner = exchange(
            &mut tunnel,
            &request_head("GET", "/tunneled", &authority, &["Connection: close"]),
        );
        assert_eq!((inner.status, inner.body.as_str()), (200, ORIGIN_BODY));
    }
    let seen = job.origin.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for head in &seen {
        assert!(
            header_value(head, "proxy-authorization").is_none(),
            "{head}"
        );
    }
}

#[test]
fn every_request_on_a_keep_alive_connection_needs_the_credential() {
    let job = Job::start(&[]);
    let host = job.authority();
    let right = proxy_authorization(&job.secret);
    let mut stream = connect_tcp(job.sidecar.proxy());
    let first = exchange(
        &mut stream,
        &request_head("GET", &job.url("/first"), &host, &[&right]),
    );
    assert_eq!((first.status, first.body.as_str()), (200, ORIGIN_BODY));
    let second = exchange(
        &mut stream,
        &request_head("GET", &job.url("/second"), &host, &[]),
    );
    assert_auth_refusal(&second, "proxy-auth-required");
    // A 407 leaves the connection open: a client answering the challenge retries on it.
    let third = exchange(
        &mut stream,
        &request_head("GET", &job.url("/third"), &host, &[&right]),
    );
    assert_eq!((third.status, third.body.as_str()), (200, ORIGIN_BODY));
    let seen = job.origin.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0].starts_with("GET /first "), "{seen:?}");
    assert!(seen[1].starts_with("GET /third "), "{seen:?}");
}

#[test]
fn the_secret_is_never_written_anywhere_nor_forwarded() {
    // The most talkative log egressd has.
    let mut job = Job::start(&["--log-level", "trace"]);
    let secret = job.secret.clone();
    let presented = "Presented_but_wrong-0123456789";
    let host = job.authority();
    let right = proxy_authorization(&secret);
    let wrong = proxy_authorization(presented);
    // A confused client may also write the secret into the request URI's userinfo.
    let with_userinfo = |path: &str| format!("http://egressd:{secret}@{host}{path}");
    let mut answers = Vec::new();
    for (url, header, status) in [
        (job.url("/plain"), right.as_str(), 200),
        (with_userinfo("/userinfo"), right.as_str(), 200),
        (job.url("/wrong"), wrong.as_str(), 407),
        (with_userinfo("/userinfo-only"), "X-Nothing: 1", 407),
        ("http://example.org/".to_owned(), right.as_str(), 403),
    ] {
        let r = job.get(&url, &[header]);
        assert_eq!(r.status, status, "{url}: {r:?}");
        answers.push(r);
    }
    let mut tunnel = connect_tcp(job.sidecar.proxy());
    let answer = exchange(
        &mut tunnel,
        &request_head("CONNECT", &host, &host, &[&right]),
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    let inner = exchange(
        &mut tunnel,
        &request_head("GET", "/tunneled", &host, &["Connection: close"]),
    );
    assert_eq!(inner.status, 200, "{inner:?}");
    drop(tunnel);
    let refused_tunnel = exchange(
        &mut connect_tcp(job.sidecar.proxy()),
        &request_head("CONNECT", &host, &host, &[&wrong]),
    );
    assert_eq!(refused_tunnel.status, 407, "{refused_tunnel:?}");
    answers.push(refused_tunnel);

    let events = job.stop();
    assert_eq!(events.len(), 7, "{events:?}");
    for r in &answers {
        assert_no_secret(
            "a response",
            &format!("{}{}", r.headers, r.body),
            &[&secret, presented],
        );
    }
    assert_no_secret("stderr", &job.sidecar.stderr.text(), &[&secret, presented]);
    let log = std::fs::read_to_string(job.audit_log()).unwrap();
    assert_no_secret("the audit log", &log, &[&secret, presented]);
    let seen = job.origin.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for head in &seen {
        assert!(
            header_value(head, "proxy-authorization").is_none(),
            "{head}"
        );
        assert_no_secret("what the origin received", head, &[&secret, presented]);
    }
}

#[test]
fn a_parent_proxy_sees_only_its_own_credential() {
    let echo = Echo::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "p.toml",
        &format!(
            "version = 1\n[[allow]]\nhost = \"tunnel.test\"\nports = [443]\n\
             [[allow]]\nhost = \"plain.test\"\nports = [80]\n{NO_RESOLVER}"
        ),
    );
    for parent_auth in [Some("Basic dTpw"), None] {
        let parent = RecordingParent::start(echo.addr);
        let parent_addr = parent.addr.to_string();
        let mut args = vec![
            "--proxy-credential-default",
            "--policy",
            policy.to_str().unwrap(),
            "--parent-proxy",
            &parent_addr,
        ];
        if let Some(auth) = parent_auth {
            args.extend(["--parent-proxy-auth", auth]);
        }
        let sidecar = Sidecar::start(&args);
        let secret = secret_of(&sidecar.ready);
        let right = proxy_authorization(&secret);
        let mut tunnel = connect_tcp(sidecar.proxy());
        let answer = exchange(
            &mut tunnel,
            &request_head("CONNECT", "tunnel.test:443", "tunnel.test:443", &[&right]),
        );
        assert_eq!(answer.status, 200, "{answer:?}");
        tunnel.write_all(b"ping").unwrap();
        let mut pong = [0u8; 4];
        tunnel.read_exact(&mut pong).unwrap();
        assert_eq!(&pong, b"ping");
        // The recording parent answers absolute-form requests 501, after recording them.
        let forwarded = exchange(
            &mut connect_tcp(sidecar.proxy()),
            &request_head("GET", "http://plain.test/", "plain.test", &[&right]),
        );
        assert_eq!(forwarded.status, 501, "{forwarded:?}");
        let heads = parent.heads.lock().unwrap().clone();
        assert_eq!(heads.len(), 2, "{heads:?}");
        for head in &heads {
            let expected: Vec<String> = parent_auth.iter().map(|a| (*a).to_owned()).collect();
            assert_eq!(
                header_values(head, "proxy-authorization"),
                expected,
                "{head}"
            );
            assert_no_secret("what the parent received", head, &[&secret]);
        }
    }
}

#[test]
fn refusals_for_the_credential_are_audited_as_denials() {
    let mut job = Job::start(&[]);
    let url = job.url("/audited");
    let authority = job.authority();
    let mut missing = connect_tcp(job.sidecar.proxy());
    let answer = exchange(&mut missing, &request_head("GET", &url, &authority, &[]));
    assert_eq!(answer.status, 407, "{answer:?}");
    let mut wrong = connect_tcp(job.sidecar.proxy());
    let answer = exchange(
        &mut wrong,
        &request_head(
            "CONNECT",
            &authority,
            &authority,
            &[&proxy_authorization(&altered(&job.secret))],
        ),
    );
    assert_eq!(answer.status, 407, "{answer:?}");
    let clients = [
        missing.local_addr().unwrap().to_string(),
        wrong.local_addr().unwrap().to_string(),
    ];
    drop((missing, wrong));
    let events = job.stop();
    assert_eq!(events.len(), 2, "one event per refused request: {events:?}");
    let expected = [
        ("GET", url.as_str(), "proxy-auth-required", &clients[0]),
        (
            "CONNECT",
            authority.as_str(),
            "proxy-auth-invalid",
            &clients[1],
        ),
    ];
    for (method, destination, reason, client) in expected {
        let event = events
            .iter()
            .find(|e| e[f::METHOD] == method)
            .unwrap_or_else(|| panic!("no {method} event: {events:?}"));
        assert_eq!(event[f::DECISION], "deny", "{event}");
        assert_eq!(event[f::REASON], reason, "{event}");
        assert_eq!(event[f::STATUS], 407, "{event}");
        assert_eq!(event[f::CLIENT], client.as_str(), "{event}");
        assert_eq!(event[f::DESTINATION], destination, "{event}");
        assert_eq!(event[f::SANDBOX_ID], "sb-cred", "{event}");
        assert_eq!(event[f::RESOLVED], "", "nothing was dialed: {event}");
    }
}

#[cfg(unix)]
#[test]
fn the_proxy_unix_socket_is_owner_only_and_needs_the_credential() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("proxy.sock");
    let job = Job::start(&["--proxy-unix", socket.to_str().unwrap()]);
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let host = job.authority();
    let url = job.url("/over-unix");
    let over_unix = |headers: &[&str]| {
        let mut stream = UnixStream::connect(&socket).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        exchange(&mut stream, &request_head("GET", &url, &host, headers))
    };
    assert_auth_refusal(&over_unix(&[]), "proxy-auth-required");
    let wrong = proxy_authorization(&altered(&job.secret));
    assert_auth_refusal(&over_unix(&[&wrong]), "proxy-auth-invalid");
    let ok = over_unix(&[&proxy_authorization(&job.secret)]);
    assert_eq!((ok.status, ok.body.as_str()), (200, ORIGIN_BODY), "{ok:?}");
}

#[cfg(unix)]
#[test]
fn proxy_unix_mode_660_opens_the_socket_to_its_group() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("proxy.sock");
    let _job = Job::start(&[
        "--proxy-unix",
        socket.to_str().unwrap(),
        "--proxy-unix-mode",
        "660",
    ]);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660, "{mode:o}");
}

#[test]
fn one_job_cannot_use_another_job_s_proxy() {
    let (a, b) = (Job::start(&[]), Job::start(&[]));
    assert_ne!(a.secret, b.secret, "each sidecar makes its own secret");
    let a_credential = proxy_authorization(&a.secret);
    assert_auth_refusal(
        &b.get(&b.url("/from-a"), &[&a_credential]),
        "proxy-auth-invalid",
    );
    let authority = b.authority();
    let tunnel = exchange(
        &mut connect_tcp(b.sidecar.proxy()),
        &request_head("CONNECT", &authority, &authority, &[&a_credential]),
    );
    assert_auth_refusal(&tunnel, "proxy-auth-invalid");
    assert!(b.origin.seen().is_empty(), "{:?}", b.origin.seen());
    let own = b.get(&b.url("/from-b"), &[&proxy_authorization(&b.secret)]);
    assert_eq!(own.status, 200, "{own:?}");
}

/// A CONNECT request-target with userinfo (`CONNECT egressd:SECRET@host:port`, not valid
/// authority-form, but a confused client's) is refused as malformed, and what it held is written
/// nowhere: not in the refusal's body, not in the audit event's `destination`.
#[test]
fn a_connect_target_with_userinfo_is_never_written_anywhere() {
    let mut job = Job::start(&[]);
    let host = job.authority();
    let target = format!("egressd:{}@{host}", job.secret);
    let right = proxy_authorization(&job.secret);
    let mut answers = Vec::new();
    for headers in [vec![], vec![right.as_str()]] {
        let r = exchange(
            &mut connect_tcp(job.sidecar.proxy()),
            &request_head("CONNECT", &target, &host, &headers),
        );
        assert_ne!(r.status, 200, "not a valid CONNECT target: {r:?}");
        answers.push(r);
    }
    let events = job.stop();
    assert_eq!(events.len(), 2, "{events:?}");
    for r in &answers {
        assert_no_secret(
            "a response",
            &format!("{}{}", r.headers, r.body),
            &[&job.secret],
        );
    }
    let log = std::fs::read_to_string(job.audit_log()).unwrap();
    assert_no_secret("the audit log", &log, &[&job.secret]);
}

/// The ready file is written aside (`PATH.tmp`) then renamed; an aside file already there (left
/// by a killed egressd, or put there by another user in a shared directory) is never reused: the
/// ready file, which carries the secret, stays 0600, and a symbolic link there is not followed.
#[cfg(unix)]
#[test]
fn a_stale_aside_file_cannot_loosen_the_ready_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ready_file = dir.path().join("ready.json");
    let aside = dir.path().join("ready.json.tmp");
    std::fs::write(&aside, "left over").unwrap();
    std::fs::set_permissions(&aside, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _sidecar = Sidecar::start(&[
        "--proxy-credential-default",
        "--ready-file",
        ready_file.to_str().unwrap(),
    ]);
    let mode = std::fs::metadata(&ready_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    let dir = tempfile::tempdir().unwrap();
    let ready_file = dir.path().join("ready.json");
    let elsewhere = dir.path().join("elsewhere");
    std::os::unix::fs::symlink(&elsewhere, dir.path().join("ready.json.tmp")).unwrap();
    let _sidecar = Sidecar::start(&[
        "--proxy-credential-default",
        "--ready-file",
        ready_file.to_str().unwrap(),
    ]);
    assert!(
        !elsewhere.exists(),
        "the readiness line was written through the link"
    );
    let mode = std::fs::metadata(&ready_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}

/// A commit id the test repository's one branch points at (dumb-HTTP `info/refs`).
const COMMIT: &str = "8d1f3b2a9c0e4f5d6a7b8c9d0e1f2a3b4c5d6e7f";

/// What a sandboxed job does with `client` configured from the readiness line's `env` alone:
/// with the env as given it reaches the origin (so it sent the credential: egressd serves nothing
/// without it); with the secret in every URL altered it gets 407 and reaches nothing. The origin
/// never sees the credential, and egressd's logs never hold it.
fn real_client_sends_the_credential_from_the_env(client: EnvClient) {
    let refs = format!("{COMMIT}\trefs/heads/main\n");
    let site = Site::start(&[
        ("/with-credential", ORIGIN_BODY),
        ("/repo.git/info/refs", &refs),
        ("/repo.git/HEAD", "ref: refs/heads/main\n"),
    ]);
    let port = site.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.toml", &loopback_policy(&[port], ""));
    let audit = dir.path().join("audit.jsonl");
    let mut sidecar = Sidecar::start(&[
        "--proxy-credential-default",
        "--policy",
        policy.to_str().unwrap(),
        "--audit-log",
        audit.to_str().unwrap(),
    ]);
    let secret = secret_of(&sidecar.ready);
    let env = ProxyEnv::from_ready(&sidecar.ready);
    let base = format!("http://origin.test:{port}");
    let (good_url, bad_url) = match client {
        EnvClient::Git => (format!("{base}/repo.git"), format!("{base}/repo.git")),
        _ => (format!("{base}/with-credential"), format!("{base}/altered")),
    };

    let good = client.fetch(&env, &good_url);
    assert_eq!(good.code, 0, "{client:?} with the env as given: {good:?}");
    match client {
        EnvClient::Git => assert!(good.stdout.contains(&refs), "{good:?}"),
        _ => assert_eq!(good.stdout, ORIGIN_BODY, "{good:?}"),
    }
    let reached = site.seen().len();

    let bad = client.fetch(&env.with_secret(&secret, &altered(&secret)), &bad_url);
    assert_ne!(bad.code, 0, "{client:?} with an altered secret: {bad:?}");
    assert!(bad.stderr.contains("407"), "{client:?} says 407: {bad:?}");
    assert_eq!(site.seen().len(), reached, "nothing reached the origin");

    for head in site.seen() {
        assert!(
            header_value(&head, "proxy-authorization").is_none(),
            "{head}"
        );
        assert_no_secret("what the origin received", &head, &[&secret]);
    }
    sidecar.signal(Signal::SIGTERM);
    assert!(sidecar.wait().success());
    let log = std::fs::read_to_string(&audit).unwrap();
    assert_no_secret("the audit log", &log, &[&secret]);
    assert_no_secret("stderr", &sidecar.stderr.text(), &[&secret]);
    let events = events_of(&log, audit::Request::MESSAGE);
    let count = |reason: &str| events.iter().filter(|e| e[f::REASON] == reason).count();
    assert!(
        events
            .iter()
            .any(|e| e[f::DECISION] == "allow" && e[f::STATUS] == 200),
        "{events:?}"
    );
    assert!(count("proxy-auth-invalid") >= 1, "{events:?}");
    // Whether the client sent the credential at once or only after a 407 challenge.
    eprintln!(
        "{client:?}: {} challenge(s) (proxy-auth-required) before the credential was sent",
        count("proxy-auth-required")
    );
}

#[test]
#[ignore = "needs curl: run by .ci/run"]
fn curl_sends_the_credential_from_the_env() {
    real_client_sends_the_credential_from_the_env(EnvClient::Curl);
}

#[test]
#[ignore = "needs python3: run by .ci/run"]
fn python_urllib_sends_the_credential_from_the_env() {
    real_client_sends_the_credential_from_the_env(EnvClient::Urllib);
}

#[test]
#[ignore = "needs python3 with requests: run by .ci/run"]
fn python_requests_sends_the_credential_from_the_env() {
    real_client_sends_the_credential_from_the_env(EnvClient::Requests);
}

#[test]
#[ignore = "needs go: run by .ci/run"]
fn go_net_http_sends_the_credential_from_the_env() {
    real_client_sends_the_credential_from_the_env(EnvClient::Go);
}

#[test]
#[ignore = "needs node and the undici npm package: run by .ci/run"]
fn node_fetch_with_env_http_proxy_agent_sends_the_credential_from_the_env() {
    real_client_sends_the_credential_from_the_env(EnvClient::NodeFetch);
}

#[test]
#[ignore = "needs wget: run by .ci/run"]
fn wget_sends_the_credential_from_the_env() {
    real_client_sends_the_credential_from_the_env(EnvClient::Wget);
}

#[test]
#[ignore = "needs git: run by .ci/run"]
fn git_sends_the_credential_from_the_env() {
    real_client_sends_the_credential_from_the_env(EnvClient::Git);
}

/// A client that sends its credential only after a 407 challenge (git does, by default), on the
/// same connection: the 407 is audited as a `challenge`, not a `deny`; the deny counter does not
/// move, and `egressd suggest` does not count it. A challenge nobody answers stays a `deny`.
#[test]
fn a_challenge_answered_on_the_same_connection_is_audited_as_a_challenge() {
    let mut job = Job::start(&["--metrics-listen", "127.0.0.1:0"]);
    let url = job.url("/after-challenge");
    let authority = job.authority();
    let mut conn = connect_tcp(job.sidecar.proxy());
    let challenged = exchange(&mut conn, &request_head("GET", &url, &authority, &[]));
    assert_auth_refusal(&challenged, "proxy-auth-required");
    let answered = exchange(
        &mut conn,
        &request_head(
            "GET",
            &url,
            &authority,
            &[&proxy_authorization(&job.secret)],
        ),
    );
    assert_eq!(answered.status, 200, "{answered:?}");
    // Another connection asks without the credential and goes away: a refusal.
    let unanswered = job.get(&job.url("/unanswered"), &[]);
    assert_eq!(unanswered.status, 407);
    drop(conn);

    let metrics = job.sidecar.ready["metrics"].as_str().unwrap().to_owned();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let text = agent
        .get(&format!("http://{metrics}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let events = job.stop();
    let with = |path: &str| -> Vec<&serde_json::Value> {
        events
            .iter()
            .filter(|e| e[f::DESTINATION].as_str().unwrap_or("").ends_with(path))
            .collect()
    };
    let challenge = with("/after-challenge");
    assert_eq!(challenge.len(), 2, "{events:?}");
    assert!(
        challenge.iter().any(|e| e[f::DECISION] == "challenge"
            && e[f::REASON] == "proxy-auth-required"
            && e[f::STATUS] == 407),
        "{challenge:?}"
    );
    assert!(
        challenge.iter().any(|e| e[f::DECISION] == "allow"),
        "{challenge:?}"
    );
    let unanswered = with("/unanswered");
    assert_eq!(unanswered.len(), 1, "{events:?}");
    assert_eq!(unanswered[0][f::DECISION], "deny", "{unanswered:?}");
    assert!(
        text.lines().any(|l| l
            == "egressd_requests_total{decision=\"challenge\",reason=\"proxy-auth-required\",kind=\"request\"} 1"),
        "{text}"
    );

    // suggest reads neither a challenge nor a credential refusal as a destination to allow.
    let r = run(&["suggest", job.audit_log().to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stdout.contains("host = "), "{}", r.stdout);
    assert!(
        r.stdout.contains("refused, but not by the policy: 1"),
        "{}",
        r.stdout
    );
}
