//! egressd's DNS stub, on loopback, UDP and TCP: the sandbox's only resolver.
//!
//! A name the policy does not allow gets REFUSED and is never sent upstream, so the sandbox can
//! neither learn addresses for direct connections nor use DNS as a tunnel. An allowed name is
//! answered from the policy's static records or forwarded upstream, and the answer is filtered:
//! CNAME chains are followed only through allowed names, and A/AAAA records in the special ranges
//! are removed unless a carve-out opens them (the DNS-rebinding defence, with the same rules as
//! the proxy). Only A, AAAA and CNAME are answered; HTTPS/SVCB get an empty answer; every other
//! type, ANY included, is REFUSED. Behaviour and limits: docs/dns.md.
//!
//! What it does not do: recursion of its own (it forwards), DNSSEC validation, or zone serving.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod answer;
mod cache;
mod config;
mod server;
mod upstream;

pub use config::StubConfig;
pub use server::Stub;
pub use upstream::UpstreamError;

/// The host's resolvers from its configuration (`/etc/resolv.conf` on Unix), for a policy that
/// names no upstreams. Empty if the configuration cannot be read.
pub fn system_upstreams() -> Vec<std::net::SocketAddr> {
    match hickory_resolver::system_conf::read_system_conf() {
        Ok((config, _)) => config
            .name_servers()
            .iter()
            .map(|ns| {
                let port = ns.connections.first().map_or(53, |c| c.port);
                std::net::SocketAddr::new(ns.ip, port)
            })
            .collect(),
        Err(error) => {
            tracing::warn!(%error, "cannot read the host's resolver configuration");
            Vec::new()
        }
    }
}
