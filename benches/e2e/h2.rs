//! HTTP/2 through one inspected session, the memory side: a client starts many large downloads
//! at once on one h2 connection and reads none of them for a while (every window and buffer
//! between the origin and it fills), then reads them all. egressd's RSS before, with the
//! downloads stalled, and at its peak while they are read, against the bound docs/tls.md states
//! (proxy/src/inspect/flow.rs). The origin speaks h2 (hyper).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::peers::{self, Peer};
use crate::report::Row;

const NAME: &str = "inspected.test";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// An h2 TLS origin for [`NAME`]: every request gets `size` bytes in 16 KiB frames. Returns its
/// address and its CA's certificate.
async fn origin(size: usize) -> (SocketAddr, CertificateDer<'static>) {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec![NAME.to_owned(), "opaque.test".to_owned()])
        .expect("names")
        .signed_by(&key, &issuer)
        .expect("leaf");
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let piece = Bytes::from(vec![0x5a; 16 * 1024]);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, piece) = (acceptor.clone(), piece.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |_req| {
                    let body = Pieces {
                        piece: piece.clone(),
                        left: size,
                    };
                    async move { Ok::<_, std::convert::Infallible>(hyper::Response::new(body)) }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, ca_cert.der().clone())
}

/// `left` bytes in pieces, each ready at once.
struct Pieces {
    piece: Bytes,
    left: usize,
}

impl hyper::body::Body for Pieces {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.left.min(self.piece.len());
        self.left -= n;
        std::task::Poll::Ready(Some(Ok(Frame::data(self.piece.slice(..n)))))
    }
}

/// An h2 connection to [`NAME`] through `egressd`, trusting its CA.
async fn session(
    egressd: &Peer,
    port: u16,
) -> Option<hyper::client::conn::http2::SendRequest<Empty<Bytes>>> {
    let mut roots = RootCertStore::empty();
    let ca_file = egressd.ready["inspect_ca"].as_str()?;
    let pem = std::fs::read_to_string(ca_file).ok()?;
    use rustls::pki_types::pem::PemObject;
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.ok()?).ok()?;
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let mut s = TcpStream::connect(egressd.addr).await.ok()?;
    let auth = egressd.auth;
    let connect = format!("CONNECT {NAME}:{port} HTTP/1.1\r\nHost: {NAME}:{port}\r\n{auth}\r\n");
    s.write_all(connect.as_bytes()).await.ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.ok()?;
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 200") {
        return None;
    }
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(NAME).ok()?, s)
        .await
        .ok()?;
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tls))
        .await
        .ok()?;
    tokio::spawn(connection);
    Some(sender)
}

/// The rows: `streams` downloads of `size` bytes each on one inspected h2 session.
pub async fn rows(build: &peers::Build, streams: usize, size: usize) -> Vec<Row> {
    let (addr, ca) = origin(size).await;
    let egressd = crate::tls::egressd(build, addr, &ca);
    let figures = measure(&egressd, addr.port(), streams, size).await;
    let (before, stalled, peak, complete) = figures.unwrap_or((0.0, 0.0, 0.0, false));
    let title = format!(
        "{streams} h2 downloads of {} MiB, one inspected session",
        size >> 20
    );
    vec![
        Row::new(&format!("{title}: RSS before"), "MiB").egressd(before),
        Row::new(&format!("{title}: RSS, all stalled"), "MiB").egressd(if complete {
            stalled
        } else {
            0.0
        }),
        Row::new(&format!("{title}: peak RSS while read"), "MiB").egressd(if complete {
            peak
        } else {
            0.0
        }),
    ]
}

/// RSS before, with every download stalled, and at the peak while they are read; whether every
/// download arrived whole.
async fn measure(
    egressd: &Peer,
    port: u16,
    streams: usize,
    size: usize,
) -> Option<(f64, f64, f64, bool)> {
    let sender = session(egressd, port).await?;
    let before = egressd.rss_mib();
    let mut responses = Vec::new();
    for _ in 0..streams {
        let mut sender = sender.clone();
        let req = hyper::Request::get(format!("https://{NAME}:{port}/bulk"))
            .body(Empty::<Bytes>::new())
            .ok()?;
        responses.push(tokio::spawn(async move {
            sender.ready().await.ok()?;
            sender.send_request(req).await.ok()
        }));
    }
    let mut bodies = Vec::new();
    for response in responses {
        bodies.push(response.await.ok()??.into_body());
    }
    // Nobody reads: the client's windows, egressd's send buffers and the origin's window fill.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stalled = egressd.rss_mib();
    let mut readers = Vec::new();
    for mut body in bodies {
        readers.push(tokio::spawn(async move {
            let mut got = 0usize;
            while let Some(frame) = body.frame().await {
                if let Some(data) = frame.ok()?.data_ref() {
                    got += data.len();
                }
            }
            Some(got)
        }));
    }
    let mut peak = stalled;
    // Sampled while the downloads run; bounded by the downloads' end (or a minute).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while readers.iter().any(|r| !r.is_finished()) && tokio::time::Instant::now() < deadline {
        peak = peak.max(egressd.rss_mib());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut complete = true;
    for reader in readers {
        if !reader.is_finished() {
            reader.abort();
            complete = false;
            continue;
        }
        complete &= reader.await.ok().flatten() == Some(size);
    }
    Some((before, stalled, peak, complete))
}
