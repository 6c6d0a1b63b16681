//! The connector behind the origin connection pool: a new origin connection is opened by the
//! router ([`Router::open`]: resolution and address checks for a name the caller already decided),
//! or, with a parent proxy, to the parent.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::config::Limits;
use crate::error::Failure;
use crate::parent::ParentProxy;
use crate::route::Router;
use crate::upload::IdleTimer;

/// The address an origin connection reached; set in every response's extensions.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// Opens origin connections for the pool.
#[derive(Clone)]
pub enum Connector {
    /// To the origin, through the router.
    Direct(Arc<Router>),
    /// To the parent proxy.
    Parent(ParentProxy, Limits),
}

/// A pooled origin (or parent proxy) connection. A write the destination does not take for the
/// upload idle timeout fails with [`Failure::UploadStalled`]: hyper then ends the connection
/// (which would otherwise wait forever to flush) and the request reports why.
pub struct OriginIo {
    io: TokioIo<TcpStream>,
    peer: SocketAddr,
    via_parent: bool,
    /// Runs while a write waits for the destination.
    stall: IdleTimer,
}

impl tower::Service<Uri> for Connector {
    type Response = OriginIo;
    type Error = Failure;
    type Future = Pin<Box<dyn Future<Output = Result<OriginIo, Failure>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Failure>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = self.clone();
        Box::pin(async move {
            match connector {
                Connector::Parent(parent, limits) => Ok(OriginIo {
                    io: TokioIo::new(parent.dial(&limits).await?),
                    peer: parent.addr,
                    via_parent: true,
                    stall: IdleTimer::new(limits.upload_idle_timeout),
                }),
                Connector::Direct(router) => {
                    let host = uri
                        .host()
                        .ok_or(Failure::BadRequest("request URI has no host"))?;
                    let target = crate::forward::target_of(&uri, host)?;
                    let opened = router.open(&target).await?;
                    Ok(OriginIo {
                        io: TokioIo::new(opened.stream),
                        peer: opened.addr,
                        via_parent: false,
                        stall: IdleTimer::new(router.limits.upload_idle_timeout),
                    })
                }
            }
        })
    }
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
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write(cx, buf);
        if written.is_ready() {
            this.stall.moved();
        } else if this.stall.expired(cx) {
            let stalled = Failure::UploadStalled(this.stall.limit());
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                stalled,
            )));
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
