//! Moving bytes both ways through a CONNECT tunnel: large buffers, byte counts for the audit
//! record, and an idle timeout (no bytes either way for that long closes the tunnel).
//!
//! The copy is `tokio::io::copy_bidirectional_with_sizes`, portable to macOS. A Linux `splice(2)`
//! path would save a copy through user space; it needs `unsafe` or a crate that wraps it, and is
//! left for the benchmarks issue to justify with numbers.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::audit::Bytes;

/// How a tunnel ended.
#[derive(Debug)]
pub enum TunnelEnd {
    /// Both sides finished.
    Closed,
    /// Nothing moved for the idle timeout.
    Idle,
    /// A side failed (reset, broken pipe): normal for tunnels, logged at debug.
    Error(io::Error),
}

/// Copies between `client` and `origin` until both close, one fails, or the tunnel idles out.
pub async fn run<C, O>(
    client: C,
    origin: O,
    bytes: &Bytes,
    idle: Duration,
    buffer: usize,
) -> TunnelEnd
where
    C: AsyncRead + AsyncWrite + Unpin,
    O: AsyncRead + AsyncWrite + Unpin,
{
    let clock = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let mut client = Metered {
        inner: client,
        counter: bytes.up.clone(),
        activity: activity.clone(),
        clock,
    };
    let mut origin = Metered {
        inner: origin,
        counter: bytes.down.clone(),
        activity: activity.clone(),
        clock,
    };
    let copy = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut origin, buffer, buffer);
    let watchdog = async {
        loop {
            let last = Duration::from_millis(activity.load(Ordering::Relaxed));
            let deadline = clock + last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    };
    tokio::select! {
        result = copy => match result {
            Ok(_) => TunnelEnd::Closed,
            Err(e) => TunnelEnd::Error(e),
        },
        () = watchdog => TunnelEnd::Idle,
    }
}

/// Counts bytes read from `inner` and stamps the time of the last activity either way.
struct Metered<S> {
    inner: S,
    counter: Arc<AtomicU64>,
    activity: Arc<AtomicU64>,
    clock: Instant,
}

impl<S> Metered<S> {
    fn touch(&self) {
        // Milliseconds since the tunnel opened fit u64 for half a billion years.
        self.activity
            .store(self.clock.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            self.counter.fetch_add(read as u64, Ordering::Relaxed);
            self.touch();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
