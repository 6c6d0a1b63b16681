//! From a requested destination to an open TCP connection, deciding before dialing:
//! name decision → resolution (allowed names only) → every address re-checked → dial only
//! addresses that passed, in order, each under the connect timeout. The addresses dialed are the
//! ones checked: nothing is resolved twice.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use policy::{Decision, Host, Policy, Target};
use tokio::net::TcpStream;

use crate::config::Limits;
use crate::error::Failure;
use crate::resolve::Resolver;

/// What routing needs: the policy and resolver of one generation, and the limits.
pub struct Router {
    pub(crate) policy: Arc<Policy>,
    pub(crate) resolver: Resolver,
    pub(crate) limits: Limits,
}

/// An open connection to an address that passed the policy.
pub struct Routed {
    /// The connection.
    pub stream: TcpStream,
    /// The address it reached.
    pub addr: SocketAddr,
    /// The decision that allowed it.
    pub decision: Decision,
}

impl Router {
    /// The policy decision for the destination as named; `Err` when it is refused.
    pub fn decide(&self, target: &Target) -> Result<Decision, Failure> {
        let decision = self.policy.decide(target);
        if decision.is_allowed() {
            Ok(decision)
        } else {
            Err(Failure::Denied(decision))
        }
    }

    /// Decides, resolves and connects.
    pub async fn connect(&self, target: &Target) -> Result<Routed, Failure> {
        let decision = self.decide(target)?;
        let candidates: Vec<(IpAddr, Decision)> = match &target.host {
            Host::Ip(ip) => vec![(*ip, decision)],
            Host::Name(name) => {
                let addrs = self.resolver.resolve(name).await?;
                let checked: Vec<(IpAddr, Decision)> = addrs
                    .into_iter()
                    .map(|addr| {
                        (
                            addr,
                            self.policy.check_resolved(&decision, addr, target.port),
                        )
                    })
                    .collect();
                if let Some((addr, refused)) = checked.iter().find(|(_, d)| !d.is_allowed()) {
                    if checked.iter().all(|(_, d)| !d.is_allowed()) {
                        return Err(Failure::AddressesDenied {
                            addr: *addr,
                            decision: refused.clone(),
                        });
                    }
                    tracing::debug!(%addr, reason = refused.reason.code(), "skipping refused address");
                }
                checked
                    .into_iter()
                    .filter(|(_, d)| d.is_allowed())
                    .collect()
            }
            // `decide` refuses malformed hosts, so this arm is never reached with an allow.
            Host::Malformed(_) => return Err(Failure::BadRequest("malformed host")),
        };
        let mut last = None;
        for (ip, decision) in candidates {
            let addr = SocketAddr::new(ip, target.port);
            match dial(addr, self.limits.connect_timeout).await {
                Ok(stream) => {
                    return Ok(Routed {
                        stream,
                        addr,
                        decision,
                    });
                }
                Err(failure) => last = Some(failure),
            }
        }
        Err(last.unwrap_or(Failure::NoAddress))
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
        Ok(Err(error)) => Err(Failure::Connect { addr, error }),
        Err(_) => Err(Failure::ConnectTimeout { addr }),
    }
}
