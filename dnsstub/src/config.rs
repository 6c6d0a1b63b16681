//! Stub settings that do not come from the policy or the resolver. Defaults are documented in
//! docs/dns.md.

use std::time::Duration;

/// Identity and stream-transport limits.
#[derive(Clone, Debug)]
pub struct StubConfig {
    /// The sandbox this stub serves, for audit events.
    pub sandbox_id: String,
    /// Stream (TCP) connections served at once.
    pub max_tcp_connections: usize,
    /// An idle stream connection is closed after this long.
    pub tcp_idle_timeout: Duration,
    /// Where answered queries are counted (a no-op without `--metrics-listen`).
    pub metrics: metrics::Handle,
}

impl StubConfig {
    /// Stream connections served at once, by default.
    pub const MAX_TCP_CONNECTIONS: usize = 64;
    /// Idle stream connections are closed after this long, by default.
    pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
}

impl Default for StubConfig {
    fn default() -> Self {
        Self {
            sandbox_id: String::new(),
            max_tcp_connections: Self::MAX_TCP_CONNECTIONS,
            tcp_idle_timeout: Self::TCP_IDLE_TIMEOUT,
            metrics: metrics::Handle::default(),
        }
    }
}
