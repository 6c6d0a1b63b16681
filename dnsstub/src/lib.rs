//! egressd's DNS stub, on loopback, over UDP and streams (TCP): the sandbox's only resolver.
//!
//! A name the policy does not allow gets REFUSED and is never sent upstream, so the sandbox can
//! neither learn addresses for direct connections nor use DNS as a tunnel. An allowed name is
//! answered by the [`resolve`] crate's resolver (static records, cache, upstream), the same one
//! the proxy asks, through the same chain filter: CNAME chains are followed only through allowed
//! names, and A/AAAA records in the special ranges are removed unless a carve-out opens them (the
//! DNS-rebinding defence). Only A, AAAA and CNAME are answered; HTTPS/SVCB get an empty answer;
//! every other type, ANY included, is REFUSED. Behaviour and limits: docs/dns.md.
//!
//! The crate is split by job: [`classify`] (the first decision, pure), [`wire`] (building and
//! encoding replies), `stub` (one query to one reply and one audit event), `udp` and `stream`
//! (transports, on the shared serve loop).
//!
//! What it does not do: recursion of its own (the resolver forwards), DNSSEC validation, or zone
//! serving.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod classify;
mod config;
mod stream;
mod stub;
mod udp;
pub mod wire;

pub use config::StubConfig;
pub use stub::Stub;
