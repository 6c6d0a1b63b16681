//! `egressd run`'s flags.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Args;
use proxy::Limits;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Policy file; without it, the built-in default policy (public destinations allowed, special
    /// ranges denied).
    #[arg(long, env = "EGRESSD_POLICY")]
    pub policy: Option<PathBuf>,
    /// Identity of the sandbox: logged in every audit event and filled into {sandbox_id} header
    /// templates. A CR, LF or other control character exits 2.
    #[arg(long, env = "EGRESSD_SANDBOX_ID", default_value = "")]
    pub sandbox_id: String,
    /// Address for the proxy to listen on; port 0 picks a free port (reported on the readiness
    /// line). Must be loopback unless --danger-listen-non-loopback.
    #[arg(long, env = "EGRESSD_PROXY_LISTEN", default_value = "127.0.0.1:0")]
    pub proxy_listen: SocketAddr,
    /// Also serve the proxy on this Unix socket path (created; removed at exit), for launchers
    /// that bridge a sandbox without a network.
    #[arg(long, env = "EGRESSD_PROXY_UNIX", value_name = "PATH")]
    pub proxy_unix: Option<PathBuf>,
    /// Permissions of the --proxy-unix socket, in octal. The default, 0600, lets only egressd's
    /// user connect; 0660 opens it to the socket's group (a launcher relaying for a VM, say). A
    /// mode that lets others write (connect), such as 0666, exits 2.
    #[arg(long, env = "EGRESSD_PROXY_UNIX_MODE", value_name = "OCTAL", requires = "proxy_unix",
          value_parser = unix_mode)]
    pub proxy_unix_mode: Option<u32>,
    /// Read the proxy credential's secret from FILE (at least 22 letters, digits, '-' or '_')
    /// instead of making a random one.
    #[arg(long, env = "EGRESSD_PROXY_CREDENTIAL_FILE", value_name = "FILE")]
    pub proxy_credential_file: Option<PathBuf>,
    /// Accept proxy requests without a credential: only for launchers that keep other local
    /// processes away from the proxy by other means.
    #[arg(
        long,
        env = "EGRESSD_NO_PROXY_CREDENTIAL",
        conflicts_with = "proxy_credential_file"
    )]
    pub no_proxy_credential: bool,
    /// Address for the DNS stub (UDP and TCP on the same port); port 0 picks a free port
    /// (reported on the readiness line). Must be loopback unless --danger-listen-non-loopback.
    #[arg(
        long,
        env = "EGRESSD_DNS_LISTEN",
        default_value = "127.0.0.1:0",
        conflicts_with = "no_dns"
    )]
    pub dns_listen: SocketAddr,
    /// Also serve the DNS stub on this Unix socket (created 0600; removed at exit): DNS over a
    /// byte stream with TCP's two-byte length framing, for launchers that relay a VM guest's
    /// resolver over vsock (docs/launcher.md, "VM guests").
    #[arg(
        long,
        env = "EGRESSD_DNS_UNIX",
        value_name = "PATH",
        conflicts_with = "no_dns"
    )]
    pub dns_unix: Option<PathBuf>,
    /// Do not start the DNS stub.
    #[arg(long, env = "EGRESSD_NO_DNS")]
    pub no_dns: bool,
    /// Allow --proxy-listen, --dns-listen, --metrics-listen and --socks-listen on non-loopback addresses. Anyone who can reach them
    /// can then use the proxy and stub under this sandbox's identity.
    #[arg(long, env = "EGRESSD_DANGER_LISTEN_NON_LOOPBACK")]
    pub danger_listen_non_loopback: bool,
    /// Attribution header 'Name: value' set on every forwarded request, replacing the client's
    /// copy and the policy's header of the same name; {sandbox_id} is filled in (repeatable: one
    /// header per flag; in the variable, one per line). A CR, LF or other control character in a
    /// flag's value exits 2.
    #[arg(long = "header", env = "EGRESSD_HEADERS", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Whether `headers` came from EGRESSD_HEADERS (one header per line there) rather than from
    /// --header flags (one header each, a newline in one is an error): set by [`super::parse`].
    #[arg(skip)]
    pub headers_from_env: bool,
    /// Log format on stderr.
    #[arg(long, env = "EGRESSD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Least severe log level shown on stderr.
    #[arg(long, env = "EGRESSD_LOG_LEVEL", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
    /// Write audit events (one JSON object per request or tunnel) to this file, appending, or to
    /// stdout after the readiness line with '-'. Without it they go to the normal log.
    #[arg(long, env = "EGRESSD_AUDIT_LOG", value_name = "PATH|-")]
    pub audit_log: Option<PathBuf>,
    /// What to do when audit events cannot be written (a full disk, say): keep serving and count
    /// what is lost (reported on stderr and, once writing works again, in the audit log), or stop
    /// serving at once, exiting 4 (fail closed).
    #[arg(long, env = "EGRESSD_ON_AUDIT_FAILURE", value_enum, default_value_t = AuditFailure::KeepServing)]
    pub on_audit_failure: AuditFailure,
    /// Also write the readiness JSON to this file, atomically (written aside, then renamed).
    #[arg(long, env = "EGRESSD_READY_FILE", value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Exit (draining as for SIGTERM) when stdin reaches end of file: start egressd with a pipe
    /// from the launcher, and it cannot outlive the launcher.
    #[arg(long, env = "EGRESSD_EXIT_ON_STDIN_EOF")]
    pub exit_on_stdin_eof: bool,
    /// On SIGTERM/SIGINT, how long open connections and tunnels may take to finish.
    #[arg(long, env = "EGRESSD_DRAIN_TIMEOUT", default_value = "10s")]
    pub drain_timeout: Dur,
    /// Worker threads serving connections and queries; 0 runs everything on one thread. Default:
    /// one per core.
    #[arg(long, env = "EGRESSD_THREADS", value_parser = clap::value_parser!(u16).range(0..=256))]
    pub threads: Option<u16>,
    /// Forward everything through this parent HTTP proxy (IP:PORT), after enforcing the policy.
    #[arg(long, env = "EGRESSD_PARENT_PROXY", value_name = "IP:PORT")]
    pub parent_proxy: Option<SocketAddr>,
    /// Proxy-Authorization value sent to the parent proxy, e.g. 'Basic dXNlcjpwYXNz'.
    #[arg(
        long,
        env = "EGRESSD_PARENT_PROXY_AUTH",
        hide_env_values = true,
        value_name = "VALUE",
        requires = "parent_proxy"
    )]
    pub parent_proxy_auth: Option<String>,
    /// PEM certificate of a CA to inspect TLS with (docs/tls.md), instead of one made at start;
    /// with --inspect-ca-key. For launchers that bake a CA into a VM image.
    #[arg(
        long,
        env = "EGRESSD_INSPECT_CA_CERT",
        value_name = "FILE",
        requires = "inspect_ca_key"
    )]
    pub inspect_ca_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the --inspect-ca-cert CA.
    #[arg(
        long,
        env = "EGRESSD_INSPECT_CA_KEY",
        value_name = "FILE",
        requires = "inspect_ca_cert"
    )]
    pub inspect_ca_key: Option<PathBuf>,
    /// PEM certificates egressd also trusts, besides the system's roots, when it verifies an
    /// inspected host's origin (private CAs).
    #[arg(long, env = "EGRESSD_INSPECT_UPSTREAM_ROOTS", value_name = "FILE")]
    pub inspect_upstream_roots: Option<PathBuf>,
    /// How the policy is applied, winning over its `defaults.mode`: `enforce` refuses what it does
    /// not allow; `report` lets through what a rule or the default refuses and audits it as
    /// would-deny / would-refuse (special ranges and malformed targets stay refused).
    #[arg(long, env = "EGRESSD_MODE", value_enum)]
    pub mode: Option<ModeArg>,
    /// Serve Prometheus metrics on http://ADDR/metrics (port 0 picks a free port, reported on the
    /// readiness line). Must be loopback unless --danger-listen-non-loopback.
    #[arg(long, env = "EGRESSD_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Serve /metrics only to scrapers that send the sandbox's proxy credential as
    /// `Authorization: Basic` (user egressd, the proxy URL's secret): other processes on the
    /// host's loopback cannot read this sandbox's counters and policy hash. See docs/launcher.md.
    #[arg(
        long,
        env = "EGRESSD_METRICS_REQUIRE_CREDENTIAL",
        requires = "metrics_listen"
    )]
    pub metrics_require_credential: bool,
    /// Also serve a SOCKS5 proxy (RFC 1928, CONNECT only; names resolved by egressd, as
    /// socks5h) on ADDR, under the same policy and credential as the HTTP proxy (port 0 picks a
    /// free port, reported on the readiness line). Must be loopback unless
    /// --danger-listen-non-loopback.
    #[arg(long, env = "EGRESSD_SOCKS_LISTEN", value_name = "ADDR")]
    pub socks_listen: Option<SocketAddr>,
    /// Also serve the SOCKS5 proxy on this Unix socket path (created; removed at exit; must not
    /// exist).
    #[arg(long, env = "EGRESSD_SOCKS_UNIX", value_name = "PATH")]
    pub socks_unix: Option<PathBuf>,
    /// Permissions of the --socks-unix socket, in octal: 0600 by default, as --proxy-unix-mode.
    #[arg(long, env = "EGRESSD_SOCKS_UNIX_MODE", value_name = "OCTAL", requires = "socks_unix",
          value_parser = unix_mode)]
    pub socks_unix_mode: Option<u32>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// `--mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    Enforce,
    Report,
}

impl From<ModeArg> for policy::Mode {
    fn from(mode: ModeArg) -> Self {
        match mode {
            ModeArg::Enforce => Self::Enforce,
            ModeArg::Report => Self::Report,
        }
    }
}

/// Limits and timeouts; durations are written like 10s, 500ms, 5m.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Time allowed to connect to one destination address.
    #[arg(long, env = "EGRESSD_CONNECT_TIMEOUT", default_value_t = Dur(Limits::DEFAULT.connect_timeout))]
    pub connect_timeout: Dur,
    /// Time allowed for a name lookup.
    #[arg(long, env = "EGRESSD_DNS_TIMEOUT", default_value_t = Dur(Limits::DEFAULT.dns_timeout))]
    pub dns_timeout: Dur,
    /// A tunnel with no traffic either way for this long is closed.
    #[arg(long, env = "EGRESSD_TUNNEL_IDLE_TIMEOUT", default_value_t = Dur(Limits::DEFAULT.tunnel_idle_timeout))]
    pub tunnel_idle_timeout: Dur,
    /// Time allowed for a client to send a request head (and for an idle keep-alive connection
    /// to send its next one).
    #[arg(long, env = "EGRESSD_HEADER_READ_TIMEOUT", default_value_t = Dur(Limits::DEFAULT.header_read_timeout))]
    pub header_read_timeout: Dur,
    /// Time allowed for an origin to send its whole response head, counted from the end of the
    /// request body.
    #[arg(long, env = "EGRESSD_RESPONSE_TIMEOUT", default_value_t = Dur(Limits::DEFAULT.response_timeout))]
    pub response_timeout: Dur,
    /// An upload (request body) with no bytes for this long is cut off: 408 when the client
    /// stopped sending, 504 when the destination stopped reading.
    #[arg(long, env = "EGRESSD_UPLOAD_IDLE_TIMEOUT", default_value_t = Dur(Limits::DEFAULT.upload_idle_timeout))]
    pub upload_idle_timeout: Dur,
    /// A response body with no byte from the destination for this long is cut off: the client's
    /// connection closes mid-body, and the audit event says `cut-by-stall`.
    #[arg(long, env = "EGRESSD_RESPONSE_IDLE_TIMEOUT", default_value_t = Dur(Limits::DEFAULT.response_idle_timeout))]
    pub response_idle_timeout: Dur,
    /// Largest request head, in bytes (at least 8192); larger gets 431.
    #[arg(long, env = "EGRESSD_MAX_HEADER_BYTES", default_value_t = Limits::DEFAULT.max_header_bytes as u32,
          value_parser = clap::value_parser!(u32).range(8192..=16_777_216))]
    pub max_header_bytes: u32,
    /// Connections served at once; beyond it a new connection gets 503.
    #[arg(long, env = "EGRESSD_MAX_CONNECTIONS", default_value_t = Limits::DEFAULT.max_connections as u32,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
}

/// `--on-audit-failure`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditFailure {
    KeepServing,
    Stop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// An octal socket mode that does not let every user of the host connect: connecting to a Unix
/// socket needs write permission, and a proxy socket anyone may use is a way around the proxy
/// credential's reason to exist (another user's processes sharing this sandbox's identity).
fn unix_mode(text: &str) -> Result<u32, String> {
    match u32::from_str_radix(text.trim_start_matches("0o"), 8) {
        Ok(mode) if mode & 0o002 != 0 && mode <= 0o777 => Err(format!(
            "{mode:o} lets every user of the host connect (write permission for others); use 600, or 660 with a group of the launcher's"
        )),
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err("write an octal mode such as 600 or 660".to_owned()),
    }
}

/// A duration flag, written and shown like `10s`, `500ms`, `5m`; never zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl FromStr for Dur {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let d = humantime::parse_duration(text)
            .map_err(|e| format!("{e} (write e.g. 10s, 500ms, 5m)"))?;
        if d.is_zero() {
            return Err("must be more than zero".to_owned());
        }
        Ok(Self(d))
    }
}
