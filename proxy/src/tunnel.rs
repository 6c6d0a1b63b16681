//! Moving bytes both ways through a CONNECT tunnel: large buffers, byte counts for the audit
//! record, and an idle timeout (no bytes either way for that long closes the tunnel).
//!
//! Two paths, both portable to macOS:
//! - [`run_tcp`], when both ends are TCP sockets (the usual case): each direction waits for its
//!   socket to be readable and only then takes a buffer, which it gives back as soon as the socket
//!   runs dry. An idle tunnel holds no buffer at all, so thousands of them cost little memory.
//! - [`run`], for anything else (a Unix-socket client, a tunnel through a parent proxy): tokio's
//!   `copy_bidirectional_with_sizes`, which holds its buffers for the tunnel's whole life.
//!
//! A Linux `splice(2)` pump (zero-copy through a pipe, via nix's safe wrapper) was measured and
//! dropped: on loopback it moved no more bytes per second than this buffer pump, and creating a
//! pipe per burst slowed short tunnels (docs/benchmarks.md).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::audit::Bytes;

/// The far side of a tunnel (or of an inspected session).
pub(crate) enum Origin {
    Direct(tokio::net::TcpStream),
    Parent(TokioIo<hyper::upgrade::Upgraded>),
}

/// How a tunnel ended.
#[derive(Debug)]
pub enum TunnelEnd {
    /// Both sides finished.
    Closed,
    /// Nothing moved for the idle timeout.
    Idle,
    /// A side failed (reset, broken pipe): normal for tunnels, logged at debug.
    Error(io::Error),
}

/// Copies between `client` and `origin` until both close, one fails, or the tunnel idles out.
pub async fn run<C, O>(
    client: C,
    origin: O,
    bytes: &Bytes,
    idle: Duration,
    buffer: usize,
) -> TunnelEnd
where
    C: AsyncRead + AsyncWrite + Unpin,
    O: AsyncRead + AsyncWrite + Unpin,
{
    let clock = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let mut client = Metered {
        inner: client,
        counter: bytes.up.clone(),
        activity: activity.clone(),
        clock,
    };
    let mut origin = Metered {
        inner: origin,
        counter: bytes.down.clone(),
        activity: activity.clone(),
        clock,
    };
    let copy = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut origin, buffer, buffer);
    tokio::select! {
        result = copy => match result {
            Ok(_) => TunnelEnd::Closed,
            Err(e) => TunnelEnd::Error(e),
        },
        () = watchdog(&activity, clock, idle) => TunnelEnd::Idle,
    }
}

/// [`run`] for two TCP sockets, with buffers only while bytes flow. `pending` holds bytes the
/// client sent after its CONNECT head, already read by the HTTP layer; they go first.
pub async fn run_tcp(
    client: TcpStream,
    pending: &[u8],
    origin: TcpStream,
    bytes: &Bytes,
    idle: Duration,
    buffer: usize,
) -> TunnelEnd {
    forget_wakers(&client);
    forget_wakers(&origin);
    let clock = Instant::now();
    let activity = AtomicU64::new(0);
    let (client_read, client_write) = client.into_split();
    let (origin_read, mut origin_write) = origin.into_split();
    if !pending.is_empty() {
        // Under the idle timeout like the pumps: an origin that reads nothing would hold it.
        match tokio::time::timeout(idle, origin_write.write_all(pending)).await {
            Err(_) => return TunnelEnd::Idle,
            Ok(Err(e)) => return TunnelEnd::Error(e),
            Ok(Ok(())) => {}
        }
        bytes.up.fetch_add(pending.len() as u64, Ordering::Relaxed);
    }
    let up = pump(
        client_read,
        origin_write,
        &bytes.up,
        &activity,
        clock,
        buffer,
    );
    let down = pump(
        origin_read,
        client_write,
        &bytes.down,
        &activity,
        clock,
        buffer,
    );
    tokio::select! {
        (up, down) = async { tokio::join!(up, down) } => match up.and(down) {
            Ok(()) => TunnelEnd::Closed,
            Err(e) => TunnelEnd::Error(e),
        },
        () = watchdog(&activity, clock, idle) => TunnelEnd::Idle,
    }
}

/// Drops the wakers other tasks left in `socket`'s readiness slots.
///
/// hyper's connection task read the CONNECT head and then waited for more: tokio keeps the waker
/// of that wait until the socket turns readable, and a waker keeps its task's whole memory (the
/// connection's future, some 6 KiB) allocated after the task has ended. An idle tunnel would carry
/// it for its whole life (docs/benchmarks.md, "Idle connections after the redesign"). A no-op waker takes its place;
/// [`pump`] waits with `readable()`, which does not use these slots.
fn forget_wakers(socket: &TcpStream) {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    // Ready or not, the slot now holds the no-op waker or nothing.
    let _ = socket.poll_read_ready(&mut cx);
    let _ = socket.poll_write_ready(&mut cx);
}

/// One direction: read when readable, write all of it, until end of file (then pass the close on).
async fn pump(
    from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    counter: &AtomicU64,
    activity: &AtomicU64,
    clock: Instant,
    size: usize,
) -> io::Result<()> {
    let mut buffer: Option<Vec<u8>> = None;
    loop {
        // Capacity, not zeroed bytes: the read fills the spare capacity. Zeroing 256 KiB for
        // every burst was a tenth of egressd's time on short tunnels (docs/benchmarks.md).
        let buf = buffer.get_or_insert_with(|| Vec::with_capacity(size));
        buf.clear();
        match from.try_read_buf(buf) {
            Ok(0) => return to.shutdown().await,
            Ok(n) => {
                counter.fetch_add(n as u64, Ordering::Relaxed);
                stamp(activity, clock);
                to.write_all(&buf[..n]).await?;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Dry: give the buffer back before waiting, so idle tunnels hold none.
                buffer = None;
                from.readable().await?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Records "something moved now".
fn stamp(activity: &AtomicU64, clock: Instant) {
    // Milliseconds since the tunnel opened fit u64 for half a billion years.
    activity.store(clock.elapsed().as_millis() as u64, Ordering::Relaxed);
}

/// Resolves once no activity has been stamped for `idle`.
async fn watchdog(activity: &AtomicU64, clock: Instant, idle: Duration) {
    loop {
        let last = Duration::from_millis(activity.load(Ordering::Relaxed));
        let deadline = clock + last + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// Counts bytes read from `inner` and stamps the time of the last activity either way.
struct Metered<S> {
    inner: S,
    counter: Arc<AtomicU64>,
    activity: Arc<AtomicU64>,
    clock: Instant,
}

impl<S> Metered<S> {
    fn touch(&self) {
        // Milliseconds since the tunnel opened fit u64 for half a billion years.
        self.activity
            .store(self.clock.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            self.counter.fetch_add(read as u64, Ordering::Relaxed);
            self.touch();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::time::Instant;

    use super::*;

    const IDLE: Duration = Duration::from_secs(300);

    /// Two connected loopback sockets.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let near = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (far, _) = listener.accept().await.unwrap();
        (near, far)
    }

    /// A waker that owns a share of `token`, as a task's waker owns its task's memory.
    struct Holder(#[allow(dead_code)] Arc<()>);

    impl std::task::Wake for Holder {
        fn wake(self: Arc<Self>) {}
    }

    #[tokio::test]
    async fn a_tunnel_lets_go_of_the_waker_the_http_layer_left_on_the_client_socket() {
        let (_client, client_end) = pair().await;
        let (origin_end, _origin) = pair().await;
        let token = Arc::new(());
        let waker = std::task::Waker::from(Arc::new(Holder(token.clone())));
        // What hyper's connection task did last: read until nothing was left, then wait for more.
        let mut cx = Context::from_waker(&waker);
        let mut waiting = false;
        for _ in 0..10 {
            if client_end.poll_read_ready(&mut cx).is_pending() {
                waiting = true;
                break;
            }
            let drained = client_end.try_read(&mut [0; 16]);
            assert!(matches!(drained, Err(ref e) if e.kind() == io::ErrorKind::WouldBlock));
        }
        assert!(waiting);
        drop(waker);
        assert_eq!(Arc::strong_count(&token), 2, "the socket keeps the waker");
        let tunnel = tokio::spawn(async move {
            run_tcp(client_end, &[], origin_end, &Bytes::default(), IDLE, 4096).await
        });
        for _ in 0..100 {
            if Arc::strong_count(&token) == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(
            Arc::strong_count(&token),
            1,
            "the idle tunnel still holds the old waker"
        );
        assert!(!tunnel.is_finished());
        tunnel.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_sent_behind_the_connect_head_to_an_origin_that_reads_nothing_time_out() {
        let (_client, client_end) = pair().await;
        let (origin_end, _origin) = pair().await;
        // More than the sockets between here and the unread origin can hold.
        let pending = vec![0x5a_u8; 64 << 20];
        let started = Instant::now();
        let end = tokio::time::timeout(
            IDLE * 10,
            run_tcp(
                client_end,
                &pending,
                origin_end,
                &Bytes::default(),
                IDLE,
                4096,
            ),
        )
        .await;
        assert!(matches!(end, Ok(TunnelEnd::Idle)), "{end:?}");
        assert!(started.elapsed() >= IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_tunnel_is_closed_after_the_idle_timeout_and_not_before() {
        let (_client, client_end) = pair().await;
        let (origin_end, _origin) = pair().await;
        let started = Instant::now();
        let end = run_tcp(client_end, &[], origin_end, &Bytes::default(), IDLE, 4096).await;
        assert!(matches!(end, TunnelEnd::Idle), "{end:?}");
        assert!(started.elapsed() >= IDLE, "{:?}", started.elapsed());
        assert!(started.elapsed() < IDLE + Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn traffic_in_either_direction_keeps_a_tunnel_open() {
        let (mut client, client_end) = pair().await;
        let (origin_end, mut origin) = pair().await;
        let bytes = Bytes::default();
        let started = Instant::now();
        let talk = async {
            // Five exchanges, each after two thirds of the idle timeout: never idle for long.
            for _ in 0..5 {
                tokio::time::sleep(IDLE * 2 / 3).await;
                client.write_all(b"ping").await.unwrap();
                let mut buf = [0u8; 4];
                origin.read_exact(&mut buf).await.unwrap();
                origin.write_all(b"pong").await.unwrap();
                client.read_exact(&mut buf).await.unwrap();
            }
        };
        let (end, ()) = tokio::join!(
            run_tcp(client_end, &[], origin_end, &bytes, IDLE, 4096),
            talk
        );
        assert!(matches!(end, TunnelEnd::Idle), "{end:?}");
        // Closed one idle timeout after the last exchange, not one after the first.
        assert!(
            started.elapsed() >= IDLE * 10 / 3 + IDLE,
            "{:?}",
            started.elapsed()
        );
        assert_eq!(bytes.up.load(Ordering::Relaxed), 20);
        assert_eq!(bytes.down.load(Ordering::Relaxed), 20);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bulk_transfer_both_ways_arrives_whole_in_order_and_counted() {
        let (mut client, client_end) = pair().await;
        let (origin_end, mut origin) = pair().await;
        let bytes = Bytes::default();
        // 4 KiB buffers: 2 MiB each way is hundreds of reads and writes, both ways at once.
        let up: Vec<u8> = (0..2 << 20).map(|i: u32| (i % 251) as u8).collect();
        let down: Vec<u8> = (0..2 << 20).map(|i: u32| (i % 241) as u8).collect();
        let (tunnel, (), ()) = tokio::join!(
            run_tcp(client_end, b"head", origin_end, &bytes, IDLE, 4096),
            async {
                let (mut read, mut write) = client.split();
                let send = async {
                    write.write_all(&up).await.unwrap();
                    write.shutdown().await.unwrap();
                };
                let receive = async {
                    let mut got = Vec::new();
                    read.read_to_end(&mut got).await.unwrap();
                    assert!(
                        got == down,
                        "client got {} bytes, not the origin's",
                        got.len()
                    );
                };
                tokio::join!(send, receive);
            },
            async {
                let (mut read, mut write) = origin.split();
                let send = async {
                    write.write_all(&down).await.unwrap();
                    write.shutdown().await.unwrap();
                };
                let receive = async {
                    let mut got = Vec::new();
                    read.read_to_end(&mut got).await.unwrap();
                    assert!(
                        got.starts_with(b"head") && got[4..] == up[..],
                        "origin got {} bytes",
                        got.len()
                    );
                };
                tokio::join!(send, receive);
            }
        );
        assert!(matches!(tunnel, TunnelEnd::Closed), "{tunnel:?}");
        assert_eq!(bytes.up.load(Ordering::Relaxed), up.len() as u64 + 4);
        assert_eq!(bytes.down.load(Ordering::Relaxed), down.len() as u64);
    }

    #[tokio::test(start_paused = true)]
    async fn the_generic_pump_idles_out_too() {
        let (_client, client_end) = tokio::io::duplex(64);
        let (origin_end, _origin) = tokio::io::duplex(64);
        let started = Instant::now();
        let end = run(client_end, origin_end, &Bytes::default(), IDLE, 4096).await;
        assert!(matches!(end, TunnelEnd::Idle), "{end:?}");
        assert!(started.elapsed() >= IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_side_ends_the_tunnel_at_once() {
        let (client, client_end) = pair().await;
        let (origin_end, mut origin) = pair().await;
        drop(client);
        let started = Instant::now();
        let bytes = Bytes::default();
        let (end, ()) = tokio::join!(
            run_tcp(client_end, b"early", origin_end, &bytes, IDLE, 4096),
            async {
                let mut got = Vec::new();
                origin.read_to_end(&mut got).await.unwrap();
                assert_eq!(got, b"early");
                drop(origin);
            }
        );
        assert!(matches!(end, TunnelEnd::Closed), "{end:?}");
        assert!(started.elapsed() < IDLE);
    }
}
