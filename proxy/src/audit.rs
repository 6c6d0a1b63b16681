//! The audit record of one request or tunnel: filled in as the request is decided and served,
//! emitted as one [`audit::Request`] event when dropped (so byte counts and duration are final);
//! for the SOCKS listener, one [`audit::Socks`] event, with the reply code sent for a status.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use audit::{ResponseEnd, Sink, Verdict};
use policy::{Decision, Policy, Rule};

use crate::error::Failure;
use crate::progress::Progress;

/// Byte counters shared with the bodies and tunnels that move the bytes.
#[derive(Clone, Debug, Default)]
pub struct Bytes {
    /// Client → destination.
    pub up: Arc<AtomicU64>,
    /// Destination → client.
    pub down: Arc<AtomicU64>,
}

/// Who is asking, for every record of one connection.
#[derive(Clone)]
pub struct Caller {
    pub(crate) sink: Sink,
    pub(crate) sandbox_id: Arc<str>,
    pub(crate) client: Arc<str>,
    pub(crate) metrics: metrics::Handle,
}

/// One request's audit record; emitted when dropped.
pub struct Audit {
    caller: Caller,
    /// The method (or SOCKS command): a standard one borrowed, not allocated for each request.
    method: Cow<'static, str>,
    target: String,
    resolved: Option<SocketAddr>,
    verdict: Verdict,
    reason: &'static str,
    rule: Option<Arc<Rule>>,
    status: u16,
    /// Moved bytes, updated by whoever moves them.
    pub bytes: Bytes,
    start: Instant,
    /// The request body, when there is one: if it fails after the response has started, the
    /// event says so.
    upload: Option<Arc<Progress>>,
    /// The policy that judges the request, for what its refusal says.
    policy: Option<Arc<Policy>>,
    /// How the relayed response body ended, once one was relayed.
    response_end: Option<ResponseEnd>,
    /// The SOCKS listener's record: the reply code sent, once one was (the status is not used).
    socks: Option<Option<u8>>,
}

impl Audit {
    /// A record for a request that just arrived.
    pub fn new(caller: Caller, method: &str, target: String) -> Self {
        Self {
            caller,
            method: method_text(method),
            target,
            resolved: None,
            verdict: Verdict::Error,
            reason: "unknown",
            rule: None,
            status: 0,
            bytes: Bytes::default(),
            start: Instant::now(),
            upload: None,
            policy: None,
            response_end: None,
            socks: None,
        }
    }

    /// A record for a SOCKS request (`command` empty until one was read); emitted as an
    /// [`audit::Socks`] event.
    pub fn socks(caller: Caller, command: &str, target: String) -> Self {
        let mut record = Self::new(caller, command, target);
        record.socks = Some(None);
        record
    }

    /// The SOCKS request was read: its command and destination.
    pub fn requested(&mut self, command: &str, target: String) {
        self.method = method_text(command);
        self.target = target;
    }

    /// The SOCKS reply code sent.
    pub fn replied(&mut self, code: u8) {
        self.socks = Some(Some(code));
    }

    /// The relayed response body ended as `end` says.
    pub fn response_ended(&mut self, end: ResponseEnd) {
        self.response_end = Some(end);
    }

    /// Watches the request body: a failure after the response started (a malformed or stalled
    /// upload, which cuts the connection) becomes the event's reason, the status staying the one
    /// sent.
    pub fn watch_upload(&mut self, progress: Arc<Progress>) {
        self.upload = Some(progress);
    }

    /// The request is judged under `policy`: its refusal body says what in it would allow the
    /// destination, and adds its `deny_message`.
    pub fn under(&mut self, policy: Arc<Policy>) {
        self.policy = Some(policy);
    }

    /// The policy given to [`Audit::under`].
    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_deref()
    }

    /// The destination was allowed and reached at `addr`; or, in report mode, refused by
    /// `decision` and reached all the same (`would-deny`).
    pub fn allowed(&mut self, decision: &Decision, addr: Option<SocketAddr>, status: u16) {
        self.verdict = if decision.is_allowed() {
            Verdict::Allow
        } else {
            Verdict::WouldDeny
        };
        self.reason = decision.reason.code();
        self.rule = decision.rule.clone();
        self.resolved = addr;
        self.status = status;
    }

    /// Refused by egressd itself before any request was read (overload).
    pub fn failed_with(&mut self, status: http::StatusCode, reason: &'static str) {
        self.verdict = Verdict::Error;
        self.reason = reason;
        self.status = status.as_u16();
    }

    /// Refused by egressd for `reason` (a request rule, a credential, the TLS name), under `rule`.
    pub fn denied(
        &mut self,
        reason: &'static str,
        rule: Option<Arc<Rule>>,
        status: http::StatusCode,
    ) {
        self.verdict = Verdict::Deny;
        self.reason = reason;
        self.rule = rule;
        self.status = status.as_u16();
    }

    /// Report mode: `decision` refused the request, which is let through all the same. Should
    /// it then fail for another reason (the name does not resolve, the origin is down), its event
    /// still says `would-deny` with this reason and rule, and the failure's status: what the
    /// policy would have done is what report mode records.
    pub fn reported(&mut self, decision: &Decision) {
        if !decision.is_allowed() {
            self.verdict = Verdict::WouldDeny;
            self.reason = decision.reason.code();
            self.rule = decision.rule.clone();
        }
    }

    /// The 407 this record tells of was answered on its connection with the credential: a
    /// challenge, not a refusal.
    pub fn answered_challenge(&mut self) {
        self.verdict = Verdict::Challenge;
    }

    /// What was relayed after the status was sent broke off for `reason` (an origin's frame
    /// egressd could not follow, say): an error, with the status that was sent.
    pub fn broke_off(&mut self, reason: &'static str) {
        self.verdict = Verdict::Error;
        self.reason = reason;
    }

    /// The request ended with `failure`.
    pub fn failed(&mut self, failure: &Failure) {
        if self.verdict == Verdict::WouldDeny && !failure.is_refusal() {
            self.status = failure.status().as_u16();
            if let Failure::Connect { addr, .. } | Failure::ConnectTimeout { addr } = failure {
                self.resolved = Some(*addr);
            }
            return;
        }
        self.verdict = if failure.is_refusal() {
            Verdict::Deny
        } else {
            Verdict::Error
        };
        self.reason = failure.reason_code();
        self.rule = failure.decision().and_then(|d| d.rule.clone());
        self.status = failure.status().as_u16();
        if let Failure::Connect { addr, .. } | Failure::ConnectTimeout { addr } = failure {
            self.resolved = Some(*addr);
        }
    }
}

/// A method's (or SOCKS command's) text: the standard ones, and none yet, without an allocation.
fn method_text(method: &str) -> Cow<'static, str> {
    const KNOWN: [&str; 11] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "BIND", "",
    ];
    match KNOWN.iter().find(|known| **known == method) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(method.to_owned()),
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        if self.verdict == Verdict::Allow
            && let Some(failure) = self.upload.as_ref().and_then(|p| p.failure())
        {
            self.verdict = Verdict::Error;
            self.reason = failure.reason_code();
        }
        let kind = match (self.socks, &*self.method) {
            (Some(_), _) => metrics::Kind::Socks,
            (None, "CONNECT") => metrics::Kind::Tunnel,
            (None, _) => metrics::Kind::Request,
        };
        let (up, down) = (
            self.bytes.up.load(Ordering::Relaxed),
            self.bytes.down.load(Ordering::Relaxed),
        );
        self.caller
            .metrics
            .request(kind, self.verdict.as_str(), self.reason, up, down);
        if let Some(end) = self.response_end {
            self.caller.metrics.response(end.as_str());
        }
        if let Some(reply) = self.socks {
            self.caller.sink.emit(&audit::Socks {
                sandbox_id: &self.caller.sandbox_id,
                client: &self.caller.client,
                command: &self.method,
                destination: &self.target,
                resolved: self.resolved,
                verdict: self.verdict,
                reason: self.reason,
                rule: self.rule.as_deref(),
                reply,
                bytes_up: up,
                bytes_down: down,
                duration: self.start.elapsed(),
            });
            return;
        }
        self.caller.sink.emit(&audit::Request {
            sandbox_id: &self.caller.sandbox_id,
            client: &self.caller.client,
            method: &self.method,
            destination: &self.target,
            resolved: self.resolved,
            verdict: self.verdict,
            reason: self.reason,
            rule: self.rule.as_deref(),
            status: self.status,
            bytes_up: up,
            bytes_down: down,
            duration: self.start.elapsed(),
            response_end: self.response_end,
        });
    }
}
