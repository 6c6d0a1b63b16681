//! The DNS stub inside `egressd run`, asked by real clients (hickory-resolver, raw packets built
//! with hickory-proto, and dig in a test ignored for needing it) and backed by a fake upstream on
//! loopback that records what it was asked.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

use crate::util::*;

const PUBLIC: Ipv4Addr = Ipv4Addr::new(93, 184, 215, 14);

/// A sidecar whose policy allows `*.allowed.test`, `exact.test` and a static name, backed by
/// `upstream`.
fn stub(upstream: &FakeDns, extra: &str) -> (Sidecar, tempfile::TempDir) {
    stub_with(upstream, extra, &[])
}

/// [`stub`] with more `egressd run` flags.
fn stub_with(upstream: &FakeDns, extra: &str, flags: &[&str]) -> (Sidecar, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "version = 1\n[defaults]\naction = \"deny\"\n\
         [[allow]]\nhost = \"*.allowed.test\"\n[[allow]]\nhost = \"exact.test\"\n[[allow]]\nhost = \"static.test\"\n\
         {extra}\n[dns]\nupstreams = [\"{}\"]\n[dns.static]\n\"static.test\" = [\"{PUBLIC}\", \"10.0.0.9\"]\n",
        upstream.addr
    );
    let policy = write(dir.path(), "policy.toml", &text);
    let mut args = vec![
        "--policy",
        policy.to_str().unwrap(),
        "--sandbox-id",
        "dns-test",
    ];
    args.extend_from_slice(flags);
    (Sidecar::start(&args), dir)
}

fn dns_addr(sidecar: &Sidecar) -> SocketAddr {
    sidecar.ready["dns"].as_str().unwrap().parse().unwrap()
}

fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let mut message = Message::query();
    message.metadata.id = rand_id(name);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        message.edns = Some(e);
    }
    message
}

/// A per-name ID, so concurrent tests do not collide in meaning.
fn rand_id(name: &str) -> u16 {
    name.bytes()
        .fold(7u16, |h, b| h.wrapping_mul(31).wrapping_add(u16::from(b)))
}

/// Sends raw bytes over UDP and returns the next response (patience-bounded).
fn udp_exchange(server: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    socket.send_to(bytes, server).unwrap();
    let mut buf = vec![0u8; 65535];
    let n = socket.recv(&mut buf).expect("the stub answered");
    buf.truncate(n);
    buf
}

fn udp(server: SocketAddr, message: &Message) -> Message {
    Message::from_vec(&udp_exchange(server, &message.to_vec().unwrap())).unwrap()
}

fn tcp(server: SocketAddr, message: &Message) -> Message {
    let mut stream = TcpStream::connect(server).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let bytes = message.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).unwrap();
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).unwrap();
    Message::from_vec(&buf).unwrap()
}

fn addresses(message: &Message) -> Vec<String> {
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

fn has_ede_blocked(message: &Message) -> bool {
    message
        .edns
        .as_ref()
        .is_some_and(|e| format!("{:?}", e.options()).contains("Unknown(15, [0, 15"))
}

#[test]
fn refused_names_never_reach_upstream_and_allowed_ones_do() {
    let upstream = FakeDns::zone(vec![Zone::A("www.allowed.test", PUBLIC, 60)], false);
    let (sidecar, _dir) = stub(&upstream, "");
    let server = dns_addr(&sidecar);
    for name in [
        "example.org.",
        "allowed.test.",
        "exfil-c2VjcmV0.tunnel.example.",
    ] {
        let r = udp(server, &query(name, RecordType::A, None));
        assert_eq!(r.metadata.response_code, ResponseCode::Refused, "{name}");
    }
    assert!(
        upstream.seen().is_empty(),
        "refused names were forwarded: {:?}",
        upstream.seen()
    );
    let r = udp(server, &query("www.allowed.test.", RecordType::A, None));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&r), [PUBLIC.to_string()]);
    assert_eq!(upstream.seen(), ["www.allowed.test. A"]);
    sidecar.stderr.wait_for("dns query", 4);
    // Without --audit-log, audit events are JSON lines on stderr beside the log.
    let events = events_of(&sidecar.stderr.text(), audit::DnsQuery::MESSAGE);
    use audit::fields as f;
    let refused = events
        .iter()
        .find(|e| e[f::NAME] == "example.org.")
        .expect("an event for the refused name");
    assert_eq!(
        (
            &refused[f::QTYPE],
            &refused[f::DECISION],
            &refused[f::REASON]
        ),
        (&"A".into(), &"deny".into(), &"default-deny".into())
    );
    let answered = events
        .iter()
        .find(|e| e[f::NAME] == "www.allowed.test.")
        .expect("an event for the allowed name");
    assert_eq!(answered[f::RCODE], "NOERROR");
    assert_eq!(answered[f::ANSWERS], 1);
}

#[test]
fn hickory_resolver_resolves_allowed_names_and_is_refused_others() {
    use hickory_resolver::config::{NameServerConfig, ResolverConfig};
    let upstream = FakeDns::zone(vec![Zone::A("api.allowed.test", PUBLIC, 60)], false);
    let (sidecar, _dir) = stub(&upstream, "");
    let server = dns_addr(&sidecar);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut ns = NameServerConfig::udp_and_tcp(server.ip());
        for c in &mut ns.connections {
            c.port = server.port();
        }
        let resolver = hickory_resolver::TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(vec![ns]),
            hickory_resolver::net::runtime::TokioRuntimeProvider::default(),
        )
        .build()
        .unwrap();
        let ips: Vec<_> = resolver
            .lookup_ip("api.allowed.test.")
            .await
            .unwrap()
            .iter()
            .collect();
        assert_eq!(ips, [std::net::IpAddr::V4(PUBLIC)]);
        let refused = resolver.lookup_ip("example.org.").await.unwrap_err();
        assert!(
            refused.to_string().to_lowercase().contains("refused"),
            "{refused}"
        );
    });
}

/// The client cookie dig sends (any 8 bytes do).
const COOKIE: [u8; 8] = [0x0b, 0x64, 0xb4, 0xdc, 0xd7, 0xb0, 0xcc, 0x8f];

#[test]
#[ignore = "needs dig: run by .ci/run"]
fn dig_sees_refused_and_an_answer() {
    let upstream = FakeDns::zone(vec![Zone::A("exact.test", PUBLIC, 60)], false);
    let (sidecar, _dir) = stub(&upstream, "");
    let server = dns_addr(&sidecar);
    let refused = dig(server, "example.org");
    assert!(refused.contains("status: REFUSED"), "{refused}");
    let answered = dig(server, "exact.test");
    assert!(answered.contains("status: NOERROR"), "{answered}");
    assert!(
        answered.contains(&format!("exact.test.\t\t60\tIN\tA\t{PUBLIC}")),
        "{answered}"
    );
}

/// What [`dig_sees_refused_and_an_answer`] asserts, for the query dig sends (RD and AD set, EDNS
/// with a 1232-byte payload and a client cookie) built with hickory-proto.
#[test]
fn a_dig_like_query_sees_refused_and_an_answer() {
    let upstream = FakeDns::zone(vec![Zone::A("exact.test", PUBLIC, 60)], false);
    let (sidecar, _dir) = stub(&upstream, "");
    let server = dns_addr(&sidecar);
    let dig_like = |name: &str| {
        let mut message = query(name, RecordType::A, Some(1232));
        message.metadata.authentic_data = true;
        let edns = message.edns.as_mut().unwrap();
        edns.options_mut()
            .insert(EdnsOption::Unknown(10, COOKIE.to_vec()));
        udp(server, &message)
    };
    let refused = dig_like("example.org.");
    assert_eq!(
        refused.metadata.response_code,
        ResponseCode::Refused,
        "{refused:?}"
    );
    let answered = dig_like("exact.test.");
    assert_eq!(
        answered.metadata.response_code,
        ResponseCode::NoError,
        "{answered:?}"
    );
    let [record] = answered.answers.as_slice() else {
        panic!("one answer: {answered:?}");
    };
    assert_eq!(
        (
            record.name.to_ascii(),
            record.ttl,
            record.dns_class,
            &record.data
        ),
        (
            "exact.test.".to_owned(),
            60,
            DNSClass::IN,
            &RData::A(A(PUBLIC))
        ),
        "{answered:?}"
    );
}

#[test]
fn private_answers_are_stripped_with_an_honest_empty_answer() {
    let upstream = FakeDns::zone(
        vec![
            Zone::A("mixed.allowed.test", Ipv4Addr::new(10, 1, 2, 3), 60),
            Zone::A("mixed.allowed.test", PUBLIC, 60),
            Zone::A("lan.allowed.test", Ipv4Addr::new(192, 168, 1, 1), 60),
            Zone::A("lan.allowed.test", Ipv4Addr::new(169, 254, 169, 254), 60),
            Zone::Aaaa("v6.allowed.test", "fd00::1".parse().unwrap(), 60),
        ],
        false,
    );
    let (sidecar, _dir) = stub(&upstream, "");
    let server = dns_addr(&sidecar);
    let mixed = udp(
        server,
        &query("mixed.allowed.test.", RecordType::A, Some(1232)),
    );
    assert_eq!(addresses(&mixed), [PUBLIC.to_string()]);
    assert!(has_ede_blocked(&mixed), "{mixed:?}");
    for (name, qtype) in [
        ("lan.allowed.test.", RecordType::A),
        ("v6.allowed.test.", RecordType::AAAA),
    ] {
        let r = udp(server, &query(name, qtype, Some(1232)));
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(r.answers.is_empty(), "{name}: {r:?}");
        assert!(has_ede_blocked(&r), "{name}: {r:?}");
    }
}

#[test]
fn static_records_wildcards_case_and_trailing_dot() {
    let upstream = FakeDns::zone(vec![Zone::A("deep.a.allowed.test", PUBLIC, 60)], false);
    let (sidecar, _dir) = stub(&upstream, "");
    let server = dns_addr(&sidecar);
    // Static: answered locally, the private address stripped, upstream not asked.
    let r = udp(server, &query("static.test.", RecordType::A, None));
    assert_eq!(addresses(&r), [PUBLIC.to_string()]);
    assert!(upstream.seen().is_empty());
    // Wildcards: below the suffix only.
    let r = udp(server, &query("deep.a.allowed.test.", RecordType::A, None));
    assert_eq!(addresses(&r), [PUBLIC.to_string()]);
    let r = udp(server, &query("allowed.test.", RecordType::A, None));
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    // Mixed case (0x20) is answered, and the question is echoed exactly as asked.
    let r = udp(server, &query("DeEp.A.AlLoWeD.TeSt.", RecordType::A, None));
    assert_eq!(r.queries[0].name().to_ascii(), "DeEp.A.AlLoWeD.TeSt.");
    assert_eq!(addresses(&r), [PUBLIC.to_string()]);
    // Without the trailing dot (a relative name on the wire is the same labels).
    let r = udp(server, &query("static.test", RecordType::A, None));
    assert_eq!(addresses(&r), [PUBLIC.to_string()]);
}

#[test]
fn tcp_edns_and_truncation() {
    let many: Vec<Zone> = (0..100u8)
        .map(|i| Zone::A("many.allowed.test", Ipv4Addr::new(93, 184, 1, i), 60))
        .collect();
    let mut zone = many;
    zone.extend((0..40u8).map(|i| Zone::A("some.allowed.test", Ipv4Addr::new(93, 184, 2, i), 60)));
    zone.push(Zone::A("tc.allowed.test", PUBLIC, 60));
    let upstream = FakeDns::zone(zone, false);
    let (sidecar, _dir) = stub(&upstream, "");
    let server = dns_addr(&sidecar);
    // 40 records (~700 bytes): too big for classic 512-byte UDP, fine with EDNS.
    let classic = udp(server, &query("some.allowed.test.", RecordType::A, None));
    assert!(
        classic.metadata.truncation && classic.answers.is_empty(),
        "{classic:?}"
    );
    let edns = udp(
        server,
        &query("some.allowed.test.", RecordType::A, Some(4096)),
    );
    assert!(!edns.metadata.truncation);
    assert_eq!(edns.answers.len(), 40);
    assert_eq!(
        edns.edns.as_ref().unwrap().max_payload(),
        1232,
        "our payload size is advertised"
    );
    // 100 records exceed 1232 bytes even with EDNS: truncated over UDP, complete over TCP.
    let big = udp(
        server,
        &query("many.allowed.test.", RecordType::A, Some(4096)),
    );
    assert!(big.metadata.truncation, "{big:?}");
    let full = tcp(
        server,
        &query("many.allowed.test.", RecordType::A, Some(4096)),
    );
    assert_eq!(full.answers.len(), 100);
    // An upstream that truncates over UDP is asked again over TCP.
    let r = udp(server, &query("tc.allowed.test.", RecordType::A, None));
    assert_eq!(addresses(&r), [PUBLIC.to_string()]);
    assert!(
        upstream
            .seen()
            .contains(&"tc.allowed.test. A tcp".to_owned()),
        "{:?}",
        upstream.seen()
    );
}

#[test]
fn cname_chains_are_followed_only_through_allowed_names() {
    let upstream = FakeDns::zone(
        vec![
            Zone::Cname("alias.allowed.test", "target.allowed.test", 60),
            Zone::A("target.allowed.test", PUBLIC, 60),
            Zone::Cname("escape.allowed.test", "elsewhere.example", 60),
            Zone::A("elsewhere.example", PUBLIC, 60),
        ],
        false,
    );
    let (sidecar, _dir) = stub(&upstream, "");
    let server = dns_addr(&sidecar);
    let r = udp(
        server,
        &query("alias.allowed.test.", RecordType::A, Some(1232)),
    );
    assert_eq!(r.answers.len(), 2, "{r:?}");
    assert_eq!(addresses(&r), [PUBLIC.to_string()]);
    let r = udp(
        server,
        &query("escape.allowed.test.", RecordType::A, Some(1232)),
    );
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(
        r.answers.is_empty(),
        "nothing past a name the policy does not allow: {r:?}"
    );
    assert!(has_ede_blocked(&r));
}

#[test]
fn record_types_and_rcodes() {
    let upstream = FakeDns::zone(vec![Zone::A("t.allowed.test", PUBLIC, 60)], false);
    let (sidecar, _dir) = stub(&upstream, "");
    let server = dns_addr(&sidecar);
    for (qtype, rcode) in [
        (RecordType::ANY, ResponseCode::Refused),
        (RecordType::TXT, ResponseCode::Refused),
        (RecordType::MX, ResponseCode::Refused),
        (RecordType::HTTPS, ResponseCode::NoError),
        (RecordType::SVCB, ResponseCode::NoError),
    ] {
        let r = udp(server, &query("t.allowed.test.", qtype, None));
        assert_eq!(r.metadata.response_code, rcode, "{qtype}");
        assert!(r.answers.is_empty(), "{qtype}");
        assert!(
            r.metadata.recursion_available && r.metadata.recursion_desired,
            "{qtype}"
        );
    }
    assert!(
        upstream.seen().is_empty(),
        "no type but A/AAAA/CNAME is forwarded: {:?}",
        upstream.seen()
    );
}

#[test]
fn answers_are_cached() {
    let upstream = FakeDns::zone(vec![Zone::A("c.allowed.test", PUBLIC, 60)], false);
    let (sidecar, _dir) = stub(&upstream, "");
    let server = dns_addr(&sidecar);
    for _ in 0..3 {
        let r = udp(server, &query("c.allowed.test.", RecordType::A, None));
        assert_eq!(addresses(&r), [PUBLIC.to_string()]);
    }
    for _ in 0..2 {
        let r = udp(server, &query("nx.allowed.test.", RecordType::A, None));
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    }
    assert_eq!(
        upstream.seen(),
        ["c.allowed.test. A", "nx.allowed.test. A"],
        "repeats came from the cache"
    );
}

#[test]
fn an_unreachable_upstream_gives_servfail() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "p.toml",
        "version = 1\n[[allow]]\nhost = \"x.test\"\n[dns]\nupstreams = [\"127.0.0.1:9\"]\n",
    );
    let sidecar = Sidecar::start(&["--policy", policy.to_str().unwrap()]);
    let r = udp(dns_addr(&sidecar), &query("x.test.", RecordType::A, None));
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
}

/// Hand-made bad packets: each is dropped (no answer) or answered with an rcode, and the stub
/// keeps serving.
#[test]
fn malformed_packets_are_answered_or_dropped_without_a_crash() {
    let upstream = FakeDns::zone(vec![Zone::A("ok.allowed.test", PUBLIC, 60)], false);
    let (sidecar, _dir) = stub(&upstream, "");
    let server = dns_addr(&sidecar);
    let header = |id: u16, flags: u16, qd: u16, ar: u16| {
        let mut h = Vec::new();
        for v in [id, flags, qd, 0, 0, ar] {
            h.extend_from_slice(&v.to_be_bytes());
        }
        h
    };
    let question = |labels: &[u8]| {
        let mut q = labels.to_vec();
        q.extend_from_slice(&[0, 1, 0, 1]);
        q
    };
    let www = question(b"\x02ok\x07allowed\x04test\x00");
    let mut cases: Vec<(&str, Vec<u8>, Option<ResponseCode>)> = vec![
        ("empty", vec![], None),
        ("short header", vec![0x12, 0x34, 0x01], None),
        (
            "a response, not a query",
            [header(0x1001, 0x8100, 0, 0)].concat(),
            None,
        ),
        (
            "no question",
            header(0x1002, 0x0100, 0, 0),
            Some(ResponseCode::FormErr),
        ),
        (
            "two questions",
            [header(0x1003, 0x0100, 2, 0), www.clone(), www.clone()].concat(),
            Some(ResponseCode::FormErr),
        ),
        (
            "question cut short",
            [header(0x1004, 0x0100, 1, 0), b"\x02ok\x07allo".to_vec()].concat(),
            Some(ResponseCode::FormErr),
        ),
        (
            "compression loop",
            [header(0x1005, 0x0100, 1, 0), vec![0xc0, 0x0c, 0, 1, 0, 1]].concat(),
            Some(ResponseCode::FormErr),
        ),
        (
            "pointer past the end",
            [header(0x1006, 0x0100, 1, 0), vec![0xc0, 0xff, 0, 1, 0, 1]].concat(),
            Some(ResponseCode::FormErr),
        ),
        (
            "label too long",
            [header(0x1007, 0x0100, 1, 0), vec![0x7f; 200]].concat(),
            Some(ResponseCode::FormErr),
        ),
        (
            "opcode STATUS",
            [header(0x1008, 0x1100, 1, 0), www.clone()].concat(),
            Some(ResponseCode::NotImp),
        ),
        (
            "class CHAOS",
            [
                header(0x1009, 0x0100, 1, 0),
                b"\x02ok\x07allowed\x04test\x00\x00\x01\x00\x03".to_vec(),
            ]
            .concat(),
            Some(ResponseCode::Refused),
        ),
        (
            "EDNS version 1",
            [
                header(0x100a, 0x0100, 1, 1),
                www.clone(),
                vec![0, 0, 41, 4, 0, 0, 1, 0, 0, 0, 0],
            ]
            .concat(),
            Some(ResponseCode::BADVERS),
        ),
        (
            "two OPT records",
            [
                header(0x100b, 0x0100, 1, 2),
                www.clone(),
                vec![0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 0],
                vec![0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 0],
            ]
            .concat(),
            Some(ResponseCode::FormErr),
        ),
    ];
    let mut huge = header(0x100c, 0x0100, 1, 0);
    huge.extend(std::iter::repeat_n(0x3f, 5000));
    cases.push(("bigger than the buffer", huge, Some(ResponseCode::FormErr)));

    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    for (what, bytes, expected) in &cases {
        // Each bad packet is followed by a good query; a dropped packet shows as the good answer
        // arriving first.
        let probe = query("ok.allowed.test.", RecordType::A, None);
        socket.send_to(bytes, server).unwrap();
        socket.send_to(&probe.to_vec().unwrap(), server).unwrap();
        let mut buf = vec![0u8; 65535];
        let n = socket.recv(&mut buf).unwrap();
        let first = Message::from_vec(&buf[..n]).unwrap();
        match expected {
            None => assert_eq!(
                first.metadata.id, probe.metadata.id,
                "{what}: expected no answer, got {first:?}"
            ),
            Some(rcode) => {
                let id = u16::from_be_bytes([bytes[0], bytes[1]]);
                let (bad, good) = if first.metadata.id == id {
                    let n = socket.recv(&mut buf).unwrap();
                    (first, Message::from_vec(&buf[..n]).unwrap())
                } else {
                    let n = socket.recv(&mut buf).unwrap();
                    (Message::from_vec(&buf[..n]).unwrap(), first)
                };
                assert_eq!(bad.metadata.id, id, "{what}");
                // Compared as numbers: BADVERS and BADSIG share extended rcode 16.
                assert_eq!(
                    u16::from(bad.metadata.response_code),
                    u16::from(*rcode),
                    "{what}: {bad:?}"
                );
                assert_eq!(good.metadata.id, probe.metadata.id, "{what}");
            }
        }
    }
    // Still alive, over TCP too.
    let r = tcp(server, &query("ok.allowed.test.", RecordType::A, None));
    assert_eq!(addresses(&r), [PUBLIC.to_string()]);
}

#[test]
fn the_stub_listens_on_ipv6_loopback_too() {
    let upstream = FakeDns::zone(vec![Zone::A("v6.allowed.test", PUBLIC, 60)], false);
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "version = 1\n[[allow]]\nhost = \"*.allowed.test\"\n[dns]\nupstreams = [\"{}\"]\n",
        upstream.addr
    );
    let policy = write(dir.path(), "policy.toml", &text);
    let sidecar = Sidecar::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--dns-listen",
        "[::1]:0",
    ]);
    let server = dns_addr(&sidecar);
    assert!(server.is_ipv6(), "{server}");
    let socket = UdpSocket::bind("[::1]:0").unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    for (name, rcode) in [
        ("example.org.", ResponseCode::Refused),
        ("v6.allowed.test.", ResponseCode::NoError),
    ] {
        socket
            .send_to(&query(name, RecordType::A, None).to_vec().unwrap(), server)
            .unwrap();
        let mut buf = [0u8; 1500];
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(
            Message::from_vec(&buf[..n]).unwrap().metadata.response_code,
            rcode,
            "{name}"
        );
    }
    assert_eq!(
        tcp(server, &query("v6.allowed.test.", RecordType::A, None))
            .answers
            .len(),
        1
    );
}

/// A VM guest's resolver reaches the stub through the launcher's relay to `--dns-unix` (vsock
/// stands in as TCP here): same answers, same refusals, audited with transport `unix`.
#[test]
fn the_stub_answers_over_its_unix_socket_through_a_relay() {
    let upstream = FakeDns::start(&[("www.allowed.test", PUBLIC)], false);
    let sockets = tempfile::tempdir().unwrap();
    let path = sockets.path().join("dns.sock");
    let (sidecar, _dir) = stub_with(&upstream, "", &["--dns-unix", path.to_str().unwrap()]);
    assert_eq!(sidecar.ready["dns_unix"], path.to_str().unwrap());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the socket is its owner's only");
    let relay = Relay::to_unix(&path);
    let answer = tcp(relay.addr, &query("www.allowed.test.", RecordType::A, None));
    assert_eq!(addresses(&answer), [PUBLIC.to_string()]);
    let refused = tcp(
        relay.addr,
        &query("example.org.", RecordType::A, Some(1232)),
    );
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    assert!(has_ede_blocked(&refused));
    sidecar.stderr.wait_for("dns query", 2);
    let events = events_of(&sidecar.stderr.text(), audit::DnsQuery::MESSAGE);
    assert!(
        events
            .iter()
            .all(|e| e[audit::fields::TRANSPORT] == "unix" && e[audit::fields::CLIENT] == "unix"),
        "{events:?}"
    );
}

/// The same with dig over TCP, as a guest configured for TCP-only DNS would ask.
#[test]
#[ignore = "needs dig: run by .ci/run"]
fn dig_tcp_reaches_the_stub_through_a_relay_to_its_unix_socket() {
    let upstream = FakeDns::start(&[("www.allowed.test", PUBLIC)], false);
    let sockets = tempfile::tempdir().unwrap();
    let path = sockets.path().join("dns.sock");
    let (_sidecar, _dir) = stub_with(&upstream, "", &["--dns-unix", path.to_str().unwrap()]);
    let relay = Relay::to_unix(&path);
    let out = std::process::Command::new("dig")
        .args(["+tcp", "+short", "+time=5", "+tries=1", "@127.0.0.1", "-p"])
        .arg(relay.addr.port().to_string())
        .arg("www.allowed.test")
        .output()
        .expect("dig (dnsutils) is installed");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        PUBLIC.to_string()
    );
    let out = std::process::Command::new("dig")
        .args(["+tcp", "+time=5", "+tries=1", "@127.0.0.1", "-p"])
        .arg(relay.addr.port().to_string())
        .arg("example.org")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("status: REFUSED"));
}
