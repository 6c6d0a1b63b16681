//! The client's connection as hyper sees it: a thin wrapper that keeps hyper's automatic error
//! responses off the wire, so that egressd answers those requests itself (`edge.rs`).
//!
//! hyper answers some bad request heads on its own (`Server::on_error` in hyper's
//! `proto/h1/role.rs`: 400, 414, 431), with an empty body, no reason header and no way to hook it,
//! then ends the connection with the parse error. It writes that response only when no response
//! of the service is being written (its writing state is `Init`). The wrapper knows when that is
//! from an [`Exchange`] the service updates:
//!
//! | state | entered when | writes |
//! |---|---|---|
//! | idle | at the start; a response's last bytes were flushed | hyper's own: swallowed |
//! | answering | the service was called for a request | passed |
//! | answered | the response body ended (its last bytes are in hyper's buffer) | passed |
//! | passing | the connection became a tunnel | passed, for good |
//!
//! *answered* becomes *idle* at hyper's next flush of the socket: hyper flushes the socket only
//! once its write buffer is empty, so by then every byte of the response has been passed on. What
//! is written while idle is hyper's automatic response (or a `100 Continue` after a final
//! response, which must not be sent either): it is swallowed, its status kept, and the shutdown
//! hyper asks for next is skipped, so `edge.rs` can write egressd's response on the same socket
//! once hyper returns the error. If hyper ever answered while a response was still being flushed
//! (a pipelined bad head behind a response the client is not reading, while its request body
//! drains), its response is passed, never a byte of a real response eaten; the error is still
//! audited.
//!
//! Cost per request: one atomic store when the service is called, one when the response body is
//! dropped, one load per write and per flush.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::StatusCode;
use hyper::body::{Body, Frame, SizeHint};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::body::{BodyError, ResponseBody};

const IDLE: u8 = 0;
const ANSWERING: u8 = 1;
const ANSWERED: u8 = 2;
const PASSING: u8 = 3;

/// Whether a response of the service is owed or being written on one client connection. Cheap to
/// clone; the clones of one connection share the state.
#[derive(Clone, Debug, Default)]
pub struct Exchange {
    state: Arc<AtomicU8>,
}

impl Exchange {
    /// The service was called: a response is owed.
    pub fn begin(&self) {
        self.state.store(ANSWERING, Ordering::Relaxed);
    }

    /// The connection is handed over to a tunnel: never swallow anything again.
    pub fn pass_through(&self) {
        self.state.store(PASSING, Ordering::Relaxed);
    }

    /// The response body ended or was dropped: its last bytes are in hyper's write buffer.
    fn answered(&self) {
        let _ =
            self.state
                .compare_exchange(ANSWERING, ANSWERED, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// hyper is flushing the socket: its write buffer is empty.
    fn flushed(&self) {
        let _ = self
            .state
            .compare_exchange(ANSWERED, IDLE, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn owes_nothing(&self) -> bool {
        self.state.load(Ordering::Relaxed) == IDLE
    }
}

/// A response body that tells the [`Exchange`] when it is dropped (hyper drops it right after
/// buffering its end).
pub struct Answer {
    body: ResponseBody,
    exchange: Exchange,
}

impl Answer {
    /// `body`, reporting its end to `exchange`.
    pub fn new(body: ResponseBody, exchange: Exchange) -> Self {
        Self { body, exchange }
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.exchange.answered();
    }
}

impl Body for Answer {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The client's connection, for hyper: reads pass; writes pass unless the [`Exchange`] says no
/// response is owed.
pub struct ClientIo<Io> {
    io: TokioIo<Io>,
    exchange: Exchange,
    /// The first bytes hyper wrote while nothing was owed: `HTTP/1.1 431`.
    swallowed: [u8; STATUS_LINE_START],
    swallowed_len: usize,
}

/// `HTTP/1.1 NNN`.
const STATUS_LINE_START: usize = 12;

impl<Io> ClientIo<Io> {
    /// Wraps `io`, reading the state of `exchange`.
    pub fn new(io: Io, exchange: Exchange) -> Self {
        Self {
            io: TokioIo::new(io),
            exchange,
            swallowed: [0; STATUS_LINE_START],
            swallowed_len: 0,
        }
    }

    /// The socket, for a tunnel or for egressd's own answer.
    pub fn into_inner(self) -> Io {
        self.io.into_inner()
    }

    /// The status of the response hyper wrote on its own and this wrapper swallowed, if any.
    pub fn swallowed(&self) -> Option<StatusCode> {
        let line = self.swallowed.get(..self.swallowed_len)?;
        let code = line.strip_prefix(b"HTTP/1.1 ")?;
        StatusCode::from_bytes(code).ok()
    }

    /// True when no response is owed: the connection is between requests.
    pub fn between_requests(&self) -> bool {
        self.exchange.owes_nothing()
    }

    /// Keeps the first bytes of a swallowed response, for its status. An interim `100 Continue`
    /// is not the response hyper ends the connection with: a later one replaces it.
    fn swallow(&mut self, buf: &[u8]) {
        if buf.starts_with(b"HTTP/1.1 1") {
            self.swallowed_len = 0;
            return;
        }
        let take = (STATUS_LINE_START - self.swallowed_len).min(buf.len());
        self.swallowed[self.swallowed_len..self.swallowed_len + take].copy_from_slice(&buf[..take]);
        self.swallowed_len += take;
    }

    fn owes_nothing(&self) -> bool {
        self.exchange.owes_nothing()
    }
}

impl<Io: AsyncRead + Unpin> Read for ClientIo<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<Io: AsyncWrite + Unpin> Write for ClientIo<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.owes_nothing() {
            self.swallow(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.owes_nothing() {
            for buf in bufs {
                self.swallow(buf);
            }
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.exchange.flushed();
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.swallowed().is_some() {
            // egressd answers instead, on this socket, after hyper returns.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
