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
    // The BIND named the same destination: the tunnel's event is the CONNECT's.
    let allowed = events
        .iter()
        .find(|e| e["command"] == "CONNECT" && e["destination"] == format!("origin.test:{port}"))
        .unwrap_or_else(|| panic!("no tunnel event: {events:#?}"));
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
fn a_reload_puts_the_new_policy_in_force_for_socks_too() {
    let (origin, sidecar, dir) = origin_and_sidecar("", None, &[]);
    let client = SocksClient::from_ready(&sidecar.ready);
    let port = origin.addr.port();
    assert!(client.connect("origin.test", port).is_ok());
    // The same file without the origin's port: origin.test is now refused on it.
    let other = if port == 65535 { 65534 } else { port + 1 };
    write(dir.path(), "policy.toml", &loopback_policy(&[other], ""));
    sidecar.signal(Signal::SIGHUP);
    sidecar.stderr.wait_for("policy reloaded", 1);
    assert_eq!(
        client.connect("origin.test", port).unwrap_err(),
        Refused::Reply(2)
    );
}

#[test]
fn with_a_parent_proxy_socks_tunnels_go_through_it_after_the_decision() {
    let origin = Origin::start(Behaviour::Answer);
    let parent = RecordingParent::start(origin.addr);
    let parent_addr = parent.addr.to_string();
    let (_unused, sidecar, dir) = origin_and_sidecar(
        "[[allow]]\nhost = \"via-parent.test\"\nports = [443]\n",
        None,
        // The recording parent keeps its side open: the idle timeout ends the tunnel (and
        // writes its event) soon after the client left.
        &[
            "--parent-proxy",
            &parent_addr,
            "--tunnel-idle-timeout",
            "1s",
        ],
    );
    let client = SocksClient::from_ready(&sidecar.ready);
    let mut tunnel = client.connect("via-parent.test", 443).unwrap();
    assert_eq!(origin_exchange(&mut tunnel, "/p"), ORIGIN_BODY);
    drop(tunnel);
    assert_eq!(
        client.connect("example.org", 443).unwrap_err(),
        Refused::Reply(2)
    );
    let heads = parent.heads.lock().unwrap().clone();
    assert_eq!(
        heads.len(),
        1,
        "a refused request never reaches the parent: {heads:?}"
    );
    assert!(
        heads[0].starts_with("CONNECT via-parent.test:443 HTTP/1.1"),
        "{heads:?}"
    );
    assert!(
        header_value(&heads[0], "x-egressd-sandbox").as_deref() == Some("sb-socks"),
        "{heads:?}"
    );
    let event = event_for(&audit_log(&dir), 2, "via-parent.test:443");
    assert_eq!(event["resolved"], parent_addr);
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
        &["--mode", "report", "--metrics-listen", "127.0.0.1:0"],
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
    // Counted as the audit event is written, under the kind `socks`.
    let metrics = sidecar.ready["metrics"].as_str().unwrap();
    let mut scrape = ureq::get(&format!("http://{metrics}/metrics"))
        .call()
        .unwrap();
    let text = scrape.body_mut().read_to_string().unwrap();
    for line in [
        r#"egressd_requests_total{decision="would-deny",reason="port-not-allowed",kind="socks"} 1"#,
        r#"egressd_requests_total{decision="deny",reason="special-range",kind="socks"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line}\n{text}");
    }
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

/// Runs `script` under `sh` with the readiness line's `env` (and `args` as `$0`, `$1`...).
fn with_env(sidecar: &Sidecar, script: &str, args: &[&str], extra: &[(&str, &str)]) -> Run {
    let mut command = std::process::Command::new("sh");
    command.arg("-c").arg(script).args(args);
    ProxyEnv::from_ready(&sidecar.ready).apply(&mut command);
    command.envs(extra.iter().copied());
    output_within(&mut command, PATIENCE)
}

#[test]
#[ignore = "needs curl: run by .ci/run"]
fn curl_socks5h_from_the_env_reaches_what_the_policy_allows_and_nothing_else() {
    let (origin, sidecar, dir) = origin_and_sidecar("", None, &[]);
    let url = format!("http://origin.test:{}/", origin.addr.port());
    let curl = r#"curl -sS --max-time 20 -x "$EGRESSD_SOCKS_URL" "$0""#;
    let ok = with_env(&sidecar, curl, &[&url], &[]);
    assert_eq!((ok.code, ok.stdout.as_str()), (0, ORIGIN_BODY), "{ok:?}");
    let refused = with_env(&sidecar, curl, &["http://example.org/"], &[]);
    // curl: "(97) Can't complete SOCKS5 connection to example.org. (2)": the reply code alone.
    assert_eq!(refused.code, 97, "{refused:?}");
    assert!(refused.stderr.contains("(2)"), "{refused:?}");
    // The reason is in the audit event and the log.
    let event = event_for(&audit_log(&dir), 2, "example.org:80");
    assert_eq!(event["reason"], "default-deny");
    sidecar.stderr.wait_for(
        "SOCKS request refused target=example.org:80 reason=\"default-deny\"",
        1,
    );
    // A wrong secret in the URL: the login is refused.
    let secret = secret_of(&sidecar.ready);
    let wrong = with_env(
        &sidecar,
        r#"curl -sS --max-time 20 -x "$(echo "$EGRESSD_SOCKS_URL" | sed "s/$1/$2/")" "$0""#,
        &[&url, &secret, &altered(&secret)],
        &[],
    );
    assert_eq!(wrong.code, 97, "{wrong:?}");
    assert_eq!(origin.seen().len(), 1);
}

#[test]
#[ignore = "needs python3 with PySocks: run by .ci/run"]
fn python_pysocks_from_the_env_reaches_what_the_policy_allows_and_nothing_else() {
    let (origin, sidecar, _dir) = origin_and_sidecar("", None, &[]);
    let script = r#"
import os, sys, urllib.parse, socks
url = urllib.parse.urlsplit(os.environ["EGRESSD_SOCKS_URL"])
for host, port in ((sys.argv[1], int(sys.argv[2])), ("example.org", 443)):
    s = socks.socksocket()
    s.set_proxy(socks.SOCKS5, url.hostname, url.port, rdns=True, username=url.username, password=url.password)
    s.settimeout(20)
    try:
        s.connect((host, port))
        s.sendall(b"GET / HTTP/1.1\r\nHost: origin.test\r\n\r\n")
        print(s.recv(12).decode())
    except socks.ProxyError as e:
        print("refused:", e.msg)
    s.close()
"#;
    let port = origin.addr.port().to_string();
    let run = with_env(
        &sidecar,
        r#"exec python3 -c "$0" "$1" "$2""#,
        &[script, "origin.test", &port],
        &[],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "HTTP/1.1 200",
            "refused: Socket error: 0x02: Connection not allowed by ruleset"
        ],
        "{run:?}"
    );
}

#[test]
#[ignore = "needs root, network namespaces: run by .ci/run"]
fn lan_destinations_are_refused_through_socks_without_a_connection_attempt() {
    const LAN_V4: &str = "10.99.0.1";
    const LAN_V6: &str = "fd00::99";
    in_netns(
        "socks::lan_destinations_are_refused_through_socks_without_a_connection_attempt",
        &[&format!("{LAN_V4}/32"), &format!("{LAN_V6}/128")],
        || {
            let v4 = Origin::bind(format!("{LAN_V4}:8080").parse().unwrap(), Behaviour::Answer);
            let v6 = Origin::bind(
                format!("[{LAN_V6}]:8080").parse().unwrap(),
                Behaviour::Answer,
            );
            let dns = FakeDns::start(&[("lan.test", LAN_V4.parse().unwrap())], false);
            let dir = tempfile::tempdir().unwrap();
            let allow_all_names = format!(
                "version = 1\n[defaults]\naction = \"allow\"\nports = \"any\"\n[dns]\nupstreams = [\"{}\"]\n",
                dns.addr
            );
            let policy = write(dir.path(), "policy.toml", &allow_all_names);
            let sidecar = Sidecar::start(&[
                "--policy",
                policy.to_str().unwrap(),
                "--socks-listen",
                "127.0.0.1:0",
            ]);
            let client = SocksClient::from_ready(&sidecar.ready);
            for host in lan_hosts(LAN_V4, LAN_V6) {
                assert_eq!(
                    client.connect(&host, 8080).unwrap_err(),
                    Refused::Reply(2),
                    "{host}"
                );
            }
            let builtin = Sidecar::start(&["--socks-listen", "127.0.0.1:0"]);
            let client = SocksClient::from_ready(&builtin.ready);
            for host in builtin_refused(LAN_V4, LAN_V6) {
                assert_eq!(
                    client.connect(&host, 8080).unwrap_err(),
                    Refused::Reply(2),
                    "{host}"
                );
            }
            assert_eq!(v4.connections.get(), 0, "a LAN listener saw a connection");
            assert_eq!(v6.connections.get(), 0, "a LAN listener saw a connection");
            assert!(dns.seen().iter().any(|q| q.starts_with("lan.test.")));
        },
    );
}

/// An OpenSSH server started by hand on 127.0.0.1:2222 (inside the test's network namespace),
/// with its own host key and config, letting in the key at `dir/id`; killed on drop.
struct Sshd {
    child: std::process::Child,
}

impl Sshd {
    fn start(dir: &Path) -> Self {
        for key in ["host", "id"] {
            let status = std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.join(key))
                .status()
                .expect("ssh-keygen runs (.ci/run installs openssh-client)");
            assert!(status.success());
        }
        std::fs::copy(dir.join("id.pub"), dir.join("authorized_keys")).unwrap();
        let config = format!(
            "Port 2222\nListenAddress 127.0.0.1\nHostKey {d}/host\nAuthorizedKeysFile {d}/authorized_keys\n\
             PidFile {d}/sshd.pid\nUsePAM no\nStrictModes no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n",
            d = dir.display()
        );
        let config = write(dir, "sshd_config", &config);
        // Privilege separation needs its directory; the package makes it at boot only.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let child = std::process::Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("sshd starts (.ci/run installs openssh-server)");
        // Listening once a connection is accepted; bounded by PATIENCE.
        let deadline = std::time::Instant::now() + PATIENCE;
        while TcpStream::connect("127.0.0.1:2222").is_err() {
            assert!(std::time::Instant::now() < deadline, "sshd did not listen");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Self { child }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "needs root, network namespaces, openssh-server, connect-proxy, netcat-openbsd and git: run by .ci/run"]
fn git_over_ssh_through_a_proxy_command_reaches_an_allowed_host_only() {
    in_netns(
        "socks::git_over_ssh_through_a_proxy_command_reaches_an_allowed_host_only",
        &[],
        git_over_ssh,
    );
}

fn git_over_ssh() {
    let dir = tempfile::tempdir().unwrap();
    let _sshd = Sshd::start(dir.path());
    let repo = dir.path().join("repo.git");
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    let src = dir.path().join("src");
    git(&["init", "-q", src.to_str().unwrap()]);
    git(&[
        "-C",
        src.to_str().unwrap(),
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "through socks",
    ]);
    git(&[
        "clone",
        "-q",
        "--bare",
        src.to_str().unwrap(),
        repo.to_str().unwrap(),
    ]);
    let policy = write(
        dir.path(),
        "policy.toml",
        &format!(
            "version = 1\n[defaults]\naction = \"deny\"\n[[allow]]\nhost = \"git.test\"\nports = [2222]\n\
             [[danger_carve_out]]\ncidr = \"127.0.0.1/32\"\nports = [2222]\n[dns.static]\n\"git.test\" = [\"127.0.0.1\"]\n{NO_RESOLVER}"
        ),
    );
    let audit = dir.path().join("audit.jsonl");
    let ssh = format!(
        "ssh -i {}/id -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o BatchMode=yes",
        dir.path().display()
    );
    // With the credential (the default): connect-proxy sends the login (RFC 1929), user egressd
    // and the secret from SOCKS5_PASSWORD; both are read from EGRESSD_SOCKS_URL.
    let sidecar = Sidecar::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--socks-listen",
        "127.0.0.1:0",
        "--audit-log",
        audit.to_str().unwrap(),
        "--proxy-credential-default",
    ]);
    let clone = r#"hostport=${EGRESSD_SOCKS_URL##*@}; secret=${EGRESSD_SOCKS_URL#socks5h://egressd:}; \
        export SOCKS5_PASSWORD=${secret%@*}; \
        GIT_SSH_COMMAND="$0 -o ProxyCommand='connect -5 -R remote -S egressd@$hostport %h %p'" \
        git clone -q "ssh://root@$1:2222$2" "$3""#;
    let out = dir.path().join("out");
    let run = with_env(
        &sidecar,
        clone,
        &[
            &ssh,
            "git.test",
            repo.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let log = std::process::Command::new("git")
        .args(["-C", out.to_str().unwrap(), "log", "--format=%s"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&log.stdout).trim(), "through socks");
    // A host the policy does not allow: the clone fails, and the audit event says why.
    let denied = dir.path().join("denied");
    let run = with_env(
        &sidecar,
        clone,
        &[
            &ssh,
            "other.test",
            repo.to_str().unwrap(),
            denied.to_str().unwrap(),
        ],
        &[],
    );
    assert_ne!(run.code, 0, "{run:?}");
    assert!(!denied.exists());
    let event = event_for(&audit, 2, "other.test:2222");
    assert_eq!(
        (event["reason"].as_str(), event["reply"].as_u64()),
        (Some("default-deny"), Some(2))
    );
    let allowed = event_for(&audit, 2, "git.test:2222");
    assert_eq!(allowed["decision"], "allow");
    assert!(allowed["bytes_down"].as_u64().unwrap() > 0);
    drop(sidecar);

    // Without a credential (--no-proxy-credential), OpenBSD netcat's SOCKS5 (no login) works.
    let open = Sidecar::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--socks-listen",
        "127.0.0.1:0",
    ]);
    let nc = r#"hostport=${EGRESSD_SOCKS_URL#socks5h://}; \
        GIT_SSH_COMMAND="$0 -o ProxyCommand='nc.openbsd -X 5 -x $hostport %h %p'" \
        git clone -q "ssh://root@git.test:2222$1" "$2""#;
    let out = dir.path().join("out-nc");
    let run = with_env(
        &open,
        nc,
        &[&ssh, repo.to_str().unwrap(), out.to_str().unwrap()],
        &[],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(out.join(".git").exists());
}
