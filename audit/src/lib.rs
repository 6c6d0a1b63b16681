//! egressd's audit trail: one typed event for every request, tunnel, DNS query and lifecycle step,
//! one encoder that turns an event into a JSON line, and one sink that writes the lines.
//!
//! The proxy and the DNS stub build events from the types here ([`Request`], [`DnsQuery`],
//! [`Lifecycle`]); field names are the constants of [`fields`], shared with the tests that read the
//! lines back. An event is encoded where it happens, into a reused buffer, and handed to a writer
//! thread ([`Batched`]) that writes lines in batches: audit events are the one log line a
//! sandbox causes per request or query, so their cost is measured (docs/benchmarks.md).
//!
//! What this crate does not do: the human log. That is `tracing`'s job in the binary, which shares
//! only the JSON string escaping ([`json`]) and the writer thread with it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod batch;
mod event;
pub mod fields;
pub mod json;
mod output;
mod sink;

pub use batch::{Batched, Guard, LostCount, spawn_writer};
pub use event::{DnsQuery, Event, Lifecycle, Lost, Request, ResponseEnd, Socks, Step, Verdict};
pub use output::{Destination, OnFailure};
pub use sink::{Recorded, Sink};

/// The value of every audit line's `target` field (and of the tracing target that earlier
/// versions logged audit events on), so one filter finds them in a mixed log.
pub const TARGET: &str = "egressd::audit";
