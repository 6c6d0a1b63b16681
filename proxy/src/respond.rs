//! The responses egressd writes itself: refusals and failures, each with a reason header, a rule
//! header for policy refusals, a reason phrase and a short text body saying what was refused, why
//! and what to do (`refusal`).

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use policy::Policy;

use crate::audit::Audit;
use crate::body::{ResponseBody, full};
use crate::error::Failure;

/// Header naming the reason of a refusal or failure (a policy reason code, or an upstream code).
pub const REASON_HEADER: &str = "x-egressd-reason";
/// Header naming the policy rule behind a refusal: `deny[0] line 19`.
pub const RULE_HEADER: &str = "x-egressd-rule";

/// Sent, without reading the request, to a connection over the limit.
pub(crate) const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable by egressd: overloaded\r\nContent-Type: text/plain; charset=utf-8\r\n\
x-egressd-reason: overloaded\r\nConnection: close\r\nContent-Length: 38\r\n\r\negressd: too many connections, retry\r\n";
/// The status of [`OVERLOADED`] and [`EXHAUSTED`].
pub(crate) const OVERLOADED_STATUS: StatusCode = StatusCode::SERVICE_UNAVAILABLE;
/// Sent, without reading the request, to a connection accepted with the serve loop's reserve
/// descriptor while egressd is out of descriptors: the reason a dial that finds none gets.
pub(crate) const EXHAUSTED: &[u8] = b"HTTP/1.1 503 Service Unavailable by egressd: out of descriptors\r\nContent-Type: text/plain; charset=utf-8\r\n\
x-egressd-reason: proxy-resources\r\nConnection: close\r\nContent-Length: 44\r\n\r\negressd: out of descriptors, retry shortly\r\n";

/// Records `failure` in the audit record and builds the client's response.
pub(crate) fn refuse(audit: &mut Audit, target: &str, failure: Failure) -> Response<ResponseBody> {
    audit.failed(&failure);
    failure_response(target, &failure, audit.policy())
}

/// The response for a request egressd did not serve: the status, a short text body, and the
/// reason (and rule) headers.
pub(crate) fn failure_response(
    target: &str,
    failure: &Failure,
    policy: Option<&Policy>,
) -> Response<ResponseBody> {
    let status = failure.status();
    let text = crate::refusal::body(target, failure, policy);
    let mut response = Response::new(full(text));
    *response.status_mut() = status;
    if let Some(phrase) = crate::refusal::reason_phrase(target, failure) {
        response.extensions_mut().insert(phrase);
    }
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        REASON_HEADER,
        HeaderValue::from_static(failure.reason_code()),
    );
    if matches!(
        failure,
        Failure::ProxyAuthRequired | Failure::ProxyAuthInvalid
    ) {
        headers.insert(
            header::PROXY_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"egressd\""),
        );
    }
    if let Some(rule) = failure.decision().and_then(|d| d.rule.as_ref())
        && let Ok(value) = HeaderValue::from_str(&rule.label().to_string())
    {
        headers.insert(RULE_HEADER, value);
    }
    response
}

/// A refusal as raw HTTP/1.1, for a connection hyper has given up on (`edge.rs`): the same status,
/// reason header and body as [`failure_response`], then the connection closes.
pub(crate) fn failure_bytes(failure: &Failure) -> Vec<u8> {
    let status = failure.status();
    let text = crate::refusal::body("", failure, None);
    let phrase = crate::refusal::reason_phrase("", failure);
    let phrase = phrase
        .as_ref()
        .map(|p| String::from_utf8_lossy(p.as_bytes()).into_owned())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_owned());
    format!(
        "HTTP/1.1 {} {phrase}\r\ncontent-type: text/plain; charset=utf-8\r\n{REASON_HEADER}: {}\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{text}",
        status.as_u16(),
        failure.reason_code(),
        text.len(),
    )
    .into_bytes()
}
