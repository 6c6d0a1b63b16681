//! A refused `CONNECT host:80`, answered inside the tunnel.
//!
//! Node's fetch (undici behind an env proxy agent) tunnels even `http://` URLs, with `CONNECT` to
//! port 80, and reports any refused CONNECT as "Request was cancelled": egressd's status, reason
//! and body never reach the program. So when the **policy** refuses a CONNECT to port 80, egressd
//! answers `200`, reads the one HTTP request the client then sends inside the tunnel (which
//! reaches nothing: no address was dialed), answers it with the same refusal (status, reason
//! phrase, reason and rule headers, body) and closes. The audit event is the deny it is, with the
//! refusal's status.
//!
//! Only for port 80 (plain HTTP is what a client speaks inside such a tunnel) and only for policy
//! refusals: a malformed target stays a plain `400`, a missing or wrong proxy credential a plain
//! `407` (decided before this module is reached), and any other port a plain `403`.

use std::convert::Infallible;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioTimer;
use policy::Target;

use crate::audit::Audit;
use crate::body::{ResponseBody, empty};
use crate::context::Connection;
use crate::error::Failure;
use crate::respond::failure_response;

/// The port whose refused tunnels are answered inside.
const PLAIN_HTTP_PORT: u16 = 80;

/// True when a refusal of a CONNECT to `target` is answered inside the tunnel.
pub(crate) fn wanted(target: &Target, failure: &Failure) -> bool {
    target.port == PLAIN_HTTP_PORT && failure.decision().is_some()
}

/// Answers `200` now and the refusal inside the tunnel once the client's request arrives;
/// `audit` is written when that exchange ends.
pub(crate) fn answer(
    connection: &Connection,
    req: Request<Incoming>,
    mut audit: Audit,
    authority: String,
    failure: Failure,
) -> Response<ResponseBody> {
    audit.failed(&failure);
    let limits = &connection.shared.config.limits;
    let header_read_timeout = limits.header_read_timeout;
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
        let served = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .keep_alive(false)
            .serve_connection(upgraded, refusal)
            .await;
        if let Err(error) = served {
            tracing::debug!(target = %authority, %error, "refused tunnel ended with an error");
        }
        drop(audit);
    });
    Response::new(empty())
}
