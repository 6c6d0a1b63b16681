//! What the audit logs say was refused, counted per destination: a host and port asked through
//! the proxy, or a name asked of the DNS stub (no port).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::SystemTime;

use policy::DomainName;

/// A destination's host, in an order that makes the output deterministic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dest {
    Name(DomainName),
    Ip(IpAddr),
}

/// Why a destination was refused, as far as a suggestion cares.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// No rule allowed it (`default-deny`, `port-not-allowed`): an `[[allow]]` rule would open it.
    Open,
    /// A `[[deny]]` rule refused it (its label, as the audit line or the policy names it): an
    /// allow rule cannot open it.
    DenyRule(String),
    /// An address in a special range: no allow rule opens it.
    SpecialRange,
}

/// One refusal read from an audit line.
#[derive(Clone, Debug)]
pub struct Observation {
    pub dest: Dest,
    /// The port asked through the proxy; `None` for a DNS query.
    pub port: Option<u16>,
    pub class: Class,
    pub sandbox: String,
    pub time: Option<SystemTime>,
    /// Report mode let it through and it reached nothing: the proxy answered 502 or 504 without
    /// connecting to an address, or the stub answered NXDOMAIN or SERVFAIL. A name refused in enforce mode was
    /// never asked of a resolver, so this stays false for it.
    pub unresolved: bool,
}

/// How often, when and from which sandboxes a destination was refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    pub count: u64,
    pub first: Option<SystemTime>,
    pub last: Option<SystemTime>,
    pub sandboxes: BTreeSet<String>,
    /// How many of `count` reached no address (see [`Observation::unresolved`]).
    pub unresolved: u64,
}

impl Seen {
    pub fn merge(&mut self, other: &Seen) {
        self.count += other.count;
        self.first = earliest(self.first, other.first);
        self.last = latest(self.last, other.last);
        self.sandboxes.extend(other.sandboxes.iter().cloned());
        self.unresolved += other.unresolved;
    }

    /// Every time it was asked, it reached nothing: an allow rule would not make it work.
    pub fn never_resolved(&self) -> bool {
        self.count > 0 && self.unresolved == self.count
    }

    fn add(&mut self, observation: &Observation) {
        self.merge(&Seen {
            count: 1,
            first: observation.time,
            last: observation.time,
            sandboxes: BTreeSet::from([observation.sandbox.clone()]),
            unresolved: u64::from(observation.unresolved),
        });
    }
}

fn earliest(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<SystemTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn latest(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<SystemTime> {
    a.max(b)
}

/// Destination, port (`None`: DNS) and class.
pub type Key = (Dest, Option<u16>, Class);

/// Every refusal read, and what was read but not counted.
#[derive(Debug, Default)]
pub struct Tally {
    pub refused: BTreeMap<Key, Seen>,
    /// Events read (request and DNS query events; other kinds are not counted).
    pub events: u64,
    /// Refusals of a malformed target or query: nothing to allow.
    pub malformed: u64,
    /// Failures that were not refusals (`decision = "error"`): not the policy's doing.
    pub errors: u64,
    /// Refusals not made by the policy (the proxy credential, say).
    pub other_refusals: u64,
    /// The times and sandboxes of every event read, for the header (its count is unused).
    pub span: Seen,
    /// Destinations refused only for their port (`port-not-allowed`): the policy in force allows
    /// the host on other ports, which a new policy without --policy does not hold.
    pub port_refused: BTreeSet<(Dest, u16)>,
}

impl Tally {
    pub fn add(&mut self, observation: Observation) {
        let key = (
            observation.dest.clone(),
            observation.port,
            observation.class.clone(),
        );
        self.refused.entry(key).or_default().add(&observation);
    }

    /// Counts an event's time and sandbox for the header, whatever it was.
    pub fn saw(&mut self, sandbox: &str, time: Option<SystemTime>) {
        self.events += 1;
        self.span.first = earliest(self.span.first, time);
        self.span.last = latest(self.span.last, time);
        self.span.sandboxes.insert(sandbox.to_owned());
    }
}
