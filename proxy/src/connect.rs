//! `CONNECT host:port`: decided, resolved, checked and dialed before the client hears `200`;
//! then a tunnel on a tracked task, which keeps the connection's place under the limit.

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use policy::Target;
use tokio::net::TcpStream;

use crate::audit::Audit;
use crate::body::{ResponseBody, empty};
use crate::client_io::ClientIo;
use crate::context::{Connection, Generation};
use crate::error::Failure;
use crate::open::{Reached, open};
use crate::refused_tunnel;
use crate::respond::refuse;
use crate::target::loggable_authority;
use crate::tunnel::{self, Origin, TunnelEnd};

pub(crate) async fn connect(
    connection: &Connection,
    generation: &Generation,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let (authority, userinfo) = loggable_authority(req.uri());
    let mut audit = Audit::new(connection.caller.clone(), "CONNECT", authority.clone());
    audit.under(generation.router.shared_policy());
    if userinfo {
        // Authority-form has no userinfo (RFC 9110 §3.2.3); what it held is never written.
        let failure = Failure::MalformedTarget("a CONNECT target has no userinfo".to_owned());
        return refuse(&mut audit, &authority, failure);
    }
    let target = match Target::parse_authority(&authority) {
        Ok(target) => target,
        Err(error) => {
            let failure = Failure::MalformedTarget(format!("CONNECT needs HOST:PORT: {error}"));
            return refuse(&mut audit, &authority, failure);
        }
    };
    let config = &connection.shared.config;
    let policy = generation.router.policy();
    let decision = match generation.router.decide(&target) {
        Ok(decision) => decision,
        Err(failure) => match refused_tunnel::wanted(config, policy, &target, &failure) {
            Some(inside) => {
                return refused_tunnel::answer(connection, req, audit, authority, failure, inside);
            }
            None => return refuse(&mut audit, &authority, failure),
        },
    };
    audit.reported(&decision);
    let Reached {
        origin,
        addr,
        decision,
    } = match open(config, generation, &target, decision).await {
        Ok(reached) => reached,
        Err(failure) => match refused_tunnel::wanted(config, policy, &target, &failure) {
            Some(inside) => {
                return refused_tunnel::answer(connection, req, audit, authority, failure, inside);
            }
            None => return refuse(&mut audit, &authority, failure),
        },
    };
    audit.allowed(&decision, Some(addr), 200);
    if crate::inspect::wanted(&decision) {
        crate::inspect::spawn(connection, req, origin, addr, audit, target, decision);
        return Response::new(empty());
    }
    spawn_tunnel(connection, req, origin, audit, authority);
    Response::new(empty())
}

/// Runs the tunnel on a tracked task once hyper hands over the client's connection: bytes both
/// ways until both sides close or it idles out; the audit event is written when it ends.
fn spawn_tunnel(
    connection: &Connection,
    req: Request<Incoming>,
    origin: Origin,
    audit: Audit,
    authority: String,
) {
    let limits = &connection.shared.config.limits;
    let (idle, buffer) = (limits.tunnel_idle_timeout, limits.tunnel_buffer_bytes);
    let permit = connection.permit.clone();
    let open = connection.shared.config.metrics.tunnel();
    connection.tasks.spawn(async move {
        // The connection's place under the limit lives as long as the tunnel.
        let _permit = permit;
        let _open = open;
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, "client left before the tunnel opened");
                return;
            }
        };
        let end = match origin {
            Origin::Direct(stream) => match upgraded.downcast::<ClientIo<TcpStream>>() {
                Ok(parts) => {
                    let client = parts.io.into_inner();
                    // `read_buf` is a view into hyper's whole read buffer (8 KiB or more): copy
                    // out the few bytes it holds and let the buffer go, or every tunnel keeps one.
                    let pending = parts.read_buf.to_vec();
                    drop(parts.read_buf);
                    tunnel::run_tcp(client, &pending, stream, &audit.bytes, idle, buffer).await
                }
                Err(upgraded) => {
                    tunnel::run(TokioIo::new(upgraded), stream, &audit.bytes, idle, buffer).await
                }
            },
            Origin::Parent(io) => {
                tunnel::run(TokioIo::new(upgraded), io, &audit.bytes, idle, buffer).await
            }
        };
        match end {
            TunnelEnd::Closed => {}
            TunnelEnd::Idle => {
                tracing::debug!(target = %authority, "tunnel closed after the idle timeout")
            }
            TunnelEnd::Error(error) => {
                tracing::debug!(target = %authority, %error, "tunnel ended with an error")
            }
        }
        drop(audit);
    });
}
