//! Host firewall rules generated from an egressd policy: macOS pf anchors, Linux nftables tables,
//! and the network section of a macOS `sandbox-exec` profile.
//!
//! A sandbox that ignores the proxy can still open sockets to the LAN; a `sandbox-exec` profile
//! cannot express CIDRs. These rules close that gap for one sandbox user, from the same policy the
//! proxy enforces: one [`Plan`] is built from the policy and rendered by [`pf::render`] or
//! [`nft::render`], so the two firewalls say the same thing.
//!
//! This crate only writes text. Resolving a user name, reading a readiness file and loading the
//! rules are the caller's business.
#![forbid(unsafe_code)]

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use policy::{Matcher, Policy, PortSet, SpecialRange};

pub mod nft;
pub mod pf;
pub mod sbpl;

/// Lowest uid accepted without `--allow-system-uid`: macOS gives normal accounts 501 and up, and
/// system and service accounts below 500.
pub const MIN_USER_UID: u32 = 500;

/// Why rules cannot be generated.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// uid 0 or a system account.
    #[error(
        "uid {0} is root or a system account (below {MIN_USER_UID}); rules for it would cut off system services. Use a dedicated sandbox user, or --allow-system-uid if you really mean it"
    )]
    SystemUid(u32),
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
}

/// The sandbox user, by numeric uid (names are resolved by the caller at generation time, since
/// pf resolves names only when rules load and an unknown name then fails the load).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxUser {
    uid: u32,
    name: Option<String>,
}

impl SandboxUser {
    /// Checks `uid`: root and system accounts are refused unless `allow_system`.
    pub fn new(uid: u32, name: Option<String>, allow_system: bool) -> Result<Self, Error> {
        if uid < MIN_USER_UID && !allow_system {
            return Err(Error::SystemUid(uid));
        }
        Ok(Self { uid, name })
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

/// What the rules close.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Close the special ranges (minus carve-outs) for the user; everything else unchanged.
    Lan,
    /// The user may reach only the sidecar's ports (and, if asked, the rest of loopback).
    SidecarOnly {
        /// The sidecar's listeners.
        ports: Vec<SidecarPort>,
        /// Also let the user reach every other loopback port.
        allow_loopback: bool,
    },
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
    /// Also refuse ICMP echo requests to the special ranges (host-wide on pf, see docs/pf.md).
    pub block_icmp: bool,
    /// Program and version for the header, e.g. `egressd 0.1.0`.
    pub generator: String,
}

/// Address family of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// Where a rule's packets go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dest {
    /// One network.
    Net(IpNet),
    /// The special-range table of the rule's family.
    Special,
    /// Anywhere.
    Any,
}

/// Pass or block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let through (and stop evaluating).
    Pass,
    /// Refuse (and stop evaluating).
    Block,
}

/// One rule, independent of firewall syntax. All rules are "quick" (first match wins) and apply
/// to outgoing TCP and UDP of the sandbox user, except ICMP rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Pass or block.
    pub verdict: Verdict,
    /// Address family.
    pub family: Family,
    /// Destination.
    pub dest: Dest,
    /// Destination ports; `None` for all.
    pub ports: Option<PortSet>,
    /// Also UDP (TCP always).
    pub udp: bool,
    /// ICMP echo requests instead of TCP/UDP. pf cannot match these per user.
    pub icmp_echo: bool,
}

/// Rules under one explanatory comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// Why these rules exist.
    pub comment: String,
    /// The rules, in order.
    pub rules: Vec<Rule>,
}

/// One entry of a special-range table, with what it is for comments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableEntry {
    /// The network.
    pub net: IpNet,
    /// The range it expresses.
    pub range: &'static SpecialRange,
    /// Set when the network is an IPv4 range as carried in IPv6.
    pub via: Option<policy::Embedding>,
}

/// The rules for one user and policy, before rendering.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Header lines (without comment markers).
    pub about: Vec<String>,
    /// The IPv4 special-range table.
    pub special4: Vec<TableEntry>,
    /// The IPv6 special-range table.
    pub special6: Vec<TableEntry>,
    /// Whether any rule uses the tables.
    pub uses_tables: bool,
    /// Rules, in evaluation order.
    pub sections: Vec<Section>,
    /// The user.
    pub uid: u32,
    /// How to refuse.
    pub block: BlockPolicy,
}

impl Plan {
    /// Builds the plan for `policy` under `options`.
    pub fn new(policy: &Policy, options: &Options) -> Result<Self, Error> {
        let mut about = vec![
            format!(
                "Generated by {}. Regenerate it; do not edit it.",
                options.generator
            ),
            format!("policy: {} (sha256 {})", policy.origin(), policy.digest()),
            format!("user:   {}", options.user),
        ];
        let mut sections = Vec::new();
        match &options.mode {
            Mode::Lan => {
                about.push("mode:   lan: the user's TCP and UDP to every special range is refused, minus the".into());
                about.push(
                    "        policy's carve-outs; loopback stays open; other users are untouched."
                        .into(),
                );
                sections.push(loopback_section(
                    "Loopback stays usable: jobs bind and connect to themselves.",
                ));
                let (denies, skipped) = deny_rules(policy);
                if !denies.is_empty() {
                    sections.push(Section {
                        comment: "The policy's CIDR deny rules (they win over carve-outs, as in the policy).".into(),
                        rules: denies,
                    });
                }
                if skipped > 0 {
                    about.push(format!(
                        "note:   {skipped} host-name deny rule(s) cannot be written as addresses; the proxy enforces them."
                    ));
                }
                let carve = carve_out_rules(policy);
                if !carve.is_empty() {
                    sections.push(Section {
                        comment: "The policy's carve-outs.".into(),
                        rules: carve,
                    });
                }
                sections.push(Section {
                    comment: "Every other special-range destination.".into(),
                    rules: both_families(|family| Rule {
                        verdict: Verdict::Block,
                        family,
                        dest: Dest::Special,
                        ports: None,
                        udp: true,
                        icmp_echo: false,
                    }),
                });
            }
            Mode::SidecarOnly {
                ports,
                allow_loopback,
            } => {
                if ports.is_empty() {
                    return Err(Error::NoSidecarPorts);
                }
                about.push("mode:   sidecar-only: the user's TCP and UDP may reach only egressd's listeners".into());
                let rest = if *allow_loopback {
                    "and the rest of loopback"
                } else {
                    "on loopback"
                };
                about.push(format!(
                    "        {rest}; everything else from this user is refused."
                ));
                sections.push(Section {
                    comment: "egressd's listeners.".into(),
                    rules: sidecar_rules(ports),
                });
                if *allow_loopback {
                    sections.push(loopback_section("The rest of loopback (--allow-loopback)."));
                }
                sections.push(Section {
                    comment: "Everything else from this user.".into(),
                    rules: both_families(|family| Rule {
                        verdict: Verdict::Block,
                        family,
                        dest: Dest::Any,
                        ports: None,
                        udp: true,
                        icmp_echo: false,
                    }),
                });
            }
        }
        if options.block_icmp {
            sections.push(Section {
                comment:
                    "ICMP echo requests to the special ranges (--block-icmp; loopback excepted)."
                        .into(),
                rules: both_families(|family| Rule {
                    verdict: Verdict::Block,
                    family,
                    dest: Dest::Special,
                    ports: None,
                    udp: false,
                    icmp_echo: true,
                }),
            });
        }
        let uses_tables = sections
            .iter()
            .flat_map(|s| &s.rules)
            .any(|r| r.dest == Dest::Special);
        let (special4, special6) = special_tables();
        Ok(Self {
            about,
            special4,
            special6,
            uses_tables,
            sections,
            uid: options.user.uid,
            block: options.block,
        })
    }
}

fn both_families(rule: impl Fn(Family) -> Rule) -> Vec<Rule> {
    vec![rule(Family::V4), rule(Family::V6)]
}

fn family_of(net: &IpNet) -> Family {
    match net {
        IpNet::V4(_) => Family::V4,
        IpNet::V6(_) => Family::V6,
    }
}

fn loopback_section(comment: &str) -> Section {
    let loopback: [IpNet; 2] = [
        IpNet::V4(ipnet::Ipv4Net::new_assert(
            std::net::Ipv4Addr::new(127, 0, 0, 0),
            8,
        )),
        IpNet::from(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
    ];
    Section {
        comment: comment.into(),
        rules: loopback
            .into_iter()
            .map(|net| Rule {
                verdict: Verdict::Pass,
                family: family_of(&net),
                dest: Dest::Net(net),
                ports: None,
                udp: true,
                icmp_echo: false,
            })
            .collect(),
    }
}

fn deny_rules(policy: &Policy) -> (Vec<Rule>, usize) {
    let mut rules = Vec::new();
    let mut skipped = 0;
    for rule in policy.deny_rules() {
        match &rule.matcher {
            Matcher::Cidr(net) => rules.push(Rule {
                verdict: Verdict::Block,
                family: family_of(net),
                dest: Dest::Net(*net),
                ports: (rule.ports != PortSet::Any).then(|| rule.ports.clone()),
                udp: true,
                icmp_echo: false,
            }),
            Matcher::Host(_) => skipped += 1,
        }
    }
    (rules, skipped)
}

fn carve_out_rules(policy: &Policy) -> Vec<Rule> {
    policy
        .carve_outs()
        .iter()
        .filter_map(|rule| match &rule.matcher {
            Matcher::Cidr(net) => Some(Rule {
                verdict: Verdict::Pass,
                family: family_of(net),
                dest: Dest::Net(*net),
                ports: Some(rule.ports.clone()),
                udp: true,
                icmp_echo: false,
            }),
            Matcher::Host(_) => None,
        })
        .collect()
}

fn sidecar_rules(ports: &[SidecarPort]) -> Vec<Rule> {
    let mut rules = Vec::new();
    for port in ports {
        let ips: Vec<IpAddr> = match port.ip {
            Some(ip) => vec![ip],
            None => vec![
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ],
        };
        for ip in ips {
            let net = IpNet::from(ip);
            rules.push(Rule {
                verdict: Verdict::Pass,
                family: family_of(&net),
                dest: Dest::Net(net),
                ports: Some(PortSet::Ranges(vec![port.port..=port.port])),
                udp: port.udp,
                icmp_echo: false,
            });
        }
    }
    rules
}

fn special_tables() -> (Vec<TableEntry>, Vec<TableEntry>) {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for (net, range, via) in policy::denied_networks() {
        let entry = TableEntry { net, range, via };
        match net {
            IpNet::V4(_) => v4.push(entry),
            IpNet::V6(_) => v6.push(entry),
        }
    }
    (v4, v6)
}

/// Comment text for a table entry: `private, RFC 1918` or `private, RFC 1918, as NAT64`.
pub(crate) fn entry_label(entry: &TableEntry) -> String {
    match entry.via {
        Some(embedding) => format!(
            "{} ({}), {} {}",
            entry.range.name,
            entry.range.net,
            embedding.name(),
            entry.range.rfc
        ),
        None => format!("{}, {}", entry.range.name, entry.range.rfc),
    }
}

/// A port set in a firewall's list syntax (`range` between the ends of a range, `separator`
/// between items), or `None` for all ports.
pub(crate) fn port_list(ports: &Option<PortSet>, range: &str, separator: &str) -> Option<String> {
    let set = ports.as_ref()?;
    let items: Vec<String> = set
        .ranges()
        .into_iter()
        .map(|r| {
            if r.start() == r.end() {
                r.start().to_string()
            } else {
                format!("{}{range}{}", r.start(), r.end())
            }
        })
        .collect();
    Some(items.join(separator))
}
