//! What to shut, independent of firewall syntax: the [`Plan`] built from a policy and the
//! [`Options`], as sections of first-match-wins rules for one uid.
//!
//! Every packet-filter renderer ([`crate::pf`], [`crate::nft`]) writes the same plan, so the
//! firewalls say the same thing. The plan knows nothing of either syntax; the few helpers both
//! renderers need to spell a plan's values (port lists, table-entry labels, loopback networks)
//! live here, next to the values.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net};
use policy::{Matcher, Policy, PortSet, SpecialRange};

use crate::{BlockPolicy, Cgroup, Error, Icmp, Mode, Options, SidecarPort};

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
    /// Only the user's sockets in this cgroup (nft).
    pub cgroup: Option<Cgroup>,
    /// Whether the user's own ICMP is refused (a section of [`IcmpScope::Subject`] rules).
    pub icmp: Icmp,
    /// How to refuse.
    pub block: BlockPolicy,
}

/// Rules under one explanatory comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// Why these rules exist.
    pub comment: String,
    /// The rules, in order.
    pub rules: Vec<Rule>,
}

/// One rule, independent of firewall syntax. All rules are "quick" (first match wins) and apply
/// to outgoing TCP and UDP of the sandbox user (and cgroup), except ICMP rules and the rules of
/// every other protocol.
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
    /// ICMP instead of TCP/UDP, and whose.
    pub icmp: Option<IcmpScope>,
    /// Every other layer-4 protocol instead of TCP/UDP: all but TCP, UDP and ICMP (SCTP,
    /// UDP-Lite, raw IP...), loopback excepted. ICMP is left to the ICMP rules, so `--allow-icmp`
    /// keeps meaning ICMP open.
    pub other_protocols: bool,
}

/// Whose ICMP an ICMP rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpScope {
    /// Every ICMP packet the sandbox user (and cgroup) sends; loopback excepted. nft matches the
    /// socket's owner; pf cannot (its `user` matches TCP and UDP only) and writes a comment.
    Subject,
    /// Echo requests from every user of the host (`--block-icmp` on pf); loopback excepted.
    HostEcho,
}

/// Pass or block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let through (and stop evaluating).
    Pass,
    /// Refuse (and stop evaluating).
    Block,
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

impl Plan {
    /// Builds the plan for `policy` under `options`: the header, the mode's sections, then the
    /// optional ICMP section.
    pub fn new(policy: &Policy, options: &Options) -> Result<Self, Error> {
        let mut about = header(policy, options);
        let (mode_about, mut sections) = match &options.mode {
            Mode::Lan => lan(policy),
            Mode::SidecarOnly {
                ports,
                allow_loopback,
            } => sidecar_only(ports, *allow_loopback)?,
            Mode::LoopbackOnly => loopback_only(),
        };
        about.extend(mode_about);
        if let Some(cgroup) = &options.cgroup {
            about.push(format!(
                "cgroup: {} (only this user's sockets in it; nft resolves the path when the",
                cgroup.path()
            ));
            about.push(
                "        rules load: create the cgroup first, and reload after re-creating it)"
                    .into(),
            );
        }
        let deny = crate::merge_ranges(&options.deny_loopback);
        if !deny.is_empty() {
            if let Mode::SidecarOnly { ports, .. } = &options.mode
                && let Some(own) = ports
                    .iter()
                    .find(|p| deny.iter().any(|r| r.contains(&p.port)))
            {
                return Err(Error::DenyOwnPort(own.port));
            }
            let list = PortSet::Ranges(deny.clone());
            about.push(format!(
                "closes: loopback ports {} (TCP and UDP, --deny-loopback-port): other jobs' egressd",
                port_text(&list)
            ));
            let section = Section {
                comment: "Other jobs' egressd ports on loopback (--deny-loopback-port).".into(),
                rules: [Family::V4, Family::V6]
                    .into_iter()
                    .map(|family| {
                        to_net(Verdict::Block, family.loopback(), Some(list.clone()), true)
                    })
                    .collect(),
            };
            // Before the first rule that passes loopback (after the sidecar's own ports, which
            // never overlap these), so the closed ports stay closed.
            let at = sections
                .iter()
                .position(|s| {
                    s.rules.iter().any(|r| {
                        r.verdict == Verdict::Pass && r.dest == Dest::Net(r.family.loopback())
                    })
                })
                .unwrap_or(0);
            sections.insert(at, section);
        }
        if options.icmp == Icmp::Closed {
            sections.push(Section {
                comment: "ICMP from this user, every type, echo included (loopback excepted; --allow-icmp opens it).".into(),
                rules: both_families(|family| Rule {
                    verdict: Verdict::Block,
                    family,
                    dest: Dest::Any,
                    ports: None,
                    udp: false,
                    icmp: Some(IcmpScope::Subject),
                    other_protocols: false,
                }),
            });
        }
        sections.push(other_protocols_section(&options.mode));
        if options.block_icmp {
            sections.push(icmp_section());
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
            uid: options.user.uid(),
            cgroup: options.cgroup.clone(),
            icmp: options.icmp,
            block: options.block,
        })
    }
}

/// Who generated the rules, from which policy, for whom.
fn header(policy: &Policy, options: &Options) -> Vec<String> {
    vec![
        format!(
            "Generated by {}. Regenerate it; do not edit it.",
            options.generator
        ),
        format!("policy: {} (sha256 {})", policy.origin(), policy.digest()),
        format!("user:   {}", options.user),
    ]
}

/// `--mode lan`: the policy's decision order for special ranges, loopback open.
fn lan(policy: &Policy) -> (Vec<String>, Vec<Section>) {
    let mut about = vec![
        "mode:   lan: the user's TCP and UDP to every special range is refused, minus the".into(),
        "        policy's carve-outs; loopback stays open; other users are untouched.".into(),
    ];
    let mut sections = vec![loopback_section(
        "Loopback stays usable: jobs bind and connect to themselves.",
    )];
    let (denies, skipped) = deny_rules(policy);
    if !denies.is_empty() {
        sections.push(Section {
            comment: "The policy's CIDR deny rules (they win over carve-outs, as in the policy)."
                .into(),
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
        rules: refuse(Dest::Special),
    });
    (about, sections)
}

/// `--mode sidecar-only`: the sidecar's ports, optionally the rest of loopback, nothing else.
fn sidecar_only(
    ports: &[SidecarPort],
    allow_loopback: bool,
) -> Result<(Vec<String>, Vec<Section>), Error> {
    if ports.is_empty() {
        return Err(Error::NoSidecarPorts);
    }
    let rest = if allow_loopback {
        "and the rest of loopback"
    } else {
        "on loopback"
    };
    let about = vec![
        "mode:   sidecar-only: the user's TCP and UDP may reach only egressd's listeners".into(),
        format!("        {rest}; everything else from this user is refused."),
        "        One sandbox per user: for many jobs of one user, use --mode loopback-only.".into(),
    ];
    let mut sections = vec![Section {
        comment: "egressd's listeners.".into(),
        rules: sidecar_rules(ports),
    }];
    if allow_loopback {
        sections.push(loopback_section("The rest of loopback (--allow-loopback)."));
    }
    sections.push(refuse_everything_else());
    Ok((about, sections))
}

/// `--mode loopback-only`: loopback, where every job's sidecar listens, and nothing else. No
/// port of any one sidecar appears, so the rules stay right as jobs come and go.
fn loopback_only() -> (Vec<String>, Vec<Section>) {
    let about = vec![
        "mode:   loopback-only: the user's TCP and UDP may reach loopback only, where every".into(),
        "        job's egressd listens; everything else from this user is refused. Load it once"
            .into(),
        "        per user: it names no job, so jobs and their sidecars come and go under it."
            .into(),
        "        egressd must run as another user (its own traffic from this one is refused)."
            .into(),
    ];
    let sections = vec![
        loopback_section(
            "Loopback: every job's egressd listens here, and jobs use their own services.",
        ),
        refuse_everything_else(),
    ];
    (about, sections)
}

/// Refuses every remaining TCP and UDP destination of the user.
fn refuse_everything_else() -> Section {
    Section {
        comment: "Everything else from this user.".into(),
        rules: refuse(Dest::Any),
    }
}

/// Every layer-4 protocol but TCP, UDP and ICMP from the user (SCTP, UDP-Lite, raw IP...),
/// loopback excepted: to the special ranges in `--mode lan` (as its TCP and UDP), anywhere in the
/// other modes, so "everything else from this user is refused" holds for every protocol.
fn other_protocols_section(mode: &Mode) -> Section {
    let (dest, comment) = match mode {
        Mode::Lan => (
            Dest::Special,
            "Every other IP protocol (SCTP, UDP-Lite, raw...) from this user to the special ranges (loopback excepted).",
        ),
        Mode::SidecarOnly { .. } | Mode::LoopbackOnly => (
            Dest::Any,
            "Every other IP protocol (SCTP, UDP-Lite, raw...) from this user (loopback excepted).",
        ),
    };
    Section {
        comment: comment.into(),
        rules: both_families(|family| Rule {
            verdict: Verdict::Block,
            family,
            dest: dest.clone(),
            ports: None,
            udp: false,
            icmp: None,
            other_protocols: true,
        }),
    }
}

/// `--block-icmp` (pf): echo requests to the special ranges from every user (loopback
/// excepted).
fn icmp_section() -> Section {
    Section {
        comment: "ICMP echo requests to the special ranges from every user of the host (--block-icmp; loopback excepted)."
            .into(),
        rules: both_families(|family| Rule {
            verdict: Verdict::Block,
            family,
            dest: Dest::Special,
            ports: None,
            udp: false,
            icmp: Some(IcmpScope::HostEcho),
            other_protocols: false,
        }),
    }
}

/// Ports as the header shows them: `3128, 4000-4001`.
fn port_text(set: &PortSet) -> String {
    set.ranges()
        .into_iter()
        .map(|r| {
            if r.start() == r.end() {
                r.start().to_string()
            } else {
                format!("{}-{}", r.start(), r.end())
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// TCP and UDP to `dest`, all ports, refused for both families.
fn refuse(dest: Dest) -> Vec<Rule> {
    both_families(|family| Rule {
        verdict: Verdict::Block,
        family,
        dest: dest.clone(),
        ports: None,
        udp: true,
        icmp: None,
        other_protocols: false,
    })
}

fn both_families(rule: impl Fn(Family) -> Rule) -> Vec<Rule> {
    vec![rule(Family::V4), rule(Family::V6)]
}

/// TCP and UDP to one network, passed or refused.
fn to_net(verdict: Verdict, net: IpNet, ports: Option<PortSet>, udp: bool) -> Rule {
    Rule {
        verdict,
        family: Family::of(&net),
        dest: Dest::Net(net),
        ports,
        udp,
        icmp: None,
        other_protocols: false,
    }
}

fn loopback_section(comment: &str) -> Section {
    Section {
        comment: comment.into(),
        rules: [Family::V4, Family::V6]
            .into_iter()
            .map(|family| to_net(Verdict::Pass, family.loopback(), None, true))
            .collect(),
    }
}

/// The policy's CIDR deny rules, and how many host-name deny rules had to be left out.
fn deny_rules(policy: &Policy) -> (Vec<Rule>, usize) {
    let mut rules = Vec::new();
    let mut skipped = 0;
    for rule in policy.deny_rules() {
        match &rule.matcher {
            Matcher::Cidr(net) => rules.push(to_net(
                Verdict::Block,
                *net,
                (rule.ports != PortSet::Any).then(|| rule.ports.clone()),
                true,
            )),
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
            Matcher::Cidr(net) => Some(to_net(Verdict::Pass, *net, Some(rule.ports.clone()), true)),
            Matcher::Host(_) => None,
        })
        .collect()
}

fn sidecar_rules(ports: &[SidecarPort]) -> Vec<Rule> {
    let mut rules = Vec::new();
    for port in ports {
        let ips: Vec<IpAddr> = match port.ip {
            Some(ip) => vec![ip],
            None => vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()],
        };
        for ip in ips {
            rules.push(to_net(
                Verdict::Pass,
                IpNet::from(ip),
                Some(PortSet::Ranges(vec![port.port..=port.port])),
                port.udp,
            ));
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

impl Family {
    fn of(net: &IpNet) -> Self {
        match net {
            IpNet::V4(_) => Self::V4,
            IpNet::V6(_) => Self::V6,
        }
    }

    /// The family's loopback network: `127.0.0.0/8` or `::1`.
    pub fn loopback(self) -> IpNet {
        match self {
            Self::V4 => IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8)),
            Self::V6 => IpNet::from(IpAddr::from(Ipv6Addr::LOCALHOST)),
        }
    }
}

impl Rule {
    /// The rule's ports in a firewall's list syntax (`range` between the ends of a range,
    /// `separator` between items), or `None` for all ports.
    pub(crate) fn port_list(&self, range: &str, separator: &str) -> Option<String> {
        let set = self.ports.as_ref()?;
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
}

impl TableEntry {
    /// Comment text: `private, RFC 1918` or `private (10.0.0.0/8), NAT64 RFC 1918`.
    pub(crate) fn label(&self) -> String {
        match self.via {
            Some(embedding) => format!(
                "{} ({}), {} {}",
                self.range.name,
                self.range.net,
                embedding.name(),
                self.range.rfc
            ),
            None => format!("{}, {}", self.range.name, self.range.rfc),
        }
    }
}

/// A host without `/32` or `/128`, a network with its length.
pub(crate) fn host_or_net(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}
