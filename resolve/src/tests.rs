//! The resolver against a scripted upstream on loopback.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use policy::{DomainName, Policy};

use super::*;

/// A UDP DNS server on loopback answering from a fixed table; counts the queries it gets.
struct Upstream {
    addr: SocketAddr,
    asked: Arc<AtomicUsize>,
}

fn rec(name: &str, ttl: u32, data: RData) -> Record {
    Record::from_rdata(Name::from_ascii(name).unwrap(), ttl, data)
}

impl Upstream {
    fn start(table: fn(&Name, RecordType) -> Vec<Record>) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let asked = Arc::new(AtomicUsize::new(0));
        let count = asked.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, peer)) = socket.recv_from(&mut buf) {
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let q = query.queries[0].clone();
                let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
                reply.add_query(q.clone());
                reply.answers = table(q.name(), q.query_type());
                // One name whose AAAA lookup fails upstream.
                if q.name().to_ascii().starts_with("half.") && q.query_type() == RecordType::AAAA {
                    reply.metadata.response_code = ResponseCode::ServFail;
                }
                let _ = socket.send_to(&reply.to_vec().unwrap(), peer);
            }
        });
        Self { addr, asked }
    }
}

fn table(name: &Name, qtype: RecordType) -> Vec<Record> {
    let v4 = |ip: [u8; 4]| RData::A(A(ip.into()));
    match (name.to_ascii().as_str(), qtype) {
        ("www.allowed.test.", RecordType::A) => vec![
            rec(
                "www.allowed.test.",
                30,
                RData::CNAME(CNAME(Name::from_ascii("cdn.allowed.test.").unwrap())),
            ),
            rec("cdn.allowed.test.", 30, v4([1, 2, 3, 7])),
            rec("cdn.allowed.test.", 30, v4([10, 0, 0, 7])),
        ],
        ("www.allowed.test.", RecordType::AAAA) => {
            vec![rec(
                "www.allowed.test.",
                30,
                RData::AAAA(AAAA("2606:4700::7".parse().unwrap())),
            )]
        }
        ("via.allowed.test.", _) => vec![
            rec(
                "via.allowed.test.",
                30,
                RData::CNAME(CNAME(Name::from_ascii("denied.test.").unwrap())),
            ),
            rec("denied.test.", 30, v4([1, 2, 3, 9])),
        ],
        ("half.allowed.test.", RecordType::A) => {
            vec![rec("half.allowed.test.", 30, v4([10, 9, 9, 9]))]
        }
        ("private.allowed.test.", RecordType::A) => {
            vec![rec("private.allowed.test.", 0, v4([10, 1, 1, 1]))]
        }
        _ => Vec::new(),
    }
}

fn resolver(upstream: &Upstream) -> Resolver {
    let text = format!(
        "version = 1\n[defaults]\naction = \"deny\"\n[[allow]]\nhost = \"*.allowed.test\"\n[dns]\nupstreams = [\"{}\"]\n[dns.static]\n\"pinned.allowed.test\" = [\"1.2.3.1\", \"10.0.0.1\", \"2606:4700::1\"]\n",
        upstream.addr
    );
    let policy = Arc::new(Policy::parse(&text, "t.toml").unwrap());
    Resolver::new(policy, &[], &Settings::DEFAULT, Lookups::new(4))
}

fn name(s: &str) -> DomainName {
    DomainName::parse(s).unwrap()
}

#[tokio::test]
async fn the_proxy_gets_the_addresses_the_chain_filter_keeps_ipv4_first() {
    let upstream = Upstream::start(table);
    let r = resolver(&upstream);
    let found = r.addresses(&name("www.allowed.test")).await.unwrap();
    let want: Vec<IpAddr> = vec!["1.2.3.7".parse().unwrap(), "2606:4700::7".parse().unwrap()];
    assert_eq!(found.kept, want);
    assert!(matches!(
        found.removed.as_slice(),
        [Removed::Address { addr, decision }] if addr.to_string() == "10.0.0.7" && decision.reason.code() == "special-range"
    ));
    // Asked once per family; then answered from the cache.
    assert_eq!(upstream.asked.load(Ordering::SeqCst), 2);
    r.addresses(&name("www.allowed.test")).await.unwrap();
    assert_eq!(upstream.asked.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_chain_through_a_denied_name_leaves_nothing_and_says_which_name() {
    let upstream = Upstream::start(table);
    let r = resolver(&upstream);
    let found = r.addresses(&name("via.allowed.test")).await.unwrap();
    assert!(found.kept.is_empty());
    assert!(found.removed.iter().any(|removed| matches!(
        removed,
        Removed::Cname { target, decision } if target == "denied.test." && decision.reason.code() == "default-deny"
    )));
}

#[tokio::test]
async fn static_records_answer_without_upstream_and_are_screened() {
    let upstream = Upstream::start(table);
    let r = resolver(&upstream);
    let found = r.addresses(&name("pinned.allowed.test")).await.unwrap();
    assert_eq!(found.kept.len(), 2);
    assert_eq!(found.removed.len(), 1);
    assert_eq!(upstream.asked.load(Ordering::SeqCst), 0);
    let q = Question::new(name("pinned.allowed.test"), RecordType::A);
    assert_eq!(r.answer_now(&q).unwrap().source, Source::Static);
}

#[tokio::test]
async fn an_answer_stripped_to_nothing_is_not_cached_longer_than_its_records_lived() {
    let upstream = Upstream::start(table);
    let r = resolver(&upstream);
    let q = Question::new(name("private.allowed.test"), RecordType::A);
    let answered = r.answer(&q).await.unwrap();
    assert!(answered.answer.records.is_empty());
    assert_eq!(answered.answer.cache_ttl, 0);
    assert!(
        r.answer_now(&q).is_none(),
        "a TTL-0 record is not remembered as NODATA"
    );
}

/// A private A answer while the AAAA lookup failed upstream: the name is refused for its special
/// range (an allow rule cannot open it), not reported as a DNS failure.
#[tokio::test]
async fn answers_all_special_win_over_a_failed_lookup_beside_them() {
    let upstream = Upstream::start(table);
    let r = resolver(&upstream);
    let found = r.addresses(&name("half.allowed.test")).await.unwrap();
    assert!(found.kept.is_empty());
    assert!(matches!(
        found.removed.as_slice(),
        [Removed::Address { addr, decision }] if addr.to_string() == "10.9.9.9" && decision.reason.code() == "special-range"
    ));
    // A name with nothing refused and a failed lookup is still a failure.
    let error = r
        .addresses(&name("half.other.allowed.test"))
        .await
        .unwrap_err();
    assert_eq!(error, ResolveError::Failed(ResponseCode::ServFail));
}

#[tokio::test]
async fn no_upstream_is_an_error_not_an_empty_answer() {
    let policy = Arc::new(Policy::parse("version = 1\n", "t.toml").unwrap());
    let r = Resolver::new(policy, &[], &Settings::DEFAULT, Lookups::new(1));
    let error = r.addresses(&name("example.test")).await.unwrap_err();
    assert_eq!(error, ResolveError::Upstream(UpstreamError::NoUpstream));
    assert!(matches!(
        ResolveError::Failed(ResponseCode::ServFail).to_string().as_str(),
        s if s.contains("SERVFAIL") || s.contains("Server Failure")
    ));
}

#[tokio::test]
async fn a_garbage_answer_fails_the_lookup_at_once_not_at_the_timeout() {
    let garbage = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = garbage.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((_, peer)) = garbage.recv_from(&mut buf) {
            let _ = garbage.send_to(b"\xff\xff not dns", peer);
        }
    });
    let text =
        format!("version = 1\n[[allow]]\nhost = \"*.test\"\n[dns]\nupstreams = [\"{addr}\"]\n");
    let policy = Arc::new(Policy::parse(&text, "t.toml").unwrap());
    let r = Resolver::new(policy, &[], &Settings::DEFAULT, Lookups::new(1));
    let error = r.addresses(&name("a.test")).await.unwrap_err();
    // Failed, with the reason, not Timeout: it did not wait for the upstream timeout.
    match error {
        ResolveError::Upstream(UpstreamError::Failed(why)) => {
            assert!(why.contains("unreadable answer"), "{why}")
        }
        other => panic!("{other:?}"),
    }
}
