//! TLS inspection's cost: new TLS sessions per second and bulk MB/s to one loopback TLS origin
//! (its own test CA), through an egressd that inspects one of its two names and tunnels the
//! other opaquely, measured alternately in the same run. The ratios are the figures to read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::peers::{self, Peer};
use crate::report::Row;
use crate::servers::find;

const INSPECTED: &str = "inspected.test";
const OPAQUE: &str = "opaque.test";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS origin for both names: `GET /bulk` answers `bulk` bytes, anything else 13 bytes; keeps
/// connections alive. Returns its address and its CA's certificate.
pub async fn origin(bulk: usize) -> (SocketAddr, CertificateDer<'static>) {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec![INSPECTED.to_owned(), OPAQUE.to_owned()])
        .expect("names")
        .signed_by(&key, &issuer)
        .expect("leaf");
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    crate::servers::answer_heads(tls, bulk).await;
                }
            });
        }
    });
    (addr, ca_cert.der().clone())
}

/// An egressd inspecting `inspected.test` and tunnelling `opaque.test`, both names of `origin`.
pub fn egressd(build: &peers::Build, origin: SocketAddr, origin_ca: &CertificateDer<'_>) -> Peer {
    let port = origin.port();
    let policy = format!(
        "version = 1\n[defaults]\naction = \"deny\"\n\
         [[allow]]\nhost = \"{INSPECTED}\"\nports = [{port}]\ninspect = true\n\
         [[allow]]\nhost = \"{OPAQUE}\"\nports = [{port}]\n\
         [[danger_carve_out]]\ncidr = \"127.0.0.1/32\"\nports = [{port}]\n\
         [dns.static]\n\"{INSPECTED}\" = [\"127.0.0.1\"]\n\"{OPAQUE}\" = [\"127.0.0.1\"]\n\
         [dns]\nupstreams = [\"127.0.0.1:9\"]\n"
    );
    let pem = proxy::certificate_pem(origin_ca);
    peers::egressd_with_policy(build, &policy, &[("origin-ca.pem", &pem)], |dir| {
        vec![
            "--inspect-upstream-roots".to_owned(),
            dir.join("origin-ca.pem").display().to_string(),
        ]
    })
}

/// The client: trusts the origin's CA and egressd's (from the readiness line), HTTP/1.1.
pub fn client(origin_ca: &CertificateDer<'static>, egressd: &Peer) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(origin_ca.clone()).expect("origin CA");
    let ca_file = egressd.ready["inspect_ca"]
        .as_str()
        .expect("egressd made a CA");
    let pem = std::fs::read_to_string(ca_file).expect("CA file");
    use rustls::pki_types::pem::PemObject;
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.expect("PEM")).expect("egressd CA");
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// Reads one response with a Content-Length body; the body's length.
async fn response<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Option<usize> {
    buf.clear();
    let mut chunk = vec![0u8; 256 * 1024];
    let (end, length) = loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())?;
            break (end + 4, length);
        }
    };
    let mut got = buf.len() - end;
    while got < length {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        got += n;
    }
    Some(length)
}

/// New sessions (CONNECT, handshake, GET, close) per second to `name`, `concurrency` at once.
async fn sessions(
    egressd: &Peer,
    tls: &TlsConnector,
    name: &'static str,
    port: u16,
    concurrency: usize,
    duration: Duration,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (stop, done, tls) = (stop.clone(), done.clone(), tls.clone());
        let (addr, auth) = (egressd.addr, egressd.auth);
        workers.push(tokio::spawn(async move {
            let peer = PeerRef { addr, auth };
            let mut buf = Vec::new();
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) && errors < 1000 {
                let ok = async {
                    let mut s = session_at(&peer, &tls, name, port).await?;
                    let get = format!(
                        "GET / HTTP/1.1\r\nHost: {name}:{port}\r\nConnection: close\r\n\r\n"
                    );
                    s.write_all(get.as_bytes()).await.ok()?;
                    response(&mut s, &mut buf).await
                }
                .await;
                match ok {
                    Some(_) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    None => errors += 1,
                }
            }
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Opens `count` inspected sessions through `egressd`, 64 at a time, each after one `GET`
/// answered inside it, and keeps them open and idle; returns those that got their answer.
pub async fn open_idle_sessions(
    egressd: &Peer,
    tls: &TlsConnector,
    port: u16,
    count: usize,
) -> Vec<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut open = Vec::with_capacity(count);
    let mut remaining = count;
    while remaining > 0 {
        let n = remaining.min(64);
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let tls = tls.clone();
                let peer = PeerRef {
                    addr: egressd.addr,
                    auth: egressd.auth,
                };
                tokio::spawn(async move {
                    let mut s = session_at(&peer, &tls, INSPECTED, port).await?;
                    let get = format!("GET / HTTP/1.1\r\nHost: {INSPECTED}:{port}\r\n\r\n");
                    s.write_all(get.as_bytes()).await.ok()?;
                    response(&mut s, &mut Vec::new()).await.map(|_| s)
                })
            })
            .collect();
        for handle in handles {
            if let Ok(Some(session)) = handle.await {
                open.push(session);
            }
        }
        remaining -= n;
    }
    open
}

/// What a worker needs of the egressd peer.
struct PeerRef {
    addr: SocketAddr,
    auth: &'static str,
}

/// CONNECT to `name:port` through egressd, then TLS to `name`.
async fn session_at(
    peer: &PeerRef,
    tls: &TlsConnector,
    name: &'static str,
    port: u16,
) -> Option<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut s = TcpStream::connect(peer.addr).await.ok()?;
    let _ = s.set_nodelay(true);
    let auth = peer.auth;
    let connect = format!("CONNECT {name}:{port} HTTP/1.1\r\nHost: {name}:{port}\r\n{auth}\r\n");
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
    tls.connect(ServerName::try_from(name).ok()?, s).await.ok()
}

/// MB/s of one `GET /bulk` inside a session to `name`.
async fn bulk(egressd: &Peer, tls: &TlsConnector, name: &'static str, port: u16) -> Option<f64> {
    let peer = PeerRef {
        addr: egressd.addr,
        auth: egressd.auth,
    };
    let mut s = session_at(&peer, tls, name, port).await?;
    let started = Instant::now();
    let get = format!("GET /bulk HTTP/1.1\r\nHost: {name}:{port}\r\n\r\n");
    s.write_all(get.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    let length = response(&mut s, &mut buf).await?;
    Some(length as f64 / 1e6 / started.elapsed().as_secs_f64())
}

/// The rows: sessions/s and MB/s, opaque then inspected, and their ratios.
pub async fn rows(
    egressd: &Peer,
    tls: &TlsConnector,
    port: u16,
    concurrency: usize,
    duration: Duration,
    rounds: usize,
) -> Vec<Row> {
    let (mut rates, mut speeds) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    for _ in 0..rounds {
        for (i, name) in [OPAQUE, INSPECTED].into_iter().enumerate() {
            rates[i].push(sessions(egressd, tls, name, port, concurrency, duration).await);
            tokio::time::sleep(Duration::from_millis(200)).await;
            speeds[i].push(bulk(egressd, tls, name, port).await.unwrap_or(0.0));
        }
    }
    let [opaque_rate, inspected_rate] = rates.map(|v| crate::median(&v));
    let [opaque_speed, inspected_speed] = speeds.map(|v| crate::median(&v));
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    vec![
        Row::new(
            &format!("TLS sessions, opaque tunnel, {concurrency} conn"),
            "sessions/s",
        )
        .egressd(opaque_rate),
        Row::new(
            &format!("TLS sessions, inspected, {concurrency} conn"),
            "sessions/s",
        )
        .egressd(inspected_rate),
        Row::new("TLS sessions: inspected / opaque", "ratio")
            .egressd(ratio(inspected_rate, opaque_rate)),
        Row::new("TLS bulk download, opaque tunnel", "MB/s").egressd(opaque_speed),
        Row::new("TLS bulk download, inspected", "MB/s").egressd(inspected_speed),
        Row::new("TLS bulk: inspected / opaque", "ratio")
            .egressd(ratio(inspected_speed, opaque_speed)),
    ]
}
