//! Binding every listener and starting its loop on the shared serve loop. A listener that cannot
//! be bound fails start-up (exit 3); one whose loop fails later ends the process (exit 4).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use dnsstub::Stub;
use proxy::Proxy;
use serve::Server;
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::exit::Failure;

/// The accept and receive loops; one ending with an error ends the process. They are spawned
/// as their sockets are bound, but serve only once [`Loops::open`] is called, after the readiness
/// line: nothing (an audit event on stdout with `--audit-log -`, say) may come before it. What
/// arrives in between waits in the sockets' queues.
pub struct Loops {
    set: JoinSet<anyhow::Result<()>>,
    gate: CancellationToken,
}

impl Loops {
    pub fn new() -> Self {
        Self {
            set: JoinSet::new(),
            gate: CancellationToken::new(),
        }
    }

    /// Runs `serve` once the loops are opened.
    fn spawn(&mut self, serve: impl Future<Output = anyhow::Result<()>> + Send + 'static) {
        let gate = self.gate.clone();
        self.set.spawn(async move {
            gate.cancelled().await;
            serve.await
        });
    }

    /// Lets every loop serve.
    pub fn open(&self) {
        self.gate.cancel();
    }

    /// The next loop to end, and how it ended.
    pub async fn join_next(&mut self) -> Option<Result<anyhow::Result<()>, JoinError>> {
        self.set.join_next().await
    }
}

/// Binds the proxy's TCP listener and starts it.
pub async fn proxy_tcp(
    addr: SocketAddr,
    proxy: &Proxy,
    server: &Server,
    loops: &mut Loops,
) -> Result<SocketAddr, Failure> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
        .map_err(Failure::start)?;
    let bound = listener
        .local_addr()
        .context("cannot read the bound address")
        .map_err(Failure::start)?;
    let (proxy, server) = (proxy.clone(), server.clone());
    loops.spawn(async move {
        server
            .serve("proxy", listener, proxy)
            .await
            .map_err(|e| anyhow!("proxy listener: {e}"))
    });
    Ok(bound)
}

/// Binds the SOCKS5 listener's TCP socket (`--socks-listen`) and starts it on the proxy's server
/// (its connection limit and drain).
pub async fn socks_tcp(
    addr: SocketAddr,
    socks: proxy::socks::Socks,
    server: &Server,
    loops: &mut Loops,
) -> Result<SocketAddr, Failure> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (SOCKS)"))
        .map_err(Failure::start)?;
    let bound = listener
        .local_addr()
        .context("cannot read the bound SOCKS address")
        .map_err(Failure::start)?;
    let server = server.clone();
    loops.spawn(async move {
        server
            .serve("socks", listener, socks)
            .await
            .map_err(|e| anyhow!("SOCKS listener: {e}"))
    });
    Ok(bound)
}

/// Binds the metrics endpoint's TCP listener (`--metrics-listen`) and starts it.
pub async fn metrics(
    addr: SocketAddr,
    endpoint: super::metrics::Endpoint,
    server: &Server,
    loops: &mut Loops,
) -> Result<SocketAddr, Failure> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (metrics)"))
        .map_err(Failure::start)?;
    let bound = listener
        .local_addr()
        .context("cannot read the bound metrics address")
        .map_err(Failure::start)?;
    let server = server.clone();
    loops.spawn(async move {
        server
            .serve("metrics", listener, endpoint)
            .await
            .map_err(|e| anyhow!("metrics listener: {e}"))
    });
    Ok(bound)
}

/// Binds a Unix socket at `path` with `mode` and serves it with `handler` on `server`. The
/// socket is created 0600 (under a umask, so it is never more open, not even for an instant),
/// then given `mode`.
#[cfg(unix)]
pub fn unix<H: serve::Handler<tokio::net::UnixStream>>(
    what: &'static str,
    path: &Path,
    mode: u32,
    handler: H,
    server: &Server,
    loops: &mut Loops,
) -> Result<(), Failure> {
    use nix::sys::stat::{Mode, umask};
    use std::os::unix::fs::PermissionsExt;
    // The umask is process-wide; nothing else creates files while start-up binds.
    let previous = umask(Mode::from_bits_truncate(0o177));
    let bound = tokio::net::UnixListener::bind(path);
    umask(previous);
    let listener = bound
        .with_context(|| format!("cannot listen on unix socket {}", path.display()))
        .map_err(Failure::start)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of unix socket {}", path.display()))
        .map_err(Failure::start)?;
    let server = server.clone();
    loops.spawn(async move {
        server
            .serve(what, listener, handler)
            .await
            .map_err(|e| anyhow!("{what} listener: {e}"))
    });
    Ok(())
}

/// Unix sockets do not exist here; settings refuse them before this is reached.
#[cfg(not(unix))]
pub fn unix<H>(
    what: &'static str,
    _: &Path,
    _: u32,
    _: H,
    _: &Server,
    _: &mut Loops,
) -> Result<(), Failure> {
    Err(Failure::bad_input(anyhow!("{what} needs a Unix system")))
}

/// Binds the stub's UDP socket and a TCP listener on the same port, both exclusively. With port 0,
/// the kernel's UDP port may be taken for TCP; a few fresh tries settle it. One receive loop per
/// core shares the UDP socket, so queries are answered on every core. (`SO_REUSEPORT` would do the
/// same with one socket per core, but a port-0 bind with it may join another same-user process's
/// group: another sandbox's stub could receive this sandbox's queries.)
pub async fn dns(
    addr: SocketAddr,
    stub: &Stub,
    server: &Server,
    loops: &mut Loops,
) -> Result<SocketAddr, Failure> {
    let receivers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut last = None;
    for _ in 0..10 {
        let udp = tokio::net::UdpSocket::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (DNS, UDP)"))
            .map_err(Failure::start)?;
        let bound = udp
            .local_addr()
            .context("cannot read the bound DNS address")
            .map_err(Failure::start)?;
        let tcp = match tokio::net::TcpListener::bind(bound).await {
            Ok(tcp) => tcp,
            Err(e) if addr.port() == 0 => {
                last = Some(e);
                continue;
            }
            Err(e) => {
                return Err(Failure::start(anyhow!(
                    "cannot listen on {bound} (DNS, TCP): {e}"
                )));
            }
        };
        let udp = Arc::new(udp);
        for _ in 0..receivers {
            let (stub, server, udp) = (stub.clone(), server.clone(), udp.clone());
            loops.spawn(async move {
                stub.serve_udp(udp, &server)
                    .await
                    .map_err(|e| anyhow!("DNS UDP listener: {e}"))
            });
        }
        let (stub, server) = (stub.clone(), server.clone());
        loops.spawn(async move {
            server
                .serve("dns tcp", tcp, stub)
                .await
                .map_err(|e| anyhow!("DNS TCP listener: {e}"))
        });
        return Ok(bound);
    }
    Err(Failure::start(anyhow!(
        "cannot find a port free for both DNS UDP and TCP on {addr}: {last:?}"
    )))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test]
    async fn loops_serve_only_once_opened() {
        let mut loops = Loops::new();
        let served = Arc::new(AtomicBool::new(false));
        let serving = served.clone();
        loops.spawn(async move {
            serving.store(true, Ordering::SeqCst);
            Ok(())
        });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(
            !served.load(Ordering::SeqCst),
            "served before the gate opened"
        );
        loops.open();
        let ended = loops.join_next().await;
        assert!(matches!(ended, Some(Ok(Ok(())))), "{ended:?}");
        assert!(served.load(Ordering::SeqCst));
    }
}
