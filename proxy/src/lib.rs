//! egressd's HTTP forward proxy: `CONNECT host:port` tunnels and absolute-form requests
//! (`GET http://host/path`), HTTP/1.1 and 1.0, on loopback or a Unix socket, served by the shared
//! [`serve`] loop.
//!
//! Every request is decided by the [`policy`] crate before anything is dialed, once: the name
//! first (a denied name is never resolved), then every address the shared [`resolve`] resolver
//! keeps for it, checked again on the requested port; egressd connects only to an address that
//! passed, and never resolves twice. Attribution headers replace whatever the client sent under
//! the same names; hop-by-hop headers are stripped. One [`audit::Request`] event is emitted per
//! request or tunnel.
//!
//! The path of a request, file by file: `handler` (connection, dispatch; the generation in `context`) →
//! `connect` or `forward` (with `upload` for the request body) → `route` (resolve, check, dial)
//! or `parent` (chaining) → `tunnel` / the origin connection pool (`pool`, dialing through `connector`) → `respond` for refusals,
//! `audit` for the event. docs/architecture.md draws it. Between the client's socket and hyper
//! sits `client_io`, which keeps hyper's own error responses off the wire; `edge` answers the
//! requests hyper gave up on (heads too large or malformed, the HTTP/2 preface) instead.
//!
//! Imports point down: what several files share lives in a module of its own below them, never
//! in the first file that used it: `context` (the proxy's, the generation's and a connection's
//! state), `target` (reading and spelling a destination), `limits`, `progress` (an upload's),
//! `inspect::config`, `inspect::session`; the one report-mode address check is
//! `route::address_passes`. The dispatcher (`handler`) imports its workers, never the reverse.
//!
//! TLS is terminated only for the hosts a policy rule marks `inspect = true` (`inspect`: a CA of
//! egressd's own, leaf certificates per name, request rules, brokered credentials); every other
//! CONNECT is an opaque tunnel. What this crate does not do: HTTP/2 to clients (the preface gets a
//! GOAWAY saying so), `https://` URLs in absolute form (they must be tunneled with CONNECT), or its
//! own logging setup (the binary
//! installs the subscriber).
#![forbid(unsafe_code)]

mod audit;
mod body;
mod client_io;
mod config;
mod connect;
mod connector;
mod context;
mod credential;
mod edge;
mod error;
mod forward;
mod handler;
mod headers;
mod inspect;
mod limits;
mod open;
mod parent;
mod pool;
mod progress;
mod refusal;
mod refused_tunnel;
mod respond;
mod route;
pub mod socks;
mod target;
mod tunnel;
mod upload;

pub use config::ProxyConfig;
pub use credential::{Credential, MIN_SECRET_LEN, SecretError, USER as CREDENTIAL_USER};
pub use error::Failure;
pub use handler::Proxy;
pub use headers::{Attribution, strip_hop_by_hop};
pub use inspect::{
    CaError, CertificateAuthority, CredentialValueError, InspectConfig, LEAF_LIFETIME, Secrets,
    certificate_pem,
};
pub use limits::Limits;
pub use parent::ParentProxy;
pub use respond::{REASON_HEADER, RULE_HEADER};

#[cfg(test)]
mod tests;
