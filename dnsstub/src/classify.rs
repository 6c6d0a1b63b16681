//! The stub's first decision, without I/O: what to do with one packet. A function of the bytes and
//! the policy only, so it is unit-tested and fuzzed directly.

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use policy::{Decision, DomainName, Policy};
use resolve::Question;

use crate::wire::{self, CLASSIC_UDP_PAYLOAD, Ede};

/// What to do with one incoming packet.
#[derive(Debug)]
pub enum Action {
    /// Nothing: not even a header could be read, or it was not a query.
    Drop,
    /// Answer now with this message.
    Reply(Box<Local>),
    /// Answer from the resolver (static records, cache or upstream).
    Forward(Box<Forward>),
}

/// A reply built here, with what its audit event needs.
#[derive(Debug)]
pub struct Local {
    /// The response.
    pub message: Message,
    /// The name asked, as received, if one could be read.
    pub name: Option<Name>,
    /// The type asked.
    pub qtype: Option<RecordType>,
    /// The policy's decision, when the policy was asked.
    pub decision: Option<Decision>,
    /// The largest UDP response the client accepts.
    pub udp_limit: usize,
}

/// A query for an allowed name and a type the stub answers.
#[derive(Clone, Debug)]
pub struct Forward {
    /// The client's message, as parsed.
    pub query: Message,
    /// The question for the resolver.
    pub question: Question,
    /// The policy decision that allowed the name.
    pub decision: Decision,
}

impl Local {
    fn new(query: &Message, rcode: ResponseCode, decision: Option<Decision>) -> Self {
        let ede = (rcode == ResponseCode::Refused).then_some(Ede::Blocked);
        Self {
            message: wire::reply(query, rcode, Vec::new(), ede),
            name: None,
            qtype: None,
            decision,
            udp_limit: wire::udp_limit(query),
        }
    }
}

/// Reads one packet and decides: drop, answer here (FORMERR, NOTIMP, BADVERS, REFUSED, empty
/// answers for types not served), or forward to the resolver.
pub fn classify(bytes: &[u8], policy: &Policy) -> Action {
    let query = match well_formed(bytes) {
        Ok(query) => query,
        Err(action) => return action,
    };
    let question = &query.queries[0];
    let qtype = question.query_type();
    let owner = question.name().clone();
    let local = |rcode, decision: Option<Decision>| {
        let mut local = Local::new(&query, rcode, decision);
        local.name = Some(owner.clone());
        local.qtype = Some(qtype);
        Action::Reply(Box::new(local))
    };
    if question.query_class() != DNSClass::IN {
        return local(ResponseCode::Refused, None);
    }
    let mut text = [0u8; 256];
    let parsed = match plain_text(&owner, &mut text) {
        Some(plain) => DomainName::parse(plain),
        None => DomainName::parse(&owner.to_ascii()),
    };
    let Ok(name) = parsed else {
        return local(ResponseCode::Refused, None);
    };
    let decision = policy.decide_resolution(&name);
    // Report mode answers a name refused by a rule or the default (audited would-refuse).
    if !decision.is_allowed() && !policy.reports(&decision) {
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
    Action::Forward(Box::new(Forward {
        question: Question::asked(owner, name, qtype),
        query,
        decision,
    }))
}

/// The text of `owner` in lower case, written into `text`, when every label is plain (letters,
/// digits, `_`, and `-` after a label's first byte): then it is what [`Name::to_ascii`] writes,
/// less the case, without its allocation and escaping, which were a tenth of the stub's work
/// (docs/benchmarks.md). `None`: anything else, for `to_ascii`.
fn plain_text<'a>(owner: &Name, text: &'a mut [u8; 256]) -> Option<&'a str> {
    let mut len = 0;
    for (i, label) in owner.iter().enumerate() {
        if i > 0 {
            *text.get_mut(len)? = b'.';
            len += 1;
        }
        for (j, &b) in label.iter().enumerate() {
            let plain = b.is_ascii_alphanumeric() || b == b'_' || (b == b'-' && j > 0);
            if !plain {
                return None;
            }
            *text.get_mut(len)? = b.to_ascii_lowercase();
            len += 1;
        }
    }
    // Letters, digits, `_` and `-` only: always UTF-8.
    std::str::from_utf8(&text[..len]).ok()
}

/// The header and message checks that need no policy: `Ok` with the query when it is one standard
/// query with one question, else what to do instead.
fn well_formed(bytes: &[u8]) -> Result<Message, Action> {
    if bytes.len() < 12 {
        return Err(Action::Drop);
    }
    // The header alone: ID, QR and opcode are at fixed offsets, for a FORMERR to a message that
    // does not parse.
    let id = u16::from_be_bytes([bytes[0], bytes[1]]);
    let is_response = bytes[2] & 0x80 != 0;
    let opcode = OpCode::from_u8((bytes[2] >> 3) & 0x0f);
    if is_response {
        return Err(Action::Drop);
    }
    let query = match Message::from_vec(bytes) {
        Ok(query) => query,
        Err(_) => {
            return Err(Action::Reply(Box::new(Local {
                message: wire::bare_reply(id, opcode, ResponseCode::FormErr),
                name: None,
                qtype: None,
                decision: None,
                udp_limit: usize::from(CLASSIC_UDP_PAYLOAD),
            })));
        }
    };
    if query.metadata.op_code != OpCode::Query {
        return Err(Action::Reply(Box::new(Local::new(
            &query,
            ResponseCode::NotImp,
            None,
        ))));
    }
    if query.queries.len() != 1 {
        // No question to echo: a reply carrying dozens of them could outgrow any limit.
        let mut local = Local::new(&query, ResponseCode::FormErr, None);
        local.message.queries.clear();
        return Err(Action::Reply(Box::new(local)));
    }
    if query.edns.as_ref().is_some_and(|edns| edns.version() > 0) {
        return Err(Action::Reply(Box::new(Local::new(
            &query,
            ResponseCode::BADVERS,
            None,
        ))));
    }
    Ok(query)
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Edns, Query};

    use super::*;

    #[test]
    fn plain_names_read_as_their_ascii_form_in_lower_case() {
        for (text, plain) in [
            ("www.Example.COM.", Some("www.example.com")),
            ("_dmarc.a-b.test.", Some("_dmarc.a-b.test")),
            ("xn--bcher-kva.example.", Some("xn--bcher-kva.example")),
            (".", Some("")),
            ("-lead.test.", None),
            ("*.test.", None),
            ("a\\.b.test.", None),
        ] {
            let name = match text.strip_prefix('-') {
                // A leading hyphen is no ASCII name hickory reads; built from labels instead.
                Some(rest) => {
                    let labels = rest.trim_end_matches('.').split('.');
                    let mut labels: Vec<Vec<u8>> = labels.map(|l| l.as_bytes().to_vec()).collect();
                    labels[0].insert(0, b'-');
                    let mut name = Name::from_labels(labels).unwrap();
                    name.set_fqdn(true);
                    name
                }
                None => Name::from_ascii(text).unwrap(),
            };
            let mut buf = [0u8; 256];
            assert_eq!(plain_text(&name, &mut buf), plain, "{text}");
            if let Some(plain) = plain {
                let ascii = name.to_ascii().to_ascii_lowercase();
                assert_eq!(ascii.trim_end_matches('.'), plain, "{text}");
            }
        }
    }

    #[test]
    fn replies_built_from_the_query_bytes_are_the_bytes_hickory_writes() {
        let policy =
            Policy::parse("version = 1\n[[allow]]\nhost = \"*.allowed.test\"\n", "t").unwrap();
        let mut queries = Vec::new();
        for (name, qtype) in [
            ("blocked.example.org.", RecordType::A),
            ("MiXeD.CaSe.Example.", RecordType::AAAA),
            ("www.allowed.test.", RecordType::HTTPS),
            ("www.allowed.test.", RecordType::TXT),
            ("a.", RecordType::ANY),
        ] {
            for (edns, dnssec_ok, flags) in [(false, false, 0), (true, false, 1), (true, true, 2)] {
                let mut query = Message::query();
                query.metadata.id = 0xbeef;
                query.metadata.recursion_desired = flags != 1;
                query.metadata.checking_disabled = flags == 2;
                query.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
                if edns {
                    let mut e = Edns::new();
                    e.set_max_payload(4096);
                    e.flags_mut().dnssec_ok = dnssec_ok;
                    query.edns = Some(e);
                }
                queries.push(query.clone());
                // Not IN: refused.
                query.queries[0].set_query_class(DNSClass::CH);
                queries.push(query.clone());
                // Not a query: NOTIMP.
                query.metadata.op_code = OpCode::Status;
                queries.push(query.clone());
                // EDNS version 1: BADVERS, an extended code (left to hickory).
                if let Some(e) = query.edns.as_mut() {
                    query.metadata.op_code = OpCode::Query;
                    e.set_version(1);
                    queries.push(query);
                }
            }
        }
        let (mut checked, mut built) = (0, 0);
        for query in queries {
            let bytes = query.to_vec().unwrap();
            let Action::Reply(local) = classify(&bytes, &policy) else {
                continue;
            };
            for limit in [12, 40, 512, 65535] {
                assert_eq!(
                    wire::encode_local(&bytes, &local.message, limit),
                    wire::encode(&local.message, limit),
                    "{query:?} limit {limit}"
                );
            }
            checked += 1;
            built += usize::from(wire::local_from_query(&bytes, &local.message).is_some());
        }
        assert!(checked >= 40, "{checked}");
        // Everything but BADVERS is built from the query's bytes.
        assert!(built >= checked * 4 / 5, "{built} of {checked}");
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
        let Action::Reply(reply) = classify(&query.to_vec().unwrap(), &policy) else {
            panic!("expected a reply");
        };
        assert_eq!(reply.message.metadata.response_code, ResponseCode::FormErr);
        assert!(reply.message.queries.is_empty());
        assert!(wire::encode(&reply.message, 512).unwrap().len() <= 512);
    }
}
