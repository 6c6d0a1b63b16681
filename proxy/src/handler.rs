//! The proxy as a [`serve::Handler`]: one HTTP/1 connection per accepted socket, each request
//! dispatched to [`crate::connect`] or [`crate::forward`] under the policy generation in force
//! when it arrived. The socket reaches hyper through [`ClientIo`]; when hyper gives up on the
//! connection, [`crate::edge`] answers in its place.

use std::sync::Arc;
use std::time::Duration;

use audit::Sink;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioTimer;
use resolve::Resolver;
use serve::{Conn, Handler, Peer, Snapshot};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::audit::{Audit, Caller};
use crate::body::ResponseBody;
use crate::client_io::{Answer, ClientIo, Exchange};
use crate::config::ProxyConfig;
use crate::context::{Connection, Generation, Shared};
use crate::error::Failure;
use crate::inspect::Secrets;
use crate::respond::{EXHAUSTED, OVERLOADED, OVERLOADED_STATUS, refuse};
use crate::socks::Socks;
use crate::target::{loggable_authority, loggable_uri};

/// The forward proxy. Cheap to clone; every clone serves the same state.
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
}

impl Proxy {
    /// The proxy for the policy of `resolver`, which resolves the names it allows; audit events
    /// go to `sink`.
    pub fn new(resolver: Arc<Resolver>, config: ProxyConfig, sink: Sink) -> Self {
        Self::with_secrets(resolver, &Secrets::default(), config, sink)
    }

    /// [`Proxy::new`] with the real values of the policy's brokered credentials.
    pub fn with_secrets(
        resolver: Arc<Resolver>,
        secrets: &Secrets,
        config: ProxyConfig,
        sink: Sink,
    ) -> Self {
        let generation = Generation::new(resolver, &config, secrets);
        Self {
            shared: Arc::new(Shared {
                generation: Snapshot::new(generation),
                sandbox_id: Arc::from(config.sandbox_id.as_str()),
                config,
                sink,
            }),
        }
    }

    /// Puts a new policy generation in force atomically: requests already decided finish under
    /// the old one, new requests see the new one, and pooled origin connections are not reused
    /// across the change (the pool belongs to the generation).
    pub fn reload(&self, resolver: Arc<Resolver>) {
        self.reload_with_secrets(resolver, &Secrets::default());
    }

    /// [`Proxy::reload`] with the new policy's credential values.
    pub fn reload_with_secrets(&self, resolver: Arc<Resolver>, secrets: &Secrets) {
        let generation = Generation::new(resolver, &self.shared.config, secrets);
        self.shared.generation.store(generation);
    }

    /// The SOCKS5 listener's handler (`--socks-listen`, `--socks-unix`) for this proxy: the same
    /// policy generation, credential, limits, audit sink and metrics.
    pub fn socks(&self) -> Socks {
        Socks::new(self.shared.clone())
    }

    fn caller(&self, peer: Peer) -> Caller {
        self.shared.caller(peer)
    }

    /// Writes `answer` (a whole response) without reading the request, within two seconds at
    /// most, closes, and audits it as an error for `reason`.
    async fn turn_away<Io: AsyncWrite + Unpin>(
        &self,
        mut io: Io,
        peer: Peer,
        answer: &'static [u8],
        reason: &'static str,
    ) {
        let mut audit = Audit::new(self.caller(peer), "", String::new());
        audit.failed_with(OVERLOADED_STATUS, reason);
        let _ = tokio::time::timeout(Duration::from_secs(1), io.write_all(answer)).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), io.shutdown()).await;
    }
}

impl<Io> Handler<Io> for Proxy
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn serve(self, conn: Conn<Io>) {
        let _open = self.shared.config.metrics.connection();
        let limits = &self.shared.config.limits;
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_header_size(limits.max_header_bytes)
            .max_buf_size(limits.max_header_bytes)
            .keep_alive(true);
        let exchange = Exchange::default();
        let connection = Arc::new(Connection {
            caller: self.caller(conn.peer),
            shared: self.shared.clone(),
            permit: Arc::new(conn.permit),
            tasks: conn.tasks,
            exchange: exchange.clone(),
            challenged: std::sync::Mutex::new(None),
        });
        let service = {
            let connection = connection.clone();
            // Each request's future boxed while it runs: hyper keeps the slot for the request
            // in flight (allocated once per connection, for the connection's life) the size of
            // this future, so inline it would hold 1.1 KiB more on every idle keep-alive
            // connection (docs/benchmarks.md, "Idle connections after the redesign").
            service_fn(move |req| {
                connection.exchange.begin();
                Box::pin(handle(connection.clone(), req))
            })
        };
        let mut http = builder
            .serve_connection(ClientIo::new(conn.io, exchange), service)
            .with_upgrades();
        let result = tokio::select! {
            result = &mut http => result,
            () = conn.shutdown.cancelled() => {
                std::pin::Pin::new(&mut http).graceful_shutdown();
                (&mut http).await
            }
        };
        let Err(error) = result else { return };
        match http.into_parts() {
            Some(parts) => {
                let caller = connection.caller.clone();
                // Boxed: rare, and inline it would make every connection's future five times
                // larger (6.2 KiB instead of 1.3 KiB), for as long as the connection lives.
                let answer = crate::edge::answer(caller, limits, &error, parts.io, parts.read_buf);
                Box::pin(answer).await;
            }
            None => tracing::debug!(%error, "client connection ended with an error"),
        }
    }

    /// Says 503 without reading the request, within two seconds at most, and audits it.
    async fn overloaded(self, io: Io, peer: Peer) {
        self.turn_away(io, peer, OVERLOADED, "overloaded").await;
    }

    /// Out of descriptors: says 503 `proxy-resources` as [`Handler::overloaded`] says its 503.
    async fn exhausted(self, io: Io, peer: Peer) {
        self.turn_away(io, peer, EXHAUSTED, "proxy-resources").await;
    }
}

/// Serves one request; its response tells the connection's [`Exchange`] when it has ended, and
/// a tunnel's `200` hands the connection over for good.
async fn handle(
    connection: Arc<Connection>,
    req: Request<Incoming>,
) -> Result<Response<Answer>, std::convert::Infallible> {
    let tunnel = req.method() == Method::CONNECT;
    let response = respond(&connection, req).await;
    if tunnel && response.status().is_success() {
        connection.exchange.pass_through();
    }
    Ok(response.map(|body| Answer::new(body, connection.exchange.clone())))
}

/// Serves one request under the generation in force now.
async fn respond(connection: &Connection, req: Request<Incoming>) -> Response<ResponseBody> {
    if let Some(credential) = &connection.shared.config.credential {
        let checked = credential.check(req.headers());
        // The 407 before this request, if any, is told now: answered, or refused again.
        let challenged = connection
            .challenged
            .lock()
            .map(|mut held| held.take())
            .unwrap_or_else(|poisoned| poisoned.into_inner().take());
        if let (Some(mut audit), true) = (challenged, checked.is_ok()) {
            audit.answered_challenge();
        }
        if let Err(failure) = checked {
            return refuse_unauthorized(connection, &req, failure);
        }
    }
    let generation = connection.shared.generation.load();
    // Boxed, so that the request's future (boxed by the service, see `Proxy::serve`) holds a
    // pointer, not the largest request's future (4.7 KiB; docs/benchmarks.md, "Idle connections
    // after the redesign").
    if req.method() == Method::CONNECT {
        Box::pin(crate::connect::connect(connection, &generation, req)).await
    } else {
        Box::pin(crate::forward::forward(connection, &generation, req)).await
    }
}

/// A 407 for a request without this sandbox's credential, audited with the caller's address and
/// the destination asked, never with what was presented.
fn refuse_unauthorized(
    connection: &Connection,
    req: &Request<Incoming>,
    failure: Failure,
) -> Response<ResponseBody> {
    let target = match req.method() {
        &Method::CONNECT => loggable_authority(req.uri()).0,
        _ => loggable_uri(req.uri()),
    };
    let mut audit = Audit::new(
        connection.caller.clone(),
        req.method().as_str(),
        target.clone(),
    );
    let challenge = matches!(failure, Failure::ProxyAuthRequired);
    let response = refuse(&mut audit, &target, failure);
    // No credential at all: the client may be waiting for this challenge to send it, on this
    // connection. Its record waits for the next request (or the connection's end).
    if challenge && let Ok(mut held) = connection.challenged.lock() {
        *held = Some(Box::new(audit));
    }
    response
}
