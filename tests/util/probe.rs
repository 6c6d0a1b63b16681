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
        let out = Command::new("setpriv")
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
            .env("EGRESSD_PROBE", &spec)
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

/// The probe itself, run by [`Prober::probe`] in a child process.
pub fn probe_once(spec: &str) -> String {
    use std::io::ErrorKind;
    let (proto, addr) = spec.split_once(' ').unwrap();
    let addr: SocketAddr = addr.parse().unwrap();
    let patience = Duration::from_secs(3);
    let result = if proto == "tcp" {
        TcpStream::connect_timeout(&addr, patience).map(|_| ())
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
