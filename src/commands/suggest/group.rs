//! Sibling names become one wildcard: `a.example.com`, `b.example.com` and `c.example.com` are
//! suggested as `*.example.com` (with `--group 3`, the default).
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
    let mut below: BTreeMap<String, Vec<DomainName>> = BTreeMap::new();
    for dest in open.keys() {
        let Dest::Name(name) = dest else { continue };
        match psl::domain_str(name.as_str()) {
            Some(domain) if domain != name.as_str() => {
                below
                    .entry(domain.to_owned())
                    .or_default()
                    .push(name.clone());
            }
            _ => {}
        }
    }
    let mut wildcards = Vec::new();
    for (domain, members) in below.into_iter().filter(|(_, m)| m.len() >= group) {
        let (mut ports, mut seen, mut dns_only) = (BTreeSet::new(), Seen::default(), true);
        for name in &members {
            if let Some(entry) = open.remove(&Dest::Name(name.clone())) {
                dns_only &= entry.ports.is_empty();
                ports.extend(entry.ports);
                seen.merge(&entry.seen);
            }
        }
        wildcards.push(Suggestion {
            pattern: Pattern::Below(domain),
            ports: (!dns_only).then_some(ports),
            seen,
            members,
        });
    }
    wildcards
}
