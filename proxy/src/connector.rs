//! The connector behind the origin connection pool: every new origin connection is routed through
//! the policy ([`Router::connect`]), or, with a parent proxy, opened to the parent.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use policy::Target;
use tokio::net::TcpStream;

use crate::config::ParentProxy;
use crate::error::Failure;
use crate::route::Router;

/// The address an origin connection reached; set in every response's extensions.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// Opens origin connections for the pool.
#[derive(Clone)]
pub struct Connector {
    pub(crate) router: Arc<Router>,
    pub(crate) parent: Option<ParentProxy>,
}

/// A pooled origin (or parent proxy) connection.
pub struct OriginIo {
    io: TokioIo<TcpStream>,
    peer: SocketAddr,
    via_parent: bool,
}

impl tower::Service<Uri> for Connector {
    type Response = OriginIo;
    type Error = Failure;
    type Future = Pin<Box<dyn Future<Output = Result<OriginIo, Failure>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Failure>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let router = self.router.clone();
        let parent = self.parent.clone();
        Box::pin(async move {
            if let Some(parent) = parent {
                let stream = dial_parent(&router, parent.addr).await?;
                return Ok(OriginIo {
                    io: TokioIo::new(stream),
                    peer: parent.addr,
                    via_parent: true,
                });
            }
            let host = uri
                .host()
                .ok_or(Failure::BadRequest("request URI has no host"))?;
            let target = Target::new(host, uri.port_u16().unwrap_or(80));
            let routed = router.connect(&target).await?;
            Ok(OriginIo {
                io: TokioIo::new(routed.stream),
                peer: routed.addr,
                via_parent: false,
            })
        })
    }
}

/// Connects to the parent proxy under the connect timeout.
pub(crate) async fn dial_parent(router: &Router, addr: SocketAddr) -> Result<TcpStream, Failure> {
    crate::route::dial(addr, router.limits.connect_timeout).await
}

impl Connection for OriginIo {
    fn connected(&self) -> Connected {
        Connected::new()
            .proxy(self.via_parent)
            .extra(PeerAddr(self.peer))
    }
}

impl Read for OriginIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for OriginIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
