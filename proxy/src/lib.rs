//! egressd's HTTP forward proxy: `CONNECT host:port` tunnels and absolute-form requests
//! (`GET http://host/path`), HTTP/1.1 and 1.0, on loopback or a Unix socket.
//!
//! Every request is decided by the [`policy`] crate before anything is dialed: the name first (a
//! denied name is never resolved), then every address it resolves to; egressd connects only to an
//! address that passed, and never resolves twice. Attribution headers replace whatever the client
//! sent under the same names; hop-by-hop headers are stripped. One audit event is emitted per
//! request or tunnel on the [`AUDIT_TARGET`] tracing target.
//!
//! What this crate does not do: terminate TLS (`https://` URLs must be tunneled with CONNECT),
//! HTTP/2 to clients, or its own logging setup (the binary installs the subscriber).
#![forbid(unsafe_code)]

mod audit;
mod body;
mod config;
mod connector;
mod error;
mod headers;
mod resolve;
mod route;
mod server;
mod service;
mod tunnel;

pub use audit::AUDIT_TARGET;
pub use config::{Limits, ParentProxy, ProxyConfig};
pub use error::Failure;
pub use headers::{Attribution, strip_hop_by_hop};
pub use resolve::{Resolver, ResolverSetupError};
pub use server::{Listener, Proxy};
pub use service::{REASON_HEADER, RULE_HEADER};
