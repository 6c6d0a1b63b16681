//! The stub: one query in, one reply out, one audit event. Shared by the UDP and stream
//! transports, which only move bytes.

use std::fmt;
use std::sync::Arc;

use audit::{DnsQuery, Sink, Verdict};
use hickory_proto::op::ResponseCode;
use resolve::{Answered, LookupPermit, ResolveError, Resolver, Source, UpstreamError};
use serve::Snapshot;

use crate::classify::{Action, Forward, Local, classify};
use crate::config::StubConfig;
use crate::wire::{self, AsciiName, Ede};

/// The DNS stub. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Stub {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    resolver: Snapshot<Resolver>,
    pub(crate) config: StubConfig,
    sandbox_id: Arc<str>,
    sink: Sink,
}

/// Who asked, and over what: for the audit event and the reply's size limit.
#[derive(Clone, Copy)]
pub(crate) struct Asker<'a> {
    pub(crate) client: &'a (dyn fmt::Display + Sync),
    pub(crate) transport: &'static str,
    /// Largest reply the transport carries; `None`: what the query's EDNS offers (UDP).
    pub(crate) limit: Option<usize>,
}

/// What a query needs next.
pub(crate) enum Next {
    /// The reply (or nothing to send).
    Reply(Option<Vec<u8>>),
    /// An upstream lookup, for which a place was taken.
    Lookup(Box<Forward>, LookupPermit, Arc<Resolver>),
}

impl Stub {
    /// A stub answering with `resolver` (and its policy); audit events go to `sink`.
    pub fn new(resolver: Arc<Resolver>, config: StubConfig, sink: Sink) -> Self {
        Self {
            shared: Arc::new(Shared {
                resolver: Snapshot::new(resolver),
                sandbox_id: Arc::from(config.sandbox_id.as_str()),
                config,
                sink,
            }),
        }
    }

    /// Puts a new policy generation's resolver in force: answers cached under the old policy are
    /// never served under the new one, since the cache belongs to the resolver.
    pub fn reload(&self, resolver: Arc<Resolver>) {
        self.shared.resolver.store(resolver);
    }

    /// Answers one query end to end, waiting for an upstream lookup if it needs one (the stream
    /// transport's path, and the benchmarks').
    pub async fn answer(
        &self,
        bytes: &[u8],
        client: &(dyn fmt::Display + Sync),
        transport: &'static str,
        limit: usize,
    ) -> Option<Vec<u8>> {
        let asker = Asker {
            client,
            transport,
            limit: Some(limit),
        };
        match self.begin(bytes, asker) {
            Next::Reply(reply) => reply,
            Next::Lookup(forward, permit, resolver) => {
                self.finish(&resolver, &forward, &permit, asker).await
            }
        }
    }

    /// [`Stub::answer`] without I/O, for a client being turned away: what needs no lookup is
    /// answered as usual; a query that would need one gets SERVFAIL with the "overloaded" reason,
    /// as when no lookup place is free.
    pub(crate) fn answer_at_once(
        &self,
        bytes: &[u8],
        client: &(dyn fmt::Display + Sync),
        transport: &'static str,
        limit: usize,
    ) -> Option<Vec<u8>> {
        let asker = Asker {
            client,
            transport,
            limit: Some(limit),
        };
        match self.begin(bytes, asker) {
            Next::Reply(reply) => reply,
            Next::Lookup(forward, _permit, _) => {
                self.answered(&forward, Err(Failed::Overloaded), asker)
            }
        }
    }

    /// Everything that needs no I/O: local replies, static records, cached answers, and the
    /// SERVFAIL when no lookup place is free. Otherwise a lookup place is taken and returned.
    pub(crate) fn begin(&self, bytes: &[u8], asker: Asker<'_>) -> Next {
        let resolver = self.shared.resolver.load();
        let forward = match classify(bytes, resolver.policy()) {
            Action::Drop => {
                tracing::debug!(client = %asker.client, bytes = bytes.len(), "dropped a packet that is not a query");
                return Next::Reply(None);
            }
            Action::Reply(local) => return Next::Reply(self.local(bytes, &local, asker)),
            Action::Forward(forward) => forward,
        };
        if let Some(answered) = resolver.answer_now(&forward.question) {
            return Next::Reply(self.answered(&forward, Ok(answered), asker));
        }
        match resolver.try_lookup_permit() {
            Some(permit) => Next::Lookup(forward, permit, resolver),
            None => {
                tracing::warn!(client = %asker.client, "too many upstream lookups in flight; answering SERVFAIL");
                Next::Reply(self.answered(&forward, Err(Failed::Overloaded), asker))
            }
        }
    }

    /// The upstream lookup, then the reply.
    pub(crate) async fn finish(
        &self,
        resolver: &Resolver,
        forward: &Forward,
        permit: &LookupPermit,
        asker: Asker<'_>,
    ) -> Option<Vec<u8>> {
        let result = resolver.answer_upstream(&forward.question, permit).await;
        if let Err(error) = &result {
            tracing::warn!(name = %forward.question.name, %error, "upstream lookup failed; answering SERVFAIL");
        }
        self.answered(forward, result.map_err(Failed::Resolve), asker)
    }

    /// Audits and encodes a reply made here to `query`.
    fn local(&self, query: &[u8], local: &Local, asker: Asker<'_>) -> Option<Vec<u8>> {
        let rcode = local.message.metadata.response_code;
        let (verdict, reason) = match &local.decision {
            Some(d) if d.is_allowed() => (Verdict::Allow, d.reason.code()),
            Some(d) if rcode != ResponseCode::Refused => (Verdict::WouldRefuse, d.reason.code()),
            Some(d) => (Verdict::Deny, d.reason.code()),
            None if rcode == ResponseCode::Refused => (Verdict::Deny, "malformed-target"),
            None => (Verdict::Error, local_reason(rcode)),
        };
        let name = local.name.as_ref().map(AsciiName);
        let name = name.as_ref().map(|n| n as &dyn fmt::Display);
        let qtype = local.qtype.as_ref().map(|t| t as &dyn fmt::Display);
        let rcode = rcode_name(rcode);
        self.shared
            .config
            .metrics
            .dns_query(rcode, verdict.as_str());
        self.shared.sink.emit(&DnsQuery {
            sandbox_id: &self.shared.sandbox_id,
            client: asker.client,
            transport: asker.transport,
            name,
            qtype,
            verdict,
            reason,
            rule: local.decision.as_ref().and_then(|d| d.rule.as_deref()),
            rcode,
            answers: local.message.answers.len(),
            stripped: 0,
            cached: false,
            upstream: None,
        });
        wire::encode_local(
            query,
            &local.message,
            asker.limit.unwrap_or(local.udp_limit),
        )
    }

    /// Builds, audits and encodes the reply to a forwarded query.
    fn answered(
        &self,
        forward: &Forward,
        result: Result<Answered, Failed>,
        asker: Asker<'_>,
    ) -> Option<Vec<u8>> {
        let (message, stripped, source, verdict, reason) = match result {
            Ok(Answered { answer, source }) => {
                let stripped = answer.removed.len();
                let ede = (stripped > 0).then_some(Ede::Blocked);
                let (verdict, reason) = if answer.rcode == ResponseCode::ServFail {
                    (Verdict::Error, "dns-failure")
                } else {
                    (Verdict::Allow, forward.decision.reason.code())
                };
                let ede = ede.or((verdict == Verdict::Error).then_some(Ede::UpstreamFailed));
                let message = wire::reply(&forward.query, answer.rcode, answer.records, ede);
                (message, stripped, Some(source), verdict, reason)
            }
            Err(failed) => {
                let message = wire::reply(
                    &forward.query,
                    ResponseCode::ServFail,
                    Vec::new(),
                    Some(failed.ede()),
                );
                (message, 0, None, Verdict::Error, failed.reason())
            }
        };
        // Report mode: a name the policy would refuse was answered (or tried) all the same; its
        // event says so whatever the answer, so suggest learns the name.
        let (verdict, reason) = match &forward.decision {
            d if d.is_allowed() => (verdict, reason),
            d => (Verdict::WouldRefuse, d.reason.code()),
        };
        let question = &forward.question;
        let rcode = rcode_name(message.metadata.response_code);
        self.shared
            .config
            .metrics
            .dns_query(rcode, verdict.as_str());
        self.shared.sink.emit(&DnsQuery {
            sandbox_id: &self.shared.sandbox_id,
            client: asker.client,
            transport: asker.transport,
            name: Some(&AsciiName(&question.owner)),
            qtype: Some(&question.qtype),
            verdict,
            reason,
            rule: forward.decision.rule.as_deref(),
            rcode,
            answers: message.answers.len(),
            stripped,
            cached: source == Some(Source::Cache),
            upstream: match source {
                Some(Source::Upstream(took)) => Some(took),
                _ => None,
            },
        });
        let limit = asker
            .limit
            .unwrap_or_else(|| wire::udp_limit(&forward.query));
        wire::encode(&message, limit)
    }
}

/// Why a forwarded query got no answer.
enum Failed {
    Resolve(ResolveError),
    Overloaded,
}

impl Failed {
    fn reason(&self) -> &'static str {
        match self {
            Self::Resolve(ResolveError::Upstream(UpstreamError::Timeout)) => "dns-timeout",
            Self::Resolve(_) => "dns-failure",
            Self::Overloaded => "overloaded",
        }
    }

    fn ede(&self) -> Ede {
        match self {
            Self::Resolve(_) => Ede::UpstreamFailed,
            Self::Overloaded => Ede::Overloaded,
        }
    }
}

/// The mnemonic dig prints.
fn rcode_name(rcode: ResponseCode) -> &'static str {
    match rcode {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::BADVERS => "BADVERS",
        _ => "OTHER",
    }
}

fn local_reason(rcode: ResponseCode) -> &'static str {
    match rcode {
        ResponseCode::FormErr => "malformed-query",
        ResponseCode::NotImp => "not-implemented",
        ResponseCode::BADVERS => "bad-edns-version",
        _ => "other",
    }
}
