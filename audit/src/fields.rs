//! Field names of audit lines: the launcher contract (docs/launcher.md, docs/dns.md). Tests read
//! lines back by these names, never by substrings.

/// When the event was written, RFC 3339 with microseconds, UTC.
pub const TIMESTAMP: &str = "timestamp";
/// Always `INFO`: kept so audit lines have the shape of the JSON log's lines.
pub const LEVEL: &str = "level";
/// What kind of event: [`crate::Request::MESSAGE`], [`crate::Socks::MESSAGE`],
/// [`crate::DnsQuery::MESSAGE`], [`crate::Lifecycle::MESSAGE`].
pub const MESSAGE: &str = "message";
/// Always [`crate::TARGET`].
pub const TARGET: &str = "target";

/// The sandbox's identity, as given to `egressd run --sandbox-id`.
pub const SANDBOX_ID: &str = "sandbox_id";
/// Where the request or query came from: `IP:PORT`, or `unix`.
pub const CLIENT: &str = "client";
/// `allow`, `deny` or `error`; in report mode also `would-deny` (requests) and `would-refuse`
/// (DNS queries).
pub const DECISION: &str = "decision";
/// A policy reason code or a failure code.
pub const REASON: &str = "reason";
/// The deciding rule's label (`allow[0] line 13`), or empty.
pub const RULE: &str = "rule";

/// HTTP method (`CONNECT` for tunnels).
pub const METHOD: &str = "method";
/// The CONNECT authority or the absolute URL, as requested.
pub const DESTINATION: &str = "destination";
/// The address connected to, or empty.
pub const RESOLVED: &str = "resolved";
/// The status sent to the client.
pub const STATUS: &str = "status";
/// Body (or tunnel) bytes client → destination.
pub const BYTES_UP: &str = "bytes_up";
/// Body (or tunnel) bytes destination → client.
pub const BYTES_DOWN: &str = "bytes_down";
/// From the request head to the end, in milliseconds.
pub const DURATION_MS: &str = "duration_ms";
/// How a relayed response body ended: `complete`, `cut-by-origin`, `cut-by-stall`,
/// `cut-by-client`; empty when none was relayed.
pub const RESPONSE_END: &str = "response_end";

/// The SOCKS command (`CONNECT`, `BIND`, `UDP ASSOCIATE`, `UNKNOWN`).
pub const COMMAND: &str = "command";
/// The SOCKS reply code sent (RFC 1928 §6); absent when none was.
pub const REPLY: &str = "reply";

/// `udp` or `tcp`.
pub const TRANSPORT: &str = "transport";
/// The name asked.
pub const NAME: &str = "name";
/// The type asked.
pub const QTYPE: &str = "qtype";
/// The response code sent.
pub const RCODE: &str = "rcode";
/// Records sent.
pub const ANSWERS: &str = "answers";
/// Records the policy removed.
pub const STRIPPED: &str = "stripped";
/// Served from the cache.
pub const CACHED: &str = "cached";
/// Time the upstream resolver took, in milliseconds; absent when none was asked.
pub const UPSTREAM_MS: &str = "upstream_ms";

/// The lifecycle step: `ready`, `reloaded`, `reload-failed`, `stopping`.
pub const EVENT: &str = "event";
/// Where the policy in force came from.
pub const POLICY: &str = "policy";
/// SHA-256 of the policy in force.
pub const SHA256: &str = "sha256";
/// Why a step failed, or why egressd stops.
pub const DETAIL: &str = "detail";
/// How the policy in force is applied: `enforce` or `report`.
pub const MODE: &str = "mode";

/// Audit events that could not be written (`audit events lost`).
pub const LOST: &str = "lost";
/// Why they could not be written.
pub const ERROR: &str = "error";
/// When the loss began.
pub const SINCE: &str = "since";
