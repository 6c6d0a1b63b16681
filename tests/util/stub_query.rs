//! One DNS query to the stub over UDP, with the answer's rcode and addresses: for tests that
//! drive the stub alongside the proxy (tests/dns.rs has its own, richer, exchange helpers).

use std::net::{SocketAddr, UdpSocket};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};

use super::PATIENCE;

/// The stub's answer: its rcode as dig prints it, and the addresses it holds.
#[derive(Debug, PartialEq, Eq)]
pub struct StubAnswer {
    pub rcode: String,
    pub addresses: Vec<String>,
}

/// Asks `server` for `name`'s A records over UDP.
pub fn stub_query(server: SocketAddr, name: &str) -> StubAnswer {
    let mut message = Message::query();
    message.metadata.id = name
        .bytes()
        .fold(11u16, |h, b| h.wrapping_mul(31).wrapping_add(u16::from(b)));
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    socket.send_to(&message.to_vec().unwrap(), server).unwrap();
    let mut buf = vec![0u8; 65535];
    let n = socket.recv(&mut buf).expect("the stub answered");
    let reply = Message::from_vec(&buf[..n]).unwrap();
    StubAnswer {
        rcode: format!("{:?}", reply.metadata.response_code).to_uppercase(),
        addresses: reply
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0.to_string()),
                _ => None,
            })
            .collect(),
    }
}
