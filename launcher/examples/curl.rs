//! A launcher in miniature: start egressd, run a job (curl) with the readiness line's env block,
//! stop egressd. The job asks a loopback origin the example serves itself, by a name the policy
//! allows (`origin.test`, a static record), then a name it does not: nothing leaves loopback.
//!
//! ```sh
//! cargo build --bin egressd
//! cargo run -p egressd-launcher --example curl -- target/debug/egressd
//! ```
//!
//! The path can also come from `EGRESSD_BIN`. Needs curl on the PATH.

use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::Duration;

use egressd_launcher::{Launcher, Stderr};

fn main() -> Result<(), Box<dyn Error>> {
    let egressd = std::env::args_os()
        .nth(1)
        .or_else(|| std::env::var_os("EGRESSD_BIN"))
        .map(PathBuf::from)
        .ok_or("usage: curl EGRESSD_BINARY (or set EGRESSD_BIN)")?;

    let origin = serve_origin()?;
    let dir = std::env::temp_dir().join(format!("egressd-launcher-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, policy_for(origin))?;

    let mut sidecar = Launcher::new(egressd)
        .policy(&policy)
        .sandbox_id("example")
        .drain_timeout(Duration::from_secs(2))
        .stderr(Stderr::Discard)
        .start()?;
    let ready = sidecar.ready();
    println!("egressd {} ready: proxy {}", ready.version, ready.proxy);

    let allowed = Command::new("curl")
        .args(["-sS", "-f", &format!("http://origin.test:{origin}/")])
        .envs(&ready.env)
        .output()?;
    print!("allowed: {}", String::from_utf8_lossy(&allowed.stdout));
    let refused = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}\n"])
        .arg(format!("http://example.org:{origin}/"))
        .envs(&ready.env)
        .output()?;
    print!("refused: {}", String::from_utf8_lossy(&refused.stdout));

    let exit = sidecar.stop()?;
    println!("egressd stopped: {}", exit.status);
    std::fs::remove_dir_all(&dir)?;

    if !allowed.status.success() || allowed.stdout != b"hello from the origin\n" {
        return Err(format!(
            "the allowed request failed: {}",
            String::from_utf8_lossy(&allowed.stderr)
        )
        .into());
    }
    if refused.stdout != b"403\n" {
        return Err("the refused request was not refused".into());
    }
    if !exit.is_clean() {
        return Err(format!("egressd did not stop cleanly: {}", exit.status).into());
    }
    Ok(())
}

/// An HTTP origin on 127.0.0.1 that answers every request with one line; returns its port.
fn serve_origin() -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let body = "hello from the origin\n";
            let _ = write!(
                &stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(port)
}

/// Allows `origin.test` (a static record: 127.0.0.1) on the origin's port, refuses the rest, and
/// points the resolver at a closed loopback port: no name is ever asked beyond this machine.
fn policy_for(port: u16) -> String {
    format!(
        r#"version = 1
[defaults]
action = "deny"

[[allow]]
host = "origin.test"
ports = [{port}]

[[danger_carve_out]]
cidr = "127.0.0.1/32"
ports = [{port}]

[dns.static]
"origin.test" = ["127.0.0.1"]

[dns]
upstreams = ["127.0.0.1:9"]
"#
    )
}
