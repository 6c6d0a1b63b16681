//! Helpers shared by the integration tests, one module per thing they provide: the egressd
//! process harness (`sidecar`), audit events (`events`), loopback origins (`origin`, and `site`
//! for files by path), a fake DNS server (`dns`) and one that holds its answers (`gated_dns`), a
//! recording parent proxy (`parent`), raw HTTP and the Rust proxy client (`http`; `exchange` on a
//! kept connection), a TCP-to-Unix relay (`relay`), the clients a scenario runs with (`clients`),
//! the proxy credential (`secret`), a SOCKS5 client (`socks`), real clients configured from the readiness line's environment
//! (`proxy_env`, `env_clients`, and `refusal_clients` for what they print of a refusal), test policies (`policies`), the adversarial destinations every tunnel is tried with (`cases`), network namespaces (`netns`), a small
//! disk (`small_disk`), one DNS query to the stub (`stub_query`), the other-user prober (`probe`) and TLS origins, CAs and clients for
//! inspection (`tls`, `tls_clients`). Nothing here sends a packet beyond
//! loopback (or beyond a network namespace a test made).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

mod cases;
mod clients;
mod dns;
mod env_clients;
mod events;
mod exchange;
mod gated_dns;
mod h2;
mod http;
mod netns;
mod origin;
mod parent;
mod policies;
mod probe;
mod proxy_env;
mod py_peers;
mod refusal_clients;
mod relay;
mod secret;
mod sidecar;
mod site;
mod small_disk;
mod socks;
mod stub_query;
mod tls;
mod tls_clients;

pub use cases::{AMBIGUOUS_IPV4, builtin_refused, lan_hosts, refused_on_loopback};
pub use clients::{Client, dig, python_urllib};
pub use dns::{FakeDns, Zone};
pub use env_clients::EnvClient;
pub use events::{dns_events, events_of, request_events, socks_events};
pub use exchange::{connect_tcp, exchange, request_head};
pub use gated_dns::GatedDns;
pub use h2::{H2Origin, h2_fetch, h2_session};
pub use http::{Response, header_value, header_values, read_head};
pub use netns::{TestCgroups, in_netns, in_netns_with_cgroup2};
pub use origin::{Behaviour, Echo, ORIGIN_BODY, Origin, STALLED_AFTER, UdpEcho};
pub use parent::RecordingParent;
pub use policies::{NO_RESOLVER, loopback_policy};
pub use probe::{Prober, probe_once};
pub use proxy_env::{ProxyEnv, output_within};
pub use py_peers::{PeerProcess, grpc_client, websocket_client, websocket_spy_client};
pub use refusal_clients::{
    cargo_search, curl_env, git_ls_remote, node_fetch, npm_install, pip_download, python_urlopen,
    wget, wget_with_rc,
};
pub use relay::Relay;
pub use secret::{altered, basic, leak_forms, proxy_authorization, secret_of};
pub use sidecar::{Sidecar, Signal};
pub use site::Site;
pub use small_disk::with_small_disk;
pub use socks::{BIND, CONNECT, Refused, SocksClient, UDP_ASSOCIATE};
pub use stub_query::stub_query;
pub use tls::{
    Fetched, Session, TestCa, TlsOrigin, client_config, fetch, pem_certificates, request,
};
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
