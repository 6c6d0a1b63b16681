//! The wire: building responses (ID and question echoed, EDNS, Extended DNS Errors) and encoding
//! them within what the transport allows.

use std::fmt;

use hickory_proto::op::{Edns, Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{Name, Record};
use resolve::upstream::MAX_UDP_PAYLOAD;

/// UDP payload assumed for a client without EDNS (RFC 1035).
pub const CLASSIC_UDP_PAYLOAD: u16 = 512;
/// Largest DNS message over a stream (RFC 1035 §4.2.2: a two-byte length).
pub const MAX_STREAM_MESSAGE: usize = 65535;
/// EDNS option code of Extended DNS Errors (RFC 8914).
const EDE_CODE: u16 = 15;

/// Why an answer is not what the client hoped for, sent as an Extended DNS Error (RFC 8914) to
/// clients that speak EDNS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ede {
    /// The policy refused the name, or removed answers (15, Blocked).
    Blocked,
    /// No upstream resolver answered (22, No Reachable Authority).
    UpstreamFailed,
    /// Too many lookups in flight (0, Other, with a text saying so).
    Overloaded,
}

impl Ede {
    fn code_and_text(self) -> (u16, &'static [u8]) {
        match self {
            Self::Blocked => (15, b"egressd policy"),
            Self::UpstreamFailed => (22, b"egressd: upstream resolvers failed"),
            Self::Overloaded => (0, b"egressd: too many lookups in flight"),
        }
    }
}

/// Builds a response to `query`: ID and question echoed, RD copied, RA set, EDNS answered when the
/// client used it, with `ede` as an Extended DNS Error.
pub fn reply(
    query: &Message,
    rcode: ResponseCode,
    answers: Vec<Record>,
    ede: Option<Ede>,
) -> Message {
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
        if let Some(ede) = ede {
            let (code, text) = ede.code_and_text();
            let mut data = code.to_be_bytes().to_vec();
            data.extend_from_slice(text);
            edns.options_mut()
                .insert(EdnsOption::Unknown(EDE_CODE, data));
        }
        message.edns = Some(edns);
    }
    message
}

/// A response to a message that did not parse: header only.
pub fn bare_reply(id: u16, opcode: OpCode, rcode: ResponseCode) -> Message {
    let mut message = Message::response(id, opcode);
    message.metadata.response_code = rcode;
    message
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

/// [`encode`] for a reply that carries no records (REFUSED, NOTIMP, an empty answer), built from
/// the bytes of `query` it answers: its header with the reply's flags, its question copied as
/// received, and the reply's EDNS record. The same bytes as [`encode`] writes (tested), for a
/// tenth of the work; any other reply is left to [`encode`].
pub fn encode_local(query: &[u8], message: &Message, limit: usize) -> Option<Vec<u8>> {
    match local_from_query(query, message) {
        Some(bytes) if bytes.len() <= limit => Some(bytes),
        _ => encode(message, limit),
    }
}

/// The reply's bytes, or `None` when it is not the simple case: one question, no records, a
/// response code that fits the header, a question of plain labels, EDNS options of known shape.
pub(crate) fn local_from_query(query: &[u8], message: &Message) -> Option<Vec<u8>> {
    let simple = message.queries.len() == 1
        && message.answers.is_empty()
        && message.authorities.is_empty()
        && message.additionals.is_empty()
        && message.signature.is_none();
    let rcode = u16::from(message.metadata.response_code);
    if !simple || rcode > 0x0f {
        return None;
    }
    // The question as received: plain labels (no compression pointer), a root, type and class.
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        at += len;
    }
    let question = query.get(12..at + 4)?;
    let mut out = Vec::with_capacity(12 + question.len() + 64);
    let m = &message.metadata;
    out.extend_from_slice(&m.id.to_be_bytes());
    let flag = |set: bool, bit: u8| if set { bit } else { 0 };
    out.push(
        0x80 | (u8::from(m.op_code) << 3)
            | flag(m.authoritative, 0x04)
            | flag(m.truncation, 0x02)
            | flag(m.recursion_desired, 0x01),
    );
    // `rcode` is at most 0x0f (checked above).
    out.push(
        flag(m.recursion_available, 0x80)
            | flag(m.authentic_data, 0x20)
            | flag(m.checking_disabled, 0x10)
            | rcode as u8,
    );
    let additional = u16::from(message.edns.is_some());
    for count in [1u16, 0, 0, additional] {
        out.extend_from_slice(&count.to_be_bytes());
    }
    out.extend_from_slice(question);
    if let Some(edns) = &message.edns {
        out.push(0); // the root name
        out.extend_from_slice(&u16::from(hickory_proto::rr::RecordType::OPT).to_be_bytes());
        out.extend_from_slice(&edns.max_payload().to_be_bytes());
        let ttl = (u32::from(edns.rcode_high()) << 24)
            | (u32::from(edns.version()) << 16)
            | u32::from(u16::from(*edns.flags()));
        out.extend_from_slice(&ttl.to_be_bytes());
        let mut data = Vec::new();
        for (code, option) in edns.options().as_ref() {
            let EdnsOption::Unknown(_, bytes) = option else {
                return None;
            };
            data.extend_from_slice(&u16::from(*code).to_be_bytes());
            data.extend_from_slice(&u16::try_from(bytes.len()).ok()?.to_be_bytes());
            data.extend_from_slice(bytes);
        }
        out.extend_from_slice(&u16::try_from(data.len()).ok()?.to_be_bytes());
        out.extend_from_slice(&data);
    }
    Some(out)
}

/// A name as `dig` and [`Name::to_ascii`] print it (`xn--` labels, a trailing dot), formatted
/// where it is written: an audit event pays no allocation for the name.
pub struct AsciiName<'a>(pub &'a Name);

impl fmt::Display for AsciiName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        // hickory's escaping (`Label::write_ascii`), so the audit line shows what dig shows.
        // Runs of characters that need none are written whole: a write per character was most
        // of what a name cost its audit line.
        for (i, label) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_char('.')?;
            }
            let mut plain = 0;
            for (j, &b) in label.iter().enumerate() {
                let c = char::from(b);
                let safe = c.is_ascii_alphanumeric()
                    || c == '_'
                    || (c == '-' && j > 0)
                    || (c == '*' && j == 0);
                if safe {
                    continue;
                }
                write_plain(f, &label[plain..j])?;
                plain = j + 1;
                if b > 0x20 && b < 0x7f {
                    write!(f, "\\{c}")?;
                } else {
                    write!(f, "\\{b:03o}")?;
                }
            }
            write_plain(f, &label[plain..])?;
        }
        if self.0.is_root() || self.0.is_fqdn() {
            f.write_char('.')?;
        }
        Ok(())
    }
}

/// A client's socket address as `std` prints it, formatted by [`audit::json::socket_addr`] (an
/// IPv4 address in one write): the UDP path's client in audit events.
pub struct ClientAddr(pub std::net::SocketAddr);

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        audit::json::socket_addr(f, self.0)
    }
}

/// Writes bytes that are all ASCII letters, digits, `_`, `-` or `*`.
fn write_plain(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    // Such bytes are ASCII, so always UTF-8; the error arm is never taken.
    f.write_str(std::str::from_utf8(bytes).map_err(|_| fmt::Error)?)
}

/// The UDP response limit for `query`: 512 without EDNS, else the client's size capped to ours.
pub fn udp_limit(query: &Message) -> usize {
    let offered = query
        .edns
        .as_ref()
        .map_or(CLASSIC_UDP_PAYLOAD, |e| e.max_payload());
    usize::from(offered.clamp(CLASSIC_UDP_PAYLOAD, MAX_UDP_PAYLOAD))
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::Query;
    use hickory_proto::rr::{Name, RecordType};

    use super::*;

    #[test]
    fn names_print_as_their_ascii_form() {
        for text in [
            "a.test.",
            "xn--bcher-kva.example.",
            ".",
            "relative.name",
            "a\\.b.test.",
        ] {
            let name = Name::from_ascii(text).unwrap();
            assert_eq!(AsciiName(&name).to_string(), name.to_ascii(), "{text}");
        }
        let odd = Name::from_labels(vec![b"sp ace".to_vec(), b"t".to_vec()]).unwrap();
        assert_eq!(AsciiName(&odd).to_string(), odd.to_ascii());
    }

    #[test]
    fn client_addresses_print_as_std_prints_them() {
        // The formatting itself is tested in audit::json.
        for text in ["127.0.0.1:5353", "[::1]:5353"] {
            let addr: std::net::SocketAddr = text.parse().unwrap();
            assert_eq!(ClientAddr(addr).to_string(), text);
        }
    }

    #[test]
    fn oversized_replies_shrink_to_a_truncated_header() {
        let long = format!("{}.test.", vec!["a".repeat(60); 4].join("."));
        let mut query = Message::query();
        query.metadata.id = 42;
        query.add_query(Query::query(
            Name::from_ascii(&long).unwrap(),
            RecordType::A,
        ));
        let reply = reply(
            &query,
            ResponseCode::Refused,
            Vec::new(),
            Some(Ede::Blocked),
        );
        let bytes = encode(&reply, 200).unwrap();
        assert!(bytes.len() <= 200);
        let back = Message::from_vec(&bytes).unwrap();
        assert!(back.metadata.truncation);
        assert_eq!(back.metadata.id, 42);
    }
}
