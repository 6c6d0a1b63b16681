//! Stub settings that do not come from the policy. Defaults are documented in docs/dns.md.

use std::time::Duration;

/// Limits, TTLs and identity.
#[derive(Clone, Debug)]
pub struct StubConfig {
    /// The sandbox this stub serves, for audit events.
    pub sandbox_id: String,
    /// TTLs of answers are capped to this many seconds, so a policy change or a rebinding attempt
    /// is not outlived by a client's cache for long.
    pub max_ttl: u32,
    /// Negative answers (NXDOMAIN, no data, everything stripped) are cached at most this long.
    pub negative_ttl: u32,
    /// TTL of answers from the policy's static records.
    pub static_ttl: u32,
    /// Time allowed for each upstream resolver.
    pub upstream_timeout: Duration,
    /// Upstream lookups in flight at once; beyond that, queries get SERVFAIL at once.
    pub max_upstream_lookups: usize,
    /// Cached answers kept at most.
    pub cache_entries: usize,
    /// TCP connections served at once.
    pub max_tcp_connections: usize,
    /// An idle TCP connection is closed after this long.
    pub tcp_idle_timeout: Duration,
}

impl Default for StubConfig {
    fn default() -> Self {
        Self {
            sandbox_id: String::new(),
            max_ttl: 300,
            negative_ttl: 60,
            static_ttl: 60,
            upstream_timeout: Duration::from_secs(2),
            max_upstream_lookups: 256,
            cache_entries: 4096,
            max_tcp_connections: 64,
            tcp_idle_timeout: Duration::from_secs(10),
        }
    }
}
