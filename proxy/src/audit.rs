//! Audit events: exactly one per request or tunnel, emitted when it ends (so byte counts and
//! duration are final), on the `egressd::audit` tracing target. The field names are part of the
//! launcher contract (docs/launcher.md).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use policy::Decision;

use crate::error::{Failure, rule_label};

pub use policy::AUDIT_TARGET;

/// Byte counters shared with the bodies and tunnels that move the bytes.
#[derive(Clone, Debug, Default)]
pub struct Bytes {
    /// Client → destination.
    pub up: Arc<AtomicU64>,
    /// Destination → client.
    pub down: Arc<AtomicU64>,
}

/// One request's audit record; emitted when dropped.
#[derive(Debug)]
pub struct Audit {
    sandbox_id: Arc<str>,
    client: Arc<str>,
    method: String,
    target: String,
    resolved: Option<SocketAddr>,
    verdict: &'static str,
    reason: &'static str,
    rule: Option<String>,
    status: u16,
    /// Moved bytes, updated by whoever moves them.
    pub bytes: Bytes,
    start: Instant,
}

impl Audit {
    /// A record for a request that just arrived.
    pub fn new(sandbox_id: Arc<str>, client: Arc<str>, method: &str, target: String) -> Self {
        Self {
            sandbox_id,
            client,
            method: method.to_owned(),
            target,
            resolved: None,
            verdict: "error",
            reason: "unknown",
            rule: None,
            status: 0,
            bytes: Bytes::default(),
            start: Instant::now(),
        }
    }

    /// The destination was allowed and reached at `addr`.
    pub fn allowed(&mut self, decision: &Decision, addr: Option<SocketAddr>, status: u16) {
        self.verdict = "allow";
        self.reason = decision.reason.code();
        self.rule = rule_label(decision);
        self.resolved = addr;
        self.status = status;
    }

    /// The request ended with `failure`.
    pub fn failed(&mut self, failure: &Failure) {
        self.verdict = if failure.decision().is_some() {
            "deny"
        } else {
            "error"
        };
        self.reason = failure.reason_code();
        self.rule = failure.decision().and_then(rule_label);
        self.status = failure.status().as_u16();
        if let Failure::Connect { addr, .. } | Failure::ConnectTimeout { addr } = failure {
            self.resolved = Some(*addr);
        }
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        let resolved = self.resolved.map(|a| a.to_string());
        let duration_ms = self.start.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(
            target: AUDIT_TARGET,
            sandbox_id = &*self.sandbox_id,
            client = &*self.client,
            method = %self.method,
            destination = %self.target,
            resolved = resolved.as_deref().unwrap_or(""),
            decision = self.verdict,
            reason = self.reason,
            rule = self.rule.as_deref().unwrap_or(""),
            status = self.status,
            bytes_up = self.bytes.up.load(Ordering::Relaxed),
            bytes_down = self.bytes.down.load(Ordering::Relaxed),
            duration_ms = (duration_ms * 1000.0).round() / 1000.0,
            "request"
        );
    }
}
