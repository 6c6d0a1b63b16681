//! A SOCKS5 client on std sockets (RFC 1928, RFC 1929 login) that sends exactly what a test
//! means: a host that reads as an IP address goes as one (address type 1 or 4, `[v6]` too), any
//! other text goes as a name (type 3) as written, for egressd to judge, as `socks5h` clients do.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};

use super::PATIENCE;
use super::http::{self, Response};

/// `CONNECT`.
pub const CONNECT: u8 = 1;
/// `BIND`.
pub const BIND: u8 = 2;
/// `UDP ASSOCIATE`.
pub const UDP_ASSOCIATE: u8 = 3;

/// How a SOCKS exchange was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The method selection said no acceptable method (`0xFF`).
    NoMethod,
    /// The login's status byte (not 0).
    Login(u8),
    /// The request's reply code (not 0).
    Reply(u8),
    /// The connection closed or failed mid-handshake.
    Closed,
}

/// One SOCKS5 listener, with or without a login to offer.
#[derive(Clone, Debug)]
pub struct SocksClient {
    pub addr: SocketAddr,
    pub login: Option<(String, String)>,
}

impl SocksClient {
    /// A client of the listener on the readiness line (`socks`), logging in with the secret
    /// of `socks_url` when it has one.
    pub fn from_ready(ready: &serde_json::Value) -> Self {
        let addr = ready["socks"]
            .as_str()
            .expect("socks is on")
            .parse()
            .unwrap();
        let url = ready["socks_url"].as_str().expect("socks_url is set");
        let login = url
            .strip_prefix("socks5h://")
            .and_then(|rest| rest.split_once('@'))
            .and_then(|(userinfo, _)| userinfo.split_once(':'))
            .map(|(user, password)| (user.to_owned(), password.to_owned()));
        Self { addr, login }
    }

    /// The same client offering `login` (or none).
    pub fn with_login(&self, login: Option<(&str, &str)>) -> Self {
        Self {
            addr: self.addr,
            login: login.map(|(u, p)| (u.to_owned(), p.to_owned())),
        }
    }

    /// Sends `command` for `host:port`; the open stream once the reply says success.
    pub fn request(&self, command: u8, host: &str, port: u16) -> Result<TcpStream, Refused> {
        let mut stream = TcpStream::connect_timeout(&self.addr, PATIENCE).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_write_timeout(Some(PATIENCE)).unwrap();
        self.handshake(&mut stream, command, host, port)?;
        Ok(stream)
    }

    /// The whole exchange on a stream already connected to the listener (a Unix socket, say).
    pub fn handshake<S: Read + Write>(
        &self,
        stream: &mut S,
        command: u8,
        host: &str,
        port: u16,
    ) -> Result<(), Refused> {
        let method = if self.login.is_some() { 2 } else { 0 };
        stream.write_all(&[5, 1, method]).unwrap();
        let mut selected = [0u8; 2];
        read(stream, &mut selected)?;
        match selected {
            [5, 0xff] => return Err(Refused::NoMethod),
            [5, 2] => {
                let (user, password) = self.login.clone().unwrap_or_default();
                let mut login = vec![1, user.len() as u8];
                login.extend_from_slice(user.as_bytes());
                login.push(password.len() as u8);
                login.extend_from_slice(password.as_bytes());
                stream.write_all(&login).unwrap();
                let mut status = [0u8; 2];
                read(stream, &mut status)?;
                if status[1] != 0 {
                    return Err(Refused::Login(status[1]));
                }
            }
            _ => {}
        }
        let mut request = vec![5, command, 0];
        match host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(IpAddr::V4(v4)) => {
                request.push(1);
                request.extend_from_slice(&v4.octets());
            }
            Ok(IpAddr::V6(v6)) => {
                request.push(4);
                request.extend_from_slice(&v6.octets());
            }
            Err(_) => {
                request.extend_from_slice(&[3, host.len() as u8]);
                request.extend_from_slice(host.as_bytes());
            }
        }
        request.extend_from_slice(&port.to_be_bytes());
        stream.write_all(&request).unwrap();
        let mut head = [0u8; 4];
        read(stream, &mut head)?;
        let rest = match head[3] {
            4 => 16 + 2,
            _ => 4 + 2,
        };
        let mut bound = vec![0u8; rest];
        read(stream, &mut bound)?;
        match head[1] {
            0 => Ok(()),
            code => Err(Refused::Reply(code)),
        }
    }

    /// `CONNECT` to `host:port`.
    pub fn connect(&self, host: &str, port: u16) -> Result<TcpStream, Refused> {
        self.request(CONNECT, host, port)
    }

    /// `GET URL` (`http://HOST:PORT/PATH`) inside a SOCKS tunnel to its host and port.
    pub fn get(&self, url: &str) -> Result<Response, Refused> {
        let (authority, path) = http::split_url(url);
        let (host, port) = authority.rsplit_once(':').unwrap_or((authority, "80"));
        let mut stream = self.connect(host, port.parse().unwrap())?;
        stream
            .write_all(http::request("GET", path, authority, &[]).as_bytes())
            .unwrap();
        Ok(http::read_response(&mut stream))
    }
}

fn read(stream: &mut impl Read, buf: &mut [u8]) -> Result<(), Refused> {
    stream.read_exact(buf).map_err(|_| Refused::Closed)
}
