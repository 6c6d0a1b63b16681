//! Where audit lines go: a writer thread (a file, stdout or stderr), or memory for tests.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use crate::batch::Batched;
use crate::event::Event;
use crate::fields as f;
use crate::json::{Object, string, timestamp, with_line};

/// Encodes events and hands the lines on. Cheap to clone; clones write to the same place.
#[derive(Clone)]
pub struct Sink {
    out: Out,
}

#[derive(Clone)]
enum Out {
    Writer(Batched),
    Memory(Recorded),
    Discard,
}

/// The lines a [`Sink::memory`] sink received, for tests to read back.
#[derive(Clone, Default)]
pub struct Recorded(Arc<Mutex<Vec<String>>>);

impl Recorded {
    /// Every line so far, without the newline.
    pub fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Sink {
    /// Lines go to `writer`'s thread.
    pub fn new(writer: Batched) -> Self {
        Self {
            out: Out::Writer(writer),
        }
    }

    /// Lines are kept in memory; read them from the returned [`Recorded`].
    pub fn memory() -> (Self, Recorded) {
        let recorded = Recorded::default();
        let sink = Self {
            out: Out::Memory(recorded.clone()),
        };
        (sink, recorded)
    }

    /// Lines are encoded and dropped (benchmarks of what the encoding costs).
    pub fn discard() -> Self {
        Self { out: Out::Discard }
    }

    /// Encodes `event` as one JSON line and writes it.
    pub fn emit(&self, event: &dyn Event) {
        with_line(|line| {
            encode(line, event);
            match &self.out {
                Out::Writer(writer) => writer.push(line.as_bytes()),
                Out::Memory(recorded) => recorded
                    .0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line.trim_end().to_owned()),
                Out::Discard => {}
            }
        });
    }
}

/// `{"timestamp":…,"level":"INFO","message":…, fields…, "target":"egressd::audit"}` and a newline.
pub(crate) fn encode(line: &mut String, event: &dyn Event) {
    // Writing into a String cannot fail.
    // Pieces pushed whole, not formatted: this is every audit line's beginning.
    for piece in ["{\"", f::TIMESTAMP, "\":\""] {
        line.push_str(piece);
    }
    timestamp(line, SystemTime::now());
    for piece in ["\",\"", f::LEVEL, "\":\"INFO\",\"", f::MESSAGE, "\":"] {
        line.push_str(piece);
    }
    let _ = string(line, event.message());
    let mut object = Object::new(line);
    event.write_fields(&mut object);
    object.str(f::TARGET, crate::TARGET);
    line.push_str("}\n");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::event::{DnsQuery, Lifecycle, Request, Socks, Step, Verdict};

    fn parse(line: &str) -> serde_json::Value {
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    #[test]
    fn a_request_event_is_one_json_line_with_every_field() {
        let (sink, recorded) = Sink::memory();
        let policy =
            policy::Policy::parse("version = 1\n[[allow]]\nhost = \"a.test\"\n", "t.toml").unwrap();
        let rule = policy.allow_rules()[0].clone();
        sink.emit(&Request {
            sandbox_id: "job\"1",
            client: "127.0.0.1:5",
            method: "GET",
            destination: "http://a.test/\n",
            resolved: Some("127.0.0.1:80".parse().unwrap()),
            verdict: Verdict::Allow,
            reason: "allow-rule",
            rule: Some(&rule),
            status: 200,
            bytes_up: 1,
            bytes_down: 2,
            duration: Duration::from_micros(2518),
            response_end: Some(crate::ResponseEnd::CutByStall),
        });
        let lines = recorded.lines();
        assert_eq!(lines.len(), 1);
        let v = parse(&lines[0]);
        assert_eq!(v[f::MESSAGE], Request::MESSAGE);
        assert_eq!(v[f::LEVEL], "INFO");
        assert_eq!(v[f::TARGET], crate::TARGET);
        assert_eq!(v[f::SANDBOX_ID], "job\"1");
        assert_eq!(v[f::DESTINATION], "http://a.test/\n");
        assert_eq!(v[f::RESOLVED], "127.0.0.1:80");
        assert_eq!(v[f::DECISION], "allow");
        assert_eq!(v[f::RULE], "allow[0] line 3");
        assert_eq!(v[f::STATUS], 200);
        assert_eq!(v[f::BYTES_DOWN], 2);
        assert_eq!(v[f::DURATION_MS], 2.518);
        assert_eq!(v[f::RESPONSE_END], "cut-by-stall");
        let ts = v[f::TIMESTAMP].as_str().unwrap();
        assert!(humantime::parse_rfc3339(ts).is_ok(), "{ts}");
        // The documented order: timestamp, level, message first; target last.
        let line = &lines[0];
        let at = |k: &str| line.find(&format!("\"{k}\":")).unwrap();
        assert!(at(f::TIMESTAMP) < at(f::LEVEL) && at(f::LEVEL) < at(f::MESSAGE));
        assert!(at(f::MESSAGE) < at(f::SANDBOX_ID) && at(f::DURATION_MS) < at(f::TARGET));
    }

    #[test]
    fn a_dns_event_omits_upstream_time_when_no_upstream_was_asked() {
        let (sink, recorded) = Sink::memory();
        let mut event = DnsQuery {
            sandbox_id: "",
            client: &"127.0.0.1:9",
            transport: "udp",
            name: Some(&"a.test."),
            qtype: None,
            verdict: Verdict::Deny,
            reason: "default-deny",
            rule: None,
            rcode: "REFUSED",
            answers: 0,
            stripped: 0,
            cached: false,
            upstream: None,
        };
        sink.emit(&event);
        event.upstream = Some(Duration::from_millis(3));
        sink.emit(&event);
        let lines = recorded.lines();
        let (first, second) = (parse(&lines[0]), parse(&lines[1]));
        assert_eq!(first[f::MESSAGE], DnsQuery::MESSAGE);
        assert_eq!(first[f::QTYPE], "");
        assert_eq!(first[f::RULE], "");
        assert!(first.get(f::UPSTREAM_MS).is_none());
        assert_eq!(second[f::UPSTREAM_MS], 3.0);
    }

    #[test]
    fn a_socks_event_says_its_command_and_reply_and_omits_a_reply_never_sent() {
        let (sink, recorded) = Sink::memory();
        let mut event = Socks {
            sandbox_id: "s",
            client: "127.0.0.1:7",
            command: "BIND",
            destination: "a.test:22",
            resolved: None,
            verdict: Verdict::Deny,
            reason: "socks-command-unsupported",
            rule: None,
            reply: Some(7),
            bytes_up: 0,
            bytes_down: 0,
            duration: Duration::from_millis(1),
        };
        sink.emit(&event);
        event.reply = None;
        sink.emit(&event);
        let lines = recorded.lines();
        let (first, second) = (parse(&lines[0]), parse(&lines[1]));
        assert_eq!(first[f::MESSAGE], Socks::MESSAGE);
        assert_eq!(first[f::COMMAND], "BIND");
        assert_eq!(first[f::DESTINATION], "a.test:22");
        assert_eq!(first[f::RESOLVED], "");
        assert_eq!(first[f::REPLY], 7);
        assert!(second.get(f::REPLY).is_none(), "{second}");
    }

    #[test]
    fn a_lifecycle_event_names_the_policy() {
        let (sink, recorded) = Sink::memory();
        sink.emit(&Lifecycle {
            sandbox_id: "s",
            step: Step::ReloadFailed,
            policy: "/p.toml",
            sha256: "ab",
            detail: Some("p.toml:3:8: bad"),
            mode: "report",
        });
        let v = parse(&recorded.lines()[0]);
        assert_eq!(v[f::MESSAGE], Lifecycle::MESSAGE);
        assert_eq!(v[f::EVENT], "reload-failed");
        assert_eq!(v[f::DETAIL], "p.toml:3:8: bad");
        assert_eq!(v[f::MODE], "report");
    }
}
