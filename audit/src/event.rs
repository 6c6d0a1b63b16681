//! The audit events: one type per kind, each writing its own fields in a fixed order.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use policy::Rule;

use crate::fields as f;
use crate::json::Object;

/// An audit event: a kind (the line's `message`) and its fields.
pub trait Event {
    /// The line's `message`: what kind of event this is.
    fn message(&self) -> &'static str;
    /// Appends the event's fields, in their documented order.
    fn write_fields(&self, out: &mut Object<'_>);
}

/// What became of a request or query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed (and served, or at least attempted).
    Allow,
    /// The policy refused it.
    Deny,
    /// It failed for another reason: malformed, unreachable, overloaded.
    Error,
    /// Report mode: the policy would have refused this request, which was let through.
    WouldDeny,
    /// Report mode: the policy would have refused this name, which was answered.
    WouldRefuse,
    /// A 407 for a request without the proxy credential, answered on the same connection by a
    /// request that carried it: the client's normal way to learn it must authenticate (git's,
    /// curl's with `--proxy-anyauth`), not a refusal.
    Challenge,
}

impl Verdict {
    /// The `decision` field's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Error => "error",
            Self::WouldDeny => "would-deny",
            Self::WouldRefuse => "would-refuse",
            Self::Challenge => "challenge",
        }
    }
}

/// How the body of a response relayed from a destination ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseEnd {
    /// The whole body passed: the origin's last byte (by `Content-Length`, the last chunk, or the
    /// close that delimits the body) went to the client.
    Complete,
    /// The origin cut it: a reset, or its end before `Content-Length` or the last chunk.
    CutByOrigin,
    /// The origin sent nothing for `--response-idle-timeout`: egressd cut it.
    CutByStall,
    /// The client left (or stopped the request) before the end.
    CutByClient,
}

impl ResponseEnd {
    /// The `response_end` field's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::CutByOrigin => "cut-by-origin",
            Self::CutByStall => "cut-by-stall",
            Self::CutByClient => "cut-by-client",
        }
    }
}

/// One proxied request or CONNECT tunnel (or a connection refused before its request was read),
/// written when it ends so byte counts and duration are final.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The sandbox.
    pub sandbox_id: &'a str,
    /// The client's address.
    pub client: &'a str,
    /// `CONNECT`, `GET`, ...; empty when no request was read.
    pub method: &'a str,
    /// The CONNECT authority or absolute URL as requested; empty when no request was read.
    pub destination: &'a str,
    /// The address connected to (the parent proxy's when chaining).
    pub resolved: Option<SocketAddr>,
    /// Allow, deny or error.
    pub verdict: Verdict,
    /// Policy reason or failure code.
    pub reason: &'a str,
    /// The deciding rule.
    pub rule: Option<&'a Rule>,
    /// Status sent to the client.
    pub status: u16,
    /// Bytes client → destination.
    pub bytes_up: u64,
    /// Bytes destination → client.
    pub bytes_down: u64,
    /// From the request head to the end.
    pub duration: Duration,
    /// How the relayed response body ended; `None` when no body was relayed (a refusal,
    /// egressd's own answer, a tunnel).
    pub response_end: Option<ResponseEnd>,
}

impl Request<'_> {
    /// The `message` of request events.
    pub const MESSAGE: &'static str = "request";
}

impl Event for Request<'_> {
    fn message(&self) -> &'static str {
        Self::MESSAGE
    }

    fn write_fields(&self, out: &mut Object<'_>) {
        out.str(f::SANDBOX_ID, self.sandbox_id);
        out.str(f::CLIENT, self.client);
        out.str(f::METHOD, self.method);
        out.str(f::DESTINATION, self.destination);
        out.socket_addr_or_empty(f::RESOLVED, self.resolved);
        out.str(f::DECISION, self.verdict.as_str());
        out.str(f::REASON, self.reason);
        let label = self.rule.map(Rule::label);
        out.display_or_empty(f::RULE, label.as_ref().map(|l| l as _));
        out.u64(f::STATUS, u64::from(self.status));
        out.u64(f::BYTES_UP, self.bytes_up);
        out.u64(f::BYTES_DOWN, self.bytes_down);
        out.millis(f::DURATION_MS, self.duration);
        out.str(
            f::RESPONSE_END,
            self.response_end.map_or("", ResponseEnd::as_str),
        );
    }
}

/// One SOCKS5 request (a `CONNECT` tunnel, or a refused command), or a SOCKS connection that
/// ended before its request was read, written when it ends so byte counts and duration are final.
#[derive(Clone, Copy, Debug)]
pub struct Socks<'a> {
    /// The sandbox.
    pub sandbox_id: &'a str,
    /// The client's address.
    pub client: &'a str,
    /// `CONNECT`, `BIND`, `UDP ASSOCIATE`, `UNKNOWN`; empty when no request was read.
    pub command: &'a str,
    /// `HOST:PORT` as requested (`[v6]:port` for IPv6); empty when no request was read.
    pub destination: &'a str,
    /// The address connected to (the parent proxy's when chaining).
    pub resolved: Option<SocketAddr>,
    /// Allow, deny or error.
    pub verdict: Verdict,
    /// Policy reason or failure code.
    pub reason: &'a str,
    /// The deciding rule.
    pub rule: Option<&'a Rule>,
    /// The RFC 1928 reply code sent (0 for success); `None` (the field left out) when no reply
    /// was sent: a refused login, a client that left before its request.
    pub reply: Option<u8>,
    /// Bytes client → destination.
    pub bytes_up: u64,
    /// Bytes destination → client.
    pub bytes_down: u64,
    /// From the connection's first byte to the end.
    pub duration: Duration,
}

impl Socks<'_> {
    /// The `message` of SOCKS events.
    pub const MESSAGE: &'static str = "socks";
}

impl Event for Socks<'_> {
    fn message(&self) -> &'static str {
        Self::MESSAGE
    }

    fn write_fields(&self, out: &mut Object<'_>) {
        out.str(f::SANDBOX_ID, self.sandbox_id);
        out.str(f::CLIENT, self.client);
        out.str(f::COMMAND, self.command);
        out.str(f::DESTINATION, self.destination);
        out.socket_addr_or_empty(f::RESOLVED, self.resolved);
        out.str(f::DECISION, self.verdict.as_str());
        out.str(f::REASON, self.reason);
        let label = self.rule.map(Rule::label);
        out.display_or_empty(f::RULE, label.as_ref().map(|l| l as _));
        if let Some(code) = self.reply {
            out.u64(f::REPLY, u64::from(code));
        }
        out.u64(f::BYTES_UP, self.bytes_up);
        out.u64(f::BYTES_DOWN, self.bytes_down);
        out.millis(f::DURATION_MS, self.duration);
    }
}

/// One DNS query answered (or refused) by the stub.
#[derive(Clone, Copy)]
pub struct DnsQuery<'a> {
    /// The sandbox.
    pub sandbox_id: &'a str,
    /// The client's address.
    pub client: &'a dyn fmt::Display,
    /// `udp` or `tcp`.
    pub transport: &'static str,
    /// The name asked, when one could be read.
    pub name: Option<&'a dyn fmt::Display>,
    /// The type asked, when one could be read.
    pub qtype: Option<&'a dyn fmt::Display>,
    /// Allow, deny or error.
    pub verdict: Verdict,
    /// Policy reason or failure code.
    pub reason: &'a str,
    /// The deciding rule.
    pub rule: Option<&'a Rule>,
    /// The response code sent, as dig prints it.
    pub rcode: &'static str,
    /// Records sent.
    pub answers: usize,
    /// Records the policy removed.
    pub stripped: usize,
    /// Served from the cache.
    pub cached: bool,
    /// Time the upstream took, when one was asked.
    pub upstream: Option<Duration>,
}

impl DnsQuery<'_> {
    /// The `message` of DNS query events.
    pub const MESSAGE: &'static str = "dns query";
}

impl Event for DnsQuery<'_> {
    fn message(&self) -> &'static str {
        Self::MESSAGE
    }

    fn write_fields(&self, out: &mut Object<'_>) {
        out.str(f::SANDBOX_ID, self.sandbox_id);
        out.display(f::CLIENT, self.client);
        out.str(f::TRANSPORT, self.transport);
        out.display_or_empty(f::NAME, self.name);
        out.display_or_empty(f::QTYPE, self.qtype);
        out.str(f::DECISION, self.verdict.as_str());
        out.str(f::REASON, self.reason);
        let label = self.rule.map(Rule::label);
        out.display_or_empty(f::RULE, label.as_ref().map(|l| l as _));
        out.str(f::RCODE, self.rcode);
        out.u64(f::ANSWERS, self.answers as u64);
        out.u64(f::STRIPPED, self.stripped as u64);
        out.bool(f::CACHED, self.cached);
        if let Some(upstream) = self.upstream {
            out.millis(f::UPSTREAM_MS, upstream);
        }
    }
}

/// A step in the sidecar's life, so an audit trail says under which policy its events happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Listening, readiness line printed.
    Ready,
    /// A new policy is in force.
    Reloaded,
    /// A reload was refused; the policy named is still in force.
    ReloadFailed,
    /// Shutting down: no new connections from here on.
    Stopping,
}

impl Step {
    /// The `event` field's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Reloaded => "reloaded",
            Self::ReloadFailed => "reload-failed",
            Self::Stopping => "stopping",
        }
    }
}

/// A lifecycle event.
#[derive(Clone, Copy, Debug)]
pub struct Lifecycle<'a> {
    /// The sandbox.
    pub sandbox_id: &'a str,
    /// What happened.
    pub step: Step,
    /// Where the policy in force came from.
    pub policy: &'a str,
    /// Its SHA-256.
    pub sha256: &'a str,
    /// Why (a reload error, the reason for stopping).
    pub detail: Option<&'a str>,
    /// How the policy in force is applied: `enforce` or `report`.
    pub mode: &'a str,
}

impl Lifecycle<'_> {
    /// The `message` of lifecycle events.
    pub const MESSAGE: &'static str = "lifecycle";
}

impl Event for Lifecycle<'_> {
    fn message(&self) -> &'static str {
        Self::MESSAGE
    }

    fn write_fields(&self, out: &mut Object<'_>) {
        out.str(f::SANDBOX_ID, self.sandbox_id);
        out.str(f::EVENT, self.step.as_str());
        out.str(f::POLICY, self.policy);
        out.str(f::SHA256, self.sha256);
        out.str(f::DETAIL, self.detail.unwrap_or(""));
        out.str(f::MODE, self.mode);
    }
}

/// Audit events that could not be written (a full disk, say): written once writing works again,
/// so an audit trail is never silently short.
#[derive(Clone, Copy, Debug)]
pub struct Lost<'a> {
    /// How many events were lost.
    pub count: u64,
    /// Why.
    pub error: &'a str,
    /// When the loss began.
    pub since: std::time::SystemTime,
}

impl Lost<'_> {
    /// The `message` of these events.
    pub const MESSAGE: &'static str = "audit events lost";
}

impl Event for Lost<'_> {
    fn message(&self) -> &'static str {
        Self::MESSAGE
    }

    fn write_fields(&self, out: &mut Object<'_>) {
        out.u64(f::LOST, self.count);
        out.str(f::ERROR, self.error);
        out.display(f::SINCE, &humantime::format_rfc3339_micros(self.since));
    }
}
