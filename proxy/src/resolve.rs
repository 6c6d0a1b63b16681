//! Name resolution for allowed names only: the policy's static records first, then the policy's
//! upstream resolvers, or the host's resolver configuration when the policy names none.
//!
//! The hosts file is never read: the policy's `[dns.static]` is the one place to pin a name.

use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use policy::{DnsSettings, DomainName};

use crate::error::Failure;

/// Resolves names that the policy allowed.
#[derive(Clone)]
pub struct Resolver {
    settings: DnsSettings,
    upstream: Option<TokioResolver>,
    timeout: Duration,
}

/// The resolver could not be built (an unreadable system configuration, say).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up name resolution: {0}")]
pub struct ResolverSetupError(String);

impl Resolver {
    /// A resolver for `settings`. With no upstreams in the policy, the host's configuration
    /// (`/etc/resolv.conf`) is read now, so a broken one fails start-up rather than requests.
    pub fn new(settings: &DnsSettings, timeout: Duration) -> Result<Self, ResolverSetupError> {
        let builder = if settings.upstreams.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| ResolverSetupError(e.to_string()))?
        } else {
            let servers = settings
                .upstreams
                .iter()
                .map(|upstream| {
                    let mut server = NameServerConfig::udp_and_tcp(upstream.ip());
                    for connection in &mut server.connections {
                        connection.port = upstream.port();
                    }
                    server
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        let mut builder = builder;
        let options = builder.options_mut();
        options.use_hosts_file = ResolveHosts::Never;
        options.timeout = timeout;
        options.attempts = 1;
        // Names arrive fully qualified from the sandbox; never append search domains.
        options.ndots = 0;
        let upstream = builder
            .build()
            .map_err(|e| ResolverSetupError(e.to_string()))?;
        Ok(Self {
            settings: settings.clone(),
            upstream: Some(upstream),
            timeout,
        })
    }

    /// All addresses of `name`, in the resolver's order.
    pub async fn resolve(&self, name: &DomainName) -> Result<Vec<IpAddr>, Failure> {
        if let Some(addrs) = self.settings.static_records.get(name) {
            return Ok(addrs.clone());
        }
        let Some(upstream) = &self.upstream else {
            return Err(Failure::NoAddress);
        };
        // A trailing dot makes the name absolute: no search list, no ndots games.
        let fqdn = format!("{name}.");
        match tokio::time::timeout(self.timeout, upstream.lookup_ip(fqdn.as_str())).await {
            Err(_) => Err(Failure::DnsTimeout),
            Ok(Ok(lookup)) => {
                let addrs: Vec<IpAddr> = lookup.iter().collect();
                if addrs.is_empty() {
                    Err(Failure::NoAddress)
                } else {
                    Ok(addrs)
                }
            }
            Ok(Err(e)) if e.is_no_records_found() || e.is_nx_domain() => Err(Failure::NoAddress),
            Ok(Err(NetError::Timeout)) => Err(Failure::DnsTimeout),
            Ok(Err(e)) => Err(Failure::Dns(e.to_string())),
        }
    }
}
