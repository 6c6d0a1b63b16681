//! Opens the origin connections of the pool (`pool.rs`): to the origin through the router
//! ([`Router::open`]: resolution and address checks for a target the caller already decided), or,
//! with a parent proxy, to the parent.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::rt::TokioIo;
use policy::Target;
use tokio::net::TcpStream;

use crate::error::Failure;
use crate::limits::Limits;
use crate::parent::ParentProxy;
use crate::route::Router;
use crate::upload::Stalling;

/// Opens origin connections for the pool.
#[derive(Clone)]
pub enum Connector {
    /// To the origin, through the router.
    Direct(Arc<Router>),
    /// To the parent proxy.
    Parent(ParentProxy, Limits),
}

/// An origin (or parent proxy) connection; its writes are under [`Stalling`]'s clock.
pub struct OriginIo {
    io: Stalling<TokioIo<TcpStream>>,
    /// The address it reached: the origin's, or the parent's.
    pub(crate) peer: SocketAddr,
}

impl Connector {
    /// Whether requests go to a parent proxy (in absolute form) rather than to the origin.
    pub(crate) fn via_parent(&self) -> bool {
        matches!(self, Connector::Parent(..))
    }

    /// A new connection for requests to `target`, which the caller has decided.
    pub(crate) async fn connect(&self, target: &Target) -> Result<OriginIo, Failure> {
        match self {
            Connector::Parent(parent, limits) => Ok(OriginIo {
                io: Stalling::new(
                    TokioIo::new(parent.dial(limits).await?),
                    limits.upload_idle_timeout,
                ),
                peer: parent.addr,
            }),
            Connector::Direct(router) => {
                let opened = router.open(target).await?;
                Ok(OriginIo {
                    io: Stalling::new(
                        TokioIo::new(opened.stream),
                        router.limits.upload_idle_timeout,
                    ),
                    peer: opened.addr,
                })
            }
        }
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
