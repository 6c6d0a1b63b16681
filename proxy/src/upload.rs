//! A request body on its way to the destination, and the clocks around it. Two timeouts, each
//! blaming the side that stopped:
//!
//! - **Upload idle** (`--upload-idle-timeout`): no bytes for that long ends the request, blaming
//!   the side that stopped. The client sent nothing: `408 upload-timeout`, by [`Upload`]. The
//!   destination read nothing (its connection would not take a write): `504 upstream-timeout`, by
//!   the origin connection (`connector.rs`), which also ends that connection. Both hold after the
//!   response has started too.
//! - **Response** (`--response-timeout`): from the moment the body has been sent until the whole
//!   response head has arrived; a slow upload never eats into it.
//!
//! A malformed body (bad chunked framing, shorter than its Content-Length) is the client's error,
//! [`Failure::RequestBody`]: `400 bad-request` when the response has not started; once it has, the
//! connection is cut and the audit event says why ([`Progress::failure`]).
//!
//! Requests without a body skip all of this: [`await_response`] is then one `timeout`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::rt::{Read, ReadBufCursor, Write};
use tokio::time::{Instant, Sleep};

use crate::audit::Audit;
use crate::error::Failure;
use crate::headers::Attribution;
use crate::limits::Limits;
use crate::progress::Progress;

/// The request body as sent to the destination: counts bytes for the audit record, times the
/// client with the upload idle timeout, and reports malformed bodies as [`Failure::RequestBody`].
pub struct Upload<B = Incoming> {
    inner: B,
    counter: Arc<AtomicU64>,
    /// Trailers never carry attribution: lookalikes are removed from them.
    attribution: Arc<Attribution>,
    /// `None` for an empty body, which hyper never polls.
    progress: Option<Arc<Progress>>,
    /// Runs while the body waits for the client.
    idle: IdleTimer,
}

impl<B: Body> Upload<B> {
    /// Wraps `inner`, counting into `counter` and removing attribution lookalikes from its
    /// trailers; `None` for the progress when the body is empty (nothing to time).
    pub fn new(
        inner: B,
        counter: Arc<AtomicU64>,
        idle: Duration,
        attribution: Arc<Attribution>,
    ) -> (Self, Option<Arc<Progress>>) {
        let progress = (!inner.is_end_stream()).then(|| Arc::new(Progress::new()));
        let upload = Self {
            inner,
            counter,
            attribution,
            progress: progress.clone(),
            idle: IdleTimer::new(idle),
        };
        (upload, progress)
    }

    /// A request's body as sent on: an [`Upload`] under `limits`'s upload idle timeout, counted
    /// into `audit`'s bytes up, its progress watched by `audit`.
    pub(crate) fn watched(
        inner: B,
        audit: &mut Audit,
        limits: &Limits,
        attribution: Arc<Attribution>,
    ) -> (Self, Option<Arc<Progress>>) {
        let (upload, progress) = Self::new(
            inner,
            audit.bytes.up.clone(),
            limits.upload_idle_timeout,
            attribution,
        );
        if let Some(progress) = &progress {
            audit.watch_upload(progress.clone());
        }
        (upload, progress)
    }

    fn finish(&self) {
        if let Some(progress) = &self.progress {
            progress.finish();
        }
    }

    fn fail(&self, failure: Failure) -> Failure {
        match &self.progress {
            Some(progress) => progress.fail(failure),
            None => failure,
        }
    }
}

/// True when `frame`, just polled from `body`, is its last: hyper stops polling a body that says
/// it has ended, and after its trailers, which are always the last frame. Whatever marks a
/// body's end (the upload sent, the response whole, its origin connection free) asks this.
pub(crate) fn is_last<B: Body>(frame: &Frame<Bytes>, body: &B) -> bool {
    frame.is_trailers() || body.is_end_stream()
}

/// An idle timeout for one side of a stream: started when a poll must wait, stopped when one
/// makes progress, expired once the waits since the last progress reach the limit. The timer is
/// allocated the first time a poll waits, and only re-armed after progress.
pub(crate) struct IdleTimer {
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl IdleTimer {
    pub(crate) fn new(limit: Duration) -> Self {
        Self {
            limit,
            timer: None,
            armed: false,
        }
    }

    pub(crate) fn limit(&self) -> Duration {
        self.limit
    }

    /// A poll made progress.
    pub(crate) fn moved(&mut self) {
        self.armed = false;
    }

    /// A poll must wait: true once nothing has moved for the limit (the task is woken then).
    pub(crate) fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = Instant::now() + self.limit;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.armed {
            timer.as_mut().reset(deadline);
            self.armed = true;
        }
        timer.as_mut().poll(cx).is_ready()
    }
}

/// A connection to a destination (origin or parent proxy, plain or TLS) whose writes are timed:
/// a write the destination does not take for the upload idle timeout fails with
/// [`Failure::UploadStalled`]; hyper then ends the connection (which would otherwise wait for
/// ever to flush) and the request reports why.
pub(crate) struct Stalling<T> {
    io: T,
    /// Runs while a write waits for the destination.
    stall: IdleTimer,
}

impl<T> Stalling<T> {
    pub(crate) fn new(io: T, limit: Duration) -> Self {
        Self {
            io,
            stall: IdleTimer::new(limit),
        }
    }
}

impl<T: Read + Unpin> Read for Stalling<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for Stalling<T> {
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

impl<B> Body for Upload<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error,
{
    type Data = Bytes;
    type Error = Failure;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Failure>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(mut frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.counter.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                if let Some(trailers) = frame.trailers_mut() {
                    this.attribution.strip_lookalikes(trailers);
                }
                this.idle.moved();
                if is_last(&frame, &this.inner) {
                    this.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                let failure = Failure::RequestBody(body_error(&error));
                Poll::Ready(Some(Err(this.fail(failure))))
            }
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.idle.expired(cx) {
                    let failure = Failure::UploadTimeout(this.idle.limit());
                    return Poll::Ready(Some(Err(this.fail(failure))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// hyper's body error, with its cause (`invalid chunk size`, `unexpected EOF`, ...).
fn body_error(error: &dyn std::error::Error) -> String {
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

/// Waits for the response head of a request whose body is `progress` (`None`: no body): the
/// response timeout runs from the end of the upload. A stalled upload fails `response` on its
/// own: the client's side by [`Upload`], the destination's by the origin connection
/// (`connector.rs`).
pub async fn await_response<T>(
    response: impl Future<Output = Result<T, Failure>>,
    progress: Option<&Progress>,
    limits: &Limits,
) -> Result<T, Failure> {
    tokio::pin!(response);
    if let Some(progress) = progress {
        while progress.sent_at().is_none() && progress.failure().is_none() {
            let ended = progress.ended.notified();
            tokio::select! {
                biased;
                result = &mut response => return blame(result, Some(progress)),
                () = ended => {}
            }
        }
    }
    let deadline = match progress.and_then(Progress::sent_at) {
        Some(sent) => sent + limits.response_timeout,
        // No body, or it failed (then hyper hands its error to `response` at once).
        None => Instant::now() + limits.response_timeout,
    };
    let result = tokio::time::timeout_at(deadline, response)
        .await
        .unwrap_or(Err(Failure::ResponseTimeout));
    blame(result, progress)
}

/// A broken body is the client's error, even when the destination noticed first.
fn blame<T>(result: Result<T, Failure>, progress: Option<&Progress>) -> Result<T, Failure> {
    match (result, progress.and_then(Progress::failure)) {
        (Err(_), Some(failure)) => Err(failure.clone()),
        (result, _) => result,
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
        let (body, _progress) = Upload::new(
            frames,
            counter.clone(),
            Duration::from_secs(60),
            attribution,
        );
        let collected = body.collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap();
        assert_eq!(collected.to_bytes(), Bytes::from_static(b"hello"));
        assert!(trailers.get("x_sandbox_id").is_none());
        assert_eq!(trailers["x-checksum"], "kept");
        assert_eq!(counter.load(Ordering::Relaxed), 5);
    }
}
