//! Absolute-form requests (`GET http://host/path`): decided once, then sent over the generation's
//! origin connections (`pool.rs`), whose connector resolves, checks and dials (or reaches the
//! parent proxy).
//! Hop-by-hop headers go in both directions; attribution headers replace the client's. The request
//! body goes through `upload` (its idle timeout, and the response timeout that starts after it).

use http::header;
use http::{Request, Response};
use hyper::body::Incoming;

use crate::audit::Audit;
use crate::body::{Counted, ResponseBody};
use crate::context::{Connection, Generation};
use crate::error::Failure;
use crate::headers::{strip_egressd_headers, strip_hop_by_hop};
use crate::respond::refuse;
use crate::target::{canonicalize, host_header, loggable_uri, target_of};
use crate::upload::{Upload, await_response};

pub(crate) async fn forward(
    connection: &Connection,
    generation: &Generation,
    mut req: Request<Incoming>,
) -> Response<ResponseBody> {
    let uri_text = loggable_uri(req.uri());
    let mut audit = Audit::new(
        connection.caller.clone(),
        req.method().as_str(),
        uri_text.clone(),
    );
    audit.under(generation.router.shared_policy());
    let host = match (req.uri().scheme_str(), req.uri().host()) {
        (Some("http"), Some(host)) => host,
        (Some(_), Some(_)) => {
            let failure = Failure::BadRequest(
                "only http:// URLs are forwarded; tunnel https:// with CONNECT",
            );
            return refuse(&mut audit, &uri_text, failure);
        }
        _ => {
            let failure = Failure::BadRequest(
                "egressd is a forward proxy: send absolute-form requests (GET http://host/path) or CONNECT host:port",
            );
            return refuse(&mut audit, &uri_text, failure);
        }
    };
    if req.headers().get_all(header::HOST).iter().nth(1).is_some() {
        // RFC 9112 §3.2: more than one Host is a bad request, even though the URI names the host.
        let failure = Failure::BadRequest("the request has more than one Host header");
        return refuse(&mut audit, &uri_text, failure);
    }
    let decided = target_of(req.uri(), host).and_then(|target| {
        let decision = generation.router.decide(&target)?;
        Ok((target, decision))
    });
    let (target, decision) = match decided {
        Ok(decided) => decided,
        Err(failure) => return refuse(&mut audit, &uri_text, failure),
    };
    audit.reported(&decision);
    if let Some(refused) = crate::inspect::screen_plain(
        &generation.brokered,
        &decision,
        &target,
        &req,
        &mut audit,
        &uri_text,
    ) {
        return refused;
    }
    let config = &connection.shared.config;
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    // The origin learns the host from the request URI, never from a header the sandbox wrote.
    headers.remove(header::HOST);
    generation.attribution.apply(headers);
    if let Some(parent) = &config.parent {
        parent.authorize(headers);
    }
    // The request goes on with the target egressd judged, in egressd's spelling, never the
    // client's: a parent that reads a spelling differently must not reach another address, and
    // the origin connection pool keys connections by it (with the client's userinfo in it, each
    // `http://x@host/` would get connections of its own).
    if let Err(failure) = canonicalize(&target, req.uri_mut()) {
        return refuse(&mut audit, &uri_text, failure);
    }
    if let Some(host) = host_header(req.uri()) {
        req.headers_mut().insert(header::HOST, host);
    }
    let (parts, body) = req.into_parts();
    let limits = &config.limits;
    let attribution = generation.attribution.clone();
    let (body, upload) = Upload::watched(body, &mut audit, limits, attribution);
    let request = generation
        .pool
        .send(&target, Request::from_parts(parts, body));
    let (response, peer) = match await_response(request, upload.as_deref(), limits).await {
        Err(failure) => return refuse(&mut audit, &uri_text, failure),
        Ok(sent) => (sent.response, Some(sent.peer)),
    };
    let decision = match &config.parent {
        None => generation.router.settle(decision, peer),
        Some(_) => decision,
    };
    audit.allowed(&decision, peer, response.status().as_u16());
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    strip_egressd_headers(&mut parts.headers);
    let down = audit.bytes.down.clone();
    let body = Counted::with_audit(body, down, limits.response_idle_timeout, audit);
    Response::from_parts(parts, http_body_util::BodyExt::boxed(body))
}
