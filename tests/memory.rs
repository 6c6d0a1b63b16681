//! Memory back after a burst (docs/benchmarks.md, "Memory after a burst"): connections opened at
//! once, then all closed, leave egressd's resident set within max(16 MiB, a quarter of the
//! burst's growth) of where it started, within seconds, and burst after burst it does not creep
//! up. Linux only (RSS from /proc), ignored: each burst holds thousands of descriptors, more than a
//! plain test run may have.
#![cfg(target_os = "linux")]

use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::*;

/// Keep-alive connections in one burst, each after one request.
const CONNECTIONS: usize = 10_000;
/// Inspected TLS sessions in one burst, each after one request.
const SESSIONS: usize = 1_000;
/// Bursts in a row: the last must end as low as the first.
const BURSTS: usize = 3;
/// Threads opening the connections.
const OPENERS: usize = 8;
/// How long memory may take to come back: the quiet time egressd waits for (3 s), its once a
/// second count, and the release itself. A bound on the wait, not a timing claim.
const GIVE_BACK: Duration = Duration::from_secs(20);
const MIB: u64 = 1024 * 1024;

/// egressd's resident set, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

/// Lets this process hold as many descriptors as its hard limit allows.
fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

/// Opens `count` of whatever `open` makes, from [`OPENERS`] threads, and returns them all.
fn open_many<T: Send + 'static>(
    count: usize,
    open: impl Fn() -> T + Send + Sync + 'static,
) -> Vec<T> {
    let open = std::sync::Arc::new(open);
    let threads: Vec<_> = (0..OPENERS)
        .map(|i| {
            let open = open.clone();
            let share = count / OPENERS + usize::from(i < count % OPENERS);
            thread::spawn(move || (0..share).map(|_| open()).collect::<Vec<T>>())
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect()
}

/// Runs `BURSTS` bursts of `burst()` (which returns what it holds open) against the egressd of
/// `pid`, and checks that memory comes back after each.
fn bursts<T>(what: &str, pid: u32, mut burst: impl FnMut() -> Vec<T>) {
    let baseline = rss(pid);
    for round in 1..=BURSTS {
        let held = burst();
        let peak = rss(pid);
        drop(held);
        let bound = baseline + (16 * MIB).max(peak.saturating_sub(baseline) / 4);
        let deadline = Instant::now() + GIVE_BACK;
        let mut now = rss(pid);
        while now > bound && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(200));
            now = rss(pid);
        }
        eprintln!(
            "{what}, burst {round}: RSS {} MiB before, {} MiB at the peak, {} MiB after (bound {} MiB)",
            baseline / MIB,
            peak / MIB,
            now / MIB,
            bound / MIB
        );
        assert!(
            now <= bound,
            "{what}, burst {round}: {} MiB kept of {} MiB grown (baseline {} MiB)",
            (now - baseline) / MIB,
            peak.saturating_sub(baseline) / MIB,
            baseline / MIB
        );
    }
}

/// An egressd under `policy` with room for a burst of [`CONNECTIONS`], logging only warnings.
fn burst_sidecar(policy: &std::path::Path) -> Sidecar {
    Sidecar::start_with_nofile(
        (CONNECTIONS + 2_000) as u32,
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--max-connections",
            &(CONNECTIONS + 1_000).to_string(),
            "--log-level",
            "warn",
        ],
    )
}

#[test]
#[ignore = "needs 10,000 descriptors for each side: run by .ci/run"]
fn memory_comes_back_after_bursts_of_keep_alive_connections() {
    raise_nofile();
    let origin = Origin::start(Behaviour::Answer);
    let port = origin.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.toml", &loopback_policy(&[port], ""));
    let sidecar = burst_sidecar(&policy);
    let proxy = sidecar.proxy();
    let authority = format!("origin.test:{port}");
    let request = request_head("GET", &format!("http://{authority}/"), &authority, &[]);
    // One request first: what the first request sets up (the origin pool, buffers) is baseline.
    let mut first = connect_tcp(proxy);
    assert_eq!(exchange(&mut first, &request).status, 200);
    drop(first);
    thread::sleep(Duration::from_millis(500));
    bursts("keep-alive", sidecar.pid(), || {
        let request = request.clone();
        let held: Vec<TcpStream> = open_many(CONNECTIONS, move || {
            let mut stream = connect_tcp(proxy);
            assert_eq!(exchange(&mut stream, &request).status, 200);
            stream
        });
        assert_eq!(held.len(), CONNECTIONS);
        held
    });
}

/// Connections that only got a refusal (403, decided without a lookup or a dial) and
/// connections that sent nothing, half and half: nothing of theirs may stay either.
#[test]
#[ignore = "needs 10,000 descriptors for each side: run by .ci/run"]
fn memory_comes_back_after_bursts_of_refused_and_silent_connections() {
    raise_nofile();
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.toml", &loopback_policy(&[9], ""));
    let sidecar = burst_sidecar(&policy);
    let proxy = sidecar.proxy();
    let request = request_head("GET", "http://10.0.0.1/", "10.0.0.1", &[]);
    let mut first = connect_tcp(proxy);
    assert_eq!(exchange(&mut first, &request).status, 403);
    drop(first);
    thread::sleep(Duration::from_millis(500));
    bursts("refused and silent", sidecar.pid(), || {
        let request = request.clone();
        let counter = std::sync::atomic::AtomicUsize::new(0);
        let held: Vec<TcpStream> = open_many(CONNECTIONS, move || {
            let mut stream = connect_tcp(proxy);
            if counter
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                .is_multiple_of(2)
            {
                assert_eq!(exchange(&mut stream, &request).status, 403);
            }
            stream
        });
        assert_eq!(held.len(), CONNECTIONS);
        held
    });
}

#[test]
#[ignore = "needs 1,000 TLS sessions held at once: run by .ci/run"]
fn memory_comes_back_after_bursts_of_inspected_sessions() {
    raise_nofile();
    let origin_ca = TestCa::new("test origin CA");
    let origin = TlsOrigin::start(&origin_ca, &["origin.test"]);
    let port = origin.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let roots = origin_ca.write(dir.path(), "origin-ca.pem");
    let policy = write(
        dir.path(),
        "policy.toml",
        &format!(
            "version = 1\n[[allow]]\nhost = \"origin.test\"\nports = [{port}]\ninspect = true\n\n\
             [[danger_carve_out]]\ncidr = \"127.0.0.1/32\"\nports = [{port}]\n\n\
             [dns.static]\n\"origin.test\" = [\"127.0.0.1\"]\n{NO_RESOLVER}"
        ),
    );
    let sidecar = Sidecar::start_with_nofile(
        (4 * SESSIONS + 1_000) as u32,
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--inspect-upstream-roots",
            roots.to_str().unwrap(),
            "--max-connections",
            &(SESSIONS + 1_000).to_string(),
            "--log-level",
            "warn",
        ],
    );
    let ca = pem_certificates(std::path::Path::new(
        sidecar.ready["inspect_ca"].as_str().unwrap(),
    ));
    let config = client_config(&ca);
    let proxy = sidecar.proxy();
    let authority = format!("origin.test:{port}");
    let request = request_head("GET", "/", &authority, &[]);
    let open = move || {
        let mut session = Session::open(proxy, &authority, "origin.test", config.clone()).unwrap();
        assert_eq!(session.send(&request).unwrap().status, 200);
        session
    };
    drop(open());
    thread::sleep(Duration::from_millis(500));
    let open = std::sync::Arc::new(open);
    bursts("inspected", sidecar.pid(), || {
        let open = open.clone();
        let held = open_many(SESSIONS, move || open());
        assert_eq!(held.len(), SESSIONS);
        held
    });
}
