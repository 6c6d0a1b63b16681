//! The readiness line: the launcher contract's one JSON object (docs/launcher.md, "Readiness"),
//! printed on stdout and optionally written to a file, once everything is bound.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use policy::{Mode, Policy};
use proxy::{CREDENTIAL_USER, Credential};
use serde::Serialize;

use super::inspect::CaFiles;
use super::settings::CredentialSource;
use crate::exit::Failure;

/// The readiness line.
#[derive(Serialize)]
pub struct Ready {
    event: &'static str,
    version: &'static str,
    pid: u32,
    sandbox_id: String,
    proxy: String,
    proxy_url: String,
    proxy_credential: CredentialSource,
    proxy_unix: Option<String>,
    dns: Option<String>,
    dns_unix: Option<String>,
    policy: PolicyInfo,
    mode: &'static str,
    mode_detail: Option<&'static str>,
    metrics: Option<String>,
    socks: Option<String>,
    socks_url: Option<String>,
    socks_unix: Option<String>,
    inspect_ca: Option<String>,
    inspect_ca_bundle: Option<String>,
    env: BTreeMap<&'static str, String>,
}

/// What the readiness line says in report mode: the gap it never opens.
const REPORT_MODE_DETAIL: &str = "refusals by a rule or the default are let through and audited \
    as would-deny (would-refuse in DNS); special ranges and malformed targets stay refused";

/// The policy in force.
#[derive(Clone, Serialize)]
pub struct PolicyInfo {
    /// Its path, or `<built-in>`.
    pub origin: String,
    /// Its SHA-256.
    pub sha256: String,
    /// How it is applied (the readiness line's top-level `mode`).
    #[serde(skip)]
    pub mode: Mode,
}

impl PolicyInfo {
    /// Where `policy` came from, its digest and mode.
    pub fn of(policy: &Policy) -> Self {
        Self {
            origin: policy.origin().to_owned(),
            sha256: policy.digest().to_owned(),
            mode: policy.mode(),
        }
    }
}

/// Where egressd ended up listening.
pub struct Bound {
    /// The proxy's TCP address.
    pub proxy: SocketAddr,
    /// The proxy's Unix socket.
    pub proxy_unix: Option<PathBuf>,
    /// The DNS stub's address.
    pub dns: Option<SocketAddr>,
    /// The DNS stub's Unix socket.
    pub dns_unix: Option<PathBuf>,
    /// The metrics endpoint's address.
    pub metrics: Option<SocketAddr>,
    /// The SOCKS5 listener's TCP address.
    pub socks: Option<SocketAddr>,
    /// The SOCKS5 listener's Unix socket.
    pub socks_unix: Option<PathBuf>,
}

/// The variable of the readiness line's `env` that carries the SOCKS5 listener's URL. Not
/// `ALL_PROXY`: curl, Python and git read that one for HTTP too, and keep the HTTP proxy.
pub const SOCKS_URL_VARIABLE: &str = "EGRESSD_SOCKS_URL";

impl Ready {
    /// The line for `bound` listeners. With a credential, the proxy URL carries it as userinfo,
    /// so clients configured from the environment send it without being told.
    pub fn new(
        sandbox_id: &str,
        bound: &Bound,
        policy: PolicyInfo,
        credential: (Option<&Credential>, CredentialSource),
        ca: Option<&CaFiles>,
    ) -> Self {
        let url = match credential.0 {
            Some(c) => format!("http://{CREDENTIAL_USER}:{}@{}", c.secret(), bound.proxy),
            None => format!("http://{}", bound.proxy),
        };
        // socks5h: the client sends names, egressd resolves them (never the sandbox).
        let socks_url = bound.socks.map(|addr| match credential.0 {
            Some(c) => format!("socks5h://{CREDENTIAL_USER}:{}@{addr}", c.secret()),
            None => format!("socks5h://{addr}"),
        });
        let no_proxy = "localhost,127.0.0.1,::1".to_owned();
        let mut env = BTreeMap::from([
            ("HTTP_PROXY", url.clone()),
            ("HTTPS_PROXY", url.clone()),
            ("http_proxy", url.clone()),
            ("https_proxy", url.clone()),
            ("ALL_PROXY", url.clone()),
            ("all_proxy", url.clone()),
            ("NO_PROXY", no_proxy.clone()),
            ("no_proxy", no_proxy),
        ]);
        env.extend(ca.map(CaFiles::env).unwrap_or_default());
        if let Some(url) = &socks_url {
            env.insert(SOCKS_URL_VARIABLE, url.clone());
        }
        Self {
            event: "ready",
            version: env!("CARGO_PKG_VERSION"),
            pid: std::process::id(),
            sandbox_id: sandbox_id.to_owned(),
            proxy: bound.proxy.to_string(),
            proxy_url: url,
            proxy_credential: credential.1,
            proxy_unix: bound.proxy_unix.as_ref().map(|p| p.display().to_string()),
            dns: bound.dns.map(|a| a.to_string()),
            dns_unix: bound.dns_unix.as_ref().map(|p| p.display().to_string()),
            mode: policy.mode.as_str(),
            mode_detail: (policy.mode == Mode::Report).then_some(REPORT_MODE_DETAIL),
            metrics: bound.metrics.map(|a| a.to_string()),
            socks: bound.socks.map(|a| a.to_string()),
            socks_url,
            socks_unix: bound.socks_unix.as_ref().map(|p| p.display().to_string()),
            policy,
            inspect_ca: ca.map(|files| files.cert.display().to_string()),
            inspect_ca_bundle: ca.map(|files| files.bundle.display().to_string()),
            env,
        }
    }

    /// Writes the ready file (aside, then renamed into place; readable by its owner only) and
    /// prints the line.
    pub fn announce(&self, ready_file: Option<&Path>) -> Result<(), Failure> {
        let line = serde_json::to_string(self)
            .context("cannot encode the readiness line")
            .map_err(Failure::start)?;
        if let Some(path) = ready_file {
            write_private(path, &format!("{line}\n"))
                .with_context(|| format!("cannot write ready file {}", path.display()))
                .map_err(Failure::start)?;
        }
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .context("cannot write the readiness line")
            .map_err(Failure::start)?;
        Ok(())
    }
}

/// Writes `text` to `path` atomically: into a new `PATH.tmp` (mode 0600 on Unix), then renamed.
/// A `PATH.tmp` already there (left by a killed egressd, or put there by someone else) is removed
/// first and never reused: its mode would stay, and a link there would be followed.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".tmp");
    let aside = PathBuf::from(aside);
    match std::fs::remove_file(&aside) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    // create_new is O_EXCL: it refuses an existing file or link rather than open it.
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&aside)?;
    file.write_all(text.as_bytes())?;
    drop(file);
    std::fs::rename(&aside, path)
}

/// Removes what egressd created at start (the Unix socket, the ready file).
pub fn cleanup(paths: &[&Path]) {
    for path in paths {
        if let Err(error) = std::fs::remove_file(path) {
            tracing::debug!(path = %path.display(), %error, "could not remove at exit");
        }
    }
}

/// Files egressd created (its Unix sockets), removed when this is dropped: at exit, and on a
/// start-up failure after they were bound, so the launcher's next try does not find the path
/// taken. Only paths egressd itself bound are added: a path that was already there is not ours.
#[derive(Default)]
pub struct Created(Vec<PathBuf>);

impl Created {
    pub fn add(&mut self, path: &Path) {
        self.0.push(path.to_owned());
    }

    /// Removes them now.
    pub fn remove(&mut self) {
        let paths: Vec<&Path> = self.0.iter().map(PathBuf::as_path).collect();
        cleanup(&paths);
        self.0.clear();
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        self.remove();
    }
}
