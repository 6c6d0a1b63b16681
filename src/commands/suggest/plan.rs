//! From counted refusals to suggested rules: drop what is too rare or already allowed, set aside
//! what no allow rule can open (deny rules, special ranges), group sibling names under their
//! registrable domain, and sort.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use policy::{DomainName, Policy};

use super::tally::{Class, Dest, Seen, Tally};
use super::{group, judge};

/// What to allow: a name, every name below a registrable domain, or one address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pattern {
    Exact(DomainName),
    Below(String),
    Cidr(IpNet),
}

/// One suggested `[[allow]]` rule.
#[derive(Clone, Debug)]
pub struct Suggestion {
    pub pattern: Pattern,
    /// The ports seen; `None` for a name seen only in DNS queries: the policy's `defaults.ports`.
    pub ports: Option<BTreeSet<u16>>,
    pub seen: Seen,
    /// The names a wildcard stands for.
    pub members: Vec<DomainName>,
}

/// A destination not suggested, and why.
#[derive(Clone, Debug)]
pub struct Note {
    pub dest: Dest,
    pub port: Option<u16>,
    pub seen: Seen,
    /// The deny rule's label, or the special range's description.
    pub why: String,
    /// Special range: the addresses a `[[danger_carve_out]]` would have to open (known for an IP
    /// literal, and for a name's `[dns.static]` addresses under --policy).
    pub carve: Vec<IpAddr>,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub rules: Vec<Suggestion>,
    pub denied: Vec<Note>,
    pub special: Vec<Note>,
    /// Names let through in report mode that never reached an address (no answer, or a
    /// failure): an allow rule would not make them work.
    pub unresolved: Vec<Note>,
    /// Destinations seen fewer than --min-count times.
    pub rare: u64,
    /// Destinations the current policy already allows.
    pub allowed: u64,
}

/// A host to allow: the ports asked through the proxy (none: asked in DNS only).
#[derive(Default)]
pub(super) struct Entry {
    pub(super) ports: BTreeSet<u16>,
    pub(super) seen: Seen,
}

pub fn build(tally: &Tally, current: Option<&Policy>, min_count: u64, group: usize) -> Plan {
    let mut plan = Plan::default();
    let mut open: BTreeMap<Dest, Entry> = BTreeMap::new();
    let mut denied: BTreeMap<(Dest, Option<u16>, String), Seen> = BTreeMap::new();
    let mut special: BTreeMap<(Dest, Option<u16>), Seen> = BTreeMap::new();
    for ((dest, port, class), seen) in &tally.refused {
        if seen.count < min_count {
            plan.rare += 1;
            continue;
        }
        let class = match current {
            Some(policy) if *class != Class::SpecialRange => {
                match judge::reclassify(policy, dest, *port) {
                    Some(class) => class,
                    None => {
                        plan.allowed += 1;
                        continue;
                    }
                }
            }
            _ => class.clone(),
        };
        match class {
            Class::Open => {
                let entry = open.entry(dest.clone()).or_default();
                entry.ports.extend(*port);
                entry.seen.merge(seen);
            }
            Class::DenyRule(rule) => {
                let key = (dest.clone(), *port, rule);
                denied.entry(key).or_default().merge(seen);
            }
            Class::SpecialRange => special
                .entry((dest.clone(), *port))
                .or_default()
                .merge(seen),
        }
    }
    let never: Vec<Dest> = open
        .iter()
        .filter(|(_, entry)| entry.seen.never_resolved())
        .map(|(dest, _)| dest.clone())
        .collect();
    for dest in never {
        if let Some(entry) = open.remove(&dest) {
            let ports: Vec<Option<u16>> = if entry.ports.is_empty() {
                vec![None]
            } else {
                entry.ports.iter().copied().map(Some).collect()
            };
            for port in ports {
                plan.unresolved.push(Note {
                    dest: dest.clone(),
                    port,
                    seen: entry.seen.clone(),
                    why: "never resolved: it was let through and reached no address (the proxy \
                          answered 502 or 504 without connecting, or the DNS stub answered NXDOMAIN or SERVFAIL)"
                        .to_owned(),
                    carve: Vec::new(),
                });
            }
        }
    }
    plan.rules = group::wildcards(&mut open, group);
    plan.rules
        .extend(open.into_iter().map(|(dest, entry)| Suggestion {
            pattern: match dest {
                Dest::Name(name) => Pattern::Exact(name),
                Dest::Ip(ip) => Pattern::Cidr(IpNet::from(ip)),
            },
            ports: (!entry.ports.is_empty()).then_some(entry.ports),
            seen: entry.seen,
            members: Vec::new(),
        }));
    plan.rules.sort_by_key(|s| sort_key(&s.pattern));
    plan.denied = denied
        .into_iter()
        .map(|((dest, port, why), seen)| Note {
            dest,
            port,
            seen,
            why,
            carve: Vec::new(),
        })
        .collect();
    plan.special = special
        .into_iter()
        .map(|((dest, port), seen)| Note {
            why: judge::special_reason(&dest, port, current),
            carve: judge::special_addresses(&dest, port, current),
            dest,
            port,
            seen,
        })
        .collect();
    plan
}

/// Names first, siblings together (labels compared from the right), a domain before its
/// wildcard; then addresses.
fn sort_key(pattern: &Pattern) -> (u8, Vec<String>, bool, Option<IpAddr>) {
    let labels = |name: &str| name.rsplit('.').map(str::to_owned).collect();
    match pattern {
        Pattern::Exact(name) => (0, labels(name.as_str()), false, None),
        Pattern::Below(domain) => (0, labels(domain), true, None),
        Pattern::Cidr(net) => (1, Vec::new(), false, Some(net.addr())),
    }
}
