//! Connections made as another user (for the host firewall rules, which match on the user).

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Makes connections as another user: a copy of this test binary, in a directory every user may
/// read, run under `setpriv` with the probe test (`firewall::probe`) selected and told what to
/// probe in `EGRESSD_PROBE`.
pub struct Prober {
    _dir: tempfile::TempDir,
    exe: PathBuf,
}

impl Prober {
    pub fn new() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let exe = dir.path().join("probe");
        std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self { _dir: dir, exe }
    }

    /// Connects (TCP) or sends and awaits an echo (UDP) to `addr` as `uid`: "ok", "refused",
    /// "timeout" or "error:...".
    pub fn probe(&self, uid: u32, udp: bool, addr: SocketAddr) -> String {
        let spec = format!("{} {addr}", if udp { "udp" } else { "tcp" });
        self.run(uid, &[], &spec)
    }

    /// Runs the probe `spec` ([`probe_once`]) as `uid`, under `wrapper` (a command and its
    /// arguments run as root before `setpriv`, which must exec what follows it: entering a cgroup,
    /// a PID namespace).
    pub fn run(&self, uid: u32, wrapper: &[&str], spec: &str) -> String {
        let (program, before) = match wrapper.split_first() {
            Some((program, rest)) => (*program, rest.to_vec()),
            None => ("setpriv", Vec::new()),
        };
        let mut command = Command::new(program);
        command.args(&before);
        if !wrapper.is_empty() {
            command.arg("setpriv");
        }
        let out = command
            .args([
                "--reuid",
                &uid.to_string(),
                "--regid",
                &uid.to_string(),
                "--clear-groups",
            ])
            .arg(&self.exe)
            .args([
                "firewall::probe",
                "--exact",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("EGRESSD_PROBE", spec)
            .output()
            .expect("setpriv (util-linux) runs");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| {
                l.split_once("PROBE: ")
                    .map(|(_, result)| result.trim().to_owned())
            })
            .unwrap_or_else(|| {
                panic!(
                    "probe {spec} as uid {uid} printed no result:\n{text}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    }
}

/// The probe itself, run by [`Prober::probe`] in a child process. `tcp ADDR` connects; `udp ADDR`
/// sends and awaits an echo; `dns ADDR` sends a DNS query and awaits any answer; `icmp IP` pings
/// once (iputils `ping`, through a ping socket); `environ PID NEEDLE` reads another process's
/// environment from /proc: "ok" if it holds NEEDLE, "absent" if not, "missing" if there is no
/// such process here, "refused" if reading it is not permitted; `udplite ADDR` sends one UDP-Lite
/// datagram (IP protocol 136, which a user may send without privilege) through python3: "sent",
/// or "refused" if the kernel refused it (a firewall rule on output fails the send with EPERM).
pub fn probe_once(spec: &str) -> String {
    use std::io::ErrorKind;
    let (proto, addr) = spec.split_once(' ').unwrap();
    if proto == "environ" {
        let (pid, needle) = addr.split_once(' ').unwrap();
        return match std::fs::read(format!("/proc/{pid}/environ")) {
            Ok(env) if env.windows(needle.len()).any(|w| w == needle.as_bytes()) => "ok".into(),
            Ok(_) => "absent".into(),
            Err(e) if e.kind() == ErrorKind::NotFound => "missing".into(),
            Err(e) if e.kind() == ErrorKind::PermissionDenied => "refused".into(),
            Err(e) => format!("error:{e}"),
        };
    }
    if proto == "icmp" {
        return ping(addr);
    }
    if proto == "udplite" {
        return udplite(addr);
    }
    let addr: SocketAddr = addr.parse().unwrap();
    let patience = Duration::from_secs(3);
    let result = if proto == "tcp" {
        TcpStream::connect_timeout(&addr, patience).map(|_| ())
    } else if proto == "dns" {
        dns_query(addr, patience)
    } else {
        let bind: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
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
        // A reset, an ICMP unreachable, or (Linux, for a datagram rejected on output) EPERM: all
        // mean the firewall refused at once.
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
        Err(e) => format!("error:{e}"),
    }
}

/// One DNS query (`probe.test. A`, recursion desired) to `addr`, awaiting any answer: a stub that
/// refuses the name still answers.
fn dns_query(addr: SocketAddr, patience: Duration) -> std::io::Result<()> {
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let socket = UdpSocket::bind(bind)?;
    socket.set_read_timeout(Some(patience))?;
    socket.connect(addr)?;
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    query.extend_from_slice(b"\x05probe\x04test\x00\x00\x01\x00\x01");
    socket.send(&query)?;
    let mut buf = [0u8; 512];
    socket.recv(&mut buf).map(|_| ())
}

/// One echo request with iputils `ping` (a ping socket: the namespace's ping_group_range must
/// hold the uid's group): "ok" on a reply, "refused" when sending is refused at once (nft's
/// reject on output: EPERM) or answered unreachable, "timeout" otherwise.
fn ping(ip: &str) -> String {
    let out = Command::new("ping")
        .args(["-n", "-c", "1", "-W", "3", ip])
        .output()
        .expect("ping (iputils-ping) runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        "ok".into()
    } else if text.contains("not permitted") || text.to_lowercase().contains("unreachable") {
        "refused".into()
    } else if text.contains("100% packet loss") {
        "timeout".into()
    } else {
        format!("error:{}", text.trim().replace('\n', " | "))
    }
}

/// One UDP-Lite datagram to `addr` (no answer awaited: nothing in std speaks UDP-Lite, so python3
/// sends it).
fn udplite(addr: &str) -> String {
    const SEND: &str = r#"import socket, sys
host, port = sys.argv[1].rsplit(':', 1)
host = host.strip('[]')
family = socket.AF_INET6 if ':' in host else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM, 136)
try:
    s.sendto(b'probe', (host, int(port)))
    print('sent')
except PermissionError:
    print('refused')
except OSError as e:
    print('error:%s' % e)
"#;
    // The system's python3: one on PATH may be a shim under root's home that this user cannot
    // run (pyenv).
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    match Command::new(python).args(["-c", SEND, addr]).output() {
        Ok(out) if !out.stdout.is_empty() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Ok(out) => format!(
            "error:{python}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => format!("error:{python}: {e}"),
    }
}
