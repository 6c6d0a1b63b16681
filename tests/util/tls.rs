//! TLS for the inspection tests, all on loopback: a test CA made by the test (rcgen), a TLS origin
//! that records request heads and echoes the `Authorization` it received, and a Rust client that
//! opens a CONNECT tunnel through egressd and speaks TLS inside it with a chosen SNI and roots.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

use super::PATIENCE;
use super::http::{header_value, read_head};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A CA made by the test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes the CA certificate into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        super::write(dir, name, &self.cert_pem)
    }

    /// A leaf certificate for `names`, and its key.
    pub fn leaf(&self, names: &[&str]) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let params = CertificateParams::new(names).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.der().clone(), key)
    }
}

/// A loopback HTTPS/1.1 origin: answers every request 200 with a body naming the method, path and
/// the `Authorization` it received (as an origin that echoes its request would), and records heads.
pub struct TlsOrigin {
    pub addr: SocketAddr,
    /// The certificate it presents.
    pub leaf: CertificateDer<'static>,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl TlsOrigin {
    /// Serves a certificate for `names` signed by `ca` on 127.0.0.1:0.
    pub fn start(ca: &TestCa, names: &[&str]) -> Self {
        let (leaf, key) = ca.leaf(names);
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.clone()], key)
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (config, log) = (config.clone(), log.clone());
                thread::spawn(move || serve(stream, config, &log));
            }
        });
        Self {
            addr,
            leaf,
            requests,
        }
    }

    pub fn seen(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, config: Arc<ServerConfig>, log: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(PATIENCE));
    let Ok(connection) = ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(connection, stream);
    loop {
        let Some(head) = read_head(&mut tls) else {
            return;
        };
        let length = header_value(&head, "content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if tls.read_exact(&mut body).is_err() {
            return;
        }
        log.lock().unwrap().push(head.clone());
        let first = head.lines().next().unwrap_or("").to_owned();
        // `/stall`: 100 bytes of a 1,000-byte body, then silence until the other side closes.
        if first.contains(" /stall ") {
            let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
            if tls.write_all(head).is_ok() && tls.write_all(&[b'x'; 100]).is_ok() {
                let _ = tls.flush();
                let mut rest = [0u8; 1024];
                while tls.read(&mut rest).is_ok_and(|n| n > 0) {}
            }
            return;
        }
        let authorization = header_value(&head, "authorization").unwrap_or_default();
        if let Some(response) = echo_everywhere(&first, &authorization) {
            let _ = tls.write_all(&response);
            return;
        }
        let text = format!("{first}\nauthorization={authorization}\n");
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Origin: tls\r\nX-Echo-Authorization: {authorization}\r\n\r\n{text}",
            text.len()
        );
        if tls.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// For `/ok/echo-everywhere` and `/ok/echo-gzip`: a response that hands the `Authorization` it
/// received back in every place a response can hold it (and closes), as a hostile or careless
/// origin might: the reason phrase, a header value, a header name (the token part), the body, a
/// trailer; or the body gzip-compressed although the request asked for `identity`.
fn echo_everywhere(first_line: &str, authorization: &str) -> Option<Vec<u8>> {
    let path = first_line.split(' ').nth(1)?;
    let token = authorization.rsplit(' ').next().unwrap_or_default();
    let body = format!("body {authorization}\n");
    match path {
        "/ok/echo-everywhere" => Some(
            format!(
                "HTTP/1.1 200 Echo {authorization}\r\nX-Echo: {authorization}\r\nX-{token}: 1\r\n\
                 Transfer-Encoding: chunked\r\nTrailer: X-Trailer-Echo\r\nConnection: close\r\n\r\n\
                 {:x}\r\n{body}\r\n0\r\nX-Trailer-Echo: {authorization}\r\n\r\n",
                body.len()
            )
            .into_bytes(),
        ),
        "/ok/echo-gzip" => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(body.as_bytes()).ok()?;
            let gz = gz.finish().ok()?;
            let mut response = format!(
                "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                gz.len()
            )
            .into_bytes();
            response.extend_from_slice(&gz);
            Some(response)
        }
        _ => None,
    }
}

/// What the Rust client saw.
#[derive(Debug)]
pub struct Fetched {
    pub status: u16,
    pub head: String,
    pub body: String,
    /// The body as it came, before dechunking (with any trailers).
    pub raw: String,
    /// The certificate the server inside the tunnel presented.
    pub peer: CertificateDer<'static>,
}

/// A TLS client configuration trusting exactly `roots`.
pub fn client_config(roots: &[CertificateDer<'static>]) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// The certificates of a PEM file.
pub fn pem_certificates(path: &Path) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// `CONNECT authority` through `proxy`, TLS inside with `sni` (a name, or an IP address, which
/// sends no SNI) trusting `config`'s roots, then `request` (a whole HTTP/1.1 request, sent as
/// written). `Err` with the reason when the CONNECT or the handshake fails.
pub fn fetch(
    proxy: SocketAddr,
    authority: &str,
    sni: &str,
    config: Arc<ClientConfig>,
    request: &str,
) -> Result<Fetched, String> {
    Session::open(proxy, authority, sni, config)?.send(request)
}

/// A TLS session through the proxy, for several requests.
pub struct Session {
    tls: rustls::StreamOwned<ClientConnection, TcpStream>,
}

impl Session {
    /// CONNECT `authority` through `proxy`, then TLS with `sni` (the handshake runs with the
    /// first request).
    pub fn open(
        proxy: SocketAddr,
        authority: &str,
        sni: &str,
        config: Arc<ClientConfig>,
    ) -> Result<Self, String> {
        let mut stream = TcpStream::connect_timeout(&proxy, PATIENCE).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        write!(
            stream,
            "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n"
        )
        .unwrap();
        let answer = read_head(&mut stream).ok_or("no CONNECT answer")?;
        if !answer.starts_with("HTTP/1.1 200") {
            return Err(format!("CONNECT refused: {answer}"));
        }
        let name = ServerName::try_from(sni.to_owned()).unwrap();
        let connection = ClientConnection::new(config, name).unwrap();
        Ok(Self {
            tls: rustls::StreamOwned::new(connection, stream),
        })
    }

    /// Sends `request` and reads its response (to the end of the body, or of the session when
    /// the response has no length).
    pub fn send(&mut self, request: &str) -> Result<Fetched, String> {
        self.send_in_pieces(&[request], Duration::ZERO)
    }

    /// [`Session::send`] for a request written in `pieces`, with `pause` after each but the last.
    pub fn send_in_pieces(&mut self, pieces: &[&str], pause: Duration) -> Result<Fetched, String> {
        let tls = &mut self.tls;
        for (i, piece) in pieces.iter().enumerate() {
            if i > 0 {
                thread::sleep(pause);
            }
            tls.write_all(piece.as_bytes())
                .and_then(|()| tls.flush())
                .map_err(|e| format!("handshake or write failed: {e}"))?;
        }
        let head = read_head(tls).ok_or("no response head (handshake refused?)")?;
        let peer = tls
            .conn
            .peer_certificates()
            .and_then(|c| c.first().cloned())
            .ok_or("no peer certificate")?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut body = Vec::new();
        let mut raw = String::new();
        match header_value(&head, "content-length") {
            Some(length) => {
                body.resize(length.parse().unwrap(), 0);
                tls.read_exact(&mut body).map_err(|e| e.to_string())?;
            }
            None => {
                // Close-delimited or chunked: read to the end (requests send `Connection: close`).
                let _ = tls.read_to_end(&mut body);
                raw = String::from_utf8_lossy(&body).into_owned();
                if header_value(&head, "transfer-encoding").is_some_and(|t| t.contains("chunked")) {
                    body = dechunk(&body);
                }
            }
        }
        Ok(Fetched {
            status,
            head,
            body: String::from_utf8_lossy(&body).into_owned(),
            raw,
            peer,
        })
    }
}

/// The data of a chunked body (chunk extensions and trailers ignored).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        raw = &raw[line_end + 2..];
        if size == 0 || raw.len() < size {
            break;
        }
        out.extend_from_slice(&raw[..size]);
        raw = raw.get(size + 2..).unwrap_or(&[]);
    }
    out
}

/// A `GET`-like request with `Host: host` and `Connection: close`, plus `headers`.
pub fn request(method: &str, path: &str, host: &str, headers: &[&str]) -> String {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for header in headers {
        text.push_str(header);
        text.push_str("\r\n");
    }
    text.push_str("Connection: close\r\n\r\n");
    text
}
