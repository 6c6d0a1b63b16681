//! The stream transport (TCP, and any byte stream a launcher relays): two-byte length framing
//! (RFC 1035 §4.2.2), one query at a time per connection, an idle timeout between queries. A
//! connection the server cannot take (over the limit, or out of descriptors) gets one reply that
//! needs no lookup, or SERVFAIL, and is closed: never silence.

use std::io;
use std::time::Duration;

use serve::{Conn, Handler, Peer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::stub::Stub;
use crate::wire::MAX_STREAM_MESSAGE;

/// How long a connection being turned away may take to send its query, and to take its reply.
/// Short: out of descriptors, the connections waiting are turned away one at a time, and one that
/// sends nothing holds up the rest. A client that waited in the listen queue has long sent its
/// query; one that sends nothing is closed, which it notices at once.
const TURN_AWAY_WAIT: Duration = Duration::from_millis(100);

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

    /// One query, if it comes within [`TURN_AWAY_WAIT`], gets what needs no I/O (a refusal, a
    /// static or cached answer) or SERVFAIL with the "overloaded" reason; then the connection
    /// is closed.
    async fn overloaded(self, mut io: Io, peer: Peer) {
        let Ok(Ok(query)) = tokio::time::timeout(TURN_AWAY_WAIT, read_query(&mut io)).await else {
            tracing::debug!(client = %peer, "turned away a DNS stream connection before its query");
            return;
        };
        let reply = self.answer_at_once(&query, &peer, transport(peer), MAX_STREAM_MESSAGE);
        if let Some(reply) = reply.as_deref().and_then(frame) {
            let _ = tokio::time::timeout(TURN_AWAY_WAIT, io.write_all(&reply)).await;
        }
    }
}

fn transport(peer: Peer) -> &'static str {
    match peer {
        Peer::Tcp(_) => "tcp",
        Peer::Unix => "unix",
    }
}

/// Reads one length-prefixed query.
async fn read_query<Io: AsyncRead + Unpin>(stream: &mut Io) -> io::Result<Vec<u8>> {
    let len = usize::from(stream.read_u16().await?);
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

/// `reply` with its length prefix; `None` if it does not fit one (`encode` keeps replies within
/// [`MAX_STREAM_MESSAGE`], so it always does).
fn frame(reply: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(reply.len()).ok()?;
    let mut framed = Vec::with_capacity(reply.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(reply);
    Some(framed)
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
        let transport = transport(peer);
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
            let framed = frame(&reply).ok_or_else(|| io::Error::other("reply too large"))?;
            // A client that sends queries and never reads the replies would hold this task, and
            // one of the stream connections served at once, for ever.
            tokio::select! {
                biased;
                written = tokio::time::timeout(idle, stream.write_all(&framed)) => written
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "reply not read"))??,
                () = shutdown.cancelled() => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use audit::Sink;
    use hickory_proto::op::{Message, Query, ResponseCode};
    use hickory_proto::rr::{Name, RecordType};
    use policy::Policy;
    use resolve::{Lookups, Resolver, Settings};
    use serve::Peer;
    use tokio::io::AsyncWriteExt;
    use tokio_util::sync::CancellationToken;

    use crate::config::StubConfig;
    use crate::stub::Stub;

    const IDLE: Duration = Duration::from_secs(10);

    /// A stub that refuses every name (no rule allows one) and needs no upstream.
    fn stub() -> Stub {
        let policy = Policy::parse("version = 1\n", "refuse-all.toml").unwrap();
        let resolver = Resolver::new(
            Arc::new(policy),
            &[],
            &Settings::DEFAULT,
            Lookups::new(Settings::DEFAULT.max_lookups),
        );
        let config = StubConfig {
            tcp_idle_timeout: IDLE,
            ..StubConfig::default()
        };
        Stub::new(Arc::new(resolver), config, Sink::discard())
    }

    /// Queries, framed for a stream, that the stub answers with a reply each.
    fn framed_queries(count: u16) -> Vec<u8> {
        let mut out = Vec::new();
        for id in 0..count {
            let mut message = Message::query();
            message.metadata.id = id;
            message.add_query(Query::query(
                Name::from_ascii("a.example.").unwrap(),
                RecordType::A,
            ));
            let bytes = message.to_vec().unwrap();
            out.extend_from_slice(&u16::try_from(bytes.len()).unwrap().to_be_bytes());
            out.extend_from_slice(&bytes);
        }
        out
    }

    /// Serves a client that writes 64 queries and never reads a reply; the stub's side of the
    /// connection has room for a few replies only. Returns how serving ended (None: it had not
    /// ended an hour later).
    async fn serve_an_unread_client(shutdown: CancellationToken) -> Option<std::io::Result<()>> {
        let (client, server) = tokio::io::duplex(256);
        let (_unread, mut writes) = tokio::io::split(client);
        let writer = tokio::spawn(async move {
            let _ = writes.write_all(&framed_queries(64)).await;
            writes
        });
        let served = tokio::time::timeout(
            Duration::from_secs(3600),
            stub().serve_stream(server, Peer::Unix, shutdown),
        )
        .await
        .ok();
        writer.abort();
        served
    }

    /// A stub whose policy allows `a.example.` (which would need an upstream lookup).
    fn stub_allowing_a_name() -> Stub {
        let policy = Policy::parse(
            "version = 1\n[[allow]]\nhost = \"a.example\"\n",
            "allow-one.toml",
        )
        .unwrap();
        let resolver = Resolver::new(
            Arc::new(policy),
            &[],
            &Settings::DEFAULT,
            Lookups::new(Settings::DEFAULT.max_lookups),
        );
        Stub::new(Arc::new(resolver), StubConfig::default(), Sink::discard())
    }

    /// Turns `client_writes` away through `stub` and returns the reply's rcode (None: the
    /// connection closed without one).
    async fn turned_away(stub: Stub, client_writes: &[u8]) -> Option<ResponseCode> {
        use serve::Handler;
        use tokio::io::AsyncReadExt;
        let (mut client, server) = tokio::io::duplex(4096);
        client.write_all(client_writes).await.unwrap();
        let turning = tokio::spawn(stub.overloaded(server, Peer::Unix));
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.unwrap();
        turning.await.unwrap();
        let message = reply.get(2..).filter(|m| !m.is_empty())?;
        Some(Message::from_vec(message).unwrap().metadata.response_code)
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_turned_away_gets_a_reply_that_needs_no_lookup_then_is_closed() {
        // Refused by the policy: answered as usual.
        assert_eq!(
            turned_away(stub(), &framed_queries(2)).await,
            Some(ResponseCode::Refused)
        );
        // Allowed, but it would need an upstream: SERVFAIL.
        assert_eq!(
            turned_away(stub_allowing_a_name(), &framed_queries(1)).await,
            Some(ResponseCode::ServFail)
        );
        // Nothing sent: closed after a short wait, not held.
        assert_eq!(turned_away(stub(), &[]).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_reads_its_replies_is_let_go_after_the_idle_timeout() {
        let started = tokio::time::Instant::now();
        let served = serve_an_unread_client(CancellationToken::new()).await;
        let Some(Err(error)) = served else {
            panic!("the stub still waits to write a reply: {served:?}");
        };
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut, "{error}");
        assert!(started.elapsed() >= IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_lets_go_of_a_reply_the_client_does_not_read() {
        let shutdown = CancellationToken::new();
        let cancel = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            cancel.cancel();
        });
        let started = tokio::time::Instant::now();
        let served = serve_an_unread_client(shutdown).await;
        assert!(matches!(served, Some(Ok(()))), "{served:?}");
        assert!(started.elapsed() < IDLE);
    }
}
