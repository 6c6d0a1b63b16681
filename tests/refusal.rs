//! What a refusal says: the body's lines (what, why, what to do, the policy's `deny_message`),
//! the reason phrase of the status line, and a policy-refused `CONNECT` to port 80 answered
//! inside the tunnel; with the Rust client, then curl, Node's fetch (undici), pip, npm and wget
//! in tests ignored for needing them. Every refused destination here is refused before any
//! lookup (a name the policy refuses, or a loopback address), so nothing resolves.

use std::io::Write;

use audit::fields as f;

use crate::util::*;

/// A strict policy with its own refusal text and a deny rule; `origin.test` allowed on `port`.
fn policy(port: u16) -> String {
    loopback_policy(&[port], "[[deny]]\nhost = \"gist.github.com\"\n").replacen(
        "[defaults]\naction = \"deny\"\n",
        "[defaults]\naction = \"deny\"\ndeny_message = \"Ask #infra for access.\"\n",
        1,
    )
}

/// The line of the deny rule's `host` key in [`policy`].
fn deny_line() -> usize {
    let text = policy(1);
    text.lines()
        .position(|l| l == "host = \"gist.github.com\"")
        .unwrap()
        + 1
}

fn start(flags: &[&str]) -> (Origin, Sidecar, tempfile::TempDir) {
    let origin = Origin::start(Behaviour::Answer);
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.toml", &policy(origin.addr.port()));
    let audit = dir.path().join("audit.jsonl");
    let mut args = vec![
        "--policy",
        policy.to_str().unwrap(),
        "--audit-log",
        audit.to_str().unwrap(),
    ];
    args.extend_from_slice(flags);
    (origin, Sidecar::start(&args), dir)
}

fn status_line(response: &Response) -> &str {
    response.headers.lines().next().unwrap_or_default()
}

#[test]
fn a_refusal_says_what_why_and_what_to_do_in_its_body_and_reason_phrase() {
    let (_origin, sidecar, _dir) = start(&[]);
    let refused = Client::Rust.get(sidecar.proxy(), "http://example.org/");
    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(
        status_line(&refused),
        "HTTP/1.1 403 Forbidden by egressd: default-deny http://example.org/"
    );
    let lines: Vec<&str> = refused.body.lines().collect();
    assert_eq!(
        lines,
        [
            "egressd: 403 Forbidden: http://example.org/: deny (default-deny): no rule names it \
             and the default action is deny",
            "egressd: to allow it, add: [[allow]] host = \"example.org\" ports = [80]",
            "Ask #infra for access.",
        ],
        "{}",
        refused.body
    );

    let special = Client::Rust.get(sidecar.proxy(), "http://169.254.169.254/latest/");
    assert_eq!(
        status_line(&special),
        "HTTP/1.1 403 Forbidden by egressd: special-range 169.254.0.0/16"
    );
    assert!(
        special.body.contains("RFC 3927")
            && special
                .body
                .contains("reachable only through a [[danger_carve_out]]")
            && special
                .body
                .contains("[[danger_carve_out]] cidr = \"169.254.169.254/32\" ports = [80]"),
        "{}",
        special.body
    );

    let ruled = Client::Rust.tunnel_get(sidecar.proxy(), "http://gist.github.com:443/");
    assert_eq!(
        status_line(&ruled),
        format!(
            "HTTP/1.1 403 Forbidden by egressd: deny-rule deny[0] line {}",
            deny_line()
        )
    );
    assert!(
        ruled.body.contains("remove or narrow deny[0]"),
        "{}",
        ruled.body
    );

    let malformed = Client::Rust.get(sidecar.proxy(), "http://0x7f.1/");
    assert_eq!(
        status_line(&malformed),
        "HTTP/1.1 400 Bad Request by egressd: malformed-target"
    );
    assert!(!malformed.body.contains("#infra"), "only policy refusals");
}

#[test]
fn a_policy_refused_connect_to_port_80_is_answered_inside_the_tunnel() {
    let (_origin, sidecar, dir) = start(&[]);
    let audit = dir.path().join("audit.jsonl");
    for (url, reason) in [
        ("http://example.org:80/x", "default-deny"),
        ("http://127.0.0.2:80/y", "special-range"),
    ] {
        let r = Client::Rust.tunnel_get(sidecar.proxy(), url);
        assert!(
            r.headers.starts_with("HTTP/1.1 200 OK\r\n"),
            "the CONNECT is answered 200: {r:?}"
        );
        assert_eq!(r.status, 403, "{r:?}");
        assert_eq!(
            header_value(&r.headers, "x-egressd-reason").as_deref(),
            Some(reason)
        );
        assert!(r.body.contains("Ask #infra for access."), "{r:?}");
    }
    // Another port: the plain 403.
    let other = Client::Rust.tunnel_get(sidecar.proxy(), "http://example.org:8080/");
    assert!(other.headers.starts_with("HTTP/1.1 403 "), "{other:?}");
    // Malformed: the plain 400.
    let malformed = Client::Rust.tunnel_get(sidecar.proxy(), "http://0x7f.1:80/");
    assert!(
        malformed.headers.starts_with("HTTP/1.1 400 "),
        "{malformed:?}"
    );
    let events = request_events(&audit, 4);
    let tunnelled: Vec<_> = events
        .iter()
        .filter(|e| e[f::DESTINATION] == "example.org:80")
        .collect();
    assert_eq!(tunnelled.len(), 1, "one event per CONNECT: {events:#?}");
    assert_eq!(tunnelled[0][f::METHOD], "CONNECT");
    assert_eq!(tunnelled[0][f::DECISION], "deny");
    assert_eq!(tunnelled[0][f::REASON], "default-deny");
    assert_eq!(tunnelled[0][f::STATUS], 403);
}

#[test]
fn a_connect_to_port_80_without_the_credential_is_a_plain_407() {
    let (_origin, sidecar, _dir) = start(&["--proxy-credential-default"]);
    let secret = secret_of(&sidecar.ready);
    for header in [String::new(), proxy_authorization(&altered(&secret))] {
        let mut stream = connect_tcp(sidecar.proxy());
        let mut request = "CONNECT example.org:80 HTTP/1.1\r\nHost: example.org:80\r\n".to_owned();
        if !header.is_empty() {
            request.push_str(&header);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let head = read_head(&mut stream).unwrap();
        assert!(
            head.starts_with("HTTP/1.1 407 Proxy Authentication Required by egressd: proxy-auth-"),
            "{head}"
        );
    }
}

/// The readiness line's env with the sandbox's own loopback exemption removed, so clients send
/// the refused loopback URLs below to egressd, as a sandbox whose launcher closes loopback does.
fn env_of(sidecar: &Sidecar) -> ProxyEnv {
    let mut ready = sidecar.ready.clone();
    for name in ["NO_PROXY", "no_proxy"] {
        ready["env"][name] = "localhost".into();
    }
    ProxyEnv::from_ready(&ready)
}

#[test]
#[ignore = "needs curl: run by .ci/run"]
fn curl_shows_the_reason_phrase_and_the_body_of_a_refused_tunnel_to_port_80() {
    let (_origin, sidecar, _dir) = start(&[]);
    let client = Client::Curl;
    let tunnelled = client.tunnel_get(sidecar.proxy(), "http://example.org/");
    assert_eq!(tunnelled.status, 403, "{tunnelled:?}");
    assert!(
        tunnelled
            .headers
            .contains("403 Forbidden by egressd: default-deny example.org:80"),
        "{tunnelled:?}"
    );
    assert!(
        tunnelled
            .body
            .contains("to allow it, add: [[allow]] host = \"example.org\" ports = [80]"),
        "{tunnelled:?}"
    );
    let plain = client.get(sidecar.proxy(), "http://example.org/");
    assert_eq!(plain.status, 403, "{plain:?}");
    assert!(plain.body.contains("Ask #infra"), "{plain:?}");
}

#[test]
#[ignore = "needs node and undici: run by .ci/run"]
fn node_fetch_sees_the_refusal_of_an_http_url_it_tunnels() {
    let (_origin, sidecar, _dir) = start(&["--proxy-credential-default"]);
    let env = env_of(&sidecar);
    let refused = node_fetch(&env, "http://example.org/x");
    assert_eq!(refused.code, 0, "{refused:?}");
    let parts: Vec<&str> = refused.stdout.splitn(4, '|').collect();
    assert_eq!(
        parts[..3],
        [
            "403",
            "Forbidden by egressd: default-deny example.org:80",
            "default-deny"
        ],
        "{refused:?}"
    );
    assert!(parts[3].contains("Ask #infra for access."), "{refused:?}");
    let special = node_fetch(&env, "http://127.0.0.2/");
    assert!(
        special
            .stdout
            .starts_with("403|Forbidden by egressd: special-range 127.0.0.0/8|special-range|"),
        "{special:?}"
    );
    // A tunnel to another port keeps the plain 403, which undici hides.
    let tls = node_fetch(&env, "https://example.org/");
    assert_ne!(tls.code, 0, "{tls:?}");
    // And a wrong credential is a plain 407, never answered inside a tunnel.
    let secret = secret_of(&sidecar.ready);
    let wrong = node_fetch(
        &env.with_secret(&secret, &altered(&secret)),
        "http://example.org/x",
    );
    assert!(wrong.stderr.contains("407"), "{wrong:?}");
}

#[test]
#[ignore = "needs pip: run by .ci/run"]
fn pip_prints_the_reason_phrase() {
    let (_origin, sidecar, dir) = start(&["--proxy-credential-default"]);
    let run = pip_download(&env_of(&sidecar), "https://127.0.0.2/simple/", dir.path());
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stderr
            .contains("403 Forbidden by egressd: special-range 127.0.0.0/8"),
        "{run:?}"
    );
}

#[test]
#[ignore = "needs npm: run by .ci/run"]
fn npm_prints_the_reason_phrase() {
    let (_origin, sidecar, dir) = start(&["--proxy-credential-default"]);
    for registry in ["http://127.0.0.2/", "https://127.0.0.2/"] {
        let run = npm_install(&env_of(&sidecar), registry, dir.path());
        assert_ne!(run.code, 0, "{run:?}");
        let printed = format!("{}{}", run.stdout, run.stderr);
        assert!(
            printed.contains("403 Forbidden by egressd: special-range 127.0.0.0/8"),
            "{registry}: {run:?}"
        );
    }
}

#[test]
#[ignore = "needs wget: run by .ci/run"]
fn wget_prints_the_reason_phrase() {
    let (_origin, sidecar, _dir) = start(&["--proxy-credential-default"]);
    let env = env_of(&sidecar);
    let plain = wget(&env, "http://127.0.0.2/x");
    assert!(
        plain
            .stderr
            .contains("ERROR 403: Forbidden by egressd: special-range 127.0.0.0/8"),
        "{plain:?}"
    );
    let tunnelled = wget(&env, "https://127.0.0.2/x");
    assert!(
        tunnelled
            .stderr
            .contains("Forbidden by egressd: special-range 127.0.0.0/8"),
        "{tunnelled:?}"
    );
}

/// A name whose only address is special, on a port no rule names: the body's advice holds the
/// carve-out with the rule (the rule alone would not open it), and applied to the policy,
/// `egressd explain` says allow.
#[test]
fn the_advice_for_a_special_address_names_a_change_that_works() {
    let (origin, sidecar, dir) = start(&[]);
    let other = origin.addr.port().wrapping_add(1).max(1);
    let url = format!("http://origin.test:{other}/");
    let refused = Client::Rust.get(sidecar.proxy(), &url);
    assert_eq!(refused.status, 403, "{refused:?}");
    let advice = format!(
        "[[danger_carve_out]] cidr = \"127.0.0.1/32\" ports = [{other}] \
         [[allow]] host = \"origin.test\" ports = [{other}]"
    );
    assert!(refused.body.contains(&advice), "{}", refused.body);
    let path = dir.path().join("policy.toml");
    let explained = run(&["explain", path.to_str().unwrap(), &url, "--json"]);
    assert_eq!(explained.code, 1, "{explained:?}");
    let json: serde_json::Value = serde_json::from_str(&explained.stdout).unwrap();
    let toml = json["suggestion"]["toml"].as_str().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let (rules, rest) = text.split_at(text.find("[dns.static]").unwrap());
    let fixed = write(dir.path(), "fixed.toml", &format!("{rules}{toml}\n{rest}"));
    let allowed = run(&["explain", fixed.to_str().unwrap(), &url]);
    assert_eq!(allowed.code, 0, "{allowed:?}");
}
