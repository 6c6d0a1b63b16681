//! Linux nftables tables: the nft renderer of a [`Plan`], the same plan as the pf anchor, with
//! `meta skuid`, in a table of its own that `nft -f` replaces idempotently and one
//! `nft delete table` removes.

use std::fmt::Write;

use ipnet::IpNet;

use crate::plan::host_or_net;
use crate::{BlockPolicy, Cgroup, Dest, Family, Icmp, IcmpScope, Plan, Rule, TableEntry, Verdict};

/// Checks a table name against nft's identifier grammar.
pub fn check_table(name: &str) -> Result<(), crate::Error> {
    let mut bytes = name.bytes();
    let ok = name.len() <= 64
        && bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(crate::Error::Table(name.to_owned()))
    }
}

/// The default table name for a uid: one table per sandbox user.
pub fn default_table(uid: u32) -> String {
    format!("egressd_{uid}")
}

/// The default table name for the jobs of a uid in one cgroup: one table per job, so loading or
/// removing one job's rules leaves the others' tables alone. The path's separators and
/// punctuation become `_`; a name past nft's limit is an error (give `--table`).
pub fn default_cgroup_table(uid: u32, cgroup: &Cgroup) -> Result<String, crate::Error> {
    let path: String = cgroup
        .path()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let name = format!("egressd_{uid}_{path}");
    check_table(&name).map_err(|_| crate::Error::TableForCgroup(cgroup.path().to_owned()))?;
    Ok(name)
}

/// Renders `plan` as an `nft -f` script for table `inet NAME`.
pub fn render(plan: &Plan, table: &str) -> String {
    let mut out = String::from("#!/usr/sbin/nft -f\n");
    for line in &plan.about {
        let _ = writeln!(out, "# {line}");
    }
    let _ = writeln!(
        out,
        "{}",
        match plan.icmp {
            Icmp::Closed =>
                "# icmp:   closed: every ICMP packet from this user to anything but loopback, echo to\n#         public addresses included (--allow-icmp opens it).",
            Icmp::Open =>
                "# icmp:   open (--allow-icmp): this file refuses none of the user's ICMP.",
        }
    );
    let _ = writeln!(
        out,
        "# other:  every other IP protocol from this user (SCTP, UDP-Lite, raw IP...) is refused\n\
         #         {} (loopback excepted).",
        if plan
            .sections
            .iter()
            .flat_map(|s| &s.rules)
            .any(|r| r.other_protocols && r.dest == Dest::Special)
        {
            "to the special ranges"
        } else {
            "everywhere"
        }
    );
    let _ = write!(
        out,
        "#\n\
         # Load:    sudo nft -f THIS_FILE   (replaces an earlier copy of this table: safe to repeat)\n\
         # Verify:  sudo nft list table inet {table}\n\
         # Remove:  sudo nft delete table inet {table}\n\
         \n\
         table inet {table} {{}}\n\
         delete table inet {table}\n\
         \n\
         table inet {table} {{\n"
    );
    if plan.uses_tables {
        set(&mut out, "special4", "ipv4_addr", &plan.special4);
        set(&mut out, "special6", "ipv6_addr", &plan.special6);
    }
    let _ = writeln!(
        out,
        "\tchain output {{\n\t\ttype filter hook output priority filter; policy accept;"
    );
    for section in &plan.sections {
        let _ = writeln!(out, "\n\t\t# {}", section.comment);
        for rule in &section.rules {
            for line in rule_lines(rule, plan) {
                let _ = writeln!(out, "\t\t{line}");
            }
        }
    }
    let _ = writeln!(out, "\t}}\n}}");
    out
}

fn set(out: &mut String, name: &str, kind: &str, entries: &[TableEntry]) {
    let _ = writeln!(
        out,
        "\t# Special ranges from egressd's built-in list (docs/policy.md):"
    );
    for entry in entries {
        let _ = writeln!(out, "\t#   {:<24} {}", entry.net.to_string(), entry.label());
    }
    // Overlaps (broadcast inside reserved, ::1 inside the IPv4-compatible forms) are merged here:
    // an interval set refuses overlapping elements.
    let merged = IpNet::aggregate(&entries.iter().map(|e| e.net).collect::<Vec<_>>());
    let elements: Vec<String> = merged.iter().map(ToString::to_string).collect();
    let _ = writeln!(
        out,
        "\tset {name} {{\n\t\ttype {kind}\n\t\tflags interval\n\t\telements = {{\n\t\t\t{}\n\t\t}}\n\t}}\n",
        elements.join(",\n\t\t\t")
    );
}

fn rule_lines(rule: &Rule, plan: &Plan) -> Vec<String> {
    let (ip, set, icmp) = match rule.family {
        Family::V4 => ("ip", "@special4", "icmp type echo-request"),
        Family::V6 => ("ip6", "@special6", "icmpv6 type echo-request"),
    };
    let daddr = match &rule.dest {
        Dest::Net(net) => format!(" {ip} daddr {net}"),
        Dest::Special => format!(" {ip} daddr {set}"),
        // `meta nfproto` keeps an "any" rule to its family in the inet table.
        Dest::Any => format!(
            " meta nfproto {}",
            if rule.family == Family::V4 {
                "ipv4"
            } else {
                "ipv6"
            }
        ),
    };
    let uid = match &plan.cgroup {
        Some(cgroup) => format!(
            "{} socket cgroupv2 level {} \"{}\"",
            plan.uid,
            cgroup.level(),
            cgroup.path()
        ),
        None => plan.uid.to_string(),
    };
    let loopback = host_or_net(&rule.family.loopback());
    match rule.icmp {
        Some(IcmpScope::HostEcho) => {
            return vec![format!(
                "meta skuid {uid} {ip} daddr != {loopback}{daddr} {icmp} {}",
                drop_or_reject(plan, None)
            )];
        }
        Some(IcmpScope::Subject) => {
            let proto = match rule.family {
                Family::V4 => "icmp",
                Family::V6 => "ipv6-icmp",
            };
            return vec![format!(
                "meta skuid {uid} meta l4proto {proto} {ip} daddr != {loopback} {}",
                drop_or_reject(plan, None)
            )];
        }
        None => {}
    }
    if rule.other_protocols {
        // Everything but what the rules above decide: TCP and UDP (passed or refused by port and
        // address), ICMP (refused above unless --allow-icmp). `meta l4proto` is the transport
        // header past IPv6 extension headers.
        let known = match rule.family {
            Family::V4 => "{ tcp, udp, icmp }",
            Family::V6 => "{ tcp, udp, ipv6-icmp }",
        };
        let to = match &rule.dest {
            Dest::Any => String::new(),
            _ => daddr,
        };
        return vec![format!(
            "meta skuid {uid} meta l4proto != {known} {ip} daddr != {loopback}{to} {}",
            drop_or_reject(plan, None)
        )];
    }
    let ports = rule
        .port_list("-", ", ")
        .map(|list| format!("{{ {list} }}"));
    match rule.verdict {
        Verdict::Pass => {
            let protos = if rule.udp { "{ tcp, udp }" } else { "tcp" };
            let dport = ports.map(|p| format!(" th dport {p}")).unwrap_or_default();
            vec![format!(
                "meta skuid {uid} meta l4proto {protos}{daddr}{dport} accept"
            )]
        }
        Verdict::Block => {
            let mut lines = Vec::new();
            let dport = |proto: &str| {
                ports
                    .as_ref()
                    .map(|p| format!(" {proto} dport {p}"))
                    .unwrap_or_default()
            };
            lines.push(format!(
                "meta skuid {uid} meta l4proto tcp{daddr}{} {}",
                dport("tcp"),
                drop_or_reject(plan, Some("tcp"))
            ));
            if rule.udp {
                lines.push(format!(
                    "meta skuid {uid} meta l4proto udp{daddr}{} {}",
                    dport("udp"),
                    drop_or_reject(plan, Some("udp"))
                ));
            }
            lines
        }
    }
}

/// TCP gets a reset, UDP (and ICMP) an ICMP port-unreachable, or everything is dropped.
fn drop_or_reject(plan: &Plan, proto: Option<&str>) -> &'static str {
    match (plan.block, proto) {
        (BlockPolicy::Drop, _) => "drop",
        (BlockPolicy::Return, Some("tcp")) => "reject with tcp reset",
        (BlockPolicy::Return, _) => "reject",
    }
}
