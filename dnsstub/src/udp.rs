//! The UDP transport: receive loops on one socket (one per core may share it), replies sent
//! inline when no lookup is needed, upstream lookups as tracked tasks (drained at shutdown).
//!
//! On Linux a loop takes every datagram waiting, up to [`BATCH`], with one `recvmmsg(2)`, and
//! sends the replies it could make at once with one `sendmmsg(2)` (nix's safe wrappers): under
//! load that is two system calls per batch instead of two per query. Elsewhere it receives and
//! sends one datagram per call.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use serve::{Faults, Server};
use tokio::net::UdpSocket;

use crate::stub::{Asker, Next, Stub};
use crate::wire::ClientAddr;

/// Receive buffer for UDP queries; a larger datagram is cut, fails to parse, and gets FORMERR.
const UDP_BUFFER: usize = 4096;

/// Most datagrams taken, and replies sent, per system call. 16 measured the same as 8.
#[cfg(target_os = "linux")]
const BATCH: usize = 8;

impl Stub {
    /// Answers queries on `socket` until `server` shuts down. Lookups run on the server's tasks,
    /// so draining the server waits for their replies. Returns an error only if the socket is
    /// broken for good: transient errors (an ICMP error from an earlier send, a shortage of
    /// buffers) are survived.
    pub async fn serve_udp(&self, socket: Arc<UdpSocket>, server: &Server) -> io::Result<()> {
        let mut faults = Faults::new("dns udp");
        let shutdown = server.shutdown();
        let mut batch = Batch::new();
        loop {
            let received = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                received = batch.receive(&socket) => received,
            };
            match received {
                Ok(()) => faults.succeeded(),
                Err(error) => {
                    if faults.recover(error, shutdown).await? {
                        continue;
                    }
                    return Ok(());
                }
            }
            let Batch {
                buffers,
                received,
                replies,
            } = &mut batch;
            for &(index, n, peer) in received.iter() {
                let Some(query) = buffers.get(index).and_then(|b| b.get(..n)) else {
                    continue;
                };
                let asker = Asker {
                    client: &ClientAddr(peer),
                    transport: "udp",
                    limit: None,
                };
                match self.begin(query, asker) {
                    Next::Reply(Some(reply)) => replies.push((reply, peer)),
                    Next::Reply(None) => {}
                    Next::Lookup(forward, permit, resolver) => {
                        let (stub, socket) = (self.clone(), socket.clone());
                        server.tasks().spawn(async move {
                            let asker = Asker {
                                client: &ClientAddr(peer),
                                transport: "udp",
                                limit: None,
                            };
                            let reply = stub.finish(&resolver, &forward, &permit, asker).await;
                            if let Some(reply) = reply {
                                let _ = socket.send_to(&reply, peer).await;
                            }
                        });
                    }
                }
            }
            batch.send(&socket).await;
        }
    }
}

/// Datagrams received together, and the replies to send for them.
struct Batch {
    /// One receive buffer per datagram.
    buffers: Vec<Vec<u8>>,
    /// The buffer, length and sender of each datagram received.
    received: Vec<(usize, usize, SocketAddr)>,
    /// Replies made without a lookup, and where they go.
    replies: Vec<(Vec<u8>, SocketAddr)>,
}

impl Batch {
    fn new() -> Self {
        Self {
            buffers: Vec::new(),
            received: Vec::new(),
            replies: Vec::new(),
        }
    }

    /// Waits for a datagram and takes it.
    #[cfg(not(target_os = "linux"))]
    async fn receive(&mut self, socket: &UdpSocket) -> io::Result<()> {
        self.received.clear();
        if self.buffers.is_empty() {
            self.buffers.push(vec![0u8; UDP_BUFFER]);
        }
        let (n, peer) = socket.recv_from(&mut self.buffers[0]).await?;
        self.received.push((0, n, peer));
        Ok(())
    }

    /// Sends the replies, one call each.
    #[cfg(not(target_os = "linux"))]
    async fn send(&mut self, socket: &UdpSocket) {
        for (reply, peer) in self.replies.drain(..) {
            let _ = socket.send_to(&reply, peer).await;
        }
    }

    /// Waits for a datagram and takes it with every one waiting behind it, as many as there are
    /// buffers.
    #[cfg(target_os = "linux")]
    async fn receive(&mut self, socket: &UdpSocket) -> io::Result<()> {
        // Room for one datagram at first; twice as many (up to BATCH) after a batch that filled
        // every buffer: a quiet stub holds one buffer, a busy one grows its batch.
        let filled = self.received.len() == self.buffers.len();
        let room = match self.buffers.len() {
            0 => 1,
            n if filled => (n * 2).min(BATCH),
            n => n,
        };
        self.buffers.resize_with(room, || vec![0u8; UDP_BUFFER]);
        self.received.clear();
        loop {
            socket.readable().await?;
            match socket.try_io(tokio::io::Interest::READABLE, || self.receive_now(socket)) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// One `recvmmsg(2)` into every buffer, without waiting.
    #[cfg(target_os = "linux")]
    fn receive_now(&mut self, socket: &UdpSocket) -> io::Result<()> {
        use std::io::IoSliceMut;
        use std::os::fd::AsRawFd;

        use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};

        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(self.buffers.len(), None);
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = self
            .buffers
            .iter_mut()
            .map(|b| [IoSliceMut::new(b)])
            .collect();
        let results = recvmmsg(
            socket.as_raw_fd(),
            &mut headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(io::Error::from)?;
        for (index, message) in results.enumerate() {
            // A datagram socket always says who sent; an address of another family cannot
            // come from an IP socket, and such a datagram is skipped.
            let Some(peer) = message.address.as_ref().and_then(socket_addr) else {
                continue;
            };
            // By its buffer: a datagram skipped above must not shift the next onto its buffer.
            self.received.push((index, message.bytes, peer));
        }
        Ok(())
    }

    /// Sends the replies with as few `sendmmsg(2)` calls as the socket allows; what it would not
    /// take without waiting is sent one by one, waiting.
    #[cfg(target_os = "linux")]
    async fn send(&mut self, socket: &UdpSocket) {
        let mut sent = 0;
        while sent < self.replies.len() {
            let pending = &self.replies[sent..];
            match socket.try_io(tokio::io::Interest::WRITABLE, || send_now(socket, pending)) {
                Ok(n) if n > 0 => sent += n,
                // Refused or failed: as with one `send_to` per reply, a reply that cannot go is
                // dropped (the client asks again); the next ones are tried.
                Ok(_) | Err(_) => {
                    let (reply, peer) = &self.replies[sent];
                    let _ = socket.send_to(reply, *peer).await;
                    sent += 1;
                }
            }
        }
        self.replies.clear();
    }
}

/// One `sendmmsg(2)` of up to [`BATCH`] replies, without waiting: how many the kernel took.
#[cfg(target_os = "linux")]
fn send_now(socket: &UdpSocket, replies: &[(Vec<u8>, SocketAddr)]) -> io::Result<usize> {
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};

    let replies = &replies[..replies.len().min(BATCH)];
    let slices: Vec<[IoSlice<'_>; 1]> = replies.iter().map(|(r, _)| [IoSlice::new(r)]).collect();
    let addresses: Vec<Option<SockaddrStorage>> = replies
        .iter()
        .map(|(_, peer)| Some(SockaddrStorage::from(*peer)))
        .collect();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(replies.len(), None);
    let no_control: [ControlMessage<'_>; 0] = [];
    let results = sendmmsg(
        socket.as_raw_fd(),
        &mut headers,
        &slices,
        &addresses,
        no_control,
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    Ok(results.count())
}

#[cfg(target_os = "linux")]
fn socket_addr(address: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    address
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}
