//! The stub's listeners (UDP and TCP on one address), the cache and upstream path, and audit
//! events.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, ResponseCode};
use policy::Policy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::answer::{self, Action, Forward, Reply};
use crate::cache::Cache;
use crate::config::StubConfig;
use crate::upstream;

/// Largest DNS message over TCP (RFC 1035 §4.2.2: a two-byte length).
const MAX_TCP_MESSAGE: usize = 65535;
/// Receive buffer for UDP queries; a larger datagram is cut, fails to parse, and gets FORMERR.
const UDP_BUFFER: usize = 4096;

struct Generation {
    policy: Arc<Policy>,
    upstreams: Vec<SocketAddr>,
    cache: Cache,
}

struct Shared {
    generation: ArcSwap<Generation>,
    config: StubConfig,
    system_upstreams: Vec<SocketAddr>,
    lookups: Arc<Semaphore>,
    tcp_connections: Arc<Semaphore>,
    tracker: TaskTracker,
}

/// The DNS stub. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Stub {
    shared: Arc<Shared>,
}

/// What an audit event says about one query.
struct Outcome<'a> {
    client: &'a (dyn fmt::Display + Sync),
    transport: &'static str,
    reply: &'a Message,
    name: Option<&'a str>,
    qtype: Option<String>,
    decision: Option<&'a policy::Decision>,
    stripped: usize,
    cached: bool,
    upstream_ms: Option<f64>,
}

impl Stub {
    /// A stub answering for `policy`. `system_upstreams` are used when the policy names no
    /// `[dns] upstreams` (the caller reads them from the host's resolver configuration).
    pub fn new(policy: Policy, config: StubConfig, system_upstreams: Vec<SocketAddr>) -> Self {
        let lookups = Arc::new(Semaphore::new(config.max_upstream_lookups));
        let tcp_connections = Arc::new(Semaphore::new(config.max_tcp_connections));
        let generation = Self::generation(policy, &config, &system_upstreams);
        let shared = Shared {
            generation: ArcSwap::from_pointee(generation),
            config,
            system_upstreams,
            lookups,
            tcp_connections,
            tracker: TaskTracker::new(),
        };
        Self {
            shared: Arc::new(shared),
        }
    }

    fn generation(policy: Policy, config: &StubConfig, system: &[SocketAddr]) -> Generation {
        let upstreams = if policy.dns().upstreams.is_empty() {
            system.to_vec()
        } else {
            policy.dns().upstreams.clone()
        };
        Generation {
            policy: Arc::new(policy),
            upstreams,
            cache: Cache::new(config.cache_entries),
        }
    }

    /// Replaces the policy (and empties the cache): answers cached under the old policy are never
    /// served under the new one.
    pub fn reload(&self, policy: Policy) {
        let generation =
            Self::generation(policy, &self.shared.config, &self.shared.system_upstreams);
        self.shared.generation.store(Arc::new(generation));
    }

    /// Tasks answering queries, for draining at shutdown.
    pub fn tasks(&self) -> TaskTracker {
        self.shared.tracker.clone()
    }

    /// Answers queries on `socket` until `shutdown`. Local and cached answers (REFUSED, FORMERR,
    /// static records) are sent inline; upstream lookups run as tasks, at most
    /// [`StubConfig::max_upstream_lookups`] at once. Several loops may share one socket (one per
    /// core, say). Returns an error only if the socket fails.
    pub async fn serve_udp(
        &self,
        socket: Arc<UdpSocket>,
        shutdown: CancellationToken,
    ) -> io::Result<()> {
        let mut buf = vec![0u8; UDP_BUFFER];
        loop {
            let (n, peer) = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                received = socket.recv_from(&mut buf) => match received {
                    Ok(received) => received,
                    // ICMP errors from earlier sends surface here on some systems; not fatal.
                    Err(e) if is_transient(&e) => continue,
                    Err(e) => return Err(e),
                },
            };
            let generation = self.shared.generation.load_full();
            // Formatted only into the audit line, never allocated on its own.
            let client: &(dyn fmt::Display + Sync) = &peer;
            match answer::classify(&buf[..n], &generation.policy, &self.shared.config) {
                Action::Drop => {
                    tracing::debug!(%client, bytes = n, "dropped a packet that is not a query")
                }
                Action::Reply(reply) => {
                    if let Some(bytes) = self.local(&reply, client, "udp", reply.udp_limit) {
                        let _ = socket.send_to(&bytes, peer).await;
                    }
                }
                Action::Forward(forward) => {
                    let limit = answer::udp_limit(Some(&forward.query));
                    if let Some(cached) =
                        self.cached_reply(&generation, &forward, client, "udp", limit)
                    {
                        if let Some(bytes) = cached {
                            let _ = socket.send_to(&bytes, peer).await;
                        }
                        continue;
                    }
                    let Ok(permit) = self.shared.lookups.clone().try_acquire_owned() else {
                        if let Some(bytes) = overloaded(&forward, client, limit) {
                            let _ = socket.send_to(&bytes, peer).await;
                        }
                        continue;
                    };
                    let (stub, socket) = (self.clone(), socket.clone());
                    self.shared.tracker.spawn(async move {
                        let _permit = permit;
                        let limit = answer::udp_limit(Some(&forward.query));
                        if let Some(bytes) = stub
                            .resolve(&generation, &forward, &peer, "udp", limit)
                            .await
                        {
                            let _ = socket.send_to(&bytes, peer).await;
                        }
                    });
                }
            }
        }
    }

    /// Answers length-prefixed queries on TCP connections until `shutdown`.
    pub async fn serve_tcp(
        &self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> io::Result<()> {
        loop {
            let (stream, peer) = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) if is_transient(&e) => continue,
                    Err(e) => return Err(e),
                },
            };
            let Ok(permit) = self.shared.tcp_connections.clone().try_acquire_owned() else {
                tracing::warn!(client = %peer, "too many DNS TCP connections; closing");
                continue;
            };
            let (stub, shutdown) = (self.clone(), shutdown.clone());
            self.shared.tracker.spawn(async move {
                let _permit = permit;
                if let Err(error) = stub
                    .serve_tcp_connection(stream, peer.to_string(), shutdown)
                    .await
                {
                    tracing::debug!(client = %peer, %error, "DNS TCP connection ended");
                }
            });
        }
    }

    async fn serve_tcp_connection(
        &self,
        mut stream: TcpStream,
        client: String,
        shutdown: CancellationToken,
    ) -> io::Result<()> {
        let idle = self.shared.config.tcp_idle_timeout;
        loop {
            let len = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                len = tokio::time::timeout(idle, stream.read_u16()) => match len {
                    Err(_) => return Ok(()),
                    Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                    Ok(len) => usize::from(len?),
                },
            };
            let mut buf = vec![0u8; len];
            tokio::time::timeout(idle, stream.read_exact(&mut buf))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "partial query"))??;
            let Some(response) = self.answer(&buf, &client, "tcp", MAX_TCP_MESSAGE).await else {
                continue;
            };
            // `encode` kept the response within MAX_TCP_MESSAGE, so it fits the length prefix.
            let len = u16::try_from(response.len())
                .map_err(|_| io::Error::other("response too large"))?;
            let mut framed = Vec::with_capacity(response.len() + 2);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(&response);
            stream.write_all(&framed).await?;
        }
    }

    /// Answers one query end to end (for TCP, and for callers that bring their own transport).
    pub async fn answer(
        &self,
        bytes: &[u8],
        client: &str,
        transport: &'static str,
        limit: usize,
    ) -> Option<Vec<u8>> {
        let generation = self.shared.generation.load_full();
        match answer::classify(bytes, &generation.policy, &self.shared.config) {
            Action::Drop => None,
            Action::Reply(reply) => self.local(&reply, &client, transport, limit),
            Action::Forward(forward) => {
                let Ok(_permit) = self.shared.lookups.clone().try_acquire_owned() else {
                    return overloaded(&forward, &client, limit);
                };
                self.resolve(&generation, &forward, &client, transport, limit)
                    .await
            }
        }
    }

    fn local(
        &self,
        reply: &Reply,
        client: &(dyn fmt::Display + Sync),
        transport: &'static str,
        limit: usize,
    ) -> Option<Vec<u8>> {
        self.audit(&Outcome {
            client,
            transport,
            reply: &reply.message,
            name: reply.name.as_deref(),
            qtype: reply.qtype.map(|t| t.to_string()),
            decision: reply.decision.as_ref(),
            stripped: 0,
            cached: false,
            upstream_ms: None,
        });
        answer::encode(&reply.message, limit)
    }

    /// The answer from the cache, if there is one: built and sent without a task or a lookup.
    fn cached_reply(
        &self,
        generation: &Generation,
        forward: &Forward,
        client: &(dyn fmt::Display + Sync),
        transport: &'static str,
        limit: usize,
    ) -> Option<Option<Vec<u8>>> {
        let hit = generation
            .cache
            .get(forward.name.as_str(), forward.qtype, Instant::now())?;
        Some(self.finish(forward, Some(hit), client, transport, limit, true, None))
    }

    /// The cache, else upstream; then the policy's filter.
    async fn resolve(
        &self,
        generation: &Generation,
        forward: &Forward,
        client: &(dyn fmt::Display + Sync),
        transport: &'static str,
        limit: usize,
    ) -> Option<Vec<u8>> {
        if let Some(cached) = self.cached_reply(generation, forward, client, transport, limit) {
            return cached;
        }
        let config = &self.shared.config;
        let key = forward.name.as_str();
        let query = answer::upstream_query(forward, rand::random());
        let started = Instant::now();
        let result = upstream::ask(&generation.upstreams, &query, config.upstream_timeout).await;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let filtered = match result {
            Ok(upstream) => {
                let filtered = answer::filter(&generation.policy, forward, &upstream, config);
                generation
                    .cache
                    .put(key, forward.qtype, filtered.clone(), Instant::now());
                Some(filtered)
            }
            Err(error) => {
                tracing::warn!(name = key, %error, "upstream lookup failed; answering SERVFAIL");
                None
            }
        };
        self.finish(forward, filtered, client, transport, limit, false, Some(ms))
    }

    /// Builds, audits and encodes the reply to a forwarded query; no answer means SERVFAIL.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        forward: &Forward,
        filtered: Option<answer::Filtered>,
        client: &(dyn fmt::Display + Sync),
        transport: &'static str,
        limit: usize,
        cached: bool,
        upstream_ms: Option<f64>,
    ) -> Option<Vec<u8>> {
        let (rcode, records, stripped) = match filtered {
            Some(f) => (f.rcode, f.records, f.stripped),
            None => (ResponseCode::ServFail, Vec::new(), 0),
        };
        let reply = answer::reply(&forward.query, rcode, records, Some(stripped), None);
        let asked = forward.query.queries[0].name().to_ascii();
        self.audit(&Outcome {
            client,
            transport,
            reply: &reply.message,
            name: Some(&asked),
            qtype: Some(forward.qtype.to_string()),
            decision: Some(&forward.decision),
            stripped,
            cached,
            upstream_ms,
        });
        answer::encode(&reply.message, limit)
    }

    fn audit(&self, o: &Outcome<'_>) {
        let rcode = o.reply.metadata.response_code;
        let decision = match o.decision {
            Some(d) if d.is_allowed() => "allow",
            Some(_) => "deny",
            None if rcode == ResponseCode::Refused => "deny",
            None => "error",
        };
        let rule = o.decision.and_then(|d| d.rule.as_ref()).map(|r| r.label());
        tracing::info!(
            target: policy::AUDIT_TARGET,
            sandbox_id = %self.shared.config.sandbox_id,
            client = %o.client,
            transport = o.transport,
            name = o.name.unwrap_or(""),
            qtype = o.qtype.as_deref().unwrap_or(""),
            decision,
            reason = o.decision.map_or(rcode_reason(rcode), |d| d.reason.code()),
            rule = rule.as_deref().unwrap_or(""),
            rcode = rcode_name(rcode),
            answers = o.reply.answers.len(),
            stripped = o.stripped,
            cached = o.cached,
            upstream_ms = o.upstream_ms.map(|ms| (ms * 1000.0).round() / 1000.0),
            "dns query"
        );
    }
}

/// SERVFAIL at once for a query that would need an upstream lookup while too many are in flight.
fn overloaded(
    forward: &Forward,
    client: &(dyn fmt::Display + Sync),
    limit: usize,
) -> Option<Vec<u8>> {
    tracing::warn!(%client, "too many upstream lookups in flight; answering SERVFAIL");
    let reply = answer::reply(
        &forward.query,
        ResponseCode::ServFail,
        Vec::new(),
        None,
        None,
    );
    answer::encode(&reply.message, limit)
}

/// The mnemonic dig prints.
fn rcode_name(rcode: ResponseCode) -> &'static str {
    match rcode {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::BADVERS => "BADVERS",
        _ => "OTHER",
    }
}

fn rcode_reason(rcode: ResponseCode) -> &'static str {
    match rcode {
        ResponseCode::FormErr => "malformed-query",
        ResponseCode::NotImp => "not-implemented",
        ResponseCode::Refused => "malformed-target",
        _ => "other",
    }
}

fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
