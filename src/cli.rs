//! Command-line flags. Every flag's help text is what `--help` shows; keep it accurate.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use proxy::Limits;

/// egressd: the egress-control sidecar for sandboxes.
///
/// One policy decides what a sandbox may reach; egressd enforces it as a forward proxy and DNS
/// stub, and generates host firewall rules from it. See docs/ for the policy reference and the
/// launcher contract.
#[derive(Debug, Parser)]
#[command(
    name = "egressd",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar for one sandbox: the forward proxy and the DNS stub.
    ///
    /// Once the policy is loaded and every listener is bound, egressd prints exactly one JSON line
    /// on stdout (the readiness line: bound addresses, pid, and the environment to export into the
    /// sandbox); logs go to stderr. SIGTERM or SIGINT: stop accepting, drain, exit 0. SIGHUP: reload
    /// the policy file (a bad one is logged and the current policy stays). Every flag can also be
    /// set through the EGRESSD_* variable shown with it. See docs/launcher.md.
    ///
    /// Exit status: 0 after a clean shutdown, 2 for bad input (invalid policy or flag), 3 when
    /// start-up fails (address in use, unusable socket path), 4 when a listener fails while
    /// running.
    Run(Box<RunArgs>),
    /// Print a macOS pf anchor that closes the LAN (or everything but loopback) to one user.
    ///
    /// The sandbox user's TCP and UDP to every special range of the policy crate's built-in list is
    /// blocked (minus the policy's carve-outs; the policy's CIDR deny rules too); loopback stays
    /// usable. With --mode loopback-only the user may reach loopback only: one rule set for any
    /// number of jobs of that user, each with its own egressd on loopback. With --mode
    /// sidecar-only the user may reach only one egressd's ports. The header of the output says how
    /// to load, verify, enable and remove it; see docs/pf.md.
    ///
    /// Exit status: 0 on success, 2 for bad input (unknown user, system uid, bad anchor name or
    /// port, invalid policy, sidecar-only without ports).
    Pf(PfArgs),
    /// Print an nftables ruleset (Linux) doing what `egressd pf` does, with `meta skuid`.
    ///
    /// The ruleset lives in its own `table inet` (default egressd_UID, one per user): `nft -f FILE`
    /// replaces an earlier copy, `nft delete table inet NAME` removes it. TCP is refused with a
    /// reset, UDP with an ICMP error. See docs/pf.md.
    ///
    /// Exit status: 0 on success, 2 for bad input.
    Nft(NftArgs),
    /// Print the network section of a sandbox-exec profile: outbound only to loopback and
    /// egressd's ports, and no system resolver.
    ///
    /// Denies every other outbound connection, loopback port 53, the system resolver's socket and
    /// its Mach services (com.apple.dnssd.service and mDNSResponder's others); trust services
    /// that TLS certificate checks need are left alone. Loopback is open by default (CI jobs call
    /// their own servers); --loopback sidecar closes it but for egressd. Append the section at
    /// the end of the profile; see docs/sbpl.md and docs/launcher.md.
    ///
    /// Exit status: 0 on success, 2 for bad input.
    Sbpl(SbplArgs),
    /// Validate a policy file.
    ///
    /// Exit status: 0 if the policy is valid, 2 if not (every error is printed on stderr as
    /// FILE:LINE:COLUMN: message).
    Check(CheckArgs),
    /// Explain the decision for one destination.
    ///
    /// Prints the verdict, the reason, and the rule (with its line) or built-in range that decided.
    ///
    /// Exit status: 0 for allow, 1 for deny, 2 for bad input (invalid policy or unreadable target).
    Explain(ExplainArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The policy file to validate.
    #[arg(
        required_unless_present = "print_default",
        conflicts_with = "print_default"
    )]
    pub policy: Option<PathBuf>,
    /// Print the built-in default policy (used when no policy is given) and exit.
    #[arg(long)]
    pub print_default: bool,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The policy file.
    pub policy: PathBuf,
    /// The destination: a URL (https://host/path), HOST:PORT, [IPV6]:PORT, or a bare host or IP
    /// (which gets --port).
    pub target: String,
    /// Port for a TARGET that names none.
    #[arg(long, default_value_t = 443, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// An address the name resolves to, to see the post-resolution check (repeatable). Static
    /// records from the policy's [dns.static] are used when this is not given.
    #[arg(long = "resolved", value_name = "ADDR")]
    pub resolved: Vec<IpAddr>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Policy file; without it, the built-in default policy (public destinations allowed, special
    /// ranges denied).
    #[arg(long, env = "EGRESSD_POLICY")]
    pub policy: Option<PathBuf>,
    /// Identity of the sandbox: logged in every audit event and filled into {sandbox_id} header
    /// templates.
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
    /// Address for the DNS stub (UDP and TCP on the same port); port 0 picks a free port
    /// (reported on the readiness line). Must be loopback unless --danger-listen-non-loopback.
    #[arg(
        long,
        env = "EGRESSD_DNS_LISTEN",
        default_value = "127.0.0.1:0",
        conflicts_with = "no_dns"
    )]
    pub dns_listen: SocketAddr,
    /// Do not start the DNS stub.
    #[arg(long, env = "EGRESSD_NO_DNS")]
    pub no_dns: bool,
    /// Allow --proxy-listen and --dns-listen on non-loopback addresses. Anyone who can reach them
    /// can then use the proxy and stub under this sandbox's identity.
    #[arg(long, env = "EGRESSD_DANGER_LISTEN_NON_LOOPBACK")]
    pub danger_listen_non_loopback: bool,
    /// Attribution header 'Name: value' set on every forwarded request, replacing the client's
    /// copy and the policy's header of the same name; {sandbox_id} is filled in (repeatable; in
    /// the variable, one per line).
    #[arg(
        long = "header",
        env = "EGRESSD_HEADERS",
        value_name = "NAME: VALUE",
        value_delimiter = '\n'
    )]
    pub headers: Vec<String>,
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
        value_name = "VALUE",
        requires = "parent_proxy"
    )]
    pub parent_proxy_auth: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
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
    /// Time allowed for an origin to start its response.
    #[arg(long, env = "EGRESSD_RESPONSE_TIMEOUT", default_value_t = Dur(Limits::DEFAULT.response_timeout))]
    pub response_timeout: Dur,
    /// Largest request head, in bytes (at least 8192); larger gets 431.
    #[arg(long, env = "EGRESSD_MAX_HEADER_BYTES", default_value_t = Limits::DEFAULT.max_header_bytes as u32,
          value_parser = clap::value_parser!(u32).range(8192..=16_777_216))]
    pub max_header_bytes: u32,
    /// Connections served at once; beyond it a new connection gets 503.
    #[arg(long, env = "EGRESSD_MAX_CONNECTIONS", default_value_t = Limits::DEFAULT.max_connections as u32,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
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

/// What `pf` and `nft` share.
#[derive(Debug, Args)]
pub struct FirewallArgs {
    /// The sandbox user: a numeric uid, or a user name (resolved to its uid now; the output
    /// carries the number).
    #[arg(long, value_name = "UID|NAME")]
    pub user: String,
    /// Policy file whose carve-outs and CIDR deny rules apply; default: the built-in policy.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// lan: close the special ranges to the user. loopback-only: allow only loopback, for any
    /// number of jobs of the user, each with its own egressd there (egressd runs as another user).
    /// sidecar-only: allow only one egressd's ports (one sandbox per user).
    #[arg(long, value_enum, default_value_t = FirewallMode::Lan)]
    pub mode: FirewallMode,
    #[command(flatten)]
    pub sidecar: SidecarArgs,
    /// How refused packets are answered: return (TCP reset / ICMP unreachable, fails fast) or drop.
    #[arg(long, value_enum, default_value_t = BlockPolicyArg::Return)]
    pub block_policy: BlockPolicyArg,
    /// Also refuse ICMP echo requests to the special ranges. pf cannot tie ICMP to a user: on
    /// macOS this rule applies to every user of the host (docs/pf.md).
    #[arg(long)]
    pub block_icmp: bool,
    /// The user is a dedicated service account for sandboxes, such as the hidden user a macOS CI
    /// runner runs its jobs as: accept it below uid 500 (never uid 0). Not for a macOS daemon's
    /// own account (_mdnsresponder, ...): rules for it cut that service off for the whole host.
    #[arg(long)]
    pub service_user: bool,
    /// Accept any uid, root and system daemons' accounts included: rules for them cut off system
    /// services. Almost never what you want.
    #[arg(long, alias = "allow-system-uid", conflicts_with = "service_user")]
    pub danger_allow_system_uid: bool,
    /// Write the rules to FILE instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Where egressd listens, for sidecar-only rules and sandbox-exec profiles.
#[derive(Debug, Args)]
pub struct SidecarArgs {
    /// egressd's proxy port on loopback.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub proxy_port: Option<u16>,
    /// egressd's DNS stub port on loopback.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub dns_port: Option<u16>,
    /// Take the addresses from the readiness JSON of a running `egressd run` (its --ready-file).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["proxy_port", "dns_port"])]
    pub from_ready: Option<PathBuf>,
    /// Also let the user reach every other loopback port (pf/nft sidecar-only; sbpl opens
    /// loopback by default, see --loopback).
    #[arg(long)]
    pub allow_loopback: bool,
}

#[derive(Debug, Args)]
pub struct PfArgs {
    #[command(flatten)]
    pub common: FirewallArgs,
    /// Anchor to load into. Stock macOS pf.conf evaluates "com.apple/*", so the default needs no
    /// pf.conf edit.
    #[arg(long, default_value = "com.apple/egressd")]
    pub anchor: String,
}

#[derive(Debug, Args)]
pub struct NftArgs {
    #[command(flatten)]
    pub common: FirewallArgs,
    /// nftables table name (in family inet); default egressd_UID.
    #[arg(long)]
    pub table: Option<String>,
}

#[derive(Debug, Args)]
pub struct SbplArgs {
    #[command(flatten)]
    pub sidecar: SidecarArgs,
    /// What the job may reach on loopback besides egressd: open (every port but 53: the job's own
    /// test servers and databases) or sidecar (egressd's ports only).
    #[arg(long, value_enum, default_value_t = LoopbackArg::Open, conflicts_with = "allow_loopback")]
    pub loopback: LoopbackArg,
    /// Write the section to FILE instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FirewallMode {
    Lan,
    LoopbackOnly,
    SidecarOnly,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BlockPolicyArg {
    Return,
    Drop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LoopbackArg {
    Open,
    Sidecar,
}
