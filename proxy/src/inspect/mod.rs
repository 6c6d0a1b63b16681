//! TLS inspection, for the hosts a policy marks `inspect = true` and no others: egressd ends the
//! sandbox's TLS with a leaf certificate its own CA mints for the name, reads each request
//! (HTTP/1.1, or each stream of HTTP/2, as ALPN agreed), applies the rule's `methods` and `paths`, swaps brokered credentials in, sets the
//! attribution headers, and sends the request on over its own TLS connection to the origin,
//! whose certificate it verifies against the name the policy judged.
//!
//! Entered from one branch in `connect.rs`, after the name was decided and the origin dialed (so
//! refusals and unreachable origins are answered on the CONNECT, as for tunnels). Then, on the
//! connection's tracked task:
//!
//! 1. `ca`: read the ClientHello; no SNI, or an SNI that is not the CONNECT host (domain
//!    fronting), ends the connection; otherwise the leaf for that name (cached) is presented.
//! 2. `request`: every request inside, checked and audited one by one.
//! 3. `upstream`: the origin connections, TLS over the stream `connect.rs` dialed (then redialed
//!    to the same address), HTTP/2 or HTTP/1.1 as the origin agrees; `flow`: HTTP/2's memory
//!    bounds on both sides.
//! 4. `brokered`: credential placeholders in, real values out of responses.
//! 5. `websocket`: an upgrade the origin accepts, relayed frame bytes both ways (`frames`: the
//!    origin's scrubbed of brokered values, when the upgrade carried one).
//!
//! What it does not do: upgrades other than WebSocket over HTTP/1.1 (`Upgrade` is hop-by-hop and
//! removed; no extended CONNECT over HTTP/2), or inspect anything a rule does not mark.

pub(crate) mod brokered;
mod ca;
pub(crate) mod config;
mod flow;
mod frames;
mod request;
mod session;
mod upstream;
mod websocket;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use policy::{Decision, DomainName, Host, Target};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::LazyConfigAcceptor;

pub use brokered::{CredentialValueError, Secrets};
pub use ca::{CaError, CertificateAuthority, LEAF_LIFETIME, certificate_pem};
pub use config::InspectConfig;
pub(crate) use request::screen_plain;

use crate::audit::{Audit, Bytes};
use crate::context::Connection;
use crate::tunnel::Origin;
use session::Session;
use upstream::Upstream;

/// True when the rule that allowed `decision` asks for inspection.
pub(crate) fn wanted(decision: &Decision) -> bool {
    // A report-mode refusal let through (port-not-allowed names its allow rule) is a tunnel.
    decision.is_allowed() && decision.rule.as_ref().is_some_and(|r| r.inspect.is_some())
}

/// Why the TLS session with the client was not opened; the CONNECT's audit reason.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ended {
    SniMissing,
    SniMismatch,
    ClientTls,
}

impl Ended {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::SniMissing => "sni-missing",
            Self::SniMismatch => "sni-mismatch",
            Self::ClientTls => "client-tls",
        }
    }
}

/// Runs the inspected session on a tracked task once hyper hands over the client's connection.
/// The CONNECT's audit event (with the TLS bytes both ways) is written when the session ends.
pub(crate) fn spawn(
    connection: &Connection,
    req: Request<Incoming>,
    origin: Origin,
    addr: SocketAddr,
    mut audit: Audit,
    target: Target,
    decision: Decision,
) {
    let shared = connection.shared.clone();
    let caller = connection.caller.clone();
    let permit = connection.permit.clone();
    let tasks = connection.tasks.clone();
    let open = connection.shared.config.metrics.tunnel();
    connection.tasks.spawn(async move {
        // The connection's place under the limit lives as long as the session.
        let _permit = permit;
        let _open = open;
        let Host::Name(name) = target.host.clone() else {
            // Inspected rules are host rules: an IP literal never gets here.
            return;
        };
        let Some(inspect) = shared.config.inspect.clone() else {
            tracing::error!(target = %name, "inspected rule but no CA; closing");
            audit.denied(
                "inspect-unavailable",
                decision.rule.clone(),
                http::StatusCode::OK,
            );
            return;
        };
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, "client left before the session opened");
                return;
            }
        };
        let io = Counting {
            inner: TokioIo::new(upgraded),
            bytes: audit.bytes.clone(),
        };
        let limits = &shared.config.limits;
        let tls = match accept(
            io,
            &name,
            &inspect,
            limits.header_read_timeout,
            Alpn::Offered,
        )
        .await
        {
            Ok(tls) => tls,
            Err(ended) => {
                tracing::info!(target = %name, reason = ended.code(), "inspected session refused");
                audit.denied(ended.code(), decision.rule.clone(), http::StatusCode::OK);
                return;
            }
        };
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let parent = shared
            .config
            .parent
            .clone()
            .map(|p| (p, shared.generation.load().attribution.clone()));
        let upstream = match Upstream::new(
            origin,
            addr,
            &name,
            target.clone(),
            inspect.upstream.clone(),
            parent,
            limits.clone(),
            tasks.clone(),
        ) {
            Ok(upstream) => upstream,
            Err(failure) => {
                audit.failed(&failure);
                return;
            }
        };
        let authority = match target.port {
            443 => name.to_string(),
            port => format!("{name}:{port}"),
        };
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes)
            .keep_alive(true);
        let session = Arc::new(Session {
            shared: shared.clone(),
            caller,
            target,
            name,
            authority,
            upstream,
            relay: std::sync::Mutex::new(None),
        });
        let service = {
            let session = session.clone();
            service_fn(move |req| request::handle(session.clone(), req))
        };
        let served = if h2 {
            let mut builder = http2::Builder::new(flow::Tracked(tasks));
            builder.timer(TokioTimer::new());
            flow::client_facing(&mut builder, limits);
            let connection = builder.serve_connection(TokioIo::new(tls), service);
            let mut connection = std::pin::pin!(connection);
            // No request head bounds an idle HTTP/2 connection, as one does HTTP/1.1's: a
            // session that moved no byte either way for the tunnel idle timeout is told to go
            // (GOAWAY; streams in flight finish).
            let moved = || {
                audit.bytes.up.load(Ordering::Relaxed) + audit.bytes.down.load(Ordering::Relaxed)
            };
            let mut last = moved();
            loop {
                tokio::select! {
                    served = connection.as_mut() => break served,
                    () = tokio::time::sleep(limits.tunnel_idle_timeout) => {
                        if moved() == last {
                            connection.as_mut().graceful_shutdown();
                        }
                        last = moved();
                    }
                }
            }
        } else {
            builder
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades()
                .await
        };
        if let Err(error) = served {
            tracing::debug!(%error, "inspected session ended with an error");
        }
        // A WebSocket its last request opened: the session (its place under the connection
        // limit, its CONNECT event) lasts as long as the relay.
        let relay = session
            .relay
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(relay) = relay {
            relay.run(limits).await;
        }
        drop(audit);
    });
}

/// What a session's TLS offers the client by ALPN.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alpn {
    /// HTTP/2 when the client offers it, else HTTP/1.1: an inspected session.
    Offered,
    /// HTTP/1.1 only: a refusal answered inside TLS, served as one HTTP/1.1 response.
    Http1Only,
}

/// The TLS handshake with the client, after its SNI was checked against the CONNECT host.
pub(crate) async fn accept<IO: AsyncRead + AsyncWrite + Unpin>(
    io: IO,
    name: &DomainName,
    inspect: &InspectConfig,
    timeout: std::time::Duration,
    alpn: Alpn,
) -> Result<tokio_rustls::server::TlsStream<IO>, Ended> {
    let handshake = async {
        let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
        let start = acceptor.await.map_err(|_| Ended::ClientTls)?;
        let sni = start.client_hello().server_name().map(DomainName::parse);
        match sni {
            None => return Err(Ended::SniMissing),
            Some(Ok(sni)) if sni == *name => {}
            Some(_) => return Err(Ended::SniMismatch),
        }
        let mut config = inspect.ca.server_config(name.as_str()).map_err(|error| {
            tracing::error!(%error, "cannot mint a leaf certificate");
            Ended::ClientTls
        })?;
        if alpn == Alpn::Http1Only {
            let mut http1 = (*config).clone();
            http1.alpn_protocols = vec![b"http/1.1".to_vec()];
            config = Arc::new(http1);
        }
        start
            .into_stream(config)
            .await
            .map_err(|_| Ended::ClientTls)
    };
    tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| Ended::ClientTls)?
}

/// Counts the bytes a client stream moves, for the CONNECT's audit record.
struct Counting<IO> {
    inner: IO,
    bytes: Bytes,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Counting<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.bytes.up.fetch_add(read as u64, Ordering::Relaxed);
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Counting<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            self.bytes.down.fetch_add(*n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &polled {
            self.bytes.down.fetch_add(*n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
