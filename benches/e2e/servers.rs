//! Loopback servers the benchmark drives: a minimal HTTP/1.1 keep-alive origin, a bulk source, an
//! echo server, and a DNS upstream answering one name.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

pub const BODY: &[u8] = b"hello, world\n";

/// An origin answering every request head with a 13-byte body, keeping the connection alive.
pub async fn http_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(answer_heads(stream, 0));
        }
    });
    addr
}

/// Answers every request head on `stream` (requests carry no body) with [`BODY`], keeping the
/// connection alive; with `bulk` above 0, a `GET /bulk` is answered with `bulk` bytes instead.
pub async fn answer_heads<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, bulk: usize) {
    let response = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", BODY.len());
    let mut response = response.into_bytes();
    response.extend_from_slice(BODY);
    let chunk = vec![0x5a_u8; if bulk > 0 { 64 * 1024 } else { 0 }];
    let mut buf = vec![0u8; 8192];
    let mut filled = 0;
    loop {
        let Ok(n) = stream.read(&mut buf[filled..]).await else {
            return;
        };
        if n == 0 {
            return;
        }
        filled += n;
        while let Some(end) = find(&buf[..filled], b"\r\n\r\n") {
            if bulk > 0 && buf[..end].starts_with(b"GET /bulk") {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {bulk}\r\n\r\n");
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let mut left = bulk;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if stream.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    left -= n;
                }
            } else if stream.write_all(&response).await.is_err() {
                return;
            }
            // A TLS stream holds what was written until flushed.
            if stream.flush().await.is_err() {
                return;
            }
            buf.copy_within(end + 4..filled, 0);
            filled -= end + 4;
        }
        if filled == buf.len() {
            return;
        }
    }
}

/// On each connection: waits for one byte, then writes `total` bytes and closes.
pub async fn bulk_source(total: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let chunk = vec![0x5a_u8; 256 * 1024];
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let chunk = chunk.clone();
            tokio::spawn(async move {
                let mut go = [0u8; 1];
                if stream.read_exact(&mut go).await.is_err() {
                    return;
                }
                let mut left = total;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if stream.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    left -= n;
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// Accepts connections and holds them open, echoing what arrives (idle tunnels end here).
pub async fn echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = stream.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// A DNS upstream answering A 93.184.215.14 (TTL 300) for every name, NOERROR.
pub async fn dns_upstream() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            if n < 12 {
                continue;
            }
            // Find the end of the question (name, type, class), copy the query, add one answer.
            let mut i = 12;
            while i < n && buf[i] != 0 {
                i += usize::from(buf[i]) + 1;
            }
            let question_end = i + 5;
            if question_end > n {
                continue;
            }
            let mut out = buf[..question_end].to_vec();
            out[2] = 0x81; // QR, RD
            out[3] = 0x80; // RA, NOERROR
            out[6..8].copy_from_slice(&1u16.to_be_bytes()); // ANCOUNT
            out[8..12].fill(0); // no NS, no additional (the query's OPT is dropped)
            out.extend_from_slice(&[
                0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 1, 0x2c, 0, 4, 93, 184, 215, 14,
            ]);
            let _ = socket.send_to(&out, peer).await;
        }
    });
    addr
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
