//! The stub's decisions, without I/O: what to do with a query, and what to keep of an upstream
//! answer. Everything here is a function of the bytes and the policy, so it is unit-tested and
//! fuzzed directly.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use policy::{Decision, DomainName, Policy};

use crate::config::StubConfig;

/// Largest UDP response egressd sends, whatever the client offers (the DNS flag day 2020
/// recommendation: no fragmentation).
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// UDP payload assumed for a client without EDNS (RFC 1035).
pub const CLASSIC_UDP_PAYLOAD: u16 = 512;
/// Extended DNS Error "Blocked" (RFC 8914 §4.16): set when the policy removed answers.
const EDE_BLOCKED: u16 = 15;
/// Longest CNAME chain followed.
const MAX_CHAIN: usize = 16;

/// A query that passed the checks and must be answered from upstream (or the cache).
#[derive(Clone, Debug)]
pub struct Forward {
    /// The client's message, as parsed.
    pub query: Message,
    /// The question, canonical: the cache key and the policy subject.
    pub name: DomainName,
    /// The question's type.
    pub qtype: RecordType,
    /// The policy decision that allowed it.
    pub decision: Decision,
}

/// What to do with one incoming packet.
#[derive(Debug)]
pub enum Action {
    /// Nothing: not even a header could be read, or it was not a query.
    Drop,
    /// Answer now with this message.
    Reply(Box<Reply>),
    /// Ask upstream (or the cache).
    Forward(Box<Forward>),
}

/// A locally built answer, with what the audit event needs.
#[derive(Debug)]
pub struct Reply {
    /// The response.
    pub message: Message,
    /// The name asked, as received (for logs), if one could be read.
    pub name: Option<String>,
    /// The type asked.
    pub qtype: Option<RecordType>,
    /// The policy decision, when the policy was asked.
    pub decision: Option<Decision>,
    /// The largest UDP response the client accepts.
    pub udp_limit: usize,
}

/// Reads one packet and decides: drop, answer locally (REFUSED, FORMERR, NOTIMP, static records,
/// empty answers for types not served), or forward.
pub fn classify(bytes: &[u8], policy: &Policy, config: &StubConfig) -> Action {
    if bytes.len() < 12 {
        return Action::Drop;
    }
    // The header alone: ID, QR and opcode are at fixed offsets, for a FORMERR to a message that
    // does not parse.
    let id = u16::from_be_bytes([bytes[0], bytes[1]]);
    let is_response = bytes[2] & 0x80 != 0;
    let opcode = OpCode::from_u8((bytes[2] >> 3) & 0x0f);
    if is_response {
        return Action::Drop;
    }
    let query = match Message::from_vec(bytes) {
        Ok(query) => query,
        Err(_) => return Action::Reply(Box::new(bare_reply(id, opcode, ResponseCode::FormErr))),
    };
    if query.metadata.op_code != OpCode::Query {
        return Action::Reply(Box::new(reply(
            &query,
            ResponseCode::NotImp,
            Vec::new(),
            None,
            None,
        )));
    }
    if query.queries.len() != 1 {
        // No question to echo: a reply carrying dozens of them could outgrow any limit.
        let mut r = reply(&query, ResponseCode::FormErr, Vec::new(), None, None);
        r.message.queries.clear();
        return Action::Reply(Box::new(r));
    }
    if let Some(edns) = &query.edns {
        if edns.version() > 0 {
            return Action::Reply(Box::new(reply(
                &query,
                ResponseCode::BADVERS,
                Vec::new(),
                None,
                None,
            )));
        }
    }
    let question = &query.queries[0];
    let qtype = question.query_type();
    let asked = question.name().to_ascii();
    let local = |rcode, decision: Option<Decision>| {
        let mut r = reply(&query, rcode, Vec::new(), None, decision);
        r.name = Some(asked.clone());
        r.qtype = Some(qtype);
        Action::Reply(Box::new(r))
    };
    if question.query_class() != DNSClass::IN {
        return local(ResponseCode::Refused, None);
    }
    let Ok(name) = DomainName::parse(&asked) else {
        return local(ResponseCode::Refused, None);
    };
    let decision = policy.decide_resolution(&name);
    if !decision.is_allowed() {
        return local(ResponseCode::Refused, Some(decision));
    }
    match qtype {
        RecordType::A | RecordType::AAAA | RecordType::CNAME => {}
        // HTTPS/SVCB records carry address hints and ECH keys egressd would have to filter; an
        // empty answer makes clients fall back to A/AAAA, which are filtered.
        RecordType::HTTPS | RecordType::SVCB => {
            return local(ResponseCode::NoError, Some(decision));
        }
        // ANY, TXT, MX, NULL...: nothing a client needs to reach an allowed host, and the usual
        // carriers of DNS tunnels.
        _ => return local(ResponseCode::Refused, Some(decision)),
    }
    if let Some(addrs) = policy.dns().static_records.get(&name) {
        let owner = question.name().clone();
        let (records, stripped) = static_answer(policy, &owner, qtype, addrs, config.static_ttl);
        let mut r = reply(
            &query,
            ResponseCode::NoError,
            records,
            Some(stripped),
            Some(decision),
        );
        r.name = Some(asked);
        r.qtype = Some(qtype);
        return Action::Reply(Box::new(r));
    }
    Action::Forward(Box::new(Forward {
        query,
        name,
        qtype,
        decision,
    }))
}

fn static_answer(
    policy: &Policy,
    owner: &Name,
    qtype: RecordType,
    addrs: &[IpAddr],
    ttl: u32,
) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut stripped = 0;
    for addr in addrs {
        let data = match (qtype, addr) {
            (RecordType::A, IpAddr::V4(v4)) => RData::A(A(*v4)),
            (RecordType::AAAA, IpAddr::V6(v6)) => RData::AAAA(AAAA(*v6)),
            _ => continue,
        };
        if policy.screen_answer(*addr).is_err() {
            stripped += 1;
            continue;
        }
        records.push(Record::from_rdata(owner.clone(), ttl, data));
    }
    (records, stripped)
}

/// An upstream answer after the policy: what the client gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filtered {
    /// The response code to send.
    pub rcode: ResponseCode,
    /// The records kept, TTLs capped.
    pub records: Vec<Record>,
    /// How many address records (or CNAMEs) the policy removed.
    pub stripped: usize,
    /// How long this answer may be cached, in seconds.
    pub cache_ttl: u32,
}

/// Keeps of `upstream` only what the policy allows: the CNAME chain from the question through
/// allowed names, and A/AAAA records of those names whose addresses pass [`Policy::screen_answer`].
/// Authority and additional sections are dropped. Upstream failures become SERVFAIL.
pub fn filter(
    policy: &Policy,
    forward: &Forward,
    upstream: &Message,
    config: &StubConfig,
) -> Filtered {
    let rcode = upstream.metadata.response_code;
    if rcode == ResponseCode::NXDomain
        || (rcode == ResponseCode::NoError && upstream.answers.is_empty())
    {
        let ttl = negative_ttl(upstream).min(config.negative_ttl);
        return Filtered {
            rcode,
            records: Vec::new(),
            stripped: 0,
            cache_ttl: ttl,
        };
    }
    if rcode != ResponseCode::NoError {
        return Filtered {
            rcode: ResponseCode::ServFail,
            records: Vec::new(),
            stripped: 0,
            cache_ttl: 0,
        };
    }
    let mut chain: Vec<Name> = vec![forward.query.queries[0].name().to_lowercase()];
    let mut records = Vec::new();
    let mut stripped = 0;
    // Follow CNAMEs from the question, through allowed names only.
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
        let allowed = DomainName::parse(&target_name.to_ascii())
            .map(|n| policy.decide_resolution(&n).is_allowed())
            .unwrap_or(false);
        if !allowed || chain.contains(&target_name) {
            stripped += 1;
            break;
        }
        records.push(capped(cname, config.max_ttl));
        chain.push(target_name);
    }
    for record in &upstream.answers {
        let addr = match &record.data {
            RData::A(a) if forward.qtype == RecordType::A => IpAddr::V4(a.0),
            RData::AAAA(a) if forward.qtype == RecordType::AAAA => IpAddr::V6(a.0),
            _ => continue,
        };
        if !chain.contains(&record.name.to_lowercase()) {
            stripped += 1;
            continue;
        }
        if policy.screen_answer(addr).is_err() {
            stripped += 1;
            continue;
        }
        records.push(capped(record, config.max_ttl));
    }
    let cache_ttl = if records.is_empty() {
        config.negative_ttl
    } else {
        records.iter().map(|r| r.ttl).min().unwrap_or(0)
    };
    Filtered {
        rcode: ResponseCode::NoError,
        records,
        stripped,
        cache_ttl,
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

/// The query egressd sends upstream for `forward`: a fresh random ID, recursion desired, the same
/// question, EDNS with our payload size.
pub fn upstream_query(forward: &Forward, id: u16) -> Message {
    let mut message = Message::query();
    message.metadata.id = id;
    message.metadata.recursion_desired = true;
    message.add_query(forward.query.queries[0].clone());
    let mut edns = Edns::new();
    edns.set_max_payload(MAX_UDP_PAYLOAD);
    message.edns = Some(edns);
    message
}

/// True when `upstream` answers `sent` (same ID, a response, the same question).
pub fn answers(sent: &Message, upstream: &Message) -> bool {
    upstream.metadata.id == sent.metadata.id
        && upstream.metadata.message_type == MessageType::Response
        && match (sent.queries.first(), upstream.queries.first()) {
            (Some(a), Some(b)) => question_eq(a, b),
            _ => false,
        }
}

fn question_eq(a: &Query, b: &Query) -> bool {
    a.query_type() == b.query_type()
        && a.query_class() == b.query_class()
        && a.name().to_lowercase() == b.name().to_lowercase()
}

/// Builds a response to `query`: ID and question echoed, RD copied, RA set, EDNS answered when the
/// client used it; `stripped` answers add an Extended DNS Error "Blocked".
pub fn reply(
    query: &Message,
    rcode: ResponseCode,
    answers: Vec<Record>,
    stripped: Option<usize>,
    decision: Option<Decision>,
) -> Reply {
    let mut message = Message::response(query.metadata.id, query.metadata.op_code);
    message.metadata.recursion_desired = query.metadata.recursion_desired;
    message.metadata.recursion_available = true;
    message.metadata.checking_disabled = query.metadata.checking_disabled;
    message.metadata.response_code = rcode;
    message.queries = query.queries.clone();
    message.answers = answers;
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        let blocked = rcode == ResponseCode::Refused || stripped.is_some_and(|n| n > 0);
        if blocked {
            let mut data = EDE_BLOCKED.to_be_bytes().to_vec();
            data.extend_from_slice(b"egressd policy");
            edns.options_mut()
                .insert(EdnsOption::Unknown(EDE_CODE, data));
        }
        message.edns = Some(edns);
    }
    Reply {
        message,
        name: None,
        qtype: None,
        decision,
        udp_limit: udp_limit(Some(query)),
    }
}

/// EDNS option code of Extended DNS Errors (RFC 8914).
const EDE_CODE: u16 = 15;

/// A response to a message that did not parse: header only.
fn bare_reply(id: u16, opcode: OpCode, rcode: ResponseCode) -> Reply {
    let mut message = Message::response(id, opcode);
    message.metadata.response_code = rcode;
    Reply {
        message,
        name: None,
        qtype: None,
        decision: None,
        udp_limit: usize::from(CLASSIC_UDP_PAYLOAD),
    }
}

/// Encodes `message` for a transport allowing `limit` bytes (at least 12). An answer that does not
/// fit is sent with TC set and no records, so the client retries over TCP; if even that is too
/// large (a very long question), the EDNS options and then the question go too. `None` only if
/// the message cannot be encoded at all.
pub fn encode(message: &Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = message.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    let mut truncated = message.clone();
    truncated.answers.clear();
    truncated.authorities.clear();
    truncated.additionals.clear();
    truncated.metadata.truncation = true;
    let shrinks: [fn(&mut Message); 3] = [
        |_| {},
        |m| {
            if let Some(edns) = &mut m.edns {
                *edns.options_mut() = Default::default();
            }
        },
        |m| m.queries.clear(),
    ];
    for shrink in shrinks {
        shrink(&mut truncated);
        let bytes = truncated.to_vec().ok()?;
        if bytes.len() <= limit {
            return Some(bytes);
        }
    }
    None
}

/// The UDP response limit for `query`: 512 without EDNS, else the client's size capped to ours.
pub fn udp_limit(query: Option<&Message>) -> usize {
    let offered = query
        .and_then(|q| q.edns.as_ref())
        .map_or(CLASSIC_UDP_PAYLOAD, |e| e.max_payload());
    usize::from(offered.clamp(CLASSIC_UDP_PAYLOAD, MAX_UDP_PAYLOAD))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_replies_shrink_to_a_truncated_header() {
        let long = format!("{}.test.", vec!["a".repeat(60); 4].join("."));
        let mut query = Message::query();
        query.metadata.id = 42;
        query.add_query(Query::query(
            Name::from_ascii(&long).unwrap(),
            RecordType::A,
        ));
        let reply = reply(&query, ResponseCode::Refused, Vec::new(), None, None);
        let bytes = encode(&reply.message, 200).unwrap();
        assert!(bytes.len() <= 200);
        let back = Message::from_vec(&bytes).unwrap();
        assert!(back.metadata.truncation);
        assert_eq!(back.metadata.id, 42);
    }

    #[test]
    fn multi_question_formerr_echoes_no_question() {
        let policy = Policy::parse("version = 1\n", "t").unwrap();
        let mut query = Message::query();
        for i in 0..30 {
            query.add_query(Query::query(
                Name::from_ascii(format!("q{i}.example.")).unwrap(),
                RecordType::A,
            ));
        }
        let Action::Reply(reply) =
            classify(&query.to_vec().unwrap(), &policy, &StubConfig::default())
        else {
            panic!("expected a reply");
        };
        assert_eq!(reply.message.metadata.response_code, ResponseCode::FormErr);
        assert!(reply.message.queries.is_empty());
        assert!(encode(&reply.message, 512).unwrap().len() <= 512);
    }
}
