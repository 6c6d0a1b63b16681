//! From an allowed destination to an open TCP connection: resolution (names only, through the
//! shared resolver and its chain filter) → every address checked again on this port → dial only
//! addresses that passed, in order, each under the connect timeout. The addresses dialed are the
//! ones checked: nothing is resolved twice. The name itself was decided by the caller, once.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use policy::{Decision, DomainName, Host, Policy, Reason, Target};
use resolve::{Removed, ResolveError, Resolver, UpstreamError};
use tokio::net::TcpStream;

use crate::error::Failure;
use crate::limits::Limits;

/// What routing needs: one generation's resolver (and its policy), and the limits.
pub struct Router {
    pub(crate) resolver: Arc<Resolver>,
    pub(crate) limits: Limits,
    pub(crate) metrics: metrics::Handle,
}

/// An open connection to an address that passed the policy.
pub struct Opened {
    /// The connection.
    pub stream: TcpStream,
    /// The address it reached.
    pub addr: SocketAddr,
}

impl Router {
    /// The policy in force for this generation.
    pub fn policy(&self) -> &Policy {
        self.resolver.policy()
    }

    /// The same, shared: for a request's record ([`crate::audit::Audit::under`]).
    pub fn shared_policy(&self) -> Arc<Policy> {
        self.resolver.policy().clone()
    }

    /// The policy decision for the destination as named; `Err` when it is refused (a malformed
    /// destination is the client's error, 400). In report mode a refusal the mode lets through
    /// is `Ok` with the refusal itself: the caller serves it, and its audit says `would-deny`.
    pub fn decide(&self, target: &Target) -> Result<Decision, Failure> {
        let decision = self.policy().decide(target);
        match decision.reason {
            _ if decision.is_allowed() => Ok(decision),
            _ if self.policy().reports_target(target, &decision) => Ok(decision),
            Reason::MalformedTarget { why } => Err(Failure::MalformedTarget(why)),
            _ => Err(Failure::Denied(decision)),
        }
    }

    /// The decision an allowed request to `addr` is audited with: the name's `decision`, or in
    /// report mode the refusal of the address itself (a CIDR deny rule) when the name passed but
    /// the address would not have. Only for addresses dialed directly (not a parent proxy's).
    pub fn settle(&self, decision: Decision, addr: Option<SocketAddr>) -> Decision {
        match addr {
            Some(addr) if decision.is_allowed() && self.policy().mode() == policy::Mode::Report => {
                match self.policy().check_address(addr.ip(), addr.port()) {
                    Err(refused) => refused,
                    Ok(_) => decision,
                }
            }
            _ => decision,
        }
    }

    /// Resolves (names only), checks every address and connects to the first that answers.
    /// Call only for a destination [`Router::decide`] allowed.
    pub async fn open(&self, target: &Target) -> Result<Opened, Failure> {
        let candidates = match &target.host {
            // An IP literal was judged whole by `decide`: special ranges and CIDR rules included.
            Host::Ip(ip) => vec![*ip],
            Host::Name(name) => self.addresses(name, target.port).await?,
            Host::Malformed(_) => return Err(Failure::BadRequest("malformed host")),
        };
        let mut last = None;
        for ip in candidates {
            let addr = SocketAddr::new(ip, target.port);
            let started = std::time::Instant::now();
            match dial(addr, self.limits.connect_timeout).await {
                Ok(stream) => {
                    self.metrics.upstream_connect(started.elapsed());
                    return Ok(Opened { stream, addr });
                }
                Err(failure) => last = Some(failure),
            }
        }
        Err(last.unwrap_or(Failure::NoAddress))
    }

    /// The addresses of `name` that may be connected to on `port`, in the resolver's order.
    async fn addresses(&self, name: &DomainName, port: u16) -> Result<Vec<IpAddr>, Failure> {
        let found = tokio::time::timeout(self.limits.dns_timeout, self.resolver.addresses(name))
            .await
            .map_err(|_| Failure::DnsTimeout)?
            .map_err(resolve_failure)?;
        let mut refused: Option<(IpAddr, Decision)> = None;
        let policy = self.policy();
        let mut allowed = Vec::new();
        for &addr in &found.kept {
            match address_passes(policy, addr, port) {
                Ok(()) => allowed.push(addr),
                Err(decision) => {
                    tracing::debug!(%addr, reason = decision.reason.code(), "skipping refused address");
                    refused.get_or_insert((addr, decision));
                }
            }
        }
        // Report mode: addresses the resolver removed that the mode lets through (only a deny
        // rule refuses them) are dialed too, after the allowed ones; special ranges never.
        allowed.extend(found.removed.iter().filter_map(|removed| match removed {
            Removed::Address { addr, .. } if address_passes(policy, *addr, port).is_ok() => {
                Some(*addr)
            }
            _ => None,
        }));
        if !allowed.is_empty() {
            return Ok(allowed);
        }
        for removed in found.removed {
            match removed {
                Removed::Cname { target, decision } => {
                    return Err(Failure::ChainDenied {
                        via: target,
                        decision,
                    });
                }
                Removed::Address { addr, decision } => {
                    refused.get_or_insert((addr, decision));
                }
                Removed::OffChain => {}
            }
        }
        match refused {
            Some((addr, decision)) => Err(Failure::AddressesDenied { addr, decision }),
            None => Err(Failure::NoAddress),
        }
    }
}

/// The address check every path makes before a connection goes to `addr` on `port`: `Ok` when
/// `policy` allows it, or refuses it in a way report mode lets through (a deny rule; never a
/// special range that no carve-out opens on `port`); otherwise the refusal.
pub(crate) fn address_passes(policy: &Policy, addr: IpAddr, port: u16) -> Result<(), Decision> {
    match policy.check_address(addr, port) {
        Ok(_) => Ok(()),
        Err(decision) if policy.reports_address(&decision, addr, port) => Ok(()),
        Err(decision) => Err(decision),
    }
}

fn resolve_failure(error: ResolveError) -> Failure {
    match error {
        ResolveError::Upstream(UpstreamError::Timeout) => Failure::DnsTimeout,
        other => Failure::Dns(other.to_string()),
    }
}

/// Connects to `addr` within `timeout`, with Nagle off: small writes (TLS handshakes, request
/// heads) must not wait.
pub(crate) async fn dial(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, Failure> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        // No descriptor, buffer or memory for the socket: egressd's fault, not the destination's.
        Ok(Err(error)) if serve::is_shortage(&error) => {
            Err(Failure::ProxyResources(Arc::new(error)))
        }
        Ok(Err(error)) => Err(Failure::Connect {
            addr,
            error: Arc::new(error),
        }),
        Err(_) => Err(Failure::ConnectTimeout { addr }),
    }
}
