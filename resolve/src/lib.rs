//! egressd's one resolver, asked by the proxy and the DNS stub alike, so they agree on every
//! name: the policy's static records first, then a cache, then the upstream resolvers; every
//! answer goes through one chain filter ([`chain`]) before anyone sees it.
//!
//! Only names the policy allows are ever asked (the callers decide first). A [`Resolver`] belongs
//! to one policy generation: a reload builds a new one, with an empty cache, so nothing cached
//! under an old policy is served under a new one.
//!
//! Why our own forwarder and not hickory-resolver (which the proxy used before): the stub needs
//! the upstream's message itself (rcode, TTLs, CNAME records) to filter and answer, hickory's
//! lookup flattens CNAME chains before a caller can judge them, and measured on loopback our
//! forwarder costs less per lookup (docs/benchmarks.md, "Resolver").
//!
//! What it does not do: recursion, DNSSEC validation, the hosts file (the policy's
//! `[dns.static]` is the one place to pin a name), search domains.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cache;
pub mod chain;
mod system;
pub mod upstream;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};
use policy::{DomainName, Policy};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use chain::{Answer, Removed};
pub use system::system_upstreams;
pub use upstream::UpstreamError;

use cache::Cache;

/// Resolver settings that do not come from the policy; documented in docs/dns.md.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// TTLs are capped to this many seconds, so a policy change or a rebinding attempt is not
    /// outlived by a client's cache for long.
    pub max_ttl: u32,
    /// Negative answers (NXDOMAIN, no data, everything removed) are cached at most this long.
    pub negative_ttl: u32,
    /// TTL of answers from the policy's static records.
    pub static_ttl: u32,
    /// Time allowed for each upstream resolver.
    pub upstream_timeout: Duration,
    /// Upstream lookups in flight at once, for the proxy and the stub together.
    pub max_lookups: usize,
    /// Cached answers kept at most.
    pub cache_entries: usize,
}

impl Settings {
    /// The defaults.
    pub const DEFAULT: Self = Self {
        max_ttl: 300,
        negative_ttl: 60,
        static_ttl: 60,
        upstream_timeout: Duration::from_secs(2),
        max_lookups: 256,
        cache_entries: 4096,
    };
}

impl Default for Settings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a name could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No upstream resolver could answer.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The upstream answered with a failure (SERVFAIL, REFUSED, ...).
    #[error("the upstream resolver answered {0}")]
    Failed(ResponseCode),
}

/// A question: the canonical name (policy subject and cache key), the name as asked (owner of
/// the records answered), and the type.
#[derive(Clone, Debug)]
pub struct Question {
    /// Canonical.
    pub name: DomainName,
    /// As asked.
    pub owner: Name,
    /// The type.
    pub qtype: RecordType,
}

impl Question {
    /// A question asked as `owner`, whose canonical form is `name`.
    pub fn asked(owner: Name, name: DomainName, qtype: RecordType) -> Self {
        Self { name, owner, qtype }
    }

    /// A question for a canonical name (the proxy's).
    pub fn new(name: DomainName, qtype: RecordType) -> Self {
        // A canonical name is a valid DNS name; the fallback is never taken.
        let owner = Name::from_ascii(format!("{name}.")).unwrap_or_else(|_| Name::root());
        Self { name, owner, qtype }
    }
}

/// Where an answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The policy's `[dns.static]`.
    Static,
    /// The cache.
    Cache,
    /// An upstream resolver, which took this long.
    Upstream(Duration),
}

/// An answer and where it came from.
#[derive(Clone, Debug)]
pub struct Answered {
    /// The filtered answer.
    pub answer: Answer,
    /// Where it came from.
    pub source: Source,
}

/// A place among the upstream lookups in flight.
pub struct LookupPermit(#[allow(dead_code)] OwnedSemaphorePermit);

/// The bound on upstream lookups in flight, shared by every generation's resolver.
#[derive(Clone)]
pub struct Lookups(Arc<Semaphore>);

impl Lookups {
    /// At most `max` at once.
    pub fn new(max: usize) -> Self {
        Self(Arc::new(Semaphore::new(max)))
    }
}

/// Addresses of a name for the proxy: what the chain filter kept (A then AAAA), and what it
/// removed.
#[derive(Clone, Debug, Default)]
pub struct Addresses {
    /// Addresses that may be connected to (after the port-specific check the proxy adds).
    pub kept: Vec<IpAddr>,
    /// What the policy removed.
    pub removed: Vec<Removed>,
}

/// The resolver of one policy generation.
pub struct Resolver {
    policy: Arc<Policy>,
    upstreams: Vec<SocketAddr>,
    cache: Cache,
    settings: Settings,
    lookups: Lookups,
    metrics: metrics::Handle,
}

impl Resolver {
    /// A resolver for `policy`: its `[dns] upstreams`, or `system` when it names none.
    pub fn new(
        policy: Arc<Policy>,
        system: &[SocketAddr],
        settings: &Settings,
        lookups: Lookups,
    ) -> Self {
        let upstreams = if policy.dns().upstreams.is_empty() {
            system.to_vec()
        } else {
            policy.dns().upstreams.clone()
        };
        Self {
            cache: Cache::new(settings.cache_entries),
            policy,
            upstreams,
            settings: settings.clone(),
            lookups,
            metrics: metrics::Handle::default(),
        }
    }

    /// The same resolver, timing its upstream lookups into `metrics`.
    pub fn with_metrics(mut self, metrics: metrics::Handle) -> Self {
        self.metrics = metrics;
        self
    }

    /// The policy this resolver filters for.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// The answer that needs no I/O: a static record, or a cached answer (TTLs aged).
    pub fn answer_now(&self, question: &Question) -> Option<Answered> {
        if let Some(addrs) = self.policy.dns().static_records.get(&question.name) {
            let answer =
                chain::static_answer(&self.policy, question, addrs, self.settings.static_ttl);
            return Some(Answered {
                answer,
                source: Source::Static,
            });
        }
        let answer = self
            .cache
            .get(question.name.as_str(), question.qtype, Instant::now())?;
        Some(Answered {
            answer,
            source: Source::Cache,
        })
    }

    /// A place among the lookups in flight, if one is free now.
    pub fn try_lookup_permit(&self) -> Option<LookupPermit> {
        self.lookups
            .0
            .clone()
            .try_acquire_owned()
            .ok()
            .map(LookupPermit)
    }

    /// A place among the lookups in flight, waiting for one.
    pub async fn lookup_permit(&self) -> LookupPermit {
        // The semaphore is never closed, so acquiring cannot fail.
        let permit = self.lookups.0.clone().acquire_owned().await;
        LookupPermit(
            permit.unwrap_or_else(|_| unreachable!("the lookup semaphore is never closed")),
        )
    }

    /// Asks the upstream resolvers (the caller holds a [`LookupPermit`]), filters the answer
    /// and caches it.
    pub async fn answer_upstream(
        &self,
        question: &Question,
        _permit: &LookupPermit,
    ) -> Result<Answered, ResolveError> {
        let query = upstream::query_for(&question.owner, question.qtype, rand::random());
        let started = Instant::now();
        let reply = upstream::ask(&self.upstreams, &query, self.settings.upstream_timeout).await?;
        let took = started.elapsed();
        self.metrics.dns_lookup(took);
        let answer = chain::filter(&self.policy, question, &reply, &self.settings);
        self.cache.put(
            question.name.as_str(),
            question.qtype,
            answer.clone(),
            Instant::now(),
        );
        Ok(Answered {
            answer,
            source: Source::Upstream(took),
        })
    }

    /// One answer, by whatever path it takes (waiting for a lookup place if needed).
    pub async fn answer(&self, question: &Question) -> Result<Answered, ResolveError> {
        if let Some(answered) = self.answer_now(question) {
            return Ok(answered);
        }
        let permit = self.lookup_permit().await;
        self.answer_upstream(question, &permit).await
    }

    /// Every address of `name` the chain filter keeps, IPv4 first, for the proxy: A and AAAA
    /// are asked at once. A failure of one family is reported only if the other has no address
    /// and the policy removed nothing from it: a name whose answers were all refused (special
    /// ranges, a refused CNAME target) is refused for that, not for a lookup that failed beside
    /// it, so the refusal says what an allow rule cannot change.
    pub async fn addresses(&self, name: &DomainName) -> Result<Addresses, ResolveError> {
        let v4 = Question::new(name.clone(), RecordType::A);
        let v6 = Question::new(name.clone(), RecordType::AAAA);
        let (v4, v6) = tokio::join!(self.answer(&v4), self.answer(&v6));
        let mut found = Addresses::default();
        let mut failure = None;
        for result in [v4, v6] {
            match result.map(|a| a.answer) {
                Ok(answer) if answer.rcode == ResponseCode::ServFail => {
                    failure.get_or_insert(ResolveError::Failed(answer.rcode));
                }
                Ok(answer) => {
                    found.kept.extend(answer.addresses());
                    found.removed.extend(answer.removed);
                }
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        let refused = found
            .removed
            .iter()
            .any(|removed| !matches!(removed, Removed::OffChain));
        match failure {
            Some(error) if found.kept.is_empty() && !refused => Err(error),
            _ => Ok(found),
        }
    }
}

#[cfg(test)]
mod tests;
