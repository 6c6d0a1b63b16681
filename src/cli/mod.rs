//! Command-line flags. Every flag's help text is what `--help` shows; keep it accurate. One
//! module per family of subcommands: `run`'s flags, the firewall generators' flags.

mod firewall;
mod run;
mod suggest;

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

pub use firewall::*;
pub use run::*;
pub use suggest::*;

/// Parses the process's arguments (exiting as clap does on an error or `--help`), noting where
/// `run`'s headers came from: EGRESSD_HEADERS holds one header per line, a `--header` flag one
/// header whose newline is an error, and only the parsed matches can tell the two apart.
pub fn parse() -> Cli {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Command::Run(args) = &mut cli.command {
        args.headers_from_env = matches
            .subcommand_matches("run")
            .and_then(|run| run.value_source("headers"))
            == Some(clap::parser::ValueSource::EnvVariable);
    }
    cli
}

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
    /// sidecar-only the user may reach only one egressd's ports. pf cannot match ICMP by user: the
    /// job's sandbox-exec section closes its ICMP. The header of the output says what it closes and
    /// how to load, verify, enable and remove it; see docs/pf.md.
    ///
    /// Exit status: 0 on success, 2 for bad input (unknown user, system uid, bad anchor name or
    /// port, invalid policy, sidecar-only without ports).
    Pf(PfArgs),
    /// Print an nftables ruleset (Linux) doing what `egressd pf` does, with `meta skuid`.
    ///
    /// The ruleset lives in its own `table inet` (default egressd_UID, one per user): `nft -f FILE`
    /// replaces an earlier copy, `nft delete table inet NAME` removes it. TCP is refused with a
    /// reset, UDP with an ICMP error; the user's own ICMP is refused but to loopback unless
    /// --allow-icmp. With --cgroup PATH the rules match one job of the user (its cgroup v2, one
    /// table per job), and --deny-loopback-port closes the other jobs' egressd ports to it. See
    /// docs/pf.md, "Many jobs under one service user".
    ///
    /// Exit status: 0 on success, 2 for bad input.
    Nft(NftArgs),
    /// Print the network section of a sandbox-exec profile: outbound only to loopback and
    /// egressd's ports, and no system resolver.
    ///
    /// Denies every other outbound connection and datagram (ICMP included), loopback port 53 and
    /// the ports of --deny-loopback-port (other jobs' egressd), reading other processes' arguments
    /// and environment (kern.procargs*) and details (process-info*), the system resolver's socket
    /// and its Mach services (com.apple.dnssd.service and mDNSResponder's others); trust services
    /// that TLS certificate checks need are left alone. Loopback is open by default (CI jobs call
    /// their own servers); --loopback sidecar closes it but for egressd. Unix sockets are open but
    /// for the resolver's and the well-known container-daemon and VM sockets; --allow-unix-socket
    /// PATH keeps them to the job's own directories (a daemon's socket is a way out). Append the section at the end of the profile; see
    /// docs/sbpl.md and docs/launcher.md.
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
    /// Suggest a policy from audit logs: allow what was asked for and refused.
    ///
    /// Reads audit events (JSON lines from `egressd run --audit-log`, any number of sandboxes and
    /// runs) and prints on stdout a policy that allows the destinations the policy refused: host
    /// names with the ports seen, IP literals as /32 or /128 CIDR rules; siblings under one
    /// registrable domain as one wildcard only with --group. Special-range destinations and names
    /// that never resolved are never suggested: they are listed as comments. With --policy, the
    /// output is the whole next policy: that policy with the new rules appended. Review the output
    /// before using it; see docs/report-mode.md.
    ///
    /// Exit status: 0 on success, 2 for bad input (unreadable file, a line that is not an audit
    /// event, invalid --policy).
    Suggest(SuggestArgs),
    /// Print a shell completion script for egressd.
    ///
    /// Exit status: 0.
    Completions(CompletionsArgs),
    /// Print egressd's man page (roff), generated from the same definitions as --help.
    ///
    /// Install with `egressd man > /usr/local/share/man/man1/egressd.1`.
    ///
    /// Exit status: 0.
    Man,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The policy file to validate.
    #[arg(
        required_unless_present_any = ["print_default", "print_schema"],
        conflicts_with = "print_default"
    )]
    pub policy: Option<PathBuf>,
    /// Print the built-in default policy (used when no policy is given) and exit.
    #[arg(long)]
    pub print_default: bool,
    /// Print the JSON Schema of the policy file (also shipped as docs/policy.schema.json) and exit.
    #[arg(long, conflicts_with_all = ["policy", "print_default"])]
    pub print_schema: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to print completions for.
    pub shell: clap_complete::Shell,
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
