//! The origin side of an inspected session: TLS with the system's roots (and any given with
//! `--inspect-upstream-roots`) over the connection `connect.rs` already dialed to a checked
//! address, the certificate verified against the name the policy judged, then HTTP/1.1. When the
//! origin closes its connection, the next request dials the same checked address again (or
//! tunnels through the parent proxy again): nothing is resolved twice.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use policy::{DomainName, Target};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_util::task::TaskTracker;

use crate::error::Failure;
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

/// One session's origin connection.
pub(crate) struct Upstream {
    first: Option<Origin>,
    addr: SocketAddr,
    redial: Redial,
    target: Target,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    limits: Limits,
    tasks: TaskTracker,
    sender: Option<SendRequest<Upload>>,
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
        Ok(Self {
            first: Some(origin),
            addr,
            redial: match parent {
                None => Redial::Direct,
                Some((parent, attribution)) => Redial::Parent(parent, attribution),
            },
            target,
            server_name,
            tls: TlsConnector::from(tls),
            limits,
            tasks,
            sender: None,
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

    /// Sends one request, over the open origin connection or a new one.
    pub(crate) async fn send(
        &mut self,
        req: http::Request<Upload>,
    ) -> Result<http::Response<Incoming>, Failure> {
        let sender = self.ready().await?;
        sender
            .send_request(req)
            .await
            .map_err(|e| crate::error::failure_in(&e))
    }

    async fn ready(&mut self) -> Result<&mut SendRequest<Upload>, Failure> {
        if let Some(sender) = &mut self.sender
            && sender.ready().await.is_err()
        {
            self.sender = None;
        }
        if self.sender.is_none() {
            self.sender = Some(self.open().await?);
        }
        // Set just above when it was missing.
        self.sender
            .as_mut()
            .ok_or_else(|| Failure::Upstream("no origin connection".to_owned()))
    }

    async fn open(&mut self) -> Result<SendRequest<Upload>, Failure> {
        let io: Box<dyn Io> = match self.first.take() {
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
        let io = Stalling::new(TokioIo::new(tls), self.limits.upload_idle_timeout);
        let (sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| Failure::Upstream(format!("{e:#}")))?;
        self.tasks.spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "inspected origin connection ended with an error");
            }
        });
        Ok(sender)
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
