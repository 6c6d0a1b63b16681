//! Why the proxy and the stub share egressd's own resolver rather than hickory-resolver (which
//! the proxy used before): the cost of one name's addresses (A and AAAA) through each, against a
//! loopback upstream, with their caches on (the common case: a name asked again) and off (every
//! lookup goes upstream). `cargo bench --bench resolver` (`-- --quick` in CI). docs/benchmarks.md
//! ("Resolver") records the figures.

use std::hint::black_box;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::op::Message;
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use policy::{DomainName, Policy};
use resolve::{Lookups, Resolver, Settings};

/// Answers every A and AAAA question with one public address, TTL 300, on its own thread.
fn upstream() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
            reply.metadata.recursion_available = true;
            for q in &query.queries {
                reply.add_query(q.clone());
                let data = match q.query_type() {
                    RecordType::A => RData::A(A([93, 184, 215, 14].into())),
                    RecordType::AAAA => RData::AAAA(AAAA("2606:2800::1".parse().expect("v6"))),
                    _ => continue,
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

/// hickory-resolver set up as egressd's proxy set it up before (one attempt, no hosts file, no
/// search list), with `cache_size` entries.
fn hickory(upstream: SocketAddr, cache_size: u64) -> TokioResolver {
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

fn ours(upstream: SocketAddr, cache_entries: usize) -> Resolver {
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

fn resolvers(c: &mut Criterion) {
    let upstream = upstream();
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

criterion_group!(benches, resolvers);
criterion_main!(benches);
