//! The origin connections of absolute-form requests (`forward.rs`): HTTP/1.1 connections opened by
//! the [`Connector`] (to the origin, or to the parent proxy), kept between requests and shared by
//! every client connection of one policy generation.
//!
//! - **Keyed by the canonical authority** of the request sent on (`forward.rs` writes it), never by
//!   the client's spelling: `http://x@host/` and `http://HOST:80/` share `host`'s connections.
//! - **Back when the response has been read**: a response's body holds its connection ([`Leased`])
//!   and gives it back at its end. A body cut short (the client left, the origin stalled) gives
//!   it back too: hyper then reads the rest of the response or closes the connection, and until
//!   it can take a request it is never picked. A connection that failed is not given back.
//! - **At most [`PER_HOST`] idle per key, each for at most [`IDLE`]**: a task runs while any
//!   connection is idle and closes each at its time, so an origin named once is not held open
//!   for ever.
//! - **A request that never reached a reused connection is sent once more on a new one**: an
//!   origin may close an idle connection just as egressd picks it (HTTP/1.1 §9.3.1); the request
//!   is retried only when hyper hands it back unsent.
//!
//! hyper-util's pooled client did this before. This pool does only what egressd needs (one hash
//! of the key, no task per request, no oneshot, no futures moved): a keep-alive request costs
//! 0.83x the instructions it did over that client (docs/benchmarks.md, "CPU per HTTP request").

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use policy::Target;
use tokio::time::Instant;

use crate::connector::Connector;
use crate::error::{Failure, failure_in};
use crate::upload::{Upload, is_last};

/// How long an idle origin connection is kept.
pub(crate) const IDLE: Duration = Duration::from_secs(90);
/// Idle connections kept per origin.
pub(crate) const PER_HOST: usize = 32;

/// The origin connections of one policy generation.
pub(crate) struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    connector: Connector,
    idle: Mutex<Idle>,
}

#[derive(Default)]
struct Idle {
    by_key: HashMap<Arc<str>, Vec<Kept>>,
    /// Whether the task that closes expired connections runs.
    reaping: bool,
}

/// An idle connection and since when.
struct Kept {
    conn: Conn,
    since: Instant,
}

/// One origin connection's sending half.
struct Conn {
    sender: http1::SendRequest<Upload>,
    key: Arc<str>,
    peer: SocketAddr,
}

/// A response from the origin, and the address its connection reached.
pub(crate) struct Sent {
    pub(crate) response: Response<Leased>,
    pub(crate) peer: SocketAddr,
}

impl Pool {
    pub(crate) fn new(connector: Connector) -> Self {
        Self {
            inner: Arc::new(Inner {
                connector,
                idle: Mutex::new(Idle::default()),
            }),
        }
    }

    /// Sends `req` (absolute-form and canonical, `Host` set: `forward.rs`) to `target` over an
    /// idle connection or a new one.
    pub(crate) async fn send(
        &self,
        target: &Target,
        mut req: Request<Upload>,
    ) -> Result<Sent, Failure> {
        let key = key_of(req.uri());
        let (mut conn, mut reused) = match self.inner.checkout(key) {
            Some(conn) => (conn, true),
            // Boxed: dialing (resolution, the connect, the handshake) is a large future, and
            // inline it would be copied with every request's future.
            None => (
                Box::pin(self.inner.open(target, Arc::from(key))).await?,
                false,
            ),
        };
        if !self.inner.connector.via_parent() {
            // A parent proxy gets the absolute form; an origin, the path (RFC 9112 §3.2).
            origin_form(req.uri_mut());
        }
        loop {
            match conn.sender.try_send_request(req).await {
                Ok(response) => {
                    let peer = conn.peer;
                    let lease = Lease {
                        conn,
                        pool: self.inner.clone(),
                    };
                    let response = response.map(|inner| Leased::new(inner, lease));
                    return Ok(Sent { response, peer });
                }
                Err(mut error) => match error.take_message() {
                    // Unsent on a connection the origin had closed meanwhile: once more, anew.
                    Some(unsent) if reused => {
                        req = unsent;
                        conn = Box::pin(self.inner.open(target, conn.key.clone())).await?;
                        reused = false;
                    }
                    _ => return Err(failure_in(error.error())),
                },
            }
        }
    }
}

impl Inner {
    /// The most recently used idle connection for `key` that can take a request now.
    fn checkout(&self, key: &str) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let kept = idle.by_key.get_mut(key)?;
        kept.retain(|k| !k.conn.sender.is_closed());
        let i = kept.iter().rposition(|k| k.conn.sender.is_ready())?;
        Some(kept.swap_remove(i).conn)
    }

    /// A new connection for `target`, under `key`.
    async fn open(&self, target: &Target, key: Arc<str>) -> Result<Conn, Failure> {
        let io = self.connector.connect(target).await?;
        let peer = io.peer;
        let (sender, connection) = http1::handshake(io)
            .await
            .map_err(|e| Failure::Upstream(format!("{e:#}")))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "origin connection ended with an error");
            }
        });
        Ok(Conn { sender, key, peer })
    }

    /// Keeps `conn` for the next request to its key, if it is open and there is room.
    fn put(self: &Arc<Self>, conn: Conn) {
        if conn.sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let kept = idle.by_key.entry(conn.key.clone()).or_default();
        kept.retain(|k| !k.conn.sender.is_closed());
        if kept.len() >= PER_HOST {
            return;
        }
        kept.push(Kept {
            conn,
            since: Instant::now(),
        });
        if !idle.reaping
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            idle.reaping = true;
            let reaping = Reaping {
                pool: Arc::downgrade(self),
                armed: true,
            };
            // Not under the lock: a runtime shutting down drops the task at once, and with it
            // `reaping`, which takes the lock.
            drop(idle);
            runtime.spawn(reap(reaping));
        }
    }
}

/// Closes each idle connection [`IDLE`] after it was put back (at most a second late, so that
/// many connections put back at different times cost one pass a second, not one each), while
/// any is idle; ends with the pool.
async fn reap(mut reaping: Reaping) {
    loop {
        let next = {
            let Some(pool) = reaping.pool.upgrade() else {
                return;
            };
            let mut idle = pool.idle.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            idle.by_key.retain(|_, kept| {
                kept.retain(|k| !k.conn.sender.is_closed() && now < k.since + IDLE);
                !kept.is_empty()
            });
            match idle.by_key.values().flatten().map(|k| k.since).min() {
                Some(oldest) => (oldest + IDLE).max(now + Duration::from_secs(1)),
                None => {
                    // Under the lock: a connection put back from now on starts a new reaper.
                    idle.reaping = false;
                    reaping.armed = false;
                    return;
                }
            }
        };
        tokio::time::sleep_until(next).await;
    }
}

/// The reaper's hold on its pool. Dropped while `armed` (the task was dropped with its runtime,
/// run or not), it clears the pool's `reaping`, so a later connection put back starts another.
struct Reaping {
    pool: Weak<Inner>,
    armed: bool,
}

impl Drop for Reaping {
    fn drop(&mut self) {
        if self.armed
            && let Some(pool) = self.pool.upgrade()
        {
            pool.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .reaping = false;
        }
    }
}

/// The pool key of a canonical request URI: its authority.
fn key_of(uri: &Uri) -> &str {
    uri.authority().map_or("", |a| a.as_str())
}

/// `http://host/path?q` → `/path?q`, as an origin is sent it.
fn origin_form(uri: &mut Uri) {
    let path = match uri.path_and_query() {
        Some(path) if path.as_str() != "/" => {
            let mut parts = http::uri::Parts::default();
            parts.path_and_query = Some(path.clone());
            Uri::from_parts(parts).unwrap_or_default()
        }
        _ => Uri::default(),
    };
    *uri = path;
}

/// A connection on loan to one response.
struct Lease {
    conn: Conn,
    pool: Arc<Inner>,
}

/// A response body from the pool: gives its connection back once the body has ended.
pub(crate) struct Leased {
    inner: Incoming,
    lease: Option<Lease>,
}

impl Leased {
    fn new(inner: Incoming, lease: Lease) -> Self {
        let mut leased = Self {
            inner,
            lease: Some(lease),
        };
        // A body empty from the start (a 204, a HEAD's) is never polled.
        if leased.inner.is_end_stream() {
            leased.release();
        }
        leased
    }

    fn release(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.pool.put(lease.conn);
        }
    }
}

impl Drop for Leased {
    fn drop(&mut self) {
        // Ended or not: hyper reads the rest of a response not read to its end, or closes the
        // connection; either way it is not picked before it can take a request.
        self.release();
    }
}

impl Body for Leased {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) if is_last(frame, &self.inner) => self.release(),
            Poll::Ready(None) => self.release(),
            // The connection failed: it is not given back.
            Poll::Ready(Some(Err(_))) => self.lease = None,
            _ => {}
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
    use super::*;

    #[test]
    fn origin_form_keeps_the_path_and_query_only() {
        for (absolute, origin) in [
            ("http://a.test/", "/"),
            ("http://a.test", "/"),
            ("http://a.test:8080/x/y?q=1&r", "/x/y?q=1&r"),
            ("http://a.test/?q", "/?q"),
        ] {
            let mut uri: Uri = absolute.parse().unwrap();
            origin_form(&mut uri);
            assert_eq!(uri.to_string(), origin, "{absolute}");
        }
    }
}
