//! Any bytes a sandbox sends to the DNS stub: classified without panicking, and every reply
//! encodes, fits its limit, parses back, and echoes the query's ID.
#![no_main]

use std::sync::LazyLock;

use dnsstub::classify::{Action, classify};
use dnsstub::wire;
use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;
use policy::Policy;

static POLICY: LazyLock<Policy> = LazyLock::new(|| {
    Policy::parse(
        "version = 1\n[[allow]]\nhost = \"*.allowed.test\"\n[[allow]]\nhost = \"static.test\"\n\
         [dns.static]\n\"static.test\" = [\"93.184.215.14\", \"10.0.0.1\", \"::1\"]\n",
        "fuzz.toml",
    )
    .expect("the fuzz policy is valid")
});

fuzz_target!(|data: &[u8]| {
    match classify(data, &POLICY) {
        Action::Drop => {}
        Action::Reply(reply) => {
            let limit = reply.udp_limit;
            let bytes = wire::encode(&reply.message, limit)
                .expect("a local reply encodes within its limit");
            assert!(bytes.len() <= limit);
            let back = Message::from_vec(&bytes).expect("our reply parses");
            assert_eq!(back.metadata.id, u16::from_be_bytes([data[0], data[1]]));
        }
        Action::Forward(forward) => {
            let question = &forward.question;
            let query = resolve::upstream::query_for(&question.owner, question.qtype, 7);
            let bytes = query.to_vec().expect("the upstream query encodes");
            assert!(Message::from_vec(&bytes).is_ok());
            assert!(resolve::upstream::answers(&query, &{
                let mut echo = query.clone();
                echo.metadata.message_type = hickory_proto::op::MessageType::Response;
                echo
            }));
        }
    }
});
