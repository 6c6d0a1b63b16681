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
use crate::headers::Attribution;

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

/// Counts the data bytes that pass through `inner`. When it holds the request's [`Audit`], the
/// audit event is emitted as the body is dropped: after the last byte, or when the client leaves.
/// A request body also loses any trailer that looks like an attribution header.
pub struct Counted<B> {
    inner: B,
    counter: Arc<AtomicU64>,
    _audit: Option<Audit>,
    trailers: Option<Arc<Attribution>>,
}

impl<B> Counted<B> {
    /// A request body: counts into `counter`, and removes attribution lookalikes from its
    /// trailers.
    pub fn request(inner: B, counter: Arc<AtomicU64>, attribution: Arc<Attribution>) -> Self {
        Self {
            inner,
            counter,
            _audit: None,
            trailers: Some(attribution),
        }
    }

    /// Counts into `counter` and keeps `audit` alive until the body is dropped.
    pub fn with_audit(inner: B, counter: Arc<AtomicU64>, audit: Audit) -> Self {
        Self {
            inner,
            counter,
            _audit: Some(audit),
            trailers: None,
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
        let mut polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &mut polled {
            if let Some(data) = frame.data_ref() {
                self.counter.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            if let (Some(trailers), Some(attribution)) = (frame.trailers_mut(), &self.trailers) {
                attribution.strip_lookalikes(trailers);
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use http::{HeaderMap, HeaderValue};
    use http_body_util::BodyExt;
    use policy::HeaderTemplate;

    use super::*;

    /// A body of ready frames.
    struct Frames(VecDeque<Frame<Bytes>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    #[tokio::test]
    async fn request_trailers_lose_attribution_lookalikes_and_data_is_counted() {
        let attribution = Arc::new(Attribution::render(
            &[HeaderTemplate::parse("X-Sandbox-Id", "sb").unwrap()],
            &[],
            "",
        ));
        let mut trailers = HeaderMap::new();
        trailers.insert("x_sandbox_id", HeaderValue::from_static("spoof"));
        trailers.insert("x-checksum", HeaderValue::from_static("kept"));
        let frames = Frames(VecDeque::from([
            Frame::data(Bytes::from_static(b"hello")),
            Frame::trailers(trailers),
        ]));
        let counter = Arc::new(AtomicU64::new(0));
        let body = Counted::request(frames, counter.clone(), attribution);
        let collected = body.collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap();
        assert_eq!(collected.to_bytes(), Bytes::from_static(b"hello"));
        assert!(trailers.get("x_sandbox_id").is_none());
        assert_eq!(trailers["x-checksum"], "kept");
        assert_eq!(counter.load(Ordering::Relaxed), 5);
    }
}
