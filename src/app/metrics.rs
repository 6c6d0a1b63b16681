//! The `/metrics` endpoint (`--metrics-listen`): the Prometheus text exposition of the
//! [`metrics::Metrics`] registry, served over HTTP/1 by the shared serve loop, like the proxy.
//! Only `GET` (and `HEAD`) of `/metrics`; nothing else, and nothing that changes state. With
//! `--metrics-require-credential`, only for a scraper that sends the sandbox's proxy credential
//! as `Authorization: Basic` (401 otherwise, the body saying nothing of the credential).
//!
//! Scrapes are served under a slowloris: a connection that holds a place without finishing its
//! request is closed after [`HEADER_READ_TIMEOUT`], and beyond [`MAX_CONNECTIONS`] open a new
//! connection is served all the same while the one open longest is closed to make room
//! ([`Open`]). Holding the endpoint would take opening connections faster than a scraper sends
//! its request.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
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
use proxy::Credential;
use serve::{Conn, Handler};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

/// How long a scraper may take to send its request head (and a kept-alive connection may wait
/// for its next one): a scraper sends its head at once.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Scrapers served at once: a scrape is quick, and nobody else belongs here. One more, and the
/// connection open longest is closed.
const MAX_CONNECTIONS: usize = 16;
/// Connections the serve loop holds for the endpoint at once, counting those closed to make room
/// and not gone yet; beyond it, a new one is closed unserved. Far above [`MAX_CONNECTIONS`], so
/// that making room never waits for the connections being closed.
pub const MAX_ACCEPTED: usize = 256;

/// Serves the registry's text to scrapers.
#[derive(Clone)]
pub struct Endpoint {
    metrics: Arc<Metrics>,
    credential: Option<Credential>,
    open: Arc<Open>,
}

impl Endpoint {
    /// The endpoint for `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            credential: None,
            open: Arc::default(),
        }
    }

    /// The endpoint, answering only scrapers that send `credential` (`None`: anyone).
    pub fn requiring(self, credential: Option<Credential>) -> Self {
        Self { credential, ..self }
    }

    /// True when the request may read the metrics.
    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let Some(credential) = &self.credential else {
            return true;
        };
        req.headers()
            .get_all(header::AUTHORIZATION)
            .iter()
            .any(|value| credential.is_carried_by(value.as_bytes()))
    }

    fn respond(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let (status, body, content_type) = match (req.method(), req.uri().path()) {
            (_, "/metrics") if !self.authorized(req) => (
                StatusCode::UNAUTHORIZED,
                "egressd: /metrics needs this sandbox's proxy credential (Authorization: Basic)\n"
                    .to_owned(),
                "text/plain; charset=utf-8",
            ),
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
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"egressd metrics\""),
            );
        }
        response
    }
}

impl<Io> Handler<Io> for Endpoint
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Not an `async fn`: the connection takes its place among those open as it is accepted,
    /// in the order of arrival, whenever its task first runs.
    fn serve(self, conn: Conn<Io>) -> impl Future<Output = ()> + Send + 'static {
        let open = self.open.clone();
        let (id, closed) = open.enter();
        async move { self.serve_http(conn, open, id, closed).await }
    }
}

impl Endpoint {
    async fn serve_http<Io>(
        self,
        conn: Conn<Io>,
        open: Arc<Open>,
        id: u64,
        closed: CancellationToken,
    ) where
        Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = service_fn(move |req| {
            let response = self.respond(&req);
            async move { Ok::<_, Infallible>(response) }
        });
        let http = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .keep_alive(true)
            .serve_connection(TokioIo::new(conn.io), service);
        tokio::pin!(http);
        let result = tokio::select! {
            result = http.as_mut() => result,
            () = closed.cancelled() => Ok(()),
            () = conn.shutdown.cancelled() => {
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
    /// Adds a connection: its id, and the token cancelled to close it. Beyond
    /// [`MAX_CONNECTIONS`], the connection open longest (a slowloris's, under one) is closed.
    fn enter(&self) -> (u64, CancellationToken) {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = CancellationToken::new();
        let mut open = self.lock();
        open.push_back((id, token.clone()));
        while open.len() > MAX_CONNECTIONS {
            if let Some((_, oldest)) = open.pop_front() {
                oldest.cancel();
            }
        }
        (id, token)
    }

    fn leave(&self, id: u64) {
        self.lock().retain(|(open, _)| *open != id);
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
    fn beyond_the_limit_the_connection_open_longest_is_closed() {
        let open = Open::default();
        let (first, first_closed) = open.enter();
        let (_, second_closed) = open.enter();
        open.leave(first);
        let rest: Vec<_> = (0..MAX_CONNECTIONS - 1).map(|_| open.enter().1).collect();
        assert!(!first_closed.is_cancelled(), "it had left");
        assert!(!second_closed.is_cancelled(), "at the limit, not beyond it");
        let (_, newest) = open.enter();
        assert!(second_closed.is_cancelled());
        assert!(!newest.is_cancelled() && rest.iter().all(|t| !t.is_cancelled()));
    }
}
