//! HTTP/2 for the inspection tests, on loopback: a TLS origin (hyper) that speaks HTTP/2 when the
//! client offers it by ALPN (or only HTTP/1.1, when told), and an HTTP/2 client (hyper over
//! rustls) that opens a CONNECT tunnel through egressd and speaks h2 inside it.
//!
//! The origin answers `GET /ok/bytes/N` with N bytes (in 16 KiB pieces), everything else with a
//! short body; every response carries what the origin received in `x-seen-*` headers (the
//! version, the host it was asked for, `authorization`, `x-egressd-sandbox`), and a trailer
//! `x-origin-trailer: done`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::TestCa;

/// What the origin received, one entry per request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub version: http::Version,
    pub path: String,
    pub headers: http::HeaderMap,
}

/// A loopback TLS origin: HTTP/2 when offered (and `h2` is true), else HTTP/1.1.
pub struct H2Origin {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _runtime: tokio::runtime::Runtime,
}

impl H2Origin {
    pub fn start(ca: &TestCa, names: &[&str], h2: bool) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (leaf, key) = ca.leaf(names);
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf], key)
        .unwrap();
        config.alpn_protocols = if h2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, log) = (acceptor.clone(), log.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    let service = hyper::service::service_fn(move |req| {
                        let log = log.clone();
                        async move { Ok::<_, Infallible>(answer(req, &log)) }
                    });
                    let io = TokioIo::new(tls);
                    if h2 {
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, service)
                            .await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await;
                    }
                });
            }
        });
        Self {
            addr,
            seen,
            _runtime: runtime,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn answer(req: Request<Incoming>, log: &Mutex<Vec<Seen>>) -> Response<Body> {
    let host = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let path = req.uri().path().to_owned();
    log.lock().unwrap().push(Seen {
        version: req.version(),
        path: path.clone(),
        headers: req.headers().clone(),
    });
    let size: usize = path
        .strip_prefix("/ok/bytes/")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let mut frames = std::collections::VecDeque::new();
    if size == 0 {
        frames.push_back(Frame::data(Bytes::from(format!(
            "{} {}\n",
            req.method(),
            path
        ))));
    } else {
        let piece = Bytes::from(vec![0x5a; 16 * 1024]);
        let mut left = size;
        while left > 0 {
            let n = left.min(piece.len());
            frames.push_back(Frame::data(piece.slice(..n)));
            left -= n;
        }
    }
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-origin-trailer", http::HeaderValue::from_static("done"));
    frames.push_back(Frame::trailers(trailers));
    let body = Frames(frames).boxed();
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    let version = format!("{:?}", req.version());
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = http::HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set("x-seen-version", &version);
    set("x-seen-host", &host);
    for (name, seen) in [
        ("authorization", "x-seen-authorization"),
        ("x-egressd-sandbox", "x-seen-sandbox"),
    ] {
        let value = req
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(" | ");
        set(seen, &value);
    }
    response
}

/// A body of the given frames, each ready at once.
struct Frames(std::collections::VecDeque<Frame<Bytes>>);

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.0.pop_front().map(Ok))
    }
}

/// An HTTP/2 connection through egressd: CONNECT `authority`, TLS with SNI `sni` trusting
/// `roots` and offering only `h2`, then the h2 handshake. `Err` says which step failed.
pub async fn h2_session(
    proxy: SocketAddr,
    authority: &str,
    sni: &str,
    roots: &[CertificateDer<'static>],
) -> Result<hyper::client::conn::http2::SendRequest<Full<Bytes>>, String> {
    let mut stream = TcpStream::connect(proxy).await.map_err(|e| e.to_string())?;
    let connect = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    stream
        .write_all(connect.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream
            .read_exact(&mut byte)
            .await
            .map_err(|e| e.to_string())?;
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 200") {
        return Err(String::from_utf8_lossy(&head).into_owned());
    }
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err("egressd did not agree to h2".to_owned());
    }
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("h2 handshake: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

/// What one h2 request got: the status, the response headers, the body's length and its
/// trailers.
#[derive(Debug)]
pub struct H2Fetched {
    pub status: u16,
    pub version: http::Version,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub trailers: Option<http::HeaderMap>,
}

impl H2Fetched {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// `method https://authority{path}` on `sender`, with `headers`; reads the whole response.
pub async fn h2_fetch(
    sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    method: &str,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<H2Fetched, String> {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("https://{authority}{path}"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Full::new(Bytes::new())).unwrap();
    sender.ready().await.map_err(|e| e.to_string())?;
    let response = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.map_err(|e| e.to_string())?;
    let trailers = collected.trailers().cloned();
    Ok(H2Fetched {
        status: parts.status.as_u16(),
        version: parts.version,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    })
}
