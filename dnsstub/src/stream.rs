//! The stream transport (TCP, and any byte stream a launcher relays): two-byte length framing
//! (RFC 1035 §4.2.2), one query at a time per connection, an idle timeout between queries.

use std::io;

use serve::{Conn, Handler, Peer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::stub::Stub;
use crate::wire::MAX_STREAM_MESSAGE;

impl<Io> Handler<Io> for Stub
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn serve(self, conn: Conn<Io>) {
        let Conn {
            io, peer, shutdown, ..
        } = conn;
        if let Err(error) = self.serve_stream(io, peer, shutdown).await {
            tracing::debug!(client = %peer, %error, "DNS stream connection ended");
        }
    }
}

impl Stub {
    /// Answers length-prefixed queries until the client closes, idles out, or shutdown is asked;
    /// a query being answered is finished first.
    async fn serve_stream<Io: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: Io,
        peer: Peer,
        shutdown: CancellationToken,
    ) -> io::Result<()> {
        let idle = self.shared.config.tcp_idle_timeout;
        let transport = match peer {
            Peer::Tcp(_) => "tcp",
            Peer::Unix => "unix",
        };
        loop {
            let len = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                len = tokio::time::timeout(idle, stream.read_u16()) => match len {
                    Err(_) => return Ok(()),
                    Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                    Ok(len) => usize::from(len?),
                },
            };
            let mut buf = vec![0u8; len];
            tokio::time::timeout(idle, stream.read_exact(&mut buf))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "partial query"))??;
            let Some(reply) = self
                .answer(&buf, &peer, transport, MAX_STREAM_MESSAGE)
                .await
            else {
                continue;
            };
            // `encode` kept the reply within MAX_STREAM_MESSAGE, so it fits the length prefix.
            let len =
                u16::try_from(reply.len()).map_err(|_| io::Error::other("reply too large"))?;
            let mut framed = Vec::with_capacity(reply.len() + 2);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(&reply);
            stream.write_all(&framed).await?;
        }
    }
}
