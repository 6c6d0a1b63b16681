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

use crate::error::Failure;
use crate::limits::Limits;
use crate::parent::ParentProxy;
use crate::route::Router;
use crate::upload::Stalling;

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

/// A pooled origin (or parent proxy) connection; its writes are under [`Stalling`]'s clock.
pub struct OriginIo {
    io: Stalling<TokioIo<TcpStream>>,
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
        let connector = self.clone();
        Box::pin(async move {
            match connector {
                Connector::Parent(parent, limits) => Ok(OriginIo {
                    io: Stalling::new(
                        TokioIo::new(parent.dial(&limits).await?),
                        limits.upload_idle_timeout,
                    ),
                    peer: parent.addr,
                    via_parent: true,
                }),
                Connector::Direct(router) => {
                    let host = uri
                        .host()
                        .ok_or(Failure::BadRequest("request URI has no host"))?;
                    let target = crate::target::target_of(&uri, host)?;
                    let opened = router.open(&target).await?;
                    Ok(OriginIo {
                        io: Stalling::new(
                            TokioIo::new(opened.stream),
                            router.limits.upload_idle_timeout,
                        ),
                        peer: opened.addr,
                        via_parent: false,
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
