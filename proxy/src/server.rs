//! Accept loops and per-connection serving, with the connection limit and graceful shutdown.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use policy::Policy;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::ProxyConfig;
use crate::resolve::{Resolver, ResolverSetupError};
use crate::service::{Generation, Shared, handle};

/// Sent, without reading the request, to a connection over the limit.
const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
x-egressd-reason: overloaded\r\nConnection: close\r\nContent-Length: 38\r\n\r\negressd: too many connections, retry\r\n";

/// The forward proxy. Cheap to clone; every clone serves the same state.
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
    connections: Arc<Semaphore>,
    rejecting: Arc<Semaphore>,
}

/// Connections being answered 503 at once, at most.
const MAX_REJECTING: usize = 64;

/// A listener that can hand out connections.
pub trait Listener: Send + 'static {
    /// The connection type.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Waits for the next connection; returns it with a label for logs (`127.0.0.1:5555`, `unix`).
    fn accept(&self) -> impl std::future::Future<Output = io::Result<(Self::Io, String)>> + Send;
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;

    async fn accept(&self) -> io::Result<(Self::Io, String)> {
        let (stream, peer) = tokio::net::TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        Ok((stream, peer.to_string()))
    }
}

#[cfg(unix)]
impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;

    async fn accept(&self) -> io::Result<(Self::Io, String)> {
        let (stream, _) = tokio::net::UnixListener::accept(self).await?;
        Ok((stream, "unix".to_owned()))
    }
}

impl Proxy {
    /// Builds the proxy for `policy`; names resolve per the policy's `[dns]` (or the host's
    /// configuration).
    pub fn new(policy: Policy, config: ProxyConfig) -> Result<Self, ResolverSetupError> {
        let resolver = Resolver::new(policy.dns(), config.limits.dns_timeout)?;
        let generation = Generation::new(policy, resolver, &config);
        let connections = Arc::new(Semaphore::new(config.limits.max_connections));
        let shared = Shared {
            generation: ArcSwap::from_pointee(generation),
            sandbox_id: Arc::from(config.sandbox_id.as_str()),
            config,
            tracker: TaskTracker::new(),
        };
        Ok(Self {
            shared: Arc::new(shared),
            connections,
            rejecting: Arc::new(Semaphore::new(MAX_REJECTING)),
        })
    }

    /// Replaces the policy atomically: requests already decided finish under the old one, new
    /// requests see the new one, and pooled origin connections are not reused across the change.
    /// On error the old policy stays.
    pub fn reload(&self, policy: Policy) -> Result<(), ResolverSetupError> {
        let resolver = Resolver::new(policy.dns(), self.shared.config.limits.dns_timeout)?;
        let generation = Generation::new(policy, resolver, &self.shared.config);
        self.shared.generation.store(Arc::new(generation));
        Ok(())
    }

    /// Tracks every connection and tunnel task, for draining at shutdown.
    pub fn tasks(&self) -> TaskTracker {
        self.shared.tracker.clone()
    }

    /// Accepts connections until `shutdown` is cancelled. Returns an error only when the listener
    /// itself fails for good; transient accept errors are logged and retried.
    pub async fn serve<L: Listener>(
        &self,
        listener: L,
        shutdown: CancellationToken,
    ) -> io::Result<()> {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                accepted = listener.accept() => accepted,
            };
            let (io, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) if is_transient(&error) => {
                    tracing::warn!(%error, "accept failed; retrying");
                    // Out of file descriptors: give in-flight connections a moment to close.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(error) => return Err(error),
            };
            let Ok(permit) = self.connections.clone().try_acquire_owned() else {
                tracing::warn!(client = %peer, "connection limit reached; answering 503");
                reject_overloaded(&self.rejecting, io);
                continue;
            };
            let shared = self.shared.clone();
            let shutdown = shutdown.clone();
            let span = tracing::debug_span!("conn", client.addr = %peer);
            self.shared.tracker.spawn(
                async move {
                    serve_connection(
                        shared,
                        io,
                        Arc::from(peer.as_str()),
                        Arc::new(permit),
                        shutdown,
                    )
                    .await;
                }
                .instrument(span),
            );
        }
    }
}

async fn serve_connection<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    shared: Arc<Shared>,
    io: I,
    client: Arc<str>,
    permit: Arc<tokio::sync::OwnedSemaphorePermit>,
    shutdown: CancellationToken,
) {
    let limits = &shared.config.limits;
    let service = {
        let shared = shared.clone();
        service_fn(move |req| handle(shared.clone(), client.clone(), permit.clone(), req))
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "client connection ended with an error");
    }
}

/// Best effort, bounded: at most [`MAX_REJECTING`] connections are being told 503 at once, each
/// for at most two seconds; beyond that a connection is simply closed.
fn reject_overloaded<I: AsyncWrite + Unpin + Send + 'static>(rejecting: &Arc<Semaphore>, io: I) {
    let Ok(permit) = rejecting.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        use tokio::io::AsyncWriteExt;
        let mut io = io;
        let _ = tokio::time::timeout(Duration::from_secs(1), io.write_all(OVERLOADED)).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), io.shutdown()).await;
    });
}

/// Accept errors that concern one connection or a passing shortage, not the listener.
fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
    ) || matches!(
        error.raw_os_error(),
        Some(ENFILE | EMFILE | ENOBUFS | ENOMEM)
    )
}

const ENOMEM: i32 = 12;
const ENFILE: i32 = 23;
const EMFILE: i32 = 24;
#[cfg(target_os = "linux")]
const ENOBUFS: i32 = 105;
#[cfg(not(target_os = "linux"))]
const ENOBUFS: i32 = 55;
