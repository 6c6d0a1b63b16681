//! `--mode loopback-only`: one rule set for a service user that runs many jobs at once, each with
//! its own egressd on loopback. The whole text of both renderers (golden files shared with the
//! binary's tests), the check that pf and nft say the same thing, and, as root inside a network
//! namespace of its own, the nft rules enforced for real while sidecars come and go.
#![allow(clippy::unwrap_used)]

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pf::{BlockPolicy, Mode, Options, Plan, SandboxUser, UidRange};
use policy::Policy;

/// The uid the golden files are written for (what `egressd pf --user 601` prints).
const GOLDEN_UID: u32 = 601;

fn options(uid: u32, range: UidRange) -> Options {
    Options {
        user: SandboxUser::new(uid, None, range).unwrap(),
        mode: Mode::LoopbackOnly,
        block: BlockPolicy::Return,
        block_icmp: false,
        generator: concat!("egressd ", env!("CARGO_PKG_VERSION")).into(),
    }
}

fn plan(uid: u32) -> Plan {
    Plan::new(&Policy::builtin(), &options(uid, UidRange::Service)).unwrap()
}

fn nft_text(uid: u32) -> String {
    pf::nft::render(&plan(uid), &pf::nft::default_table(uid))
}

/// Compares `actual` with `tests/golden/NAME` (what the binary prints for the same flags);
/// `EGRESSD_BLESS=1` rewrites the file instead.
fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/golden")
        .join(name);
    if std::env::var_os("EGRESSD_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing (EGRESSD_BLESS=1 writes it)", path.display()));
    assert_eq!(
        actual, expected,
        "{name} differs (EGRESSD_BLESS=1 to accept)"
    );
}

#[test]
fn golden_loopback_only() {
    golden(
        "pf-loopback-only.conf",
        &pf::pf::render(&plan(GOLDEN_UID), pf::pf::DEFAULT_ANCHOR),
    );
    golden("nft-loopback-only.nft", &nft_text(GOLDEN_UID));
}

/// A rule as both firewalls mean it: verdict, family, destination (ports never appear here).
type Meaning = (&'static str, &'static str, String);

fn pf_meaning(text: &str, uid: u32) -> Vec<Meaning> {
    let user = format!(" user {uid}");
    text.lines()
        .filter(|l| l.starts_with("pass ") || l.starts_with("block "))
        .map(|line| {
            let body = line.strip_suffix(user.as_str()).unwrap();
            let verdict = if line.starts_with("pass ") {
                "pass"
            } else {
                "block"
            };
            let family = if body.contains(" inet6 ") { "v6" } else { "v4" };
            let dest = body.rsplit_once(" to ").unwrap().1.to_owned();
            (verdict, family, dest)
        })
        .collect()
}

fn nft_meaning(text: &str, uid: u32) -> Vec<Meaning> {
    let mut meanings: Vec<Meaning> = Vec::new();
    for line in text.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix(&format!("meta skuid {uid} ")) else {
            continue;
        };
        let verdict = if rest.ends_with(" accept") {
            "pass"
        } else {
            "block"
        };
        let (family, dest) = if let Some(d) = rest.split(" ip daddr ").nth(1) {
            ("v4", d.split(' ').next().unwrap().to_owned())
        } else if let Some(d) = rest.split(" ip6 daddr ").nth(1) {
            let net = d.split(' ').next().unwrap();
            ("v6", net.strip_suffix("/128").unwrap_or(net).to_owned())
        } else if rest.contains("meta nfproto ipv4") {
            ("v4", "any".to_owned())
        } else {
            ("v6", "any".to_owned())
        };
        // nft writes a refusal once per protocol (TCP reset, UDP ICMP); pf once for both.
        let meaning = (verdict, family, dest);
        if meanings.last() != Some(&meaning) {
            meanings.push(meaning);
        }
    }
    meanings
}

#[test]
fn pf_and_nft_say_the_same_thing() {
    let plan = plan(GOLDEN_UID);
    let pf = pf_meaning(&pf::pf::render(&plan, pf::pf::DEFAULT_ANCHOR), GOLDEN_UID);
    let nft = nft_meaning(&nft_text(GOLDEN_UID), GOLDEN_UID);
    let expected: Vec<Meaning> = vec![
        ("pass", "v4", "127.0.0.0/8".into()),
        ("pass", "v6", "::1".into()),
        ("block", "v4", "any".into()),
        ("block", "v6", "any".into()),
    ];
    assert_eq!(pf, expected);
    assert_eq!(nft, expected);
}

#[test]
fn the_rules_name_no_job() {
    // Nothing per job: no port, no table entry. The same text serves one job or forty.
    let text = nft_text(GOLDEN_UID);
    assert!(!text.contains("dport"), "{text}");
    assert!(!text.contains("set special"), "{text}");
}

#[test]
fn service_users_below_500_but_never_root() {
    assert_eq!(
        SandboxUser::new(450, None, UidRange::Regular),
        Err(pf::Error::SystemUid(450))
    );
    assert!(SandboxUser::new(450, None, UidRange::Service).is_ok());
    assert!(SandboxUser::new(1, None, UidRange::Service).is_ok());
    assert_eq!(
        SandboxUser::new(0, None, UidRange::Service),
        Err(pf::Error::RootAsServiceUser)
    );
    assert!(SandboxUser::new(0, None, UidRange::DangerAny).is_ok());
    assert!(SandboxUser::new(601, None, UidRange::Regular).is_ok());
}

// --- Enforcement: nft inside a network namespace, as root. ---------------------------------

const JOB_UID: u32 = 60133;
const OTHER_UID: u32 = 60134;
/// Stand-ins for hosts off the machine, put on `lo` inside the namespace only: a LAN host, a
/// public-looking documentation address, and a public address in no special range (which `lan`
/// mode would let through; `loopback-only` must not).
const LAN4: &str = "10.99.0.1";
const DOC4: &str = "198.51.100.7";
const PUBLIC4: &str = "11.0.0.7";
const LAN6: &str = "fd00::99";
/// Set for the run inside the namespace: the outer namespace's id, which it must differ from.
const IN_NETNS: &str = "EGRESSD_PF_TEST_OUTER_NETNS";
/// Set for a probe run as another uid: `tcp|udp ADDR`.
const PROBE: &str = "EGRESSD_PF_PROBE";
/// Printed by the inner test once every check passed.
const INNER_DONE: &str = "INSIDE: all checks passed";

#[test]
#[ignore = "needs root, network namespaces and nft: run by .ci/run"]
fn loopback_only_rules_hold_for_every_job_of_one_user() {
    assert!(
        is_root(),
        "run as root (it makes a network namespace and loads nft rules there)"
    );
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "set -e; ip link set lo up; ip addr add {LAN4}/32 dev lo; ip addr add {DOC4}/32 dev lo; \
         ip addr add {PUBLIC4}/32 dev lo; ip addr add {LAN6}/128 dev lo; exec \"$0\" \"$@\""
    );
    let out = Command::new("unshare")
        .args(["--net", "--", "sh", "-c", &script])
        .arg(exe)
        .args([
            "inside_the_namespace",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(IN_NETNS, netns_id())
        .output()
        .expect("unshare (util-linux) runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "inside the namespace:\n{text}");
    assert!(
        text.contains(INNER_DONE),
        "the inner test did not run:\n{text}"
    );
}

#[test]
#[ignore = "runs inside the network namespace made by loopback_only_rules_hold_for_every_job_of_one_user"]
fn inside_the_namespace() {
    if std::env::var_os(IN_NETNS).is_none() {
        println!(
            "not started by the outer test: nothing to do (it loads rules only in its namespace)"
        );
        return;
    }
    assert_in_fresh_netns();
    let prober = Prober::new();
    // Two jobs' sidecars (a proxy on each loopback family, job 1's DNS stub on UDP).
    let job1 = TcpListener::bind("127.0.0.1:0").unwrap();
    let job2 = TcpListener::bind("[::1]:0").unwrap();
    let stub1 = udp_echo("127.0.0.1:0");
    // Destinations the job user must not reach.
    let public_ip: std::net::IpAddr = PUBLIC4.parse().unwrap();
    assert!(
        policy::denied_networks()
            .iter()
            .all(|(net, _, _)| !net.contains(&public_ip)),
        "{PUBLIC4} must be in no special range"
    );
    let lan = TcpListener::bind(format!("{LAN4}:0")).unwrap();
    let doc = TcpListener::bind(format!("{DOC4}:0")).unwrap();
    let public = TcpListener::bind(format!("{PUBLIC4}:0")).unwrap();
    let lan6 = TcpListener::bind(format!("[{LAN6}]:0")).unwrap();
    let lan_udp = udp_echo(&format!("{LAN4}:0"));

    load(&nft_text(JOB_UID));
    let reach = |uid: u32| {
        vec![
            prober.probe(uid, "tcp", addr(&job1)),
            prober.probe(uid, "tcp", addr(&job2)),
            prober.probe(uid, "udp", stub1),
            prober.probe(uid, "tcp", addr(&lan)),
            prober.probe(uid, "tcp", addr(&doc)),
            prober.probe(uid, "tcp", addr(&public)),
            prober.probe(uid, "tcp", addr(&lan6)),
            prober.probe(uid, "udp", lan_udp),
        ]
    };
    let shut = [
        "ok", "ok", "ok", "refused", "refused", "refused", "refused", "refused",
    ];
    assert_eq!(reach(JOB_UID), shut, "the job user, two sidecars up");
    for listener in [&lan, &doc, &public, &lan6] {
        assert_no_connection(listener);
    }
    assert_eq!(
        reach(OTHER_UID),
        ["ok"; 8],
        "another user is untouched by the job user's table"
    );
    for listener in [&lan, &doc, &public, &lan6] {
        accept_one(listener);
    }

    // Sidecars come and go: job 2 ends, job 3 starts on a new port. No rule changes.
    drop(job2);
    let job3 = TcpListener::bind("127.0.0.1:0").unwrap();
    assert_eq!(prober.probe(JOB_UID, "tcp", addr(&job3)), "ok", "job 3");
    assert_eq!(prober.probe(JOB_UID, "tcp", addr(&job1)), "ok", "job 1");

    // Provisioning again (the same file) replaces the table in one transaction: reach unchanged.
    load(&nft_text(JOB_UID));
    let again = vec![
        prober.probe(JOB_UID, "tcp", addr(&job1)),
        prober.probe(JOB_UID, "tcp", addr(&job3)),
        prober.probe(JOB_UID, "tcp", addr(&lan)),
    ];
    assert_eq!(again, ["ok", "ok", "refused"], "after reloading");

    // Another user's rules come and go in their own table; the job user's reach stays.
    load(&nft_text(OTHER_UID));
    assert_eq!(prober.probe(OTHER_UID, "tcp", addr(&lan)), "refused");
    nft(&[
        "delete",
        "table",
        "inet",
        &pf::nft::default_table(OTHER_UID),
    ]);
    assert_eq!(prober.probe(OTHER_UID, "tcp", addr(&lan)), "ok");
    accept_one(&lan);
    assert_eq!(
        [
            prober.probe(JOB_UID, "tcp", addr(&job1)),
            prober.probe(JOB_UID, "tcp", addr(&job3)),
            prober.probe(JOB_UID, "tcp", addr(&lan)),
            prober.probe(JOB_UID, "tcp", addr(&public)),
        ],
        ["ok", "ok", "refused", "refused"],
        "after another user's table came and went"
    );
    for listener in [&lan, &doc, &public, &lan6] {
        assert_no_connection(listener);
    }
    println!("{INNER_DONE}");
}

#[test]
#[ignore = "a helper, not a test: run as another uid by inside_the_namespace"]
fn probe() {
    // Run on its own (cargo test -- --ignored), there is nothing to probe.
    if let Ok(spec) = std::env::var(PROBE) {
        println!("PROBE: {}", probe_once(&spec));
    }
}

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        == Some("0")
}

fn netns_id() -> String {
    std::fs::read_link("/proc/self/ns/net")
        .unwrap()
        .display()
        .to_string()
}

/// Refuses to load anything unless this process is in a namespace other than the one that
/// started it, with no interface but `lo`: nothing here can reach or change the host's network.
fn assert_in_fresh_netns() {
    let outer = std::env::var(IN_NETNS).unwrap_or_default();
    assert_ne!(outer, netns_id(), "still in the outer network namespace");
    let devices = std::fs::read_to_string("/proc/self/net/dev").unwrap();
    let names: Vec<&str> = devices
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(names, ["lo"], "a fresh namespace has only lo");
}

fn load(ruleset: &str) {
    let path = std::env::temp_dir().join(format!("egressd-pf-{}.nft", std::process::id()));
    std::fs::write(&path, ruleset).unwrap();
    nft(&["-f", path.to_str().unwrap()]);
    std::fs::remove_file(&path).unwrap();
}

fn nft(args: &[&str]) {
    let out = Command::new("nft")
        .args(args)
        .output()
        .expect("nft (nftables) is installed");
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn addr(listener: &TcpListener) -> SocketAddr {
    listener.local_addr().unwrap()
}

/// A UDP socket that answers every datagram with itself, on a thread for the test's life.
fn udp_echo(bind: &str) -> SocketAddr {
    let socket = UdpSocket::bind(bind).unwrap();
    let local = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    });
    local
}

fn assert_no_connection(listener: &TcpListener) {
    listener.set_nonblocking(true).unwrap();
    let result = listener.accept();
    assert!(
        matches!(&result, Err(e) if e.kind() == ErrorKind::WouldBlock),
        "{} saw a connection from the job user: {result:?}",
        addr(listener)
    );
}

fn accept_one(listener: &TcpListener) {
    listener.set_nonblocking(false).unwrap();
    listener.accept().unwrap();
}

/// Runs [`probe`] as another uid from a world-readable copy of this test binary.
struct Prober {
    dir: PathBuf,
    exe: PathBuf,
}

impl Prober {
    fn new() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("egressd-pf-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let exe = dir.join("probe");
        std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self { dir, exe }
    }

    /// "ok", "refused", "timeout" or "error: ..." for a connection (TCP) or an echoed datagram
    /// (UDP) to `addr` made as `uid`.
    fn probe(&self, uid: u32, proto: &str, addr: SocketAddr) -> String {
        let id = uid.to_string();
        let out = Command::new("setpriv")
            .args(["--reuid", &id, "--regid", &id, "--clear-groups"])
            .arg(&self.exe)
            .args(["probe", "--exact", "--ignored", "--nocapture"])
            .env(PROBE, format!("{proto} {addr}"))
            .output()
            .expect("setpriv (util-linux) runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("PROBE: "))
            .unwrap_or_else(|| {
                panic!(
                    "no probe result: {stdout}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
            .to_owned()
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn probe_once(spec: &str) -> String {
    let (proto, addr) = spec.split_once(' ').unwrap();
    let addr: SocketAddr = addr.parse().unwrap();
    let patience = Duration::from_secs(3);
    let result = if proto == "tcp" {
        TcpStream::connect_timeout(&addr, patience).map(|_| ())
    } else {
        let bind = if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        UdpSocket::bind(bind).and_then(|socket| {
            socket.set_read_timeout(Some(patience))?;
            socket.connect(addr)?;
            socket.send(b"probe")?;
            let mut buf = [0u8; 16];
            socket.recv(&mut buf).map(|_| ())
        })
    };
    match result {
        Ok(()) => "ok".to_owned(),
        // A reset, an ICMP unreachable, or (Linux, a datagram rejected on output) EPERM: the
        // firewall refused at once.
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::ConnectionRefused | ErrorKind::PermissionDenied
            ) =>
        {
            "refused".to_owned()
        }
        Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            "timeout".to_owned()
        }
        Err(e) => format!("error: {e}"),
    }
}
