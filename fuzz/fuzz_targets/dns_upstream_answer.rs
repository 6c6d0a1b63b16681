//! Any bytes an upstream resolver sends back: the chain filter never panics, keeps only allowed
//! addresses, and the reply to the client encodes and parses back.
#![no_main]

use std::net::IpAddr;
use std::sync::LazyLock;

use dnsstub::classify::{Action, classify};
use dnsstub::wire;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use libfuzzer_sys::fuzz_target;
use policy::Policy;
use resolve::Settings;

static POLICY: LazyLock<Policy> = LazyLock::new(|| {
    Policy::parse(
        "version = 1\n[[allow]]\nhost = \"*.allowed.test\"\n",
        "fuzz.toml",
    )
    .expect("valid")
});

fuzz_target!(|data: &[u8]| {
    let Ok(upstream) = Message::from_vec(data) else {
        return;
    };
    let settings = Settings::DEFAULT;
    let qtype = upstream
        .queries
        .first()
        .map_or(RecordType::A, |q| q.query_type());
    let mut query = Message::query();
    query.metadata.id = 99;
    query.add_query(Query::query(
        Name::from_ascii("a.allowed.test.").expect("valid name"),
        qtype,
    ));
    let Action::Forward(forward) = classify(&query.to_vec().expect("encodes"), &POLICY) else {
        return;
    };
    let filtered = resolve::chain::filter(&POLICY, &forward.question, &upstream, &settings);
    for record in &filtered.records {
        assert!(record.ttl <= settings.max_ttl);
        let addr = match &record.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            _ => continue,
        };
        assert!(
            POLICY.screen_answer(addr).is_ok(),
            "a refused address survived: {addr}"
        );
    }
    let reply = wire::reply(&forward.query, filtered.rcode, filtered.records, None);
    if let Some(bytes) = wire::encode(&reply, 65535) {
        let back = Message::from_vec(&bytes).expect("our reply parses");
        assert_eq!(back.metadata.id, 99);
    }
});
