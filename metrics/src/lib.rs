//! egressd's Prometheus metrics, in one place: the registry, every metric family, and the
//! [`Handle`] the proxy, the DNS stub and the app count through.
//!
//! The owner ([`Metrics`]) encodes the Prometheus text exposition (version 0.0.4) for the
//! `/metrics` endpoint the binary serves with `--metrics-listen`. Everyone else holds a [`Handle`]:
//! cheap to clone, and a no-op when metrics are off ([`Handle::default`]), so a sidecar without
//! `--metrics-listen` pays one branch per count. Counting allocates nothing: label values are
//! `&'static str` (reason codes, decisions, rcodes), and a family looks its series up by them.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `egressd_requests_total` | counter | `decision`, `reason`, `kind` (`request`, `tunnel`) |
//! | `egressd_dns_queries_total` | counter | `rcode`, `decision` |
//! | `egressd_open_connections` | gauge | |
//! | `egressd_open_tunnels` | gauge | |
//! | `egressd_proxied_bytes_total` | counter | `direction` (`up`: client to destination, `down`) |
//! | `egressd_upstream_connect_duration_seconds` | histogram | |
//! | `egressd_dns_lookup_duration_seconds` | histogram | |
//! | `egressd_reloads_total` | counter | `result` (`ok`, `failed`) |
//! | `egressd_policy_info` | gauge, always 1 | `sha256`, `mode` |
//! | `egressd_audit_events_lost_total` | counter | |
//! | `egressd_build_info` | gauge, always 1 | `version`, `commit` |
//! | `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`, `process_start_time_seconds` | counter, gauges | |
//!
//! Every family is in the exposition from the start, with zeros: the labelled counters hold a
//! zero series for each common decision and reason (a dashboard or alert on `rate()` needs the
//! series before the first event), the histograms their empty buckets.
//!
//! What this crate does not do: serve HTTP (the binary does, on the shared serve loop), or
//! know what is counted (callers pass codes).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod process;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Latency buckets, in seconds: half a millisecond to ten seconds (the connect timeout's
/// default), about 2.5 apart.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A request's labels: decision, reason, kind.
type RequestLabels = [(&'static str, &'static str); 3];
/// A query's labels: rcode, decision.
type QueryLabels = [(&'static str, &'static str); 2];
/// One label.
type OneLabel = [(&'static str, &'static str); 1];

/// How a relayed response body can end (the audit event's `response_end`): each series is
/// present from the start, at zero.
const RESPONSE_ENDS: [&str; 4] = ["complete", "cut-by-origin", "cut-by-stall", "cut-by-client"];
/// The policy's labels: sha256, mode.
type PolicyLabels = [(&'static str, String); 2];
/// The build's labels: version, commit.
type BuildLabels = [(&'static str, String); 2];

/// The request series present from the start, with zeros, for each kind: the decisions and
/// reasons a dashboard watches.
const REQUEST_SERIES: [(&str, &str); 7] = [
    ("allow", "allow-rule"),
    ("allow", "default-allow"),
    ("deny", "default-deny"),
    ("deny", "deny-rule"),
    ("deny", "port-not-allowed"),
    ("deny", "special-range"),
    ("would-deny", "default-deny"),
];

/// The DNS query series present from the start, with zeros: rcode, decision.
const QUERY_SERIES: [(&str, &str); 3] = [
    ("NOERROR", "allow"),
    ("NXDOMAIN", "allow"),
    ("REFUSED", "deny"),
];

/// What a proxied exchange was: an absolute-form request, a CONNECT tunnel, or a SOCKS5 request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `GET http://...` and the like (also a connection refused before a request was read).
    Request,
    /// `CONNECT host:port`.
    Tunnel,
    /// A SOCKS5 request (`CONNECT`, or a refused command), or a SOCKS connection that ended
    /// before its request was read.
    Socks,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Tunnel => "tunnel",
            Self::Socks => "socks",
        }
    }
}

/// Every metric family.
struct Families {
    requests: Family<RequestLabels, Counter>,
    dns_queries: Family<QueryLabels, Counter>,
    open_connections: Gauge,
    open_tunnels: Gauge,
    bytes_up: Counter,
    bytes_down: Counter,
    upstream_connect: Histogram,
    dns_lookup: Histogram,
    reloads_ok: Counter,
    reloads_failed: Counter,
    policy: Family<PolicyLabels, Gauge>,
    build: Family<BuildLabels, Gauge>,
    responses: Family<OneLabel, Counter>,
}

/// The registry and its families: built once, by the binary, when metrics are asked for.
pub struct Metrics {
    registry: Registry,
    handle: Handle,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Every family registered, and `audit_lost` read at each scrape for the audit events the
    /// audit writer could not write.
    pub fn new(audit_lost: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        // `process_*` keep their standard names; everything else is `egressd_*`.
        let mut root = Registry::default();
        root.register_collector(Box::new(process::Process::new()));
        let registry = root.sub_registry_with_prefix("egressd");
        let bytes = Family::<OneLabel, Counter>::default();
        let reloads = Family::<OneLabel, Counter>::default();
        let histogram = || Histogram::new(LATENCY_BUCKETS);
        let families = Families {
            requests: Family::default(),
            dns_queries: Family::default(),
            open_connections: Gauge::default(),
            open_tunnels: Gauge::default(),
            bytes_up: bytes.get_or_create_owned(&[("direction", "up")]),
            bytes_down: bytes.get_or_create_owned(&[("direction", "down")]),
            upstream_connect: histogram(),
            dns_lookup: histogram(),
            reloads_ok: reloads.get_or_create_owned(&[("result", "ok")]),
            reloads_failed: reloads.get_or_create_owned(&[("result", "failed")]),
            policy: Family::default(),
            build: Family::default(),
            responses: Family::default(),
        };
        for kind in [Kind::Request, Kind::Tunnel] {
            for (decision, reason) in REQUEST_SERIES {
                let labels = [
                    ("decision", decision),
                    ("reason", reason),
                    ("kind", kind.as_str()),
                ];
                families.requests.get_or_create(&labels).inc_by(0);
            }
        }
        for (rcode, decision) in QUERY_SERIES {
            let labels = [("rcode", rcode), ("decision", decision)];
            families.dns_queries.get_or_create(&labels).inc_by(0);
        }
        for end in RESPONSE_ENDS {
            families.responses.get_or_create(&[("end", end)]).inc_by(0);
        }
        registry.register(
            "requests",
            "Proxied requests and tunnels, counted when they end, by decision, reason and kind",
            families.requests.clone(),
        );
        registry.register(
            "dns_queries",
            "DNS queries answered by the stub, by response code and decision",
            families.dns_queries.clone(),
        );
        registry.register(
            "open_connections",
            "Client connections to the proxy open now",
            families.open_connections.clone(),
        );
        registry.register(
            "open_tunnels",
            "CONNECT tunnels open now",
            families.open_tunnels.clone(),
        );
        registry.register_with_unit(
            "proxied",
            "Body and tunnel bytes proxied, counted when the request or tunnel ends; up: client to destination",
            Unit::Bytes,
            bytes,
        );
        registry.register_with_unit(
            "upstream_connect_duration",
            "Time to open a TCP connection to a destination address",
            Unit::Seconds,
            families.upstream_connect.clone(),
        );
        registry.register_with_unit(
            "dns_lookup_duration",
            "Time an upstream resolver took to answer a lookup",
            Unit::Seconds,
            families.dns_lookup.clone(),
        );
        registry.register("reloads", "Policy reloads (SIGHUP), by result", reloads);
        registry.register(
            "policy_info",
            "The policy in force: its SHA-256 and mode (always 1)",
            families.policy.clone(),
        );
        registry.register(
            "build_info",
            "The egressd build: its version and commit (always 1)",
            families.build.clone(),
        );
        registry.register(
            "responses",
            "Response bodies relayed from destinations, by how they ended (complete, cut-by-origin, cut-by-stall, cut-by-client)",
            families.responses.clone(),
        );
        registry.register_collector(Box::new(AuditLost(Box::new(audit_lost))));
        Self {
            registry: root,
            handle: Handle(Some(Arc::new(families))),
        }
    }

    /// Names the build in `egressd_build_info`: its version and the commit it was built from
    /// (`unknown` when the source was not a git checkout).
    pub fn build_info(&self, version: &str, commit: &str) {
        if let Some(families) = &self.handle.0 {
            families.build.clear();
            families
                .build
                .get_or_create(&[
                    ("version", version.to_owned()),
                    ("commit", commit.to_owned()),
                ])
                .set(1);
        }
    }

    /// A handle to count through.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// The Prometheus text exposition of every metric now.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

/// Reads the audit writer's count at each scrape.
struct AuditLost(Box<dyn Fn() -> u64 + Send + Sync>);

impl fmt::Debug for AuditLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditLost")
    }
}

impl Collector for AuditLost {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let counter = ConstCounter::new((self.0)());
        let metric = encoder.encode_descriptor(
            "audit_events_lost",
            "Audit events that could not be written (a full disk, say)",
            None,
            counter.metric_type(),
        )?;
        counter.encode(metric)
    }
}

/// Where the proxy, the stub and the app count. Cheap to clone; the default counts nothing.
#[derive(Clone, Default)]
pub struct Handle(Option<Arc<Families>>);

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handle({})", if self.0.is_some() { "on" } else { "off" })
    }
}

impl Handle {
    /// A request or tunnel ended with `decision` (`allow`, `deny`, `error`, `would-deny`) for
    /// `reason`, having moved `up` bytes to the destination and `down` back.
    pub fn request(
        &self,
        kind: Kind,
        decision: &'static str,
        reason: &'static str,
        up: u64,
        down: u64,
    ) {
        let Some(families) = &self.0 else { return };
        families
            .requests
            .get_or_create(&[
                ("decision", decision),
                ("reason", reason),
                ("kind", kind.as_str()),
            ])
            .inc();
        if up > 0 {
            families.bytes_up.inc_by(up);
        }
        if down > 0 {
            families.bytes_down.inc_by(down);
        }
    }

    /// A response body relayed from a destination ended as `end` says (`complete`,
    /// `cut-by-origin`, `cut-by-stall`, `cut-by-client`).
    pub fn response(&self, end: &'static str) {
        if let Some(families) = &self.0 {
            families.responses.get_or_create(&[("end", end)]).inc();
        }
    }

    /// The stub answered a query with `rcode` (as dig prints it) and `decision`.
    pub fn dns_query(&self, rcode: &'static str, decision: &'static str) {
        if let Some(families) = &self.0 {
            families
                .dns_queries
                .get_or_create(&[("rcode", rcode), ("decision", decision)])
                .inc();
        }
    }

    /// A client connection opened; it counts as open until the guard is dropped.
    pub fn connection(&self) -> Open {
        Open::new(self.0.as_ref().map(|f| f.open_connections.clone()))
    }

    /// A tunnel opened; it counts as open until the guard is dropped.
    pub fn tunnel(&self) -> Open {
        Open::new(self.0.as_ref().map(|f| f.open_tunnels.clone()))
    }

    /// A TCP connection to a destination took `took` to open.
    pub fn upstream_connect(&self, took: Duration) {
        if let Some(families) = &self.0 {
            families.upstream_connect.observe(took.as_secs_f64());
        }
    }

    /// An upstream resolver took `took` to answer.
    pub fn dns_lookup(&self, took: Duration) {
        if let Some(families) = &self.0 {
            families.dns_lookup.observe(took.as_secs_f64());
        }
    }

    /// A reload succeeded (`true`) or was refused.
    pub fn reloaded(&self, ok: bool) {
        if let Some(families) = &self.0 {
            match ok {
                true => families.reloads_ok.inc(),
                false => families.reloads_failed.inc(),
            };
        }
    }

    /// The policy in force is the one with `sha256`, applied in `mode`.
    pub fn policy(&self, sha256: &str, mode: &'static str) {
        if let Some(families) = &self.0 {
            families.policy.clear();
            families
                .policy
                .get_or_create(&[("sha256", sha256.to_owned()), ("mode", mode.to_owned())])
                .set(1);
        }
    }
}

/// Counts one open connection or tunnel while it lives.
#[derive(Debug)]
#[must_use = "the connection counts as open only while this lives"]
pub struct Open(Option<Gauge>);

impl Open {
    fn new(gauge: Option<Gauge>) -> Self {
        if let Some(gauge) = &gauge {
            gauge.inc();
        }
        Self(gauge)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(gauge) = &self.0 {
            gauge.dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_the_exposition_with_prometheus_names() {
        let metrics = Metrics::new(|| 7);
        let handle = metrics.handle();
        handle.request(Kind::Tunnel, "allow", "allow-rule", 10, 20);
        handle.request(Kind::Tunnel, "allow", "allow-rule", 1, 2);
        handle.request(Kind::Request, "would-deny", "default-deny", 0, 0);
        handle.request(Kind::Socks, "deny", "special-range", 0, 0);
        handle.dns_query("REFUSED", "deny");
        let open = handle.tunnel();
        handle.upstream_connect(Duration::from_millis(3));
        handle.reloaded(false);
        handle.policy("ab12", "report");
        handle.policy("cd34", "enforce");
        handle.response("cut-by-stall");
        let text = metrics.encode();
        for line in [
            "egressd_requests_total{decision=\"allow\",reason=\"allow-rule\",kind=\"tunnel\"} 2",
            "egressd_requests_total{decision=\"would-deny\",reason=\"default-deny\",kind=\"request\"} 1",
            "egressd_requests_total{decision=\"deny\",reason=\"special-range\",kind=\"socks\"} 1",
            "egressd_dns_queries_total{rcode=\"REFUSED\",decision=\"deny\"} 1",
            "egressd_open_tunnels 1",
            "egressd_proxied_bytes_total{direction=\"up\"} 11",
            "egressd_proxied_bytes_total{direction=\"down\"} 22",
            "egressd_upstream_connect_duration_seconds_count 1",
            "egressd_reloads_total{result=\"failed\"} 1",
            "egressd_reloads_total{result=\"ok\"} 0",
            "egressd_policy_info{sha256=\"cd34\",mode=\"enforce\"} 1",
            "egressd_audit_events_lost_total 7",
            "egressd_responses_total{end=\"cut-by-stall\"} 1",
            "# TYPE egressd_upstream_connect_duration_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
        assert!(!text.contains("ab12"), "the old policy is gone: {text}");
        metrics.build_info("0.1.0", "abc123");
        assert!(
            metrics
                .encode()
                .lines()
                .any(|l| l == "egressd_build_info{version=\"0.1.0\",commit=\"abc123\"} 1")
        );
        drop(open);
        assert!(
            metrics
                .encode()
                .lines()
                .any(|l| l == "egressd_open_tunnels 0")
        );
    }

    /// Before anything is counted, every family has its series, at zero, and the process
    /// metrics are there.
    #[test]
    fn every_family_is_present_from_the_start() {
        let metrics = Metrics::new(|| 0);
        let text = metrics.encode();
        for line in [
            "egressd_requests_total{decision=\"deny\",reason=\"default-deny\",kind=\"tunnel\"} 0",
            "egressd_requests_total{decision=\"allow\",reason=\"allow-rule\",kind=\"request\"} 0",
            "egressd_dns_queries_total{rcode=\"REFUSED\",decision=\"deny\"} 0",
            "egressd_open_connections 0",
            "egressd_open_tunnels 0",
            "egressd_proxied_bytes_total{direction=\"up\"} 0",
            "egressd_upstream_connect_duration_seconds_count 0",
            "egressd_dns_lookup_duration_seconds_count 0",
            "egressd_reloads_total{result=\"ok\"} 0",
            "egressd_audit_events_lost_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
        for family in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            let value: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{family} ")))
                .unwrap_or_else(|| panic!("{family}\n{text}"))
                .parse()
                .unwrap();
            assert!(value >= 0.0, "{family} {value}");
        }
        // The two info families are set by the binary as it starts (tests/metrics.rs).
    }

    #[test]
    fn a_default_handle_counts_nothing() {
        let handle = Handle::default();
        handle.request(Kind::Request, "deny", "default-deny", 1, 1);
        let _open = handle.connection();
        handle.policy("x", "enforce");
    }
}
