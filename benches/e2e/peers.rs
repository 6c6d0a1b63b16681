//! The programs under measurement: egressd, and squid, tinyproxy and unbound when installed. Each
//! runs on loopback with a throwaway configuration, and is killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running program.
pub struct Peer {
    pub name: &'static str,
    child: Child,
    pub addr: SocketAddr,
    /// The header line that carries the proxy credential (egressd's), or empty.
    pub auth: &'static str,
    pub dns: Option<SocketAddr>,
    /// From spawn to ready (readiness line, or the port answering).
    pub startup: Duration,
    /// egressd's readiness line (null for the other programs).
    pub ready: serde_json::Value,
    /// egressd's SOCKS5 listener and the secret to log in with (empty without a credential),
    /// when it was started with `--socks-listen`.
    pub socks: Option<(SocketAddr, &'static str)>,
    _dir: tempfile::TempDir,
}

impl Peer {
    /// How loads reach this proxy.
    pub fn via(&self) -> crate::load::Via {
        crate::load::Via::Proxy(self.addr, self.auth)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the process and its children, in MiB.
    pub fn rss_mib(&self) -> f64 {
        tree(self.pid())
            .iter()
            .map(|pid| rss_kib(*pid))
            .sum::<u64>() as f64
            / 1024.0
    }

    /// CPU seconds used by the process and its children so far.
    pub fn cpu_secs(&self) -> f64 {
        let [user, system] = self.cpu_split_secs();
        user + system
    }

    /// The same, split: user time (the program's own code) and system time (the kernel's work
    /// on its behalf: syscalls, the TCP stack), in seconds.
    pub fn cpu_split_secs(&self) -> [f64; 2] {
        tree(self.pid()).iter().fold([0.0; 2], |[u, s], pid| {
            let [pu, ps] = cpu_split_secs(*pid);
            [u + pu, s + ps]
        })
    }

    /// CPU microseconds per operation since a [`Peer::cpu_secs`] reading of `since`.
    pub fn cpu_us_per_op(&self, since: f64, ops: u64) -> f64 {
        (self.cpu_secs() - since) * 1e6 / ops.max(1) as f64
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        for pid in tree(self.pid()).into_iter().rev() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
        let _ = self.child.wait();
    }
}

const PATIENCE: Duration = Duration::from_secs(20);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// An egressd build under test: the one built with this benchmark (`egressd`), or a baseline
/// binary named by `EGRESSD_BENCH_BASELINE` (`egressd-base`), each with its extra flags.
pub struct Build {
    pub name: &'static str,
    pub bin: PathBuf,
    pub args: Vec<String>,
}

impl Build {
    /// This tree's egressd, with the flags in `EGRESSD_BENCH_ARGS`.
    pub fn current(bin: &Path) -> Self {
        Self {
            name: "egressd",
            bin: bin.to_owned(),
            args: env_args("EGRESSD_BENCH_ARGS"),
        }
    }

    /// The binary in `EGRESSD_BENCH_BASELINE`, if set, with the flags in `EGRESSD_BENCH_ARGS`
    /// and then `EGRESSD_BENCH_BASELINE_ARGS` (the same binary with other flags is a baseline
    /// too).
    pub fn baseline() -> Option<Self> {
        let bin = PathBuf::from(std::env::var_os("EGRESSD_BENCH_BASELINE")?);
        let mut args = env_args("EGRESSD_BENCH_ARGS");
        args.extend(env_args("EGRESSD_BENCH_BASELINE_ARGS"));
        Some(Self {
            name: "egressd-base",
            bin,
            args,
        })
    }
}

fn env_args(var: &str) -> Vec<String> {
    std::env::var(var)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// egressd with a policy allowing the bench origins (loopback carve-outs) and `*.allowed.test`,
/// with its default proxy credential (sent with every request), or without one when
/// `credential` is false (to measure what the check costs).
pub fn egressd(build: &Build, ports: &[u16], dns_upstream: SocketAddr, credential: bool) -> Peer {
    egressd_with(build, ports, dns_upstream, credential, &[])
}

/// [`egressd`] with its credential and `--metrics-listen` (to measure what counting costs).
pub fn egressd_metered(build: &Build, ports: &[u16], dns_upstream: SocketAddr) -> Peer {
    egressd_with(
        build,
        ports,
        dns_upstream,
        true,
        &["--metrics-listen", "127.0.0.1:0"],
    )
}

/// [`egressd`] with `extra` flags after the build's own.
pub fn egressd_with(
    build: &Build,
    ports: &[u16],
    dns_upstream: SocketAddr,
    credential: bool,
    extra: &[&str],
) -> Peer {
    let list = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let policy = format!(
        "version = 1\n[defaults]\naction = \"deny\"\n\
         [[allow]]\ncidr = \"127.0.0.1/32\"\nports = [{list}]\n\
         [[allow]]\nhost = \"*.allowed.test\"\n\
         [[danger_carve_out]]\ncidr = \"127.0.0.1/32\"\nports = [{list}]\n\
         [dns]\nupstreams = [\"{dns_upstream}\"]\n"
    );
    let mut flags: Vec<String> = extra.iter().map(|f| (*f).to_owned()).collect();
    if !credential {
        flags.push("--no-proxy-credential".to_owned());
    }
    egressd_with_policy(build, &policy, &[], |_| flags)
}

/// egressd (`build`, with its own flags) with `policy`, `files` (name, text) written beside it,
/// and the flags `args` makes from that directory.
pub fn egressd_with_policy(
    build: &Build,
    policy: &str,
    files: &[(&str, &str)],
    args: impl FnOnce(&Path) -> Vec<String>,
) -> Peer {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write file");
    }
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, policy).expect("write policy");
    let audit = dir.path().join("audit.jsonl");
    let started = Instant::now();
    let mut child = Command::new(&build.bin)
        .args(["run", "--policy"])
        .arg(&path)
        .args([
            "--sandbox-id",
            "bench",
            "--max-connections",
            "20000",
            "--audit-log",
        ])
        .arg(&audit)
        .args(&build.args)
        .args(args(dir.path()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("egressd starts");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped");
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("readiness line");
    let startup = started.elapsed();
    let ready: serde_json::Value = serde_json::from_str(&line).expect("readiness JSON");
    let addr = ready["proxy"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("proxy address");
    let dns = ready["dns"].as_str().and_then(|s| s.parse().ok());
    let socks = ready["socks"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .map(|addr| (addr, socks_secret(&ready)));
    Peer {
        name: build.name,
        child,
        addr,
        auth: auth_line(&ready),
        dns,
        startup,
        ready,
        socks,
        _dir: dir,
    }
}

/// The secret of the readiness line's `socks_url` (`socks5h://egressd:SECRET@...`), or empty.
/// Leaked: one per egressd started.
fn socks_secret(ready: &serde_json::Value) -> &'static str {
    let url = ready["socks_url"].as_str().unwrap_or("");
    let secret = url
        .trim_start_matches("socks5h://egressd:")
        .split_once('@')
        .map_or("", |(secret, _)| secret);
    Box::leak(secret.to_owned().into_boxed_str())
}

/// The `Proxy-Authorization` header line for the credential in the readiness line's proxy URL
/// (`http://egressd:SECRET@...`), or empty without one. Leaked: one per egressd started.
fn auth_line(ready: &serde_json::Value) -> &'static str {
    use base64::Engine;
    let url = ready["proxy_url"].as_str().unwrap_or("");
    let Some((userinfo, _)) = url.trim_start_matches("http://").split_once('@') else {
        return "";
    };
    let token = base64::engine::general_purpose::STANDARD.encode(userinfo);
    Box::leak(format!("Proxy-Authorization: Basic {token}\r\n").into_boxed_str())
}

/// Time from spawn to readiness, and idle RSS, over `rounds` fresh starts of each build,
/// alternating: per build, its times and RSS readings.
pub fn egressd_startups(
    builds: &[&Build],
    rounds: usize,
    dns_upstream: SocketAddr,
) -> Vec<(Vec<f64>, Vec<f64>)> {
    let mut out = vec![(Vec::new(), Vec::new()); builds.len()];
    for _ in 0..rounds {
        for (build, (times, rss)) in builds.iter().zip(&mut out) {
            let peer = egressd(build, &[1], dns_upstream, true);
            times.push(peer.startup.as_secs_f64() * 1000.0);
            std::thread::sleep(Duration::from_millis(200));
            rss.push(peer.rss_mib());
        }
    }
    out
}

/// Total proportional set size, in MiB, of `count` idle egressd instances of `build` (with
/// `extra` flags), all running at once, each with its own loopback-only policy: what a host
/// running one per sandbox pays. PSS shares the binary's pages among the processes mapping them,
/// where RSS would count them in each. `None` if an instance did not start.
pub fn idle_instances_pss_mib(
    build: &Build,
    count: usize,
    dns_upstream: SocketAddr,
    extra: &[&str],
) -> Option<f64> {
    let instances: Vec<Peer> = (0..count)
        .map(|_| egressd_with(build, &[1], dns_upstream, true, extra))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut total_kib = 0;
    for peer in &instances {
        total_kib += pss_kib(peer.pid())?;
    }
    Some(total_kib as f64 / 1024.0)
}

/// `Pss:` of /proc/PID/smaps_rollup, in KiB.
fn pss_kib(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    rollup
        .lines()
        .find(|l| l.starts_with("Pss:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

pub fn installed(program: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.exists())
}

/// squid 5+, foreground, no cache, no access log, any CONNECT port.
pub fn squid() -> Option<Peer> {
    let bin = installed("squid")?;
    let dir = world_writable_tempdir();
    let port = free_port();
    let d = dir.path().display();
    let conf = format!(
        "http_port 127.0.0.1:{port}\nhttp_access allow all\ncache deny all\ncache_mem 8 MB\naccess_log none\n\
         cache_store_log none\ncache_log {d}/cache.log\npid_filename {d}/squid.pid\ncoredump_dir {d}\n\
         dns_nameservers 127.0.0.1\nvisible_hostname bench\nshutdown_lifetime 0 seconds\nmax_filedescriptors 20000\n"
    );
    spawn_proxy("squid", &bin, dir, port, &conf, |conf| {
        vec!["-N".into(), "-f".into(), conf]
    })
}

/// tinyproxy, foreground, any CONNECT port.
pub fn tinyproxy() -> Option<Peer> {
    let bin = installed("tinyproxy")?;
    let dir = world_writable_tempdir();
    let port = free_port();
    let conf = format!(
        "Port {port}\nListen 127.0.0.1\nTimeout 600\nMaxClients 20000\nAllow 127.0.0.1\nLogLevel Critical\n\
         PidFile \"{}/tinyproxy.pid\"\n",
        dir.path().display()
    );
    spawn_proxy("tinyproxy", &bin, dir, port, &conf, |conf| {
        vec!["-d".into(), "-c".into(), conf]
    })
}

fn spawn_proxy(
    name: &'static str,
    bin: &Path,
    dir: tempfile::TempDir,
    port: u16,
    conf: &str,
    args: impl Fn(String) -> Vec<String>,
) -> Option<Peer> {
    let path = dir.path().join(format!("{name}.conf"));
    std::fs::write(&path, conf).ok()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let started = Instant::now();
    let child = Command::new(bin)
        .args(args(path.display().to_string()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = started + PATIENCE;
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            eprintln!("{name} did not start listening on {addr}");
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let startup = started.elapsed();
    Some(Peer {
        auth: "",
        name,
        child,
        addr,
        dns: None,
        startup,
        ready: serde_json::Value::Null,
        socks: None,
        _dir: dir,
    })
}

/// unbound: REFUSED for everything except `allowed.test`, forwarded to `upstream`.
pub fn unbound(upstream: SocketAddr) -> Option<Peer> {
    let bin = installed("unbound")?;
    let dir = world_writable_tempdir();
    let port = free_port();
    let conf = format!(
        "server:\n  interface: 127.0.0.1@{port}\n  port: {port}\n  access-control: 127.0.0.0/8 allow\n\
         \x20 do-not-query-localhost: no\n  username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n\
         \x20 use-syslog: no\n  logfile: \"\"\n  verbosity: 0\n  num-threads: 1\n  do-ip6: no\n\
         \x20 local-zone: \".\" refuse\n  local-zone: \"allowed.test.\" transparent\n  domain-insecure: \"allowed.test.\"\n\
         \x20 module-config: \"iterator\"\n\
         forward-zone:\n  name: \"allowed.test.\"\n  forward-addr: {}@{}\n",
        upstream.ip(),
        upstream.port(),
        d = dir.path().display()
    );
    let path = dir.path().join("unbound.conf");
    std::fs::write(&path, conf).ok()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let started = Instant::now();
    let child = Command::new(bin)
        .args(["-d", "-c"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
    socket
        .set_read_timeout(Some(Duration::from_millis(5)))
        .ok()?;
    let query = crate::load::dns_query("probe.example");
    let deadline = started + PATIENCE;
    let mut buf = [0u8; 512];
    loop {
        let _ = socket.send_to(&query, addr);
        if socket.recv(&mut buf).is_ok() {
            break;
        }
        if Instant::now() > deadline {
            eprintln!("unbound did not answer on {addr}");
            return None;
        }
    }
    let startup = started.elapsed();
    Some(Peer {
        auth: "",
        name: "unbound",
        child,
        addr,
        dns: Some(addr),
        startup,
        ready: serde_json::Value::Null,
        socks: None,
        _dir: dir,
    })
}

fn world_writable_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    // squid and unbound drop privileges; their logs and pid files must stay writable.
    let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777));
    dir
}

/// The process and its descendants.
fn tree(root: u32) -> Vec<u32> {
    let mut pids = vec![root];
    let mut i = 0;
    while i < pids.len() {
        let parent = pids[i];
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                if stat_field(pid, 4).and_then(|p| p.parse::<u32>().ok()) == Some(parent)
                    && !pids.contains(&pid)
                {
                    pids.push(pid);
                }
            }
        }
        i += 1;
    }
    pids
}

/// Field `field` (1-based, as in proc(5): 4 is ppid, 14 utime) of /proc/PID/stat.
fn stat_field(pid: u32, field: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields resume after its closing ')'.
    let after = stat.rsplit_once(')')?.1;
    after
        .split_whitespace()
        .nth(field.checked_sub(3)?)
        .map(str::to_owned)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// utime + stime of a process, in seconds.
pub fn cpu_secs(pid: u32) -> f64 {
    let [user, system] = cpu_split_secs(pid);
    user + system
}

/// utime and stime of a process, in seconds (USER_HZ is 100 on Linux).
pub fn cpu_split_secs(pid: u32) -> [f64; 2] {
    let ticks = |n| {
        stat_field(pid, n)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    [ticks(14) as f64 / 100.0, ticks(15) as f64 / 100.0]
}

/// Busy and total CPU time of the whole machine so far, in ticks (the first line of
/// `/proc/stat`); busy is everything but idle and iowait.
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = ticks.iter().sum();
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Cores the whole machine kept busy between two [`machine_ticks`] readings.
pub fn busy_cores(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    match (before, after) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => (b1 - b0) as f64 / (t1 - t0) as f64 * cores,
        _ => 0.0,
    }
}
