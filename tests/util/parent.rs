//! A recording parent proxy for the chaining tests.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use super::http::read_head;

/// A parent proxy for chaining tests: records every request head, answers CONNECT with 200 and
/// splices the tunnel to one fixed loopback address.
pub struct RecordingParent {
    pub addr: SocketAddr,
    pub heads: Arc<Mutex<Vec<String>>>,
}

impl RecordingParent {
    pub fn start(tunnel_to: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let log = heads.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut client) = stream else { continue };
                let log = log.clone();
                thread::spawn(move || {
                    let Some(head) = read_head(&mut client) else {
                        return;
                    };
                    log.lock().unwrap().push(head.clone());
                    if !head.starts_with("CONNECT ") {
                        let _ = client.write_all(
                            b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\n\r\n",
                        );
                        return;
                    }
                    let Ok(mut upstream) = TcpStream::connect(tunnel_to) else {
                        return;
                    };
                    let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                    let (mut c2, mut u2) =
                        (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                    thread::spawn(move || std::io::copy(&mut u2, &mut c2));
                    let _ = std::io::copy(&mut client, &mut upstream);
                });
            }
        });
        Self { addr, heads }
    }
}
