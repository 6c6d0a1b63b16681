//! The `/metrics` endpoint (`--metrics-listen`): the Prometheus text exposition of the
//! [`metrics::Metrics`] registry, served over HTTP/1 by the shared serve loop, like the proxy.
//! Only `GET` (and `HEAD`) of `/metrics`; nothing else, and nothing that changes state.
//!
//! Scrapes are served under a slowloris: a connection that holds a place without finishing its
//! request is closed after [`HEADER_READ_TIMEOUT`], and over [`MAX_CONNECTIONS`] a new connection
//! is served all the same while the oldest one open is closed to make room ([`Open`]). Holding
//! the endpoint would take opening connections faster than a scraper sends its request.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics::Metrics;
use serve::{Conn, Handler, Peer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

/// How long a scraper may take to send its request head (and a kept-alive connection may wait
/// for its next one): a scraper sends its head at once.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Scrapers served at once: a scrape is quick, and nobody else belongs here.
pub const MAX_CONNECTIONS: usize = 16;

/// Serves the registry's text to scrapers.
#[derive(Clone)]
pub struct Endpoint {
    metrics: Arc<Metrics>,
    open: Arc<Open>,
}

impl Endpoint {
    /// The endpoint for `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            open: Arc::default(),
        }
    }

    fn respond(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let (status, body, content_type) = match (req.method(), req.uri().path()) {
            (&Method::GET | &Method::HEAD, "/metrics") => {
                (StatusCode::OK, self.metrics.encode(), metrics::CONTENT_TYPE)
            }
            (_, "/metrics") => (
                StatusCode::METHOD_NOT_ALLOWED,
                "egressd: only GET /metrics\n".to_owned(),
                "text/plain; charset=utf-8",
            ),
            _ => (
                StatusCode::NOT_FOUND,
                "egressd: metrics are at /metrics\n".to_owned(),
                "text/plain; charset=utf-8",
            ),
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(content_type),
        );
        response
    }
}

impl<Io> Handler<Io> for Endpoint
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn serve(self, conn: Conn<Io>) {
        self.serve_http(conn.io, conn.shutdown, true).await;
    }

    /// Over the limit: served all the same (one request, so it ends within the header timeout
    /// without being told of a shutdown), and the oldest connection open is closed instead.
    async fn overloaded(self, io: Io, _: Peer) {
        self.open.close_oldest();
        self.serve_http(io, CancellationToken::new(), false).await;
    }
}

impl Endpoint {
    async fn serve_http<Io>(self, io: Io, shutdown: CancellationToken, keep_alive: bool)
    where
        Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let open = self.open.clone();
        let (id, closed) = open.enter();
        let service = service_fn(move |req| {
            let response = self.respond(&req);
            async move { Ok::<_, Infallible>(response) }
        });
        let http = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .keep_alive(keep_alive)
            .serve_connection(TokioIo::new(io), service);
        tokio::pin!(http);
        let result = tokio::select! {
            result = http.as_mut() => result,
            () = closed.cancelled() => Ok(()),
            () = shutdown.cancelled() => {
                http.as_mut().graceful_shutdown();
                http.await
            }
        };
        open.leave(id);
        if let Err(error) = result {
            tracing::debug!(%error, "metrics connection ended with an error");
        }
    }
}

/// The connections open on the endpoint, oldest first, each with the token that closes it.
#[derive(Default)]
struct Open {
    connections: Mutex<VecDeque<(u64, CancellationToken)>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Open {
    /// Adds a connection: its id, and the token cancelled to close it.
    fn enter(&self) -> (u64, CancellationToken) {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = CancellationToken::new();
        self.lock().push_back((id, token.clone()));
        (id, token)
    }

    fn leave(&self, id: u64) {
        self.lock().retain(|(open, _)| *open != id);
    }

    /// Closes the connection open the longest: a slowloris's, under one.
    fn close_oldest(&self) {
        if let Some((_, token)) = self.lock().pop_front() {
            token.cancel();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, CancellationToken)>> {
        // Only ids and tokens behind this lock: usable whatever panicked while holding it.
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_the_limit_the_connection_open_longest_is_closed() {
        let open = Open::default();
        let (first, first_closed) = open.enter();
        let (_, second_closed) = open.enter();
        open.leave(first);
        let (_, third_closed) = open.enter();
        open.close_oldest();
        assert!(!first_closed.is_cancelled(), "it had left");
        assert!(second_closed.is_cancelled());
        assert!(!third_closed.is_cancelled());
        open.close_oldest();
        assert!(third_closed.is_cancelled());
        open.close_oldest();
    }
}
