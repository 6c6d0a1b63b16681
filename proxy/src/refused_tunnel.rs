//! A refused `CONNECT`, answered inside the tunnel, where every client shows it.
//!
//! Node's fetch (undici behind an env proxy agent) reports any refused CONNECT as "Request was
//! cancelled", and curl, git and cargo print only the status code: egressd's reason and body never
//! reach the person or agent reading the output. So when the **policy** refuses a CONNECT, egressd
//! may answer `200` instead, read the one HTTP request the client then sends inside the tunnel
//! (which reaches nothing: no address was dialed), answer it with the same refusal (status, reason
//! phrase, reason and rule headers, body) and close. The audit event is the deny it is, with the
//! refusal's status.
//!
//! - **Port 80**: plain HTTP inside, which is what a client speaks there.
//! - **Inside TLS** (needs egressd's CA): egressd presents a leaf for the CONNECT name (minted by
//!   its CA, as for inspection; an SNI that is not that name ends the connection) and answers the
//!   request inside. By default only for names an `inspect = true` rule covers, whose clients
//!   trust the CA anyway; for every name with `defaults.refusals_inside_tls = true` (a client that
//!   does not trust the CA then shows a certificate error instead of the `403`).
//!
//! Only policy refusals: a malformed target stays a plain `400`, a missing or wrong proxy
//! credential a plain `407` (decided before this module is reached), an IP literal or a name
//! without a CA a plain `403`.

use std::convert::Infallible;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use policy::{DomainName, Host, Policy, Target};

use crate::audit::Audit;
use crate::body::{ResponseBody, empty};
use crate::config::ProxyConfig;
use crate::context::Connection;
use crate::error::Failure;
use crate::respond::failure_response;

/// The port whose refused tunnels are answered inside.
const PLAIN_HTTP_PORT: u16 = 80;

/// What a refused tunnel is answered inside.
pub(crate) enum Inside {
    /// Plain HTTP (port 80).
    Plain,
    /// TLS with a leaf for the name.
    Tls(DomainName),
}

/// Whether a refusal of a CONNECT to `target` under `policy` is answered inside the tunnel, and
/// how.
pub(crate) fn wanted(
    config: &ProxyConfig,
    policy: &Policy,
    target: &Target,
    failure: &Failure,
) -> Option<Inside> {
    failure.decision()?;
    if target.port == PLAIN_HTTP_PORT {
        return Some(Inside::Plain);
    }
    let Host::Name(name) = &target.host else {
        return None;
    };
    config.inspect.as_ref()?;
    (policy.inspects_name(name) || policy.refusals_inside_tls()).then(|| Inside::Tls(name.clone()))
}

/// Answers `200` now and the refusal inside the tunnel once the client's request arrives;
/// `audit` is written when that exchange ends.
pub(crate) fn answer(
    connection: &Connection,
    req: Request<Incoming>,
    mut audit: Audit,
    authority: String,
    failure: Failure,
    inside: Inside,
) -> Response<ResponseBody> {
    audit.failed(&failure);
    let limits = &connection.shared.config.limits;
    let header_read_timeout = limits.header_read_timeout;
    let inspect = connection.shared.config.inspect.clone();
    let permit = connection.permit.clone();
    connection.tasks.spawn(async move {
        // The connection's place under the limit lives as long as this exchange.
        let _permit = permit;
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, "client left before the refused tunnel opened");
                return;
            }
        };
        let refusal = service_fn(|_inner: Request<Incoming>| {
            let response = failure_response(&authority, &failure, audit.policy());
            async move { Ok::<_, Infallible>(response) }
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .keep_alive(false);
        let served = match (inside, inspect) {
            (Inside::Tls(name), Some(inspect)) => {
                let io = TokioIo::new(upgraded);
                let accepted =
                    crate::inspect::accept(io, &name, &inspect, header_read_timeout, crate::inspect::Alpn::Http1Only)
                        .await;
                match accepted {
                    Ok(tls) => builder.serve_connection(TokioIo::new(tls), refusal).await,
                    Err(ended) => {
                        tracing::debug!(target = %authority, reason = ended.code(), "refused tunnel's TLS not opened");
                        return;
                    }
                }
            }
            _ => builder.serve_connection(upgraded, refusal).await,
        };
        if let Err(error) = served {
            tracing::debug!(target = %authority, %error, "refused tunnel ended with an error");
        }
        drop(audit);
    });
    Response::new(empty())
}
