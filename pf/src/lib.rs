//! Host packet-filter rules generated from an egressd policy, in every format egressd writes:
//! macOS pf anchors ([`pf`]), Linux nftables tables ([`nft`]), and the network section of a macOS
//! `sandbox-exec` (SBPL) profile ([`sbpl`]).
//!
//! A sandbox that ignores the proxy can still open sockets to the LAN; a `sandbox-exec` profile
//! cannot express CIDRs. These rules close that gap for one sandbox user, from the same policy the
//! proxy enforces: one [`Plan`] ([`plan`]) says what to shut, and each packet-filter format has
//! one renderer of it, so the firewalls say the same thing. SBPL, which filters a process tree
//! rather than a uid and knows no CIDRs, has its own small input (the sidecar's ports).
//!
//! This crate only writes text. Resolving a user name, reading a readiness file and loading the
//! rules are the caller's business; so is deciding which format a host needs.
#![forbid(unsafe_code)]

use std::fmt;
use std::net::IpAddr;

pub mod nft;
pub mod pf;
pub mod plan;
pub mod sbpl;

pub use plan::{Dest, Family, IcmpScope, Plan, Rule, Section, TableEntry, Verdict};

/// Lowest uid accepted as a normal account ([`UidRange::Regular`]): macOS gives normal accounts
/// 501 and up, and system and service accounts below 500.
pub const MIN_USER_UID: u32 = 500;

/// Why rules cannot be generated.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// uid 0 or a system account, for [`UidRange::Regular`].
    #[error(
        "uid {0} is root or a system account (below {MIN_USER_UID}); rules for it would cut off system services. Use a dedicated sandbox user; if this uid is one (a CI runner's hidden service user), add --service-user (never for root or a macOS daemon's account)"
    )]
    SystemUid(u32),
    /// uid 0 under [`UidRange::Service`].
    #[error(
        "uid 0 is root, not a service user: rules for it would cut off the system itself (--service-user accepts any uid but 0)"
    )]
    RootAsServiceUser,
    /// An anchor name pf would reject.
    #[error(
        "invalid anchor name {0:?}: use letters, digits, '_', '-' and '.', in segments separated by '/', not starting with '_'"
    )]
    Anchor(String),
    /// An nftables table name nft would reject.
    #[error("invalid table name {0:?}: start with a letter, then letters, digits and '_'")]
    Table(String),
    /// `sidecar-only` without any sidecar port.
    #[error(
        "sidecar-only mode needs the sidecar's ports: give --proxy-port and/or --dns-port, or --from-ready FILE"
    )]
    NoSidecarPorts,
    /// A cgroup path nft would not resolve, or that could not be quoted safely.
    #[error(
        "invalid cgroup path {0:?}: give it relative to the cgroup v2 mount (/sys/fs/cgroup), as '/'-separated names of letters, digits, '_', '-', '.', '@' and ':' (no '.' or '..' segment)"
    )]
    Cgroup(String),
    /// A `--deny-loopback-port` range that closes one of this sandbox's own sidecar ports.
    #[error(
        "--deny-loopback-port closes port {0}, one of this sandbox's own egressd ports: list only the other jobs' ports"
    )]
    DenyOwnPort(u16),
    /// A `--deny-loopback-port` value that is no port or range.
    #[error("invalid --deny-loopback-port {0:?}: write PORT or LO-HI, ports 1-65535, LO <= HI")]
    LoopbackPort(String),
    /// More `--deny-loopback-port` ports than an SBPL section should spell out one by one.
    #[error(
        "--deny-loopback-port names {0} ports; a sandbox-exec section spells each port out and takes at most {MAX_SBPL_PORTS}: give each job slot a small fixed range"
    )]
    TooManyPorts(usize),
    /// A default nft table name for a cgroup that does not fit nft's limit.
    #[error("the table name for cgroup {0:?} is too long: give --table")]
    TableForCgroup(String),
    /// A `--allow-unix-socket` path that is not absolute or cannot be quoted safely.
    #[error(
        "invalid --allow-unix-socket {0:?}: give an absolute path, as the sandbox sees it (/private/var/..., /private/tmp/...), without '\"', '\\' or control characters"
    )]
    UnixSocketPath(String),
}

/// The most ports an SBPL section spells out for `--deny-loopback-port` (SBPL takes one port per
/// address filter, no ranges).
pub const MAX_SBPL_PORTS: usize = 256;

/// The sandbox user, by numeric uid (names are resolved by the caller at generation time, since
/// pf resolves names only when rules load and an unknown name then fails the load).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxUser {
    uid: u32,
    name: Option<String>,
}

/// Which uids may be a sandbox user.
///
/// Rules for a system daemon's account would cut that service off for the whole host (filtering
/// `_mdnsresponder`, uid 65, would end name resolution for everyone), and a name does not tell a
/// daemon's account from a runner's: both are `_`-prefixed and below 500 on macOS. So going below
/// 500 is the admin's explicit statement, never a guess.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UidRange {
    /// Normal accounts: uid [`MIN_USER_UID`] and up.
    Regular,
    /// Also a dedicated service account below [`MIN_USER_UID`] (`--service-user`), such as the
    /// hidden user a macOS CI runner runs its jobs as; never uid 0.
    Service,
    /// Any uid, root included (`--danger-allow-system-uid`).
    DangerAny,
}

impl SandboxUser {
    /// Checks `uid` against `range`.
    pub fn new(uid: u32, name: Option<String>, range: UidRange) -> Result<Self, Error> {
        match range {
            UidRange::Regular if uid < MIN_USER_UID => Err(Error::SystemUid(uid)),
            UidRange::Service if uid == 0 => Err(Error::RootAsServiceUser),
            _ => Ok(Self { uid, name }),
        }
    }

    /// The numeric uid.
    pub fn uid(&self) -> u32 {
        self.uid
    }
}

impl fmt::Display for SandboxUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(
                f,
                "uid {} ({name}, resolved to this uid when the rules were generated)",
                self.uid
            ),
            None => write!(f, "uid {}", self.uid),
        }
    }
}

/// One port of the sidecar the sandbox may reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SidecarPort {
    /// The address; `None` means both 127.0.0.1 and ::1.
    pub ip: Option<IpAddr>,
    /// The port.
    pub port: u16,
    /// TCP only (the proxy), or TCP and UDP (the DNS stub).
    pub udp: bool,
}

/// A cgroup v2 path, relative to the cgroup2 mount (`/sys/fs/cgroup`), that nft's
/// `socket cgroupv2 level N "PATH"` selects: the jobs of one user told apart by cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    path: String,
}

impl Cgroup {
    /// Checks `path` (a leading `/` is taken as the mount's root and dropped): `/`-separated
    /// names of letters, digits and `_-.@:`, no empty, `.` or `..` segment. Names are kept that
    /// narrow so the path goes between nft's double quotes as it is.
    pub fn new(path: &str) -> Result<Self, Error> {
        let trimmed = path.trim_start_matches('/');
        let ok = !trimmed.is_empty()
            && trimmed.len() <= 255
            && trimmed.split('/').all(|segment| {
                !segment.is_empty()
                    && segment != "."
                    && segment != ".."
                    && segment
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-.@:".contains(&b))
            });
        if ok {
            Ok(Self {
                path: trimmed.to_owned(),
            })
        } else {
            Err(Error::Cgroup(path.to_owned()))
        }
    }

    /// The path, without a leading `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Its depth below the root: nft's `level`.
    pub fn level(&self) -> usize {
        self.path.split('/').count()
    }
}

/// Parses `PORT` or `LO-HI` (`--deny-loopback-port`).
pub fn parse_port_range(text: &str) -> Result<std::ops::RangeInclusive<u16>, Error> {
    let bad = || Error::LoopbackPort(text.to_owned());
    let port = |t: &str| t.trim().parse::<u16>().ok().filter(|p| *p > 0);
    let (lo, hi) = match text.split_once('-') {
        Some((lo, hi)) => (port(lo).ok_or_else(bad)?, port(hi).ok_or_else(bad)?),
        None => {
            let p = port(text).ok_or_else(bad)?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(bad());
    }
    Ok(lo..=hi)
}

/// Sorts and merges port ranges (overlapping or adjacent ranges become one).
pub fn merge_ranges(
    ranges: &[std::ops::RangeInclusive<u16>],
) -> Vec<std::ops::RangeInclusive<u16>> {
    let mut sorted = ranges.to_vec();
    sorted.sort_by_key(|r| (*r.start(), *r.end()));
    let mut merged: Vec<std::ops::RangeInclusive<u16>> = Vec::new();
    for range in sorted {
        match merged.last_mut() {
            Some(last) if u32::from(*range.start()) <= u32::from(*last.end()) + 1 => {
                if range.end() > last.end() {
                    *last = *last.start()..=*range.end();
                }
            }
            _ => merged.push(range),
        }
    }
    merged
}

/// Whether the fenced user's (or cgroup's) own ICMP is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Icmp {
    /// Every ICMP packet from the user or cgroup to anything but loopback is refused, echo
    /// requests to public addresses included (the default).
    Closed,
    /// ICMP is left alone (`--allow-icmp`).
    Open,
}

/// What the rules close.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Close the special ranges (minus carve-outs) for the user; everything else unchanged.
    Lan,
    /// The user may reach only the sidecar's ports (and, if asked, the rest of loopback). One
    /// sandbox per user: a second job's sidecar-only rules would refuse the first job's ports.
    SidecarOnly {
        /// The sidecar's listeners.
        ports: Vec<SidecarPort>,
        /// Also let the user reach every other loopback port.
        allow_loopback: bool,
    },
    /// The user may reach loopback only, where every job's egressd listens: one rule set per
    /// user, right for any number of jobs and sidecars at once (docs/pf.md, "Many jobs under one
    /// service user"). egressd itself must then run as another user.
    LoopbackOnly,
}

/// How refused packets are answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockPolicy {
    /// TCP reset / ICMP unreachable: the job fails at once.
    Return,
    /// Silently dropped: the job waits for its own timeout.
    Drop,
}

/// Everything that shapes the output besides the policy.
#[derive(Clone, Debug)]
pub struct Options {
    /// The sandbox user.
    pub user: SandboxUser,
    /// What to close.
    pub mode: Mode,
    /// How to refuse.
    pub block: BlockPolicy,
    /// Only the user's sockets in this cgroup (nft only: pf has no cgroups).
    pub cgroup: Option<Cgroup>,
    /// Loopback ports closed to the user or cgroup (other jobs' egressd), TCP and UDP.
    pub deny_loopback: Vec<std::ops::RangeInclusive<u16>>,
    /// The user's (or cgroup's) own ICMP.
    pub icmp: Icmp,
    /// pf only: also refuse ICMP echo requests to the special ranges for every user of the host
    /// (`--block-icmp`; pf cannot tie ICMP to a user, see docs/pf.md).
    pub block_icmp: bool,
    /// Program and version for the header, e.g. `egressd 0.1.0`.
    pub generator: String,
}
