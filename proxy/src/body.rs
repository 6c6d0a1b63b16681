//! Bodies: the wrapper every response relayed from a destination goes through (byte count,
//! idle timeout, how it ended, for its audit event), and the boxed body type responses use.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use audit::ResponseEnd;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};

use crate::audit::Audit;
use crate::upload::{IdleTimer, is_last};

/// Why a response body failed: the origin's error, or [`Stalled`].
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// What the proxy sends to clients.
pub type ResponseBody = BoxBody<Bytes, BodyError>;

/// A response body the origin sent nothing of for `--response-idle-timeout`: egressd ends it,
/// and hyper closes the client's connection mid-body (the only way HTTP/1.1 has to say a
/// response is incomplete).
#[derive(Debug, thiserror::Error)]
#[error("the origin sent nothing for {0:?}")]
pub struct Stalled(pub Duration);

/// A complete, in-memory body.
pub fn full(data: impl Into<Bytes>) -> ResponseBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> ResponseBody {
    full(Bytes::new())
}

/// A response body relayed from a destination: counts the data bytes that pass through
/// `inner`, ends it when the origin sends nothing for the idle timeout ([`Stalled`]), and holds
/// the request's [`Audit`], whose event is emitted as the body is dropped (after the last byte,
/// on an error, or when the client leaves) and says which of these ended it. The idle clock runs
/// only while the body waits on the origin, never while the client is slow to take what was
/// sent. (Request bodies are counted by [`crate::upload::Upload`].)
pub struct Counted<B> {
    inner: B,
    counter: Arc<AtomicU64>,
    idle: IdleTimer,
    /// How it ended, once it has; dropped without an end, the client left.
    end: Option<ResponseEnd>,
    audit: Audit,
}

impl<B> Counted<B> {
    /// Counts into `counter`, ends the body after `idle` without a byte from the origin, and
    /// keeps `audit` alive until the body is dropped.
    pub fn with_audit(inner: B, counter: Arc<AtomicU64>, idle: Duration, audit: Audit) -> Self
    where
        B: Body,
    {
        // A body empty from the start (a 204, a HEAD's) is never polled: it is whole already.
        let end = inner.is_end_stream().then_some(ResponseEnd::Complete);
        Self {
            inner,
            counter,
            idle: IdleTimer::new(idle),
            end,
            audit,
        }
    }
}

impl<B> Drop for Counted<B> {
    fn drop(&mut self) {
        self.audit
            .response_ended(self.end.unwrap_or(ResponseEnd::CutByClient));
    }
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BodyError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.idle.moved();
                if let Some(data) = frame.data_ref() {
                    this.counter.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                if is_last(&frame, &this.inner) {
                    this.end = Some(ResponseEnd::Complete);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                // A reset, or the origin's end before `Content-Length` or the last chunk.
                this.end.get_or_insert(ResponseEnd::CutByOrigin);
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(None) => {
                this.end.get_or_insert(ResponseEnd::Complete);
                Poll::Ready(None)
            }
            Poll::Pending if this.idle.expired(cx) => {
                this.end = Some(ResponseEnd::CutByStall);
                Poll::Ready(Some(Err(Box::new(Stalled(this.idle.limit())))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
