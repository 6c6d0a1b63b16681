//! Helpers shared by the integration tests, one module per thing they provide: the egressd
//! process harness (`sidecar`), its audit log (`audit`), loopback origins (`origin`), a fake DNS
//! server (`dns`), a recording parent proxy (`parent`), raw HTTP and the Rust proxy client
//! (`http`), the clients a scenario runs with (`clients`), test policies (`policies`), network
//! namespaces (`netns`), the other-user prober (`probe`) and TLS origins, CAs and a TLS client
//! for inspection (`tls`). Nothing here sends a packet beyond
//! loopback (or beyond a network namespace a test made).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

mod clients;
mod dns;
mod events;
mod http;
mod netns;
mod origin;
mod parent;
mod policies;
mod probe;
mod sidecar;
mod tls;
mod tls_clients;

pub use clients::{Client, dig, python_urllib};
pub use dns::{FakeDns, Zone};
pub use events::{events_of, request_events};
pub use http::{header_value, header_values, read_head};
pub use netns::in_netns;
pub use origin::{Behaviour, Echo, ORIGIN_BODY, Origin, UdpEcho};
pub use parent::RecordingParent;
pub use policies::{NO_RESOLVER, loopback_policy};
pub use probe::{Prober, probe_once};
pub use sidecar::{Sidecar, Signal};
pub use tls::{Fetched, TestCa, TlsOrigin, client_config, fetch, pem_certificates, request};
pub use tls_clients::{Outcome, TlsClient};

/// Upper bound for anything a test waits on; reached only when something is broken.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The `egressd` binary cargo built for these tests.
pub fn egressd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_egressd"))
}

/// A path inside the repository.
pub fn repo(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Writes `text` to a new file in `dir`.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The result of one finished run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `egressd ARGS...` to completion.
pub fn run(args: &[&str]) -> Run {
    let out = egressd()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("egressd runs");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
