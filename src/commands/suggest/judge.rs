//! What the current policy (`--policy`) says of a refused destination now, and why a special-range
//! destination stays shut.

use policy::{Host, Policy, Reason, SpecialMatch, Target};

use super::tally::{Class, Dest};

/// The class under the current policy; `None` when it already allows the destination. A name
/// whose `[dns.static]` addresses are all refused on the port takes their refusal: allowing the
/// name would not make it reachable.
pub(super) fn reclassify(policy: &Policy, dest: &Dest, port: Option<u16>) -> Option<Class> {
    let decision = match (dest, port) {
        (Dest::Name(name), None) => policy.decide_resolution(name),
        (dest, Some(port)) => policy.decide(&Target {
            host: match dest {
                Dest::Name(name) => Host::Name(name.clone()),
                Dest::Ip(ip) => Host::Ip(*ip),
            },
            port,
        }),
        // DNS queries are read for names only.
        (Dest::Ip(_), None) => return Some(Class::Open),
    };
    let class = match decision.reason {
        _ if decision.is_allowed() => return None,
        Reason::DenyRule => Class::DenyRule(
            decision
                .rule
                .map(|r| r.label().to_string())
                .unwrap_or_default(),
        ),
        Reason::SpecialRange { .. } => Class::SpecialRange,
        _ => Class::Open,
    };
    if let (Class::Open, Dest::Name(name), Some(port)) = (&class, dest, port) {
        let addrs = policy
            .dns()
            .static_records
            .get(name)
            .map_or(&[][..], |a| &a[..]);
        let refusals: Vec<_> = addrs
            .iter()
            .filter_map(|&addr| policy.check_address(addr, port).err())
            .collect();
        if let (Some(first), true) = (refusals.first(), refusals.len() == addrs.len()) {
            return Some(match (&first.reason, &first.rule) {
                (Reason::DenyRule, Some(rule)) => Class::DenyRule(rule.label().to_string()),
                _ => Class::SpecialRange,
            });
        }
    }
    Some(class)
}

/// Why a special-range destination stays shut: the range, its name and RFC.
pub(super) fn special_reason(dest: &Dest, port: Option<u16>, current: Option<&Policy>) -> String {
    match dest {
        Dest::Ip(ip) => match policy::classify(*ip) {
            Some(special) => range(&special),
            None => "in a special range under the policy that refused it".to_owned(),
        },
        Dest::Name(name) => {
            let statics: Vec<String> = current
                .and_then(|p| Some((p, p.dns().static_records.get(name)?)))
                .map(|(p, addrs)| {
                    addrs
                        .iter()
                        .filter(|&&a| port.is_none_or(|port| p.check_address(a, port).is_err()))
                        .filter_map(|&a| Some(format!("{a}: {}", range(&policy::classify(a)?))))
                        .collect()
                })
                .unwrap_or_default();
            if statics.is_empty() {
                "every address it resolved to is in a special range".to_owned()
            } else {
                format!(
                    "its [dns.static] addresses are special: {}",
                    statics.join("; ")
                )
            }
        }
    }
}

/// The special addresses a carve-out would have to open for `dest` on `port`: the literal, or the
/// name's `[dns.static]` addresses under the current policy that it refuses on the port. Empty
/// when they are not known (a name resolved upstream: the audit line does not say to what) or
/// for a DNS query (no port to open).
pub(super) fn special_addresses(
    dest: &Dest,
    port: Option<u16>,
    current: Option<&Policy>,
) -> Vec<std::net::IpAddr> {
    let Some(port) = port else {
        return Vec::new();
    };
    match dest {
        Dest::Ip(ip) => policy::classify(*ip).map(|_| *ip).into_iter().collect(),
        Dest::Name(name) => current
            .and_then(|p| Some((p, p.dns().static_records.get(name)?)))
            .map(|(p, addrs)| {
                addrs
                    .iter()
                    .copied()
                    .filter(|&a| p.check_address(a, port).is_err() && policy::classify(a).is_some())
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn range(special: &SpecialMatch) -> String {
    let range = special.range;
    let carried = special
        .via
        .map(|(embedding, v4)| format!("carries {v4} ({}); ", embedding.name()))
        .unwrap_or_default();
    format!(
        "{carried}{} {}, {}: {}",
        range.net, range.name, range.rfc, range.what
    )
}
