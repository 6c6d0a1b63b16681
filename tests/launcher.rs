//! The Rust launcher kit (`launcher/`, crate `egressd-launcher`) against the real binary: start
//! and readiness, a readiness timeout, an early exit, the env block, stop with an open tunnel,
//! stop past its deadline, a second stop, and drop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use egressd_launcher::{CredentialSource, Error, Launcher, Mode, Sidecar, Status, Stderr};

use crate::util::{
    Echo, ORIGIN_BODY, Origin, PATIENCE, basic, header_value, loopback_policy, read_head, repo,
    write,
};

/// A launcher for the egressd cargo built, its stderr kept out of the test output.
fn launcher() -> Launcher {
    Launcher::new(env!("CARGO_BIN_EXE_egressd")).stderr(Stderr::Discard)
}

/// The secret in a proxy URL from the env block (`http://egressd:SECRET@ADDR`).
fn secret_in(url: &str) -> &str {
    url.strip_prefix("http://egressd:")
        .and_then(|rest| rest.split_once('@'))
        .map(|(secret, _)| secret)
        .unwrap_or_else(|| panic!("no credential in {url}"))
}

/// Sends `GET url` through the proxy with the given extra head lines; returns the response head.
fn get_through(proxy: SocketAddr, url: &str, extra: &str) -> String {
    let mut stream = TcpStream::connect(proxy).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        stream,
        "GET {url} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    read_head(&mut stream).unwrap()
}

/// Opens a CONNECT tunnel to the echo origin through the proxy and checks it echoes.
fn open_tunnel(proxy: SocketAddr, port: u16) -> TcpStream {
    let mut tunnel = TcpStream::connect(proxy).unwrap();
    tunnel.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        tunnel,
        "CONNECT origin.test:{port} HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\n"
    )
    .unwrap();
    let head = read_head(&mut tunnel).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    echo(&mut tunnel, b"one..");
    tunnel
}

fn echo(tunnel: &mut TcpStream, bytes: &[u8; 5]) {
    tunnel.write_all(bytes).unwrap();
    let mut echoed = [0u8; 5];
    tunnel.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, bytes);
}

fn policy_file(dir: &Path, port: u16) -> std::path::PathBuf {
    write(dir, "policy.toml", &loopback_policy(&[port], ""))
}

#[test]
fn starts_egressd_and_hands_out_the_readiness_line_typed() {
    let origin = Origin::start(crate::util::Behaviour::Answer);
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(dir.path(), origin.addr.port());
    let mut sidecar = launcher()
        .policy(&policy)
        .sandbox_id("kit-42")
        .start()
        .unwrap();
    let ready = sidecar.ready().clone();
    assert_eq!(ready.pid, sidecar.pid());
    assert_eq!(ready.sandbox_id, "kit-42");
    assert!(ready.proxy.ip().is_loopback(), "{ready:?}");
    assert!(
        ready.dns.is_some_and(|dns| dns.ip().is_loopback()),
        "{ready:?}"
    );
    assert_eq!(ready.proxy_credential, CredentialSource::Generated);
    assert_eq!(ready.mode, Mode::Enforce);
    assert_eq!(Path::new(&ready.policy.origin), policy);
    assert_eq!(ready.inspect_ca, None);

    // The env block carries the proxy URL, credential included, under every name clients read.
    for name in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        assert_eq!(ready.env[name], ready.proxy_url, "{name}");
    }
    assert!(ready.env["NO_PROXY"].contains("127.0.0.1"));
    let secret = secret_in(&ready.env["HTTP_PROXY"]);
    let url = format!("http://origin.test:{}/", origin.addr.port());
    let head = get_through(
        ready.proxy,
        &url,
        &format!("Proxy-Authorization: {}\r\n", basic(secret)),
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(
        header_value(&origin.seen()[0], "x-egressd-sandbox").as_deref(),
        Some("kit-42")
    );
    let head = get_through(ready.proxy, &url, "");
    assert!(head.starts_with("HTTP/1.1 407"), "{head}");

    let exit = sidecar.stop().unwrap();
    assert!(exit.is_clean(), "{exit:?}");
}

#[cfg(unix)]
#[test]
fn a_start_not_ready_in_time_fails_and_leaves_nothing_running() {
    use std::os::unix::fs::PermissionsExt;
    // egressd itself reaches readiness or exits promptly (even a FIFO as its policy is refused at
    // once), so the sidecar that never gets ready is a stand-in: it notes its pid, then waits.
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let stand_in = write(
        dir.path(),
        "never-ready",
        &format!(
            "#!/bin/sh\necho $$ > '{}'\nexec sleep 600\n",
            pid_file.display()
        ),
    );
    std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).unwrap();
    let error = Launcher::new(&stand_in)
        .stderr(Stderr::Discard)
        .readiness_timeout(Duration::from_secs(2))
        .start()
        .err()
        .expect("must not become ready");
    assert!(
        matches!(error, Error::ReadinessTimeout { after, .. } if after == Duration::from_secs(2)),
        "{error}"
    );
    assert!(
        error.to_string().contains("was not ready within"),
        "{error}"
    );
    // The stand-in started, and is gone now: killed and reaped, not left running.
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("the stand-in ran")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH),
        "the sidecar that was not ready is still there"
    );
}

#[test]
fn an_early_exit_fails_closed_with_the_documented_code_and_the_reason() {
    let policy = repo("policy/testdata/invalid/carve-out-broad.toml");
    let error = launcher()
        .policy(&policy)
        .start()
        .err()
        .expect("must not become ready");
    assert_eq!(error.status(), Some(Status::BadInput), "{error}");
    assert!(
        error
            .last_stderr_line()
            .is_some_and(|line| line.contains("carve-out-broad.toml:4:8")),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("exit code 2 (bad input)"),
        "{error}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let error = launcher()
        .proxy_listen(addr)
        .start()
        .err()
        .expect("must not become ready");
    assert_eq!(error.status(), Some(Status::StartFailed), "{error}");
    assert!(
        error
            .to_string()
            .contains(&format!("cannot listen on {addr}")),
        "{error}"
    );

    let error = Launcher::new("/nonexistent/egressd").start().err().unwrap();
    assert!(matches!(error, Error::Spawn { .. }), "{error}");
}

#[test]
fn stop_drains_an_open_tunnel_and_a_second_stop_is_harmless() {
    let echo_origin = Echo::start();
    let port = echo_origin.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let (lines, lines_rx) = mpsc::channel();
    let sidecar = launcher()
        .policy(policy_file(dir.path(), port))
        .no_proxy_credential()
        .drain_timeout(PATIENCE)
        .stderr(Stderr::Lines(Box::new(move |line| {
            let _ = lines.send(line.to_owned());
        })))
        .start()
        .unwrap();
    let proxy = sidecar.ready().proxy;
    let mut tunnel = open_tunnel(proxy, port);

    let stopping = thread::spawn(move || {
        let mut sidecar = sidecar;
        let exit = sidecar.stop();
        (sidecar, exit)
    });
    loop {
        let line = lines_rx
            .recv_timeout(PATIENCE)
            .expect("egressd says it drains");
        if line.contains("draining") {
            break;
        }
    }
    assert!(
        TcpStream::connect(proxy).is_err(),
        "no new connections while draining"
    );
    echo(&mut tunnel, b"two..");
    drop(tunnel);
    let (mut sidecar, exit) = stopping.join().unwrap();
    let exit = exit.unwrap();
    assert!(exit.is_clean(), "{exit:?}");

    assert_eq!(
        sidecar.stop().unwrap(),
        exit,
        "a second stop returns the first's exit"
    );
    sidecar.terminate().unwrap();
    assert_eq!(sidecar.try_exit().unwrap(), Some(exit));
}

#[test]
fn stop_kills_egressd_that_outlasts_its_deadline() {
    let echo_origin = Echo::start();
    let port = echo_origin.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let mut sidecar = launcher()
        .policy(policy_file(dir.path(), port))
        .no_proxy_credential()
        .drain_timeout(Duration::from_secs(600))
        .start()
        .unwrap();
    // The tunnel stays open across the stop: egressd would drain for ten minutes.
    let tunnel = open_tunnel(sidecar.ready().proxy, port);
    let exit = sidecar.stop_within(Duration::from_millis(200)).unwrap();
    assert!(exit.killed, "{exit:?}");
    assert!(!exit.is_clean());
    #[cfg(unix)]
    assert_eq!(
        exit.status,
        Status::Signal(nix::sys::signal::Signal::SIGKILL as i32)
    );
    assert_eq!(sidecar.stop().unwrap(), exit);
    drop(tunnel);
}

#[test]
fn dropping_the_sidecar_stops_egressd() {
    let sidecar: Sidecar = launcher().start().unwrap();
    let proxy = sidecar.ready().proxy;
    TcpStream::connect(proxy).expect("egressd listens while the sidecar lives");
    drop(sidecar);
    assert!(
        TcpStream::connect(proxy).is_err(),
        "egressd is gone after the drop"
    );
}

#[test]
fn letting_go_of_stdin_stops_egressd() {
    let mut sidecar = launcher().start().unwrap();
    sidecar.close_stdin();
    let exit = sidecar.wait_within(PATIENCE).unwrap();
    assert!(exit.is_clean(), "{exit:?}");
    assert!(
        exit.stderr.iter().any(|line| line.contains("stdin closed")),
        "{exit:?}"
    );
}

#[test]
#[ignore = "needs curl: run by .ci/run"]
fn a_job_with_the_env_block_reaches_the_origin_through_the_proxy_with_curl() {
    let origin = Origin::start(crate::util::Behaviour::Answer);
    let dir = tempfile::tempdir().unwrap();
    let mut sidecar = launcher()
        .policy(policy_file(dir.path(), origin.addr.port()))
        .sandbox_id("kit-curl")
        .start()
        .unwrap();
    let run = |url: String| {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "20", "-w", "%{http_code}"])
            .arg(url)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .envs(&sidecar.ready().env)
            .output()
            .expect("curl runs (CI installs it)")
    };
    let out = run(format!("http://origin.test:{}/", origin.addr.port()));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{ORIGIN_BODY}200"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        header_value(&origin.seen()[0], "x-egressd-sandbox").as_deref(),
        Some("kit-curl"),
        "the job's request went through egressd"
    );
    let out = run(format!("http://not-allowed.test:{}/", origin.addr.port()));
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("403"));
    assert!(sidecar.stop().unwrap().is_clean());
}
