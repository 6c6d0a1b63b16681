//! The accept loop every listener runs, and draining.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::faults::{Faults, is_shortage};
use crate::listener::{Listener, Peer};
use crate::reserve::Reserve;

/// Connections being turned away at once, at most; beyond that a connection over the limit is
/// closed without a word.
const MAX_REJECTING: usize = 64;

/// An accepted connection, handed to a [`Handler`].
pub struct Conn<Io> {
    /// The connection.
    pub io: Io,
    /// Who connected.
    pub peer: Peer,
    /// This connection's place under the limit; whatever outlives the connection (a tunnel)
    /// keeps it.
    pub permit: OwnedSemaphorePermit,
    /// Cancelled when the server stops: finish the current exchange, accept no more on this
    /// connection.
    pub shutdown: CancellationToken,
    /// Where to spawn work that must finish before the process exits (it is drained).
    pub tasks: TaskTracker,
}

/// Serves connections of one protocol.
pub trait Handler<Io>: Clone + Send + Sync + 'static {
    /// Serves `conn` until it ends.
    fn serve(self, conn: Conn<Io>) -> impl Future<Output = ()> + Send + 'static;

    /// A connection over the limit: say so briefly (bounded in time), or just close it, which is
    /// what this default does.
    fn overloaded(self, io: Io, peer: Peer) -> impl Future<Output = ()> + Send + 'static {
        let _ = (io, peer);
        std::future::ready(())
    }

    /// A connection accepted with the reserve descriptor while the process is out of
    /// descriptors ([`Server::with_reserve`]): say so briefly (bounded in time), or just close
    /// it. This default answers as [`Handler::overloaded`] does.
    fn exhausted(self, io: Io, peer: Peer) -> impl Future<Output = ()> + Send + 'static {
        self.overloaded(io, peer)
    }
}

/// One server: a connection limit, a shutdown signal and the tasks to drain, shared by every
/// listener it serves. Cheap to clone.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    limit: Arc<Semaphore>,
    rejecting: Arc<Semaphore>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    over_limit: AtomicBool,
    reserve: Reserve,
    /// The most tracked tasks seen open just after an accept since [`Server::take_peak`]
    /// last read it.
    peak: AtomicUsize,
}

/// What was left when draining ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drained {
    /// Tasks still running at the deadline (they are dropped with the runtime).
    pub left: usize,
}

impl Server {
    /// A server of at most `max_connections` connections at once, stopping when `shutdown` is
    /// cancelled.
    pub fn new(max_connections: usize, shutdown: CancellationToken) -> Self {
        Self::build(max_connections, shutdown, false)
    }

    /// [`Server::new`], keeping one descriptor in reserve: out of descriptors, the connections
    /// waiting are accepted one at a time with it and handed to [`Handler::exhausted`], so each
    /// is told (the DNS stub's SERVFAIL, the proxy's 503) rather than left waiting in silence.
    pub fn with_reserve(max_connections: usize, shutdown: CancellationToken) -> Self {
        Self::build(max_connections, shutdown, true)
    }

    fn build(max_connections: usize, shutdown: CancellationToken, reserve: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                limit: Arc::new(Semaphore::new(max_connections)),
                rejecting: Arc::new(Semaphore::new(MAX_REJECTING)),
                tasks: TaskTracker::new(),
                shutdown,
                over_limit: AtomicBool::new(false),
                reserve: Reserve::new(reserve),
                peak: AtomicUsize::new(0),
            }),
        }
    }

    /// Tasks drained at shutdown; spawn work here that must finish before exit.
    pub fn tasks(&self) -> &TaskTracker {
        &self.inner.tasks
    }

    /// The shutdown signal.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// The most tracked tasks open at once since the last call (at least as many as are open
    /// now), and starts again from now: a burst that opened and closed between two samples of
    /// [`Server::tasks`] still shows here.
    pub fn take_peak(&self) -> usize {
        let open = self.inner.tasks.len();
        self.inner.peak.swap(open, Ordering::Relaxed).max(open)
    }

    /// Accepts from `listener` until shutdown, handing each connection to `handler` on a tracked
    /// task. Returns `Ok` when shut down, `Err` only if the listener is broken for good: every
    /// transient error (a reset connection, no descriptors left) is survived. Out of descriptors,
    /// a server [`Server::with_reserve`] turns the connections waiting away one at a time.
    pub async fn serve<L, H>(&self, what: &'static str, listener: L, handler: H) -> io::Result<()>
    where
        L: Listener,
        H: Handler<L::Io>,
    {
        let inner = &*self.inner;
        let mut faults = Faults::new(what);
        loop {
            inner.reserve.restore();
            let settled = inner.reserve.settled();
            let accepted = tokio::select! {
                () = inner.shutdown.cancelled() => return Ok(()),
                accepted = listener.accept() => accepted,
            };
            let (io, peer) = match accepted {
                Ok(accepted) => {
                    // Resources are back once the reserve is too and nobody is being turned
                    // away: a descriptor freed by a connection turned away is not the end of a
                    // shortage.
                    if settled {
                        faults.succeeded();
                    }
                    accepted
                }
                Err(error) => {
                    let shortage = is_shortage(&error);
                    let pause = faults.failed(error)?;
                    if shortage && inner.reserve.release() {
                        let retried = tokio::select! {
                            () = inner.shutdown.cancelled() => return Ok(()),
                            accepted = listener.accept() => accepted,
                        };
                        if let Ok((io, peer)) = retried {
                            self.turn_away_with_reserve(io, peer, &handler);
                            continue;
                        }
                    }
                    if !pause.is_zero() {
                        tokio::select! {
                            () = inner.shutdown.cancelled() => return Ok(()),
                            () = tokio::time::sleep(pause) => {}
                            () = inner.reserve.wait_closed() => {}
                        }
                    }
                    continue;
                }
            };
            let span = tracing::debug_span!("conn", client.addr = %peer);
            match inner.limit.clone().try_acquire_owned() {
                Ok(permit) => {
                    if inner.over_limit.swap(false, Ordering::Relaxed) {
                        tracing::info!(listener = what, "below the connection limit again");
                    }
                    let conn = Conn {
                        io,
                        peer,
                        permit,
                        shutdown: inner.shutdown.clone(),
                        tasks: inner.tasks.clone(),
                    };
                    inner
                        .tasks
                        .spawn(handler.clone().serve(conn).instrument(span));
                    inner.peak.fetch_max(inner.tasks.len(), Ordering::Relaxed);
                }
                Err(_) => {
                    if !inner.over_limit.swap(true, Ordering::Relaxed) {
                        tracing::warn!(listener = what, client = %peer, "connection limit reached; turning new connections away");
                    }
                    if let Ok(slot) = inner.rejecting.clone().try_acquire_owned() {
                        let rejection = handler.clone().overloaded(io, peer);
                        inner.tasks.spawn(
                            async move {
                                let _slot = slot;
                                rejection.await;
                            }
                            .instrument(span),
                        );
                    }
                }
            }
        }
    }

    /// Hands `io`, accepted with the reserve descriptor, to `handler` to be told it cannot be
    /// served now; the reserve is taken back once it has closed.
    fn turn_away_with_reserve<Io, H: Handler<Io>>(&self, io: Io, peer: Peer, handler: &H) {
        let inner = self.inner.clone();
        let span = tracing::debug_span!("conn", client.addr = %peer);
        tracing::debug!(parent: &span, "out of descriptors: turning a waiting connection away");
        let rejection = handler.clone().exhausted(io, peer);
        self.inner.reserve.turning_away();
        self.inner.tasks.spawn(
            async move {
                rejection.await;
                // At once, on this task: the descriptor just closed is the one most likely free,
                // and another loop short of descriptors would take it.
                inner.reserve.restore();
                inner.reserve.closed();
            }
            .instrument(span),
        );
    }

    /// Waits up to `deadline` for every tracked task to finish. Call after shutdown was
    /// cancelled and the accept loops returned.
    pub async fn drain(&self, deadline: Duration) -> Drained {
        let tasks = &self.inner.tasks;
        tasks.close();
        let _ = tokio::time::timeout(deadline, tasks.wait()).await;
        Drained { left: tasks.len() }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;

    /// Hands out scripted accept results: errors, then connections.
    struct Scripted {
        script: Mutex<VecDeque<io::Result<DuplexStream>>>,
    }

    impl Listener for Scripted {
        type Io = DuplexStream;

        async fn accept(&self) -> io::Result<(DuplexStream, Peer)> {
            let next = self.script.lock().unwrap().pop_front();
            match next {
                Some(result) => result.map(|io| (io, Peer::Unix)),
                None => std::future::pending().await,
            }
        }
    }

    /// Answers "ok" to every connection, "busy" when over the limit, "none" when out of
    /// descriptors.
    #[derive(Clone)]
    struct Greeter;

    impl Handler<DuplexStream> for Greeter {
        async fn serve(self, mut conn: Conn<DuplexStream>) {
            let _ = conn.io.write_all(b"ok").await;
            // Hold the connection until the peer closes, like a keep-alive client.
            let mut rest = Vec::new();
            let _ = conn.io.read_to_end(&mut rest).await;
        }

        async fn overloaded(self, mut io: DuplexStream, _: Peer) {
            let _ = io.write_all(b"busy").await;
        }

        async fn exhausted(self, mut io: DuplexStream, _: Peer) {
            let _ = io.write_all(b"none").await;
        }
    }

    /// Says only "busy": out of descriptors too, by [`Handler::exhausted`]'s default.
    #[derive(Clone)]
    struct Terse;

    impl Handler<DuplexStream> for Terse {
        async fn serve(self, conn: Conn<DuplexStream>) {
            Greeter.serve(conn).await;
        }

        async fn overloaded(self, mut io: DuplexStream, _: Peer) {
            let _ = io.write_all(b"busy").await;
        }
    }

    fn pair() -> (DuplexStream, DuplexStream) {
        tokio::io::duplex(64)
    }

    async fn greeting(client: &mut DuplexStream) -> String {
        let mut buf = [0u8; 4];
        let n = client.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn running_out_of_descriptors_pauses_but_never_stops_the_loop() {
        let (mut client, server_side) = pair();
        let mut script: VecDeque<io::Result<DuplexStream>> = (0..50)
            .map(|_| Err(io::Error::from_raw_os_error(libc::EMFILE)))
            .collect();
        script.push_back(Err(io::Error::from_raw_os_error(libc::ECONNABORTED)));
        script.push_back(Ok(server_side));
        let listener = Scripted {
            script: Mutex::new(script),
        };
        let server = Server::new(4, CancellationToken::new());
        let serving = tokio::spawn({
            let server = server.clone();
            async move { server.serve("test", listener, Greeter).await }
        });
        assert_eq!(greeting(&mut client).await, "ok");
        assert!(!serving.is_finished());
        server.shutdown().cancel();
        serving.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn out_of_descriptors_a_waiting_connection_is_told_not_left_waiting() {
        let (mut first, first_server) = pair();
        let (mut second, second_server) = pair();
        // The first accept finds no descriptor; the reserve's lets the waiting connection in, to
        // be turned away; the reserve is back for the next one, also turned away in its turn.
        let listener = Scripted {
            script: Mutex::new(VecDeque::from([
                Err(io::Error::from_raw_os_error(libc::EMFILE)),
                Ok(first_server),
                Err(io::Error::from_raw_os_error(libc::EMFILE)),
                Ok(second_server),
            ])),
        };
        let server = Server::with_reserve(4, CancellationToken::new());
        let serving = tokio::spawn({
            let server = server.clone();
            async move { server.serve("test", listener, Greeter).await }
        });
        assert_eq!(greeting(&mut first).await, "none");
        assert_eq!(greeting(&mut second).await, "none");
        server.shutdown().cancel();
        serving.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn out_of_descriptors_a_handler_without_its_own_answer_says_it_is_overloaded() {
        let (mut client, server_side) = pair();
        let listener = Scripted {
            script: Mutex::new(VecDeque::from([
                Err(io::Error::from_raw_os_error(libc::EMFILE)),
                Ok(server_side),
            ])),
        };
        let server = Server::with_reserve(4, CancellationToken::new());
        let serving = tokio::spawn({
            let server = server.clone();
            async move { server.serve("test", listener, Terse).await }
        });
        assert_eq!(greeting(&mut client).await, "busy");
        server.shutdown().cancel();
        serving.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_peak_counts_connections_that_closed_before_it_was_read() {
        let (mut first, first_server) = pair();
        let (mut second, second_server) = pair();
        let listener = Scripted {
            script: Mutex::new(VecDeque::from([Ok(first_server), Ok(second_server)])),
        };
        let server = Server::new(4, CancellationToken::new());
        let serving = tokio::spawn({
            let server = server.clone();
            async move { server.serve("test", listener, Greeter).await }
        });
        assert_eq!(greeting(&mut first).await, "ok");
        assert_eq!(greeting(&mut second).await, "ok");
        drop((first, second));
        while !server.tasks().is_empty() {
            tokio::task::yield_now().await;
        }
        assert_eq!(server.take_peak(), 2);
        assert_eq!(server.take_peak(), 0, "read again: from now on");
        server.shutdown().cancel();
        serving.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_broken_listener_ends_the_loop_with_its_error() {
        let listener = Scripted {
            script: Mutex::new(VecDeque::from([Err(io::Error::from_raw_os_error(
                libc::EBADF,
            ))])),
        };
        let server = Server::new(4, CancellationToken::new());
        let error = server.serve("test", listener, Greeter).await.unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EBADF));
    }

    #[tokio::test(start_paused = true)]
    async fn over_the_limit_a_connection_is_turned_away_and_drain_waits_for_the_rest() {
        let (mut first, first_server) = pair();
        let (mut second, second_server) = pair();
        let listener = Scripted {
            script: Mutex::new(VecDeque::from([Ok(first_server), Ok(second_server)])),
        };
        let server = Server::new(1, CancellationToken::new());
        let serving = tokio::spawn({
            let server = server.clone();
            async move { server.serve("test", listener, Greeter).await }
        });
        assert_eq!(greeting(&mut first).await, "ok");
        assert_eq!(greeting(&mut second).await, "busy");
        server.shutdown().cancel();
        serving.await.unwrap().unwrap();
        // The first connection is still open: draining gives up at the deadline...
        assert_eq!(
            server.drain(Duration::from_secs(1)).await,
            Drained { left: 1 }
        );
        // ...and finishes as soon as it closes.
        drop(first);
        assert_eq!(
            server.drain(Duration::from_secs(1)).await,
            Drained { left: 0 }
        );
    }
}
