//! A byte relay from a loopback TCP port to a Unix socket: what a VM launcher does between a
//! guest's vsock and egressd's `--proxy-unix` / `--dns-unix` sockets, standing in for socat.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread;

/// Relays every connection to its TCP address to `unix`, both ways, until either side closes.
pub struct Relay {
    pub addr: SocketAddr,
}

impl Relay {
    pub fn to_unix(unix: &Path) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let unix: PathBuf = unix.to_owned();
        thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { continue };
                let Ok(sock) = UnixStream::connect(&unix) else {
                    continue;
                };
                let (mut tcp_in, mut sock_out) =
                    (tcp.try_clone().unwrap(), sock.try_clone().unwrap());
                thread::spawn(move || {
                    let _ = std::io::copy(&mut tcp_in, &mut sock_out);
                    let _ = sock_out.shutdown(std::net::Shutdown::Write);
                });
                let (mut sock_in, mut tcp_out) = (sock, tcp);
                thread::spawn(move || {
                    let _ = std::io::copy(&mut sock_in, &mut tcp_out);
                    let _ = tcp_out.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Self { addr }
    }
}
