//! Micro-benchmarks of the hot paths: policy decisions (small and large policies), the DNS stub's
//! per-query work (the pure decision, and the stub's whole request → response path for a REFUSED
//! and a cached answer), the resolver against hickory-resolver, and header rewriting.
//! `cargo bench --bench micro` (add `-- --quick` for a fast pass, as CI does).

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use std::sync::Arc;

use audit::Sink;
use dnsstub::classify::{Action, classify};
use dnsstub::wire;
use dnsstub::{Stub, StubConfig};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use http::{HeaderMap, HeaderValue};
use policy::DomainName;
use policy::{HeaderTemplate, Policy, Target};
use resolve::{Lookups, Resolver, Settings};

fn small_policy() -> Policy {
    Policy::parse(
        "version = 1\n[defaults]\naction = \"deny\"\n[[allow]]\nhost = \"github.com\"\n\
         [[allow]]\nhost = \"*.githubusercontent.com\"\ndanger_public_suffix_wildcard = true\n[[allow]]\ncidr = \"140.82.112.0/20\"\n\
         [[deny]]\nhost = \"gist.github.com\"\n",
        "small.toml",
    )
    .expect("valid")
}

/// 2,000 exact names, 2,000 wildcards, 1,000 CIDRs.
fn large_policy() -> Policy {
    let mut text = String::from("version = 1\n[defaults]\naction = \"deny\"\n");
    for i in 0..2000 {
        text.push_str(&format!(
            "[[allow]]\nhost = \"host{i}.example{}.com\"\n",
            i % 97
        ));
        text.push_str(&format!("[[allow]]\nhost = \"*.zone{i}.example.net\"\n"));
    }
    for i in 0..1000u32 {
        // 11.0.0.0/24, 11.0.1.0/24, ...: public space, one /24 each.
        let [a, b, c, _] = (0x0b00_0000u32 + (i << 8)).to_be_bytes();
        text.push_str(&format!(
            "[[allow]]\ncidr = \"{a}.{b}.{c}.0/24\"\nports = [443]\n"
        ));
    }
    Policy::parse(&text, "large.toml").expect("valid")
}

fn decisions(c: &mut Criterion) {
    let small = small_policy();
    let large = large_policy();
    let cases = [
        ("exact", Target::new("github.com", 443)),
        ("wildcard", Target::new("raw.githubusercontent.com", 443)),
        ("cidr", Target::new("140.82.113.4", 443)),
        ("default-deny", Target::new("example.org", 443)),
        ("special-range", Target::new("10.1.2.3", 443)),
    ];
    let mut group = c.benchmark_group("decide/small");
    for (name, target) in &cases {
        group.bench_function(*name, |b| b.iter(|| small.decide(black_box(target))));
    }
    group.finish();
    let mut group = c.benchmark_group("decide/large-5000-rules");
    for (name, target) in [
        ("exact", Target::new("host1500.example45.com", 443)),
        ("wildcard", Target::new("a.b.zone1999.example.net", 443)),
        ("cidr", Target::new("11.3.231.9", 443)),
        ("miss", Target::new("nothing.example.org", 443)),
    ] {
        group.bench_function(name, |b| b.iter(|| large.decide(black_box(&target))));
    }
    group.finish();
    let name_decision = small.decide(&Target::new("github.com", 443));
    let addr: IpAddr = "140.82.114.4".parse().expect("valid");
    c.bench_function("check_resolved", |b| {
        b.iter(|| small.check_resolved(black_box(&name_decision), addr, 443))
    });
    c.bench_function("parse_target", |b| {
        b.iter(|| Target::parse_authority(black_box("raw.githubusercontent.com:443")))
    });
}

fn query(name: &str) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = 7;
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(
        Name::from_ascii(name).expect("valid"),
        RecordType::A,
    ));
    message.to_vec().expect("encodes")
}

fn dns(c: &mut Criterion) {
    let policy = Policy::parse(
        "version = 1\n[[allow]]\nhost = \"*.allowed.test\"\n[dns.static]\n\"static.allowed.test\" = [\"93.184.215.14\"]\n",
        "dns.toml",
    )
    .expect("valid");
    let resolver = resolver(policy);
    let refused = query("example.org.");
    let fixed = query("static.allowed.test.");
    c.bench_function("dns/refused", |b| {
        b.iter(|| match classify(black_box(&refused), resolver.policy()) {
            Action::Reply(reply) => wire::encode(&reply.message, reply.udp_limit),
            _ => None,
        })
    });
    c.bench_function("dns/static-answer", |b| {
        b.iter(|| match classify(black_box(&fixed), resolver.policy()) {
            Action::Forward(forward) => {
                let answered = resolver.answer_now(&forward.question)?;
                let reply = wire::reply(
                    &forward.query,
                    answered.answer.rcode,
                    answered.answer.records,
                    None,
                );
                wire::encode(&reply, wire::udp_limit(&forward.query))
            }
            _ => None,
        })
    });
}

/// A loopback upstream that answers every A and AAAA query with one public address, TTL 300, on
/// its own thread (the process exits when the benchmark ends).
fn loopback_upstream() -> std::net::SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
            reply.metadata.recursion_desired = true;
            reply.metadata.recursion_available = true;
            for q in &query.queries {
                reply.add_query(q.clone());
                let data = match q.query_type() {
                    RecordType::AAAA => RData::AAAA(AAAA("2606:2800::1".parse().expect("v6"))),
                    _ => RData::A(A([93, 184, 215, 14].into())),
                };
                reply.add_answer(Record::from_rdata(q.name().clone(), 300, data));
            }
            if let Ok(bytes) = reply.to_vec() {
                let _ = socket.send_to(&bytes, peer);
            }
        }
    });
    addr
}

fn resolver(policy: Policy) -> Arc<Resolver> {
    Arc::new(Resolver::new(
        Arc::new(policy),
        &[],
        &Settings::DEFAULT,
        Lookups::new(Settings::DEFAULT.max_lookups),
    ))
}

/// The stub's whole path for one query (decision, cache, reply, encoding, audit event encoded
/// and discarded), as the UDP and stream transports call it.
fn dns_stub(c: &mut Criterion) {
    let upstream = loopback_upstream();
    let policy = Policy::parse(
        &format!(
            "version = 1\n[[allow]]\nhost = \"*.allowed.test\"\n[dns]\nupstreams = [\"{upstream}\"]\n"
        ),
        "dns.toml",
    )
    .expect("valid");
    let stub = Stub::new(resolver(policy), StubConfig::default(), Sink::discard());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let refused = query("example.org.");
    let cached = query("www.allowed.test.");
    // The first answer comes from the upstream and fills the cache.
    let first = runtime.block_on(stub.answer(&cached, &"127.0.0.1:5353", "udp", 1232));
    let first = Message::from_vec(&first.expect("an answer")).expect("parses");
    assert_eq!(first.answers.len(), 1, "the upstream's answer was not kept");
    // The UDP transport's client: a socket address, formatted into the audit event.
    let client = wire::ClientAddr(std::net::SocketAddr::from(([127, 0, 0, 1], 5353)));
    c.bench_function("dns/stub-refused", |b| {
        b.iter(|| runtime.block_on(stub.answer(black_box(&refused), &client, "udp", 1232)))
    });
    c.bench_function("dns/stub-cached-answer", |b| {
        b.iter(|| runtime.block_on(stub.answer(black_box(&cached), &client, "udp", 1232)))
    });
}

fn headers(c: &mut Criterion) {
    let templates = [
        HeaderTemplate::parse("X-Sandbox-Id", "{sandbox_id}").expect("valid"),
        HeaderTemplate::parse("X-Sandbox-Agent", "build-bot").expect("valid"),
    ];
    let attribution = proxy::Attribution::render(&templates, &[], "job-42");
    let mut base = HeaderMap::new();
    for (name, value) in [
        ("host", "example.com"),
        ("user-agent", "curl/8.5.0"),
        ("accept", "*/*"),
        ("connection", "keep-alive, x-trace"),
        ("x-trace", "abc"),
        ("proxy-connection", "keep-alive"),
        ("x-sandbox-id", "spoofed"),
        ("accept-encoding", "gzip, br"),
    ] {
        base.insert(name, HeaderValue::from_static(value));
    }
    c.bench_function("headers/rewrite", |b| {
        b.iter(|| {
            let mut h = base.clone();
            proxy::strip_hop_by_hop(&mut h);
            attribution.apply(&mut h);
            h
        })
    });
}

/// hickory-resolver set up as egressd's proxy set it up before (one attempt, no hosts file, no
/// search list), with `cache_size` entries.
fn hickory(upstream: std::net::SocketAddr, cache_size: u64) -> TokioResolver {
    let mut server = NameServerConfig::udp_and_tcp(upstream.ip());
    for connection in &mut server.connections {
        connection.port = upstream.port();
    }
    let mut builder = TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![server]),
        TokioRuntimeProvider::default(),
    );
    let options = builder.options_mut();
    options.use_hosts_file = ResolveHosts::Never;
    options.attempts = 1;
    options.ndots = 0;
    options.cache_size = cache_size;
    builder.build().expect("hickory resolver")
}

fn ours(upstream: std::net::SocketAddr, cache_entries: usize) -> Resolver {
    let text = format!(
        "version = 1\n[[allow]]\nhost = \"*.allowed.test\"\n[dns]\nupstreams = [\"{upstream}\"]\n"
    );
    let policy = Arc::new(Policy::parse(&text, "bench.toml").expect("valid"));
    let settings = Settings {
        cache_entries,
        ..Settings::DEFAULT
    };
    Resolver::new(policy, &[], &settings, Lookups::new(256))
}

/// Why the proxy and the stub share egressd's own resolver rather than hickory-resolver (which the
/// proxy used before): one name's addresses (A and AAAA) through each, against a loopback upstream,
/// with their caches on (a name asked again) and off (every lookup upstream). docs/benchmarks.md,
/// "Resolver", records the figures.
fn resolvers(c: &mut Criterion) {
    let upstream = loopback_upstream();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let name = DomainName::parse("www.allowed.test").expect("valid");
    for (cache, entries) in [("cached", 4096usize), ("uncached", 0)] {
        let mut group = c.benchmark_group(format!("resolve/{cache}"));
        // Built inside the runtime: hickory binds its sockets there.
        let hickory = runtime.block_on(async { hickory(upstream, entries as u64) });
        let ours = ours(upstream, entries);
        // Both answer, and agree, before anything is timed.
        let theirs = runtime.block_on(hickory.lookup_ip("www.allowed.test."));
        let mine = runtime.block_on(ours.addresses(&name));
        assert_eq!(theirs.expect("hickory answers").iter().count(), 2);
        assert_eq!(mine.expect("egressd answers").kept.len(), 2);
        group.bench_function("hickory-resolver", |b| {
            b.iter(|| runtime.block_on(hickory.lookup_ip(black_box("www.allowed.test."))))
        });
        group.bench_function("egressd", |b| {
            b.iter(|| runtime.block_on(ours.addresses(black_box(&name))))
        });
        group.finish();
    }
}

/// One proxied request's audit event, encoded and discarded: what every request pays for its
/// audit line besides writing it.
fn audit_request(c: &mut Criterion) {
    let policy = Policy::parse(
        "version = 1\n[[allow]]\nhost = \"*.allowed.test\"\n",
        "audit.toml",
    )
    .expect("valid");
    let rule = policy.allow_rules()[0].clone();
    let sink = Sink::discard();
    c.bench_function("audit/request-event", |b| {
        b.iter(|| {
            sink.emit(black_box(&audit::Request {
                sandbox_id: "job-42",
                client: "127.0.0.1:51234",
                method: "GET",
                destination: "http://www.allowed.test/index.html",
                resolved: Some(std::net::SocketAddr::from(([93, 184, 215, 14], 80))),
                verdict: audit::Verdict::Allow,
                reason: "allow-rule",
                rule: Some(&rule),
                status: 200,
                bytes_up: 0,
                bytes_down: 1256,
                duration: std::time::Duration::from_micros(1834),
                response_end: Some(audit::ResponseEnd::Complete),
            }))
        })
    });
}

criterion_group!(
    benches,
    decisions,
    dns,
    dns_stub,
    resolvers,
    headers,
    audit_request
);
criterion_main!(benches);
