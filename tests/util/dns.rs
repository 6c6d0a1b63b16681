//! A fake upstream DNS server on loopback, built on hickory-proto: answers from a zone and
//! records every question, so tests can assert what egressd asked (and did not ask).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::{Arc, Mutex};
use std::thread;

/// One record of a [`FakeDns`] zone.
#[derive(Clone, Debug)]
pub enum Zone {
    A(&'static str, Ipv4Addr, u32),
    Aaaa(&'static str, std::net::Ipv6Addr, u32),
    Cname(&'static str, &'static str, u32),
}

/// A loopback DNS server (UDP and TCP on one port) that records every question and answers from
/// a zone, NXDOMAIN for other names. Names starting with `tc.` are answered over UDP with TC set
/// and no records, so clients must retry over TCP. Silent, it never answers.
pub struct FakeDns {
    pub addr: SocketAddr,
    pub queries: Arc<Mutex<Vec<String>>>,
}

impl FakeDns {
    /// A zone of A records with TTL 60.
    pub fn start(records: &[(&'static str, Ipv4Addr)], silent: bool) -> Self {
        let zone: Vec<Zone> = records.iter().map(|(n, a)| Zone::A(n, *a, 60)).collect();
        Self::zone(zone, silent)
    }

    pub fn zone(zone: Vec<Zone>, silent: bool) -> Self {
        // UDP picks a free port; TCP on the same number may be taken by another test's socket,
        // so try a few fresh ports (as egressd's own DNS listener does).
        let (socket, tcp) = (0..50)
            .find_map(|_| {
                let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
                let tcp = TcpListener::bind(socket.local_addr().ok()?).ok()?;
                Some((socket, tcp))
            })
            .expect("a port free for both UDP and TCP");
        let addr = socket.local_addr().unwrap();
        let queries = Arc::new(Mutex::new(Vec::new()));
        let zone = Arc::new(zone);
        {
            let (log, zone) = (queries.clone(), zone.clone());
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok((n, peer)) = socket.recv_from(&mut buf) {
                    if let Some(response) = dns_answer(&buf[..n], &zone, &log, "udp", silent) {
                        let _ = socket.send_to(&response, peer);
                    }
                }
            });
        }
        {
            let (log, zone) = (queries.clone(), zone.clone());
            thread::spawn(move || {
                for stream in tcp.incoming() {
                    let Ok(mut stream) = stream else { continue };
                    let mut len = [0u8; 2];
                    if stream.read_exact(&mut len).is_err() {
                        continue;
                    }
                    let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if stream.read_exact(&mut query).is_err() {
                        continue;
                    }
                    if let Some(response) = dns_answer(&query, &zone, &log, "tcp", silent) {
                        let mut framed = (response.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&response);
                        let _ = stream.write_all(&framed);
                    }
                }
            });
        }
        Self { addr, queries }
    }

    /// The questions seen so far, as "name. TYPE" (TCP ones suffixed " tcp").
    pub fn seen(&self) -> Vec<String> {
        self.queries.lock().unwrap().clone()
    }
}

fn dns_answer(
    bytes: &[u8],
    zone: &[Zone],
    log: &Mutex<Vec<String>>,
    transport: &str,
    silent: bool,
) -> Option<Vec<u8>> {
    use hickory_proto::op::{Message, MessageType, ResponseCode};
    use hickory_proto::rr::rdata::{A, AAAA, CNAME};
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    let query = Message::from_vec(bytes).ok()?;
    let question = query.queries.first()?.clone();
    let name = question.name().to_ascii().to_lowercase();
    let suffix = if transport == "tcp" { " tcp" } else { "" };
    log.lock()
        .unwrap()
        .push(format!("{name} {}{suffix}", question.query_type()));
    if silent {
        return None;
    }
    let mut response = Message::response(query.metadata.id, query.metadata.op_code);
    response.metadata.message_type = MessageType::Response;
    response.metadata.recursion_desired = query.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.add_query(question.clone());
    if name.starts_with("tc.") && transport == "udp" {
        response.metadata.truncation = true;
        return response.to_vec().ok();
    }
    let owner = |n: &str| Name::from_ascii(format!("{n}.")).unwrap();
    let mut known = false;
    let mut current = name.trim_end_matches('.').to_owned();
    // Follow CNAMEs within the zone, as a recursive resolver would.
    for _ in 0..8 {
        let mut next = None;
        for record in zone {
            match record {
                Zone::Cname(n, target, ttl) if *n == current => {
                    known = true;
                    response.add_answer(Record::from_rdata(
                        owner(n),
                        *ttl,
                        RData::CNAME(CNAME(owner(target))),
                    ));
                    next = Some(target.to_string());
                }
                Zone::A(n, a, ttl) if *n == current => {
                    known = true;
                    if question.query_type() == RecordType::A {
                        response.add_answer(Record::from_rdata(owner(n), *ttl, RData::A(A(*a))));
                    }
                }
                Zone::Aaaa(n, a, ttl) if *n == current => {
                    known = true;
                    if question.query_type() == RecordType::AAAA {
                        response.add_answer(Record::from_rdata(
                            owner(n),
                            *ttl,
                            RData::AAAA(AAAA(*a)),
                        ));
                    }
                }
                _ => {}
            }
        }
        match next {
            Some(target) => current = target,
            None => break,
        }
    }
    if !known {
        response.metadata.response_code = ResponseCode::NXDomain;
    }
    response.to_vec().ok()
}
