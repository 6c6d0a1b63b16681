//! The `/metrics` endpoint (`--metrics-listen`): the Prometheus text exposition of the
//! [`metrics::Metrics`] registry, served over HTTP/1 by the shared serve loop, like the proxy.
//! Only `GET` (and `HEAD`) of `/metrics`; nothing else, and nothing that changes state. With
//! `--metrics-require-credential`, only for a scraper that sends the sandbox's proxy credential
//! as `Authorization: Basic` (401 otherwise, the body saying nothing of the credential).

use std::convert::Infallible;
use std::sync::Arc;
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

/// How long a scraper may take to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Scrapers served at once: a scrape is quick, and nobody else belongs here.
pub const MAX_CONNECTIONS: usize = 16;

/// Serves the registry's text to scrapers.
#[derive(Clone)]
pub struct Endpoint {
    metrics: Arc<Metrics>,
    credential: Option<Credential>,
}

impl Endpoint {
    /// The endpoint for `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            credential: None,
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
    async fn serve(self, conn: Conn<Io>) {
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
            () = conn.shutdown.cancelled() => {
                http.as_mut().graceful_shutdown();
                http.await
            }
        };
        if let Err(error) = result {
            tracing::debug!(%error, "metrics connection ended with an error");
        }
    }
}
