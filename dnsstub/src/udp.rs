//! The UDP transport: receive loops on one socket (one per core may share it), replies sent
//! inline when no lookup is needed, upstream lookups as tracked tasks (drained at shutdown).

use std::io;
use std::sync::Arc;

use serve::{Faults, Server};
use tokio::net::UdpSocket;

use crate::stub::{Asker, Next, Stub};

/// Receive buffer for UDP queries; a larger datagram is cut, fails to parse, and gets FORMERR.
const UDP_BUFFER: usize = 4096;

impl Stub {
    /// Answers queries on `socket` until `server` shuts down. Lookups run on the server's tasks,
    /// so draining the server waits for their replies. Returns an error only if the socket is
    /// broken for good: transient errors (an ICMP error from an earlier send, a shortage of
    /// buffers) are survived.
    pub async fn serve_udp(&self, socket: Arc<UdpSocket>, server: &Server) -> io::Result<()> {
        let mut buf = vec![0u8; UDP_BUFFER];
        let mut faults = Faults::new("dns udp");
        let shutdown = server.shutdown();
        loop {
            let received = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                received = socket.recv_from(&mut buf) => received,
            };
            let (n, peer) = match received {
                Ok(received) => {
                    faults.succeeded();
                    received
                }
                Err(error) => {
                    if faults.recover(error, shutdown).await? {
                        continue;
                    }
                    return Ok(());
                }
            };
            let asker = Asker {
                client: &peer,
                transport: "udp",
                limit: None,
            };
            match self.begin(&buf[..n], asker) {
                Next::Reply(Some(reply)) => {
                    let _ = socket.send_to(&reply, peer).await;
                }
                Next::Reply(None) => {}
                Next::Lookup(forward, permit, resolver) => {
                    let (stub, socket) = (self.clone(), socket.clone());
                    server.tasks().spawn(async move {
                        let asker = Asker {
                            client: &peer,
                            transport: "udp",
                            limit: None,
                        };
                        if let Some(reply) = stub.finish(&resolver, &forward, &permit, asker).await
                        {
                            let _ = socket.send_to(&reply, peer).await;
                        }
                    });
                }
            }
        }
    }
}
