//! The origin side of an inspected session: TLS with the system's roots (and any given with
//! `--inspect-upstream-roots`) over the connection `connect.rs` already dialed to a checked
//! address, the certificate verified against the name the policy judged, then HTTP/2 when the
//! origin agrees to it by ALPN, else HTTP/1.1.
//!
//! - **HTTP/2**: one connection, whose streams every request of the session shares, with bounded
//!   flow-control windows and send buffers (`flow.rs`).
//! - **HTTP/1.1**: one connection per request in flight (an HTTP/2 session's streams run at
//!   once), each kept for the next request once its response has been read.
//!
//! When the origin closes a connection, the next request dials the same checked address again
//! (or tunnels through the parent proxy again): nothing is resolved twice.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioIo, TokioTimer};
use policy::{DomainName, Target};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;
use tokio_util::task::TaskTracker;

use super::flow;
use crate::error::{Failure, failure_in};
use crate::headers::Attribution;
use crate::limits::Limits;
use crate::parent::ParentProxy;
use crate::route::dial;
use crate::tunnel::Origin;
use crate::upload::{Stalling, Upload};

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How to reach the origin again.
enum Redial {
    Direct,
    Parent(ParentProxy, Arc<Attribution>),
}

/// The connections open to the origin.
struct Pool {
    /// The stream `connect.rs` dialed, until the first request uses it.
    first: Option<Origin>,
    /// The HTTP/2 connection, when the origin speaks it.
    h2: Option<http2::SendRequest<Upload>>,
    /// HTTP/1.1 connections not sending a request now (some may still be reading a response).
    h1: Vec<http1::SendRequest<Upload>>,
}

/// A connection to send one request on.
enum Sender {
    Http1(http1::SendRequest<Upload>),
    Http2(http2::SendRequest<Upload>),
}

/// One session's origin connections.
pub(crate) struct Upstream {
    addr: SocketAddr,
    redial: Redial,
    target: Target,
    /// `host` or `host:port`: the authority of requests sent over HTTP/2.
    authority: String,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    limits: Limits,
    tasks: TaskTracker,
    pool: Mutex<Pool>,
}

impl Upstream {
    /// The origin side for `name`, starting with the already-dialed `origin` at `addr`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        origin: Origin,
        addr: SocketAddr,
        name: &DomainName,
        target: Target,
        tls: Arc<ClientConfig>,
        parent: Option<(ParentProxy, Arc<Attribution>)>,
        limits: Limits,
        tasks: TaskTracker,
    ) -> Result<Self, Failure> {
        let server_name = ServerName::try_from(name.as_str().to_owned())
            .map_err(|_| Failure::BadRequest("the name is not a valid TLS server name"))?;
        let authority = match target.port {
            443 => name.to_string(),
            port => format!("{name}:{port}"),
        };
        Ok(Self {
            addr,
            redial: match parent {
                None => Redial::Direct,
                Some((parent, attribution)) => Redial::Parent(parent, attribution),
            },
            target,
            authority,
            server_name,
            tls: TlsConnector::from(tls),
            limits,
            tasks,
            pool: Mutex::new(Pool {
                first: Some(origin),
                h2: None,
                h1: Vec::new(),
            }),
        })
    }

    /// The address the origin connection reached (the parent's when chaining).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The origin's own address, when egressd dials it itself (not through a parent proxy).
    pub(crate) fn direct_addr(&self) -> Option<SocketAddr> {
        match self.redial {
            Redial::Direct => Some(self.addr),
            Redial::Parent(..) => None,
        }
    }

    /// Sends one request (origin-form URI, `Host` set) over an open origin connection or a new
    /// one. `sequential`: the client sends one request at a time (HTTP/1.1), so an HTTP/1.1
    /// origin connection still reading the previous response is waited for, not doubled.
    pub(crate) async fn send(
        &self,
        mut req: Request<Upload>,
        sequential: bool,
    ) -> Result<Response<Incoming>, Failure> {
        match self.checkout(sequential).await? {
            Sender::Http2(mut sender) => {
                *req.version_mut() = Version::HTTP_2;
                let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                // The authority travels as `:authority`, never twice.
                *req.uri_mut() = format!("https://{}{path}", self.authority)
                    .parse::<Uri>()
                    .map_err(|_| Failure::BadRequest("the request URI cannot be forwarded"))?;
                req.headers_mut().remove(header::HOST);
                sender.send_request(req).await.map_err(|e| failure_in(&e))
            }
            Sender::Http1(mut sender) => {
                *req.version_mut() = Version::HTTP_11;
                if !req.headers().contains_key(header::HOST)
                    && let Ok(host) = HeaderValue::from_str(&self.authority)
                {
                    req.headers_mut().insert(header::HOST, host);
                }
                let sent = sender.send_request(req).await;
                // Back in the pool: it takes the next request once this response has been read.
                self.pool.lock().await.h1.push(sender);
                sent.map_err(|e| failure_in(&e))
            }
        }
    }

    /// A connection for one request: the HTTP/2 one, an idle HTTP/1.1 one, or a new one.
    async fn checkout(&self, sequential: bool) -> Result<Sender, Failure> {
        let mut pool = self.pool.lock().await;
        if let Some(h2) = &pool.h2 {
            if !h2.is_closed() {
                return Ok(Sender::Http2(h2.clone()));
            }
            pool.h2 = None;
        }
        pool.h1.retain(|s| !s.is_closed());
        if let Some(i) = pool.h1.iter().position(http1::SendRequest::is_ready) {
            return Ok(Sender::Http1(pool.h1.swap_remove(i)));
        }
        if sequential {
            // One request at a time: the connection still busy is finishing the last response.
            while let Some(mut sender) = pool.h1.pop() {
                if sender.ready().await.is_ok() {
                    return Ok(Sender::Http1(sender));
                }
            }
        }
        let first = pool.first.take();
        match self.open(first).await? {
            Sender::Http2(h2) => {
                pool.h2 = Some(h2.clone());
                Ok(Sender::Http2(h2))
            }
            h1 => Ok(h1),
        }
    }

    async fn open(&self, first: Option<Origin>) -> Result<Sender, Failure> {
        let io: Box<dyn Io> = match first {
            Some(Origin::Direct(stream)) => Box::new(stream),
            Some(Origin::Parent(io)) => Box::new(io),
            None => match &self.redial {
                Redial::Direct => Box::new(dial(self.addr, self.limits.connect_timeout).await?),
                Redial::Parent(parent, attribution) => Box::new(TokioIo::new(
                    parent
                        .tunnel(&self.target, attribution, &self.limits)
                        .await?,
                )),
            },
        };
        let handshake = self.tls.connect(self.server_name.clone(), io);
        let tls = match tokio::time::timeout(self.limits.connect_timeout, handshake).await {
            Err(_) => return Err(Failure::ConnectTimeout { addr: self.addr }),
            Ok(Err(error)) => return Err(Failure::UpstreamTls(tls_error(&error))),
            Ok(Ok(tls)) => tls,
        };
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = Stalling::new(TokioIo::new(tls), self.limits.upload_idle_timeout);
        let handshake_failed = |e: hyper::Error| Failure::Upstream(format!("{e:#}"));
        if h2 {
            let mut builder = http2::Builder::new(flow::Tracked(self.tasks.clone()));
            builder.timer(TokioTimer::new());
            flow::origin(&mut builder, &self.limits);
            let (sender, connection) = builder.handshake(io).await.map_err(handshake_failed)?;
            self.tasks.spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "inspected origin connection (h2) ended with an error");
                }
            });
            return Ok(Sender::Http2(sender));
        }
        let mut builder = http1::Builder::new();
        builder.max_buf_size(flow::ORIGIN_READ_BUFFER);
        let (sender, connection) = builder.handshake(io).await.map_err(handshake_failed)?;
        self.tasks.spawn(async move {
            // With upgrades: a WebSocket's `101` hands the connection over to the relay.
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "inspected origin connection ended with an error");
            }
        });
        Ok(Sender::Http1(sender))
    }
}

/// The TLS failure in words: rustls's own error when there is one (an unknown issuer, a name the
/// certificate does not cover).
fn tls_error(error: &std::io::Error) -> String {
    match error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(tls) => tls.to_string(),
        None => error.to_string(),
    }
}
