//! The responses egressd writes itself: refusals and failures, each with a reason header, a rule
//! header for policy refusals, and a short text body saying what was refused and why.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::audit::Audit;
use crate::body::{ResponseBody, full};
use crate::error::Failure;

/// Header naming the reason of a refusal or failure (a policy reason code, or an upstream code).
pub const REASON_HEADER: &str = "x-egressd-reason";
/// Header naming the policy rule behind a refusal: `deny[0] line 19`.
pub const RULE_HEADER: &str = "x-egressd-rule";

/// Sent, without reading the request, to a connection over the limit.
pub(crate) const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
x-egressd-reason: overloaded\r\nConnection: close\r\nContent-Length: 38\r\n\r\negressd: too many connections, retry\r\n";
/// The status of [`OVERLOADED`].
pub(crate) const OVERLOADED_STATUS: StatusCode = StatusCode::SERVICE_UNAVAILABLE;

/// Records `failure` in the audit record and builds the client's response.
pub(crate) fn refuse(audit: &mut Audit, target: &str, failure: Failure) -> Response<ResponseBody> {
    audit.failed(&failure);
    failure_response(target, &failure)
}

/// The response for a request egressd did not serve: the status, a short text body, and the
/// reason (and rule) headers.
pub(crate) fn failure_response(target: &str, failure: &Failure) -> Response<ResponseBody> {
    let status = failure.status();
    let mut response = Response::new(full(failure_text(target, failure)));
    *response.status_mut() = status;
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
    if let Some(rule) = failure.decision().and_then(|d| d.rule.as_ref()) {
        if let Ok(value) = HeaderValue::from_str(&rule.label().to_string()) {
            headers.insert(RULE_HEADER, value);
        }
    }
    response
}

/// The body of a refusal: `egressd: 403 Forbidden: TARGET: why` (no target when no request was
/// read).
fn failure_text(target: &str, failure: &Failure) -> String {
    let status = failure.status();
    let detail = match failure {
        Failure::Denied(decision) | Failure::AddressesDenied { decision, .. } => {
            decision.to_string()
        }
        other => other.to_string(),
    };
    let target = if target.is_empty() {
        String::new()
    } else {
        format!("{target}: ")
    };
    format!(
        "egressd: {} {}: {target}{detail}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
}

/// A refusal as raw HTTP/1.1, for a connection hyper has given up on (`edge.rs`): the same status,
/// reason header and body as [`failure_response`], then the connection closes.
pub(crate) fn failure_bytes(failure: &Failure) -> Vec<u8> {
    let status = failure.status();
    let text = failure_text("", failure);
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\n{REASON_HEADER}: {}\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{text}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        failure.reason_code(),
        text.len(),
    )
    .into_bytes()
}
