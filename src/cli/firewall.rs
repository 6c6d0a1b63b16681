//! The flags of `egressd pf`, `nft` and `sbpl`.

use std::ops::RangeInclusive;
use std::path::PathBuf;

use clap::Args;

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
    /// Loopback ports (PORT or LO-HI, repeatable) closed to the user, TCP and UDP: other jobs'
    /// egressd, one fixed pair per job slot. With nft --cgroup, only that job is closed off; pf
    /// and nft without --cgroup close the ports to every job of the user (docs/pf.md).
    #[arg(long, value_name = "PORT|LO-HI", value_parser = port_range)]
    pub deny_loopback_port: Vec<RangeInclusive<u16>>,
    /// Leave the user's ICMP alone. By default nft refuses every ICMP packet from the user (or
    /// cgroup) to anything but loopback, echo to public addresses included; pf cannot match ICMP
    /// by user, so there the sandbox-exec section closes it (docs/pf.md).
    #[arg(long, conflicts_with = "block_icmp")]
    pub allow_icmp: bool,
    /// pf: also refuse ICMP echo requests to the special ranges for every user of the host (pf
    /// cannot tie ICMP to a user). nft: deprecated and does nothing (the user's ICMP is closed by
    /// default).
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
    /// Only the user's sockets in this cgroup v2 (a path below /sys/fs/cgroup, nft's `socket
    /// cgroupv2`): one job of a user that runs many, each in its own cgroup. The cgroup must exist
    /// when the rules load.
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<String>,
    /// nftables table name (in family inet); default egressd_UID, or egressd_UID_CGROUP with
    /// --cgroup (one table per job).
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
    /// Loopback ports (PORT or LO-HI, repeatable) the job may not reach: the other job slots'
    /// egressd ports (docs/pf.md, "Many jobs under one service user").
    #[arg(long, value_name = "PORT|LO-HI", value_parser = port_range)]
    pub deny_loopback_port: Vec<RangeInclusive<u16>>,
    /// Allow Unix-socket connects only under PATH (repeatable; a subpath, as the sandbox sees it:
    /// /private/tmp/..., /private/var/...). Without it the job may connect to every Unix socket
    /// but the system resolver's and the well-known container-daemon and VM sockets (Docker,
    /// Colima, OrbStack, Lima, Podman, Rancher Desktop); a daemon's socket elsewhere stays open
    /// (docs/sbpl.md).
    #[arg(long, value_name = "PATH")]
    pub allow_unix_socket: Vec<String>,
    /// Write the section to FILE instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

fn port_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    pf::parse_port_range(text).map_err(|e| e.to_string())
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
