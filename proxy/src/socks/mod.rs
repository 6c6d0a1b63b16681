//! The SOCKS5 listener (`--socks-listen`, `--socks-unix`): RFC 1928 `CONNECT` for clients that do
//! not speak HTTP (git over SSH through a `ProxyCommand`, database clients, `socks5h://` URLs),
//! under the same policy as an HTTP `CONNECT` and through the same code: the destination is
//! decided once by `route::Router::decide` (a refused name is never resolved), opened by
//! `open::open` (resolved through the shared resolver, every address checked again, only a
//! checked one dialed; or through the parent proxy), and tunneled by `tunnel`. One
//! [`audit::Socks`] event per connection, with the reply code sent.
//!
//! The path of a connection: `handshake` (greeting, the proxy credential as RFC 1929
//! username/password, the request; `wire` reads the bytes) → decide → open → reply `00` and
//! tunnel, or a reply code (`reply`) and close. What it does not do: `BIND` and `UDP ASSOCIATE`
//! (refused with `07`), GSSAPI, and TLS inspection: a destination whose rule inspects is
//! refused here, since an opaque tunnel would carry requests the rule's method and path checks
//! never saw (use the HTTP proxy's `CONNECT` for it).

mod handshake;
mod reply;
pub mod wire;

use std::any::Any;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use policy::{Host, Target};
use serve::{Conn, Handler, Peer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::audit::{Audit, Bytes, Caller};
use crate::context::Shared;
use crate::error::Failure;
use crate::limits::Limits;
use crate::open::{Reached, open};
use crate::tunnel::{self, Origin, TunnelEnd};
use handshake::{Ended, Requested, handshake};
use reply::reply_for;
use wire::{Address, Command, Reply, WireError};

/// The audit reason of a command other than `CONNECT`.
const UNSUPPORTED: &str = "socks-command-unsupported";
/// The audit reason of a destination whose rule inspects TLS, which a SOCKS tunnel cannot.
const INSPECTED: &str = "socks-inspect-unsupported";
/// How long egressd waits to write a refusal to a client that does not read.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);

/// The SOCKS5 listener's handler: the proxy's state (policy generation, credential, limits,
/// audit sink, metrics), served by the shared serve loop. Made by [`crate::Proxy::socks`].
#[derive(Clone)]
pub struct Socks {
    shared: Arc<Shared>,
}

impl Socks {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Tells the client no method is acceptable, closes, and audits it as an error for `reason`.
    async fn turn_away<Io: AsyncWrite + Unpin>(
        &self,
        mut io: Io,
        peer: Peer,
        reason: &'static str,
    ) {
        let mut audit = Audit::socks(self.shared.caller(peer), "", String::new());
        audit.failed_with(StatusCode::SERVICE_UNAVAILABLE, reason);
        let refusal = wire::method_selection(wire::METHOD_UNACCEPTABLE);
        let _ = tokio::time::timeout(REFUSAL_WRITE, io.write_all(&refusal)).await;
        let _ = tokio::time::timeout(REFUSAL_WRITE, io.shutdown()).await;
    }
}

impl<Io> Handler<Io> for Socks
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn serve(self, conn: Conn<Io>) {
        let _open = self.shared.config.metrics.connection();
        let mut io = conn.io;
        let limits = &self.shared.config.limits;
        let credential = self.shared.config.credential.as_ref();
        // The whole handshake, up to the request, within --header-read-timeout (as an HTTP head).
        let handshake = tokio::select! {
            done = tokio::time::timeout(limits.header_read_timeout, handshake(&mut io, credential)) => done,
            () = conn.shutdown.cancelled() => return,
        };
        let caller = self.shared.caller(conn.peer);
        let Requested { request, pending } = match handshake {
            Ok(Ok(requested)) => requested,
            Ok(Err(ended)) => return end_handshake(&mut io, caller, ended).await,
            Err(_) => {
                let mut audit = Audit::socks(caller, "", String::new());
                audit.failed_with(StatusCode::REQUEST_TIMEOUT, "head-timeout");
                return;
            }
        };
        let mut audit = Audit::socks(caller, "", String::new());
        let target = target_of(&request.address, request.port);
        audit.requested(request.command.name(), target.to_string());
        let generation = self.shared.generation.load();
        audit.under(generation.router.shared_policy());
        if request.command != Command::Connect {
            audit.denied(UNSUPPORTED, None, StatusCode::FORBIDDEN);
            return refuse(&mut io, audit, Reply::CommandNotSupported).await;
        }
        let decided = match request.port {
            0 => Err(Failure::MalformedTarget(
                "port 0 is no destination".to_owned(),
            )),
            _ => generation.router.decide(&target),
        };
        let decision = match decided {
            Ok(decision) => decision,
            Err(failure) => return fail(&mut io, audit, &target, failure).await,
        };
        if crate::inspect::wanted(&decision) {
            audit.denied(INSPECTED, decision.rule.clone(), StatusCode::FORBIDDEN);
            tracing::info!(target = %target, "refused: the rule inspects TLS, which needs the HTTP proxy's CONNECT");
            return refuse(&mut io, audit, Reply::NotAllowed).await;
        }
        audit.reported(&decision);
        let reached = match open(&self.shared.config, &generation, &target, decision).await {
            Ok(reached) => reached,
            Err(failure) => return fail(&mut io, audit, &target, failure).await,
        };
        // The tunnel does not keep the generation: a reload frees the old one's pool at once.
        drop(generation);
        let Reached {
            origin,
            addr,
            decision,
        } = reached;
        audit.allowed(&decision, Some(addr), 0);
        let bound = match &origin {
            Origin::Direct(stream) => stream.local_addr().unwrap_or(wire::UNBOUND),
            Origin::Parent(_) => wire::UNBOUND,
        };
        audit.replied(Reply::Succeeded.code());
        if let Err(error) = handshake::write(&mut io, &wire::reply(Reply::Succeeded, bound)).await {
            tracing::debug!(%error, "SOCKS client left before the tunnel opened");
            return;
        }
        // The connection's place under the limit (`conn.permit`) lives as long as the tunnel.
        let _tunnel = self.shared.config.metrics.tunnel();
        let end = pump(io, &pending, origin, &audit.bytes, limits).await;
        match end {
            TunnelEnd::Closed => {}
            TunnelEnd::Idle => {
                tracing::debug!(%target, "SOCKS tunnel closed after the idle timeout")
            }
            TunnelEnd::Error(error) => {
                tracing::debug!(%target, %error, "SOCKS tunnel ended with an error")
            }
        }
        drop(conn.permit);
    }

    /// Over the connection limit: tells the client no method is acceptable (`0xFF`, the one
    /// answer a SOCKS5 client reads before anything else) and closes; audited `overloaded`.
    async fn overloaded(self, io: Io, peer: Peer) {
        self.turn_away(io, peer, "overloaded").await;
    }

    /// Out of descriptors: the same answer, audited `proxy-resources`.
    async fn exhausted(self, io: Io, peer: Peer) {
        self.turn_away(io, peer, "proxy-resources").await;
    }
}

/// The destination as the request names it. A name is judged as written, as an HTTP `CONNECT`
/// authority's host would be: an IP address spelled as a name is that address, an ambiguous
/// numeric spelling or a name that is not UTF-8 is malformed (refused, never resolved).
fn target_of(address: &Address, port: u16) -> Target {
    let host = match address {
        Address::V4(v4) => Host::Ip(IpAddr::V4(*v4)),
        Address::V6(v6) => Host::Ip(IpAddr::V6(*v6)),
        Address::Name(name) => match std::str::from_utf8(name) {
            Ok(text) => Host::parse(text),
            Err(_) => Host::Malformed(String::from_utf8_lossy(name).into_owned()),
        },
    };
    Target { host, port }
}

/// Audits a handshake that ended before its request, and answers what the protocol allows.
async fn end_handshake<Io: AsyncWrite + Unpin>(io: &mut Io, caller: Caller, ended: Ended) {
    // A close before the first byte is no request: nothing to audit (as an HTTP client that
    // connects and leaves).
    let Some(reason) = ended.reason() else { return };
    let mut audit = Audit::socks(caller, "", String::new());
    match ended {
        Ended::Unauthorized(failure) => {
            audit.failed(&failure);
        }
        Ended::Malformed(WireError::AddressType(_)) => {
            audit.failed_with(StatusCode::BAD_REQUEST, reason);
            refuse(io, audit, Reply::AddressTypeNotSupported).await;
        }
        _ => audit.failed_with(StatusCode::BAD_REQUEST, reason),
    }
}

/// Audits `failure` and tells the client its reply code; the reason goes to the log, since the
/// code cannot carry it.
async fn fail<Io: AsyncWrite + Unpin>(
    io: &mut Io,
    mut audit: Audit,
    target: &Target,
    failure: Failure,
) {
    audit.failed(&failure);
    let reply = reply_for(&failure);
    if failure.is_refusal() {
        tracing::info!(%target, reason = failure.reason_code(), %failure, "SOCKS request refused");
    } else {
        tracing::debug!(%target, reason = failure.reason_code(), %failure, "SOCKS request failed");
    }
    refuse(io, audit, reply).await;
}

/// Sends `reply` (a failure) and closes; the audit event is written once the client was told.
async fn refuse<Io: AsyncWrite + Unpin>(io: &mut Io, mut audit: Audit, reply: Reply) {
    audit.replied(reply.code());
    let bytes = wire::reply(reply, wire::UNBOUND);
    let _ = tokio::time::timeout(REFUSAL_WRITE, handshake::write(io, &bytes)).await;
    let _ = tokio::time::timeout(REFUSAL_WRITE, io.shutdown()).await;
    drop(audit);
}

/// Moves bytes until the tunnel ends: the TCP pump when the client and the origin are both TCP
/// sockets (no buffer held while idle), the generic one otherwise (a Unix-socket client, a parent
/// proxy). `pending` (bytes the client sent before the reply) goes first.
async fn pump<Io>(
    client: Io,
    pending: &[u8],
    origin: Origin,
    bytes: &Bytes,
    limits: &Limits,
) -> TunnelEnd
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (idle, buffer) = (limits.tunnel_idle_timeout, limits.tunnel_buffer_bytes);
    let mut client = Some(client);
    let tcp = (&mut client as &mut dyn Any)
        .downcast_mut::<Option<TcpStream>>()
        .and_then(Option::take);
    match (tcp, origin, client) {
        (Some(tcp), Origin::Direct(stream), _) => {
            tunnel::run_tcp(tcp, pending, stream, bytes, idle, buffer).await
        }
        (Some(tcp), Origin::Parent(parent), _) => {
            generic(tcp, pending, parent, bytes, idle, buffer).await
        }
        (None, Origin::Direct(stream), Some(io)) => {
            generic(io, pending, stream, bytes, idle, buffer).await
        }
        (None, Origin::Parent(parent), Some(io)) => {
            generic(io, pending, parent, bytes, idle, buffer).await
        }
        // The client is taken only as a TCP socket, in the arms above.
        (None, _, None) => TunnelEnd::Closed,
    }
}

/// [`tunnel::run`] after writing `pending` to the origin (under the idle timeout, as the TCP
/// pump does).
async fn generic<C, O>(
    client: C,
    pending: &[u8],
    mut origin: O,
    bytes: &Bytes,
    idle: Duration,
    buffer: usize,
) -> TunnelEnd
where
    C: AsyncRead + AsyncWrite + Unpin,
    O: AsyncRead + AsyncWrite + Unpin,
{
    if !pending.is_empty() {
        match tokio::time::timeout(idle, origin.write_all(pending)).await {
            Err(_) => return TunnelEnd::Idle,
            Ok(Err(error)) => return TunnelEnd::Error(error),
            Ok(Ok(())) => {}
        }
        bytes
            .up
            .fetch_add(pending.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }
    tunnel::run(client, origin, bytes, idle, buffer).await
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn a_name_is_judged_as_written() {
        let cases: [(Address, &str); 7] = [
            (Address::Name(b"Example.ORG".to_vec()), "example.org:22"),
            (Address::Name(b"127.0.0.1".to_vec()), "127.0.0.1:22"),
            (Address::Name(b"::1".to_vec()), "[::1]:22"),
            (Address::Name(b"2130706433".to_vec()), "\"2130706433\":22"),
            (Address::Name(b"a\xffb".to_vec()), "\"a\u{fffd}b\":22"),
            (Address::V4(Ipv4Addr::new(10, 0, 0, 1)), "10.0.0.1:22"),
            (Address::V6(Ipv6Addr::LOCALHOST), "[::1]:22"),
        ];
        for (address, want) in cases {
            assert_eq!(target_of(&address, 22).to_string(), want, "{address:?}");
        }
        assert!(matches!(
            target_of(&Address::Name(Vec::new()), 22).host,
            Host::Malformed(_)
        ));
    }
}
