//! What the policy keeps of an answer: the one chain filter, for the proxy and the stub alike.
//!
//! A CNAME chain is followed from the question only through names the policy allows; address
//! records are kept only for names on that chain and only if the address may appear in an answer
//! ([`Policy::screen_answer`]: no special range unless a carve-out opens it, no CIDR deny rule
//! covering every port). Everything removed is listed with the decision that removed it, so the
//! proxy can say why a name it allowed has no address left, and the stub can count it.

use std::net::IpAddr;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use policy::{Decision, DomainName, Policy, Target};

use crate::{Question, Settings};

/// Longest CNAME chain followed.
const MAX_CHAIN: usize = 16;

/// An answer after the policy: what a client may be told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The response code (upstream failures become SERVFAIL).
    pub rcode: ResponseCode,
    /// The records kept, TTLs capped: CNAMEs of the chain, then addresses.
    pub records: Vec<Record>,
    /// What the policy removed, and why.
    pub removed: Vec<Removed>,
    /// How long this answer may be cached, in seconds.
    pub cache_ttl: u32,
}

/// A record the policy removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removed {
    /// The chain led to a name the policy refuses; it and everything after it are gone.
    Cname {
        /// The refused name, as the answer spelled it.
        target: String,
        /// Why it is refused.
        decision: Decision,
    },
    /// An address the policy refuses in answers.
    Address {
        /// The address.
        addr: IpAddr,
        /// Why it is refused.
        decision: Decision,
    },
    /// A record for a name off the chain (after a refused CNAME, or never linked).
    OffChain,
}

impl Answer {
    /// The addresses kept.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.records.iter().filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
    }

    fn failed() -> Self {
        Self {
            rcode: ResponseCode::ServFail,
            records: Vec::new(),
            removed: Vec::new(),
            cache_ttl: 0,
        }
    }
}

/// Keeps of `upstream` what the policy allows for `question` (see the module documentation).
/// Authority and additional sections are dropped. Upstream failures become SERVFAIL.
pub fn filter(
    policy: &Policy,
    question: &Question,
    upstream: &Message,
    settings: &Settings,
) -> Answer {
    let rcode = upstream.metadata.response_code;
    if rcode == ResponseCode::NXDomain
        || (rcode == ResponseCode::NoError && upstream.answers.is_empty())
    {
        return Answer {
            rcode,
            records: Vec::new(),
            removed: Vec::new(),
            cache_ttl: negative_ttl(upstream).min(settings.negative_ttl),
        };
    }
    if rcode != ResponseCode::NoError {
        return Answer::failed();
    }
    let mut records = Vec::new();
    let mut removed = Vec::new();
    let chain = follow_chain(
        policy,
        question,
        upstream,
        settings,
        &mut records,
        &mut removed,
    );
    keep_addresses(
        policy,
        question,
        upstream,
        &chain,
        settings,
        &mut records,
        &mut removed,
    );
    let cache_ttl = if records.is_empty() {
        // Nothing usable: cached like a negative answer, but never longer than the records
        // that were removed would have lived (a TTL-0 record is not remembered as NODATA).
        let removed_ttl = upstream.answers.iter().map(|r| r.ttl).min().unwrap_or(0);
        settings.negative_ttl.min(removed_ttl)
    } else {
        records.iter().map(|r| r.ttl).min().unwrap_or(0)
    };
    Answer {
        rcode: ResponseCode::NoError,
        records,
        removed,
        cache_ttl,
    }
}

/// Follows CNAMEs from the question through allowed names only (at most [`MAX_CHAIN`] links),
/// keeping each link; returns the names on the chain, lower-cased.
fn follow_chain(
    policy: &Policy,
    question: &Question,
    upstream: &Message,
    settings: &Settings,
    records: &mut Vec<Record>,
    removed: &mut Vec<Removed>,
) -> Vec<Name> {
    let mut chain: Vec<Name> = vec![question.owner.to_lowercase()];
    for _ in 0..MAX_CHAIN {
        let Some(current) = chain.last() else { break };
        let Some(cname) = upstream
            .answers
            .iter()
            .find(|r| r.record_type() == RecordType::CNAME && r.name.to_lowercase() == *current)
        else {
            break;
        };
        let RData::CNAME(target) = &cname.data else {
            break;
        };
        let target_name = target.0.to_lowercase();
        if chain.contains(&target_name) {
            removed.push(Removed::OffChain);
            break;
        }
        let decision = name_decision(policy, &target_name);
        if !decision.is_allowed() {
            removed.push(Removed::Cname {
                target: target_name.to_ascii(),
                decision,
            });
            break;
        }
        records.push(capped(cname, settings.max_ttl));
        chain.push(target_name);
    }
    chain
}

/// Keeps the address records of the question's type for names on `chain` whose addresses may
/// appear in an answer.
fn keep_addresses(
    policy: &Policy,
    question: &Question,
    upstream: &Message,
    chain: &[Name],
    settings: &Settings,
    records: &mut Vec<Record>,
    removed: &mut Vec<Removed>,
) {
    for record in &upstream.answers {
        let addr = match &record.data {
            RData::A(a) if question.qtype == RecordType::A => IpAddr::V4(a.0),
            RData::AAAA(a) if question.qtype == RecordType::AAAA => IpAddr::V6(a.0),
            _ => continue,
        };
        if !chain.contains(&record.name.to_lowercase()) {
            removed.push(Removed::OffChain);
            continue;
        }
        match policy.screen_answer(addr) {
            Ok(_) => records.push(capped(record, settings.max_ttl)),
            Err(decision) => removed.push(Removed::Address { addr, decision }),
        }
    }
}

/// The answer from the policy's `[dns.static]` addresses for the question's name, screened like
/// upstream answers.
pub fn static_answer(policy: &Policy, question: &Question, addrs: &[IpAddr], ttl: u32) -> Answer {
    let mut records = Vec::new();
    let mut removed = Vec::new();
    for addr in addrs {
        let data = match (question.qtype, addr) {
            (RecordType::A, IpAddr::V4(v4)) => RData::A(A(*v4)),
            (RecordType::AAAA, IpAddr::V6(v6)) => RData::AAAA(AAAA(*v6)),
            _ => continue,
        };
        match policy.screen_answer(*addr) {
            Ok(_) => records.push(Record::from_rdata(question.owner.clone(), ttl, data)),
            Err(decision) => removed.push(Removed::Address {
                addr: *addr,
                decision,
            }),
        }
    }
    Answer {
        rcode: ResponseCode::NoError,
        records,
        removed,
        cache_ttl: 0,
    }
}

/// May a chain pass through `name`? The stub's name question ([`Policy::decide_resolution`]);
/// a name that is not a valid host name is refused as malformed.
fn name_decision(policy: &Policy, name: &Name) -> Decision {
    let text = name.to_ascii();
    match DomainName::parse(&text) {
        Ok(name) => policy.decide_resolution(&name),
        Err(_) => policy.decide(&Target::new(&text, 0)),
    }
}

fn capped(record: &Record, max_ttl: u32) -> Record {
    let mut record = record.clone();
    record.ttl = record.ttl.min(max_ttl);
    record
}

/// Negative caching time from the SOA in the authority section (RFC 2308 §5), if any.
fn negative_ttl(upstream: &Message) -> u32 {
    upstream
        .authorities
        .iter()
        .find_map(|r| match &r.data {
            RData::SOA(soa) => Some(soa.minimum.min(r.ttl)),
            _ => None,
        })
        .unwrap_or(u32::MAX)
}
