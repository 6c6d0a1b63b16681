//! Command-line flags. Every flag's help text is what `--help` shows; keep it accurate.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
