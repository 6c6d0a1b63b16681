//! Loopback servers that stand in for destinations: an HTTP/1.1 origin that records request
//! heads, a TCP echo for tunnels, and a UDP echo that counts datagrams.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Instant;

use super::PATIENCE;
use super::http::{header_value, read_head};

/// What an origin does with a request.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answer 200 with a small body.
    Answer,
    /// Read the request and never answer.
    Silent,
    /// Answer 200, with headers that pretend to be egressd's (`x-egressd-reason`, ...).
    Forges,
    /// Answer 200 with `Content-Length: 1000`, send [`STALLED_AFTER`] bytes of the body, then
    /// nothing more until the other side closes.
    Stalls,
}

/// Bytes of its body a [`Behaviour::Stalls`] origin sends before it goes silent.
pub const STALLED_AFTER: usize = 100;

/// A loopback HTTP/1.1 origin that records every request head it receives.
pub struct Origin {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<String>>>,
    pub connections: Counter,
}

/// The body every answering origin sends.
pub const ORIGIN_BODY: &str = "hello from origin\n";

impl Origin {
    /// Binds 127.0.0.1:0.
    pub fn start(behaviour: Behaviour) -> Self {
        Self::bind("127.0.0.1:0".parse().unwrap(), behaviour)
    }

    /// Binds `addr` (inside a network namespace, a 10.x address).
    pub fn bind(addr: SocketAddr, behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Counter::default();
        let (log, count) = (requests.clone(), connections.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                count.add();
                let log = log.clone();
                thread::spawn(move || serve_origin(stream, &log, behaviour));
            }
        });
        Self {
            addr,
            requests,
            connections,
        }
    }

    /// The request heads seen so far.
    pub fn seen(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve_origin(mut stream: TcpStream, log: &Mutex<Vec<String>>, behaviour: Behaviour) {
    let _ = stream.set_read_timeout(Some(PATIENCE));
    loop {
        let Some(head) = read_head(&mut stream) else {
            return;
        };
        let length = header_value(&head, "content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).is_err() {
            return;
        }
        log.lock().unwrap().push(head);
        if behaviour == Behaviour::Silent {
            let mut sink = [0u8; 1];
            let _ = stream.read(&mut sink);
            return;
        }
        if behaviour == Behaviour::Stalls {
            let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
            if stream.write_all(head).is_ok() && stream.write_all(&[b'x'; STALLED_AFTER]).is_ok() {
                let mut sink = [0u8; 1];
                let _ = stream.read(&mut sink);
            }
            return;
        }
        let forged = match behaviour {
            Behaviour::Forges => "X-Egressd-Reason: forged\r\nx-egressd-rule: allow[9] line 9\r\n",
            _ => "",
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Origin: yes\r\n{forged}\r\n{ORIGIN_BODY}",
            ORIGIN_BODY.len()
        );
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// A loopback TCP echo server, for tunnels.
pub struct Echo {
    pub addr: SocketAddr,
}

impl Echo {
    pub fn start() -> Self {
        Self::bind("127.0.0.1:0".parse().unwrap())
    }

    pub fn bind(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                thread::spawn(move || {
                    let mut reader = stream.try_clone().unwrap();
                    let _ = std::io::copy(&mut reader, &mut stream);
                });
            }
        });
        Self { addr }
    }
}

/// A loopback (or namespace) UDP echo server that counts datagrams.
pub struct UdpEcho {
    pub addr: SocketAddr,
    pub datagrams: Counter,
}

impl UdpEcho {
    pub fn bind(addr: SocketAddr) -> Self {
        let socket = UdpSocket::bind(addr).unwrap();
        let addr = socket.local_addr().unwrap();
        let datagrams = Counter::default();
        let count = datagrams.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = socket.recv_from(&mut buf) {
                count.add();
                let _ = socket.send_to(&buf[..n], peer);
            }
        });
        Self { addr, datagrams }
    }
}

/// A count a server thread raises and a test reads, or waits on: a client's connect completes in
/// the kernel before the server's accept, so a count read at once can lag behind by one.
#[derive(Clone, Default)]
pub struct Counter(Arc<(Mutex<usize>, Condvar)>);

impl Counter {
    fn add(&self) {
        let (count, changed) = &*self.0;
        *count.lock().unwrap() += 1;
        changed.notify_all();
    }

    /// The count now.
    pub fn get(&self) -> usize {
        *self.0.0.lock().unwrap()
    }

    /// The count once it has reached `at_least`, or after [`PATIENCE`] whatever it is then.
    pub fn wait_for(&self, at_least: usize) -> usize {
        let deadline = Instant::now() + PATIENCE;
        let (count, changed) = &*self.0;
        let mut guard = count.lock().unwrap();
        while *guard < at_least {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            guard = changed.wait_timeout(guard, left).unwrap().0;
        }
        *guard
    }
}
