//! Bodies: a counting wrapper for audit byte counts, and the boxed body type responses use.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};

use crate::audit::Audit;

/// What the proxy sends to clients.
pub type ResponseBody = BoxBody<Bytes, hyper::Error>;

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

/// A response body: counts the data bytes that pass through `inner`, and holds the request's
/// [`Audit`], whose event is emitted as the body is dropped: after the last byte, or when the
/// client leaves. (Request bodies are counted by [`crate::upload::Upload`].)
pub struct Counted<B> {
    inner: B,
    counter: Arc<AtomicU64>,
    _audit: Audit,
}

impl<B> Counted<B> {
    /// Counts into `counter` and keeps `audit` alive until the body is dropped.
    pub fn with_audit(inner: B, counter: Arc<AtomicU64>, audit: Audit) -> Self {
        Self {
            inner,
            counter,
            _audit: audit,
        }
    }
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.counter.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
