//! The floor: the least an HTTP/1.1 forward proxy built on egressd's libraries (tokio, hyper's
//! server connection, hyper's client connection) can cost per proxied request. Issue 20, item 6
//! asks for egressd's CPU per request at or under half a baseline's; this program measures what
//! the libraries alone take (benches/floor/per.sh, under callgrind).
//!
//! What it does, and nothing more: a multi-thread runtime with 2 workers (egressd's default on a
//! 2-core machine: one per core), an accept loop, `hyper::server::conn::http1` with `service_fn`
//! per client connection; each absolute-form request goes over one `hyper::client::conn::http1`
//! connection to the origin its URI names (opened at the first request, reused for the client
//! connection's life; no pool), with the URI rewritten to origin-form, `Host` set, the proxy
//! credential and hop-by-hop headers removed; the response is streamed back. No policy, no audit,
//! no credential check, no timeouts beyond the flags below.
//!
//! Flags (anything else, e.g. egressd's `run --policy ...`, is ignored):
//! - `--timer`: the server builder gets egressd's `timer(TokioTimer)` and
//!   `header_read_timeout(10s)` (a timer armed at each request head and dropped).
//! - `--upgrades`: `serve_connection(..).with_upgrades()`, as egressd serves (for CONNECT).
//! - `--legacy`: origin requests go through `hyper_util::client::legacy::Client` (egressd's pool,
//!   built as egressd builds it) instead of one owned `client::conn::http1` connection.
//!
//! Prints one readiness line like egressd's: `{"proxy":"127.0.0.1:PORT","proxy_url":...}`.
//! Exits on SIGTERM or SIGINT.

use std::convert::Infallible;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1 as client;
use hyper::server::conn::http1 as server;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client as Legacy;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

type Body = Either<Incoming, Full<Bytes>>;

#[derive(Clone, Copy)]
struct Flags {
    timer: bool,
    upgrades: bool,
    legacy: bool,
}

/// The one origin connection a client connection forwards over.
struct Origin {
    authority: Authority,
    send: client::SendRequest<Incoming>,
}

/// What one client connection forwards through (one per connection, behind an `Arc`).
#[allow(clippy::large_enum_variant)]
enum Upstream {
    /// An owned origin connection, taken out while a request is on it.
    Owned(Mutex<Option<Origin>>),
    /// egressd's pooled client, shared by all connections.
    Legacy(Legacy<HttpConnector, Incoming>),
}

const HOP_BY_HOP: [header::HeaderName; 6] = [
    header::PROXY_AUTHORIZATION,
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::HeaderName::from_static("proxy-connection"),
];

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let flags = Flags {
        timer: args.iter().any(|a| a == "--timer"),
        upgrades: args.iter().any(|a| a == "--upgrades"),
        legacy: args.iter().any(|a| a == "--legacy"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve(flags))
}

async fn serve(flags: Flags) -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            r#"{{"proxy":"{addr}","proxy_url":"http://u:p@{addr}"}}"#
        )?;
        out.flush()?;
    }
    let legacy = flags.legacy.then(|| {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Legacy::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(32)
            .set_host(true)
            .build(connector)
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = term.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Ok((stream, _)) = accepted else { continue };
        let _ = stream.set_nodelay(true);
        let upstream = Arc::new(match &legacy {
            Some(client) => Upstream::Legacy(client.clone()),
            None => Upstream::Owned(Mutex::new(None)),
        });
        tokio::spawn(connection(stream, upstream, flags));
    }
}

async fn connection(stream: TcpStream, upstream: Arc<Upstream>, flags: Flags) {
    let mut builder = server::Builder::new();
    builder.max_buf_size(64 * 1024).keep_alive(true);
    if flags.timer {
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10));
    }
    let service = service_fn(move |req| forward(upstream.clone(), req));
    let io = TokioIo::new(stream);
    let _ = if flags.upgrades {
        builder.serve_connection(io, service).with_upgrades().await
    } else {
        builder.serve_connection(io, service).await
    };
}

fn answer(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
    *response.status_mut() = status;
    response
}

async fn forward(
    upstream: Arc<Upstream>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (mut parts, body) = req.into_parts();
    let Some(authority) = parts.uri.authority().cloned() else {
        return Ok(answer(StatusCode::BAD_REQUEST));
    };
    for name in &HOP_BY_HOP {
        parts.headers.remove(name);
    }
    let sent = match &*upstream {
        Upstream::Legacy(client) => {
            // The pooled client takes the absolute-form URI: it writes origin-form and sets Host.
            client.request(Request::from_parts(parts, body)).await.ok()
        }
        Upstream::Owned(slot) => {
            let path = parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/"));
            parts.uri = Uri::from(path);
            if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
                parts.headers.insert(header::HOST, host);
            }
            let held = slot.lock().map(|mut held| held.take()).unwrap_or(None);
            let origin = match held {
                Some(origin) if origin.authority == authority => Some(origin),
                _ => open(authority).await,
            };
            let Some(mut origin) = origin else {
                return Ok(answer(StatusCode::BAD_GATEWAY));
            };
            if origin.send.ready().await.is_err() {
                return Ok(answer(StatusCode::BAD_GATEWAY));
            }
            let response = origin.send.send_request(Request::from_parts(parts, body));
            if let Ok(mut held) = slot.lock() {
                *held = Some(origin);
            }
            response.await.ok()
        }
    };
    Ok(match sent {
        Some(response) => response.map(Either::Left),
        None => answer(StatusCode::BAD_GATEWAY),
    })
}

async fn open(authority: Authority) -> Option<Origin> {
    let port = authority.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((authority.host(), port)).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (send, conn) = client::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(conn);
    Some(Origin { authority, send })
}
