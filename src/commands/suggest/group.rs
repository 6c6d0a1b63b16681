//! Sibling names become one wildcard, only when asked (`--group N`; the default 0 never groups):
//! `a.example.com`, `b.example.com` and `c.example.com`, each refused on the same ports, are
//! suggested as `*.example.com` with `--group 3`.
//!
//! A wildcard allows every name below its domain, not only those seen, so grouping stays narrow:
//! only names refused on exactly the same ports are grouped (a wildcard never carries one host's
//! port to the others), never above the registrable domain, and the rule's comment says what it
//! newly allows.
//!
//! The wildcard's domain is the registrable domain of the Public Suffix List (the `psl` crate,
//! list compiled in: nothing is downloaded): one label below a public suffix. So a wildcard never
//! covers a public suffix (`*.com`, `*.github.io`, `*.co.uk`), where every name belongs to someone
//! else, and never stands for the domain itself (`*.example.com` does not match `example.com`,
//! which keeps its own rule).

use std::collections::{BTreeMap, BTreeSet};

use policy::DomainName;

use super::plan::{Entry, Pattern, Suggestion};
use super::tally::{Dest, Seen};

/// Takes the names that are `group` or more below one registrable domain out of `open` and
/// returns one wildcard for each such domain; `group` 0 never groups.
pub(super) fn wildcards(open: &mut BTreeMap<Dest, Entry>, group: usize) -> Vec<Suggestion> {
    if group == 0 {
        return Vec::new();
    }
    let mut below: BTreeMap<(String, BTreeSet<u16>), Vec<DomainName>> = BTreeMap::new();
    for (dest, entry) in open.iter() {
        let Dest::Name(name) = dest else { continue };
        match psl::domain_str(name.as_str()) {
            Some(domain) if domain != name.as_str() => {
                below
                    .entry((domain.to_owned(), entry.ports.clone()))
                    .or_default()
                    .push(name.clone());
            }
            _ => {}
        }
    }
    let mut wildcards = Vec::new();
    for ((domain, _), members) in below.into_iter().filter(|(_, m)| m.len() >= group) {
        let (mut ports, mut seen, mut dns_only) = (BTreeSet::new(), Seen::default(), true);
        for name in &members {
            if let Some(entry) = open.remove(&Dest::Name(name.clone())) {
                dns_only &= entry.ports.is_empty();
                ports.extend(entry.ports);
                seen.merge(&entry.seen);
            }
        }
        wildcards.push(Suggestion {
            pattern: Pattern::Below(narrowest(&domain, &members)),
            ports: (!dns_only).then_some(ports),
            seen,
            members,
        });
    }
    wildcards
}

/// The nearest common parent of `members` (all strictly below the registrable `domain`), so that
/// `s1.cdn.example.net` and `s2.cdn.example.net` give `*.cdn.example.net`, not `*.example.net`.
fn narrowest(domain: &str, members: &[DomainName]) -> String {
    let labels = |name: &str| name.rsplit('.').map(str::to_owned).collect::<Vec<_>>();
    let mut common = labels(members.first().map_or(domain, |m| m.as_str()));
    for member in members {
        let theirs = labels(member.as_str());
        let shared = common
            .iter()
            .zip(&theirs)
            .take_while(|(a, b)| a == b)
            .count();
        common.truncate(shared);
    }
    // The wildcard matches strictly below its suffix: a member that is the suffix itself needs
    // the suffix one label up.
    let spelled = |labels: &[String]| labels.iter().rev().cloned().collect::<Vec<_>>().join(".");
    while common.len() > labels(domain).len()
        && members.iter().any(|m| m.as_str() == spelled(&common))
    {
        common.pop();
    }
    if common.len() < labels(domain).len() {
        return domain.to_owned();
    }
    spelled(&common)
}
