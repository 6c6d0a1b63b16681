//! One request inside an inspected TLS session, in order: the Host (or absolute URI) must name
//! the CONNECT host → the name is decided again under the policy in force now → the rule's
//! `methods` and `paths` → no other host's credential placeholder → hop-by-hop headers out, this
//! host's credentials in, `Host` set to the judged name, attribution headers set → the origin.
//! Every refusal is an HTTP response inside the TLS session, with the reason (and rule) headers,
//! and an audit event; so is every served request.

use std::convert::Infallible;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use policy::{CredentialRule, Decision, RequestMiss, Target};

use crate::audit::Audit;
use crate::body::{Counted, ResponseBody, full};
use crate::headers::{strip_egressd_headers, strip_hop_by_hop};
use crate::inspect::brokered::{Redacting, scrub_headers};
use crate::inspect::session::Session;
use crate::respond::{REASON_HEADER, RULE_HEADER, refuse};
use crate::upload::{Upload, await_response};

/// Why egressd refused a request inside an inspected session.
enum Refusal {
    /// The Host header or absolute URI names another host than the CONNECT did.
    HostMismatch,
    /// The rule's `methods` or `paths` refuse it.
    Request(RequestMiss, Decision),
    /// Another host's credential placeholder: an exfiltration attempt.
    Exfiltration(Arc<CredentialRule>, Decision),
    /// This host's placeholder is present, but egressd has no value for it.
    CredentialUnavailable(Arc<CredentialRule>),
}

impl Refusal {
    fn code(&self) -> &'static str {
        match self {
            Self::HostMismatch => "host-mismatch",
            Self::Request(miss, _) => miss.code(),
            Self::Exfiltration(..) => "credential-exfiltration",
            Self::CredentialUnavailable(_) => "credential-unavailable",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::CredentialUnavailable(_) => StatusCode::BAD_GATEWAY,
            _ => StatusCode::FORBIDDEN,
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::HostMismatch => {
                "the request's Host names another host than the CONNECT did".to_owned()
            }
            Self::Request(miss, decision) => match &decision.rule {
                Some(rule) => format!("{miss}; rule {rule}"),
                None => miss.to_string(),
            },
            Self::Exfiltration(credential, _) => format!(
                "the request carries the placeholder of {}, which may only be sent to {}",
                credential.label(),
                credential.host
            ),
            Self::CredentialUnavailable(credential) => {
                format!("egressd has no value for {}", credential.label())
            }
        }
    }

    /// The label for the rule header: the allow rule, or the credential.
    fn rule_label(&self) -> Option<String> {
        match self {
            Self::HostMismatch => None,
            Self::Request(_, decision) => decision.rule.as_ref().map(|r| r.label().to_string()),
            Self::Exfiltration(credential, _) | Self::CredentialUnavailable(credential) => {
                Some(credential.label())
            }
        }
    }

    fn respond(self, audit: &mut Audit, destination: &str) -> Response<ResponseBody> {
        let rule = match &self {
            Self::Request(_, decision) | Self::Exfiltration(_, decision) => decision.rule.clone(),
            _ => None,
        };
        let status = self.status();
        audit.denied(self.code(), rule, status);
        let text = format!(
            "egressd: {} {}: {destination}: {}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            self.detail()
        );
        let mut response = Response::new(full(text));
        *response.status_mut() = status;
        let phrase = format!(
            "{} by egressd: {}",
            status.canonical_reason().unwrap_or("Refused"),
            self.code()
        );
        if let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(phrase) {
            response.extensions_mut().insert(phrase);
        }
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(REASON_HEADER, HeaderValue::from_static(self.code()));
        if let Some(label) = self
            .rule_label()
            .and_then(|l| HeaderValue::from_str(&l).ok())
        {
            headers.insert(RULE_HEADER, label);
        }
        response
    }
}

/// Serves one request of the session under the generation in force now.
pub(crate) async fn handle(
    session: Arc<Session>,
    mut req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let generation = session.shared.generation.load();
    // The path only: a query may carry secrets, so neither logs nor error bodies show it.
    let destination = format!("https://{}{}", session.authority, req.uri().path());
    let mut audit = Audit::new(
        session.caller.clone(),
        req.method().as_str(),
        destination.clone(),
    );
    if !names_connect_host(&req, &session.target) {
        tracing::info!(%destination, "inspected request names another host; refused");
        return Ok(Refusal::HostMismatch.respond(&mut audit, &destination));
    }
    let decision = match generation.router.decide(&session.target) {
        Ok(decision) => decision,
        Err(failure) => return Ok(refuse(&mut audit, &destination, failure)),
    };
    let rules = decision
        .rule
        .as_ref()
        .filter(|_| decision.is_allowed())
        .and_then(|r| r.inspect.as_ref());
    if let Some(Err(miss)) = rules.map(|r| r.check(req.method().as_str(), req.uri().path())) {
        return Ok(Refusal::Request(miss, decision).respond(&mut audit, &destination));
    }
    let uri_text = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    let brokered = &generation.brokered;
    if let Some(credential) = brokered.exfiltration(Some(&session.name), headers, &uri_text) {
        tracing::warn!(
            %destination,
            credential = %credential.label(),
            "credential placeholder sent to another host; refused as exfiltration"
        );
        let refusal = Refusal::Exfiltration(credential.clone(), decision);
        return Ok(refusal.respond(&mut audit, &destination));
    }
    let swapped = match brokered.swap(&session.name, headers) {
        Ok(swapped) => swapped,
        Err(credential) => {
            tracing::error!(credential = %credential.label(), "no value for a credential; refused");
            return Ok(Refusal::CredentialUnavailable(credential).respond(&mut audit, &destination));
        }
    };
    if !swapped.is_empty() {
        // So that the response can be scrubbed of the value, should the origin echo it.
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    if let Ok(host) = HeaderValue::from_str(&session.authority) {
        headers.insert(header::HOST, host);
    }
    generation.attribution.apply(headers);
    if let Ok(uri) = uri_text.parse::<Uri>() {
        *req.uri_mut() = uri;
    }
    let (parts, body) = req.into_parts();
    let limits = &session.shared.config.limits;
    let attribution = generation.attribution.clone();
    let (body, upload) = Upload::watched(body, &mut audit, limits, attribution);
    let req = Request::from_parts(parts, body);
    let (sent, addr) = {
        let mut upstream = session.upstream.lock().await;
        // The address was checked when the session began, under the policy of then; the request
        // goes there (over the open connection, or a new one) only if the policy of now allows it.
        if let Some(addr) = upstream.direct_addr()
            && let Err(failure) = address_in_force(generation.router.policy(), addr)
        {
            return Ok(refuse(&mut audit, &destination, failure));
        }
        // The response timeout runs from the end of the upload, as on the plain path.
        let sent = await_response(upstream.send(req), upload.as_deref(), limits).await;
        (sent, upstream.addr())
    };
    let response = match sent {
        Err(failure) => {
            if let crate::error::Failure::UpstreamTls(error) = &failure {
                tracing::warn!(%destination, %error, "origin certificate refused");
            }
            return Ok(refuse(&mut audit, &destination, failure));
        }
        Ok(response) => response,
    };
    audit.allowed(&decision, Some(addr), response.status().as_u16());
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    strip_egressd_headers(&mut parts.headers);
    let down = audit.bytes.down.clone();
    let body = Counted::with_audit(body, down, audit);
    let body = if swapped.is_empty() {
        body.boxed()
    } else {
        scrub_headers(&mut parts.headers, &swapped);
        parts.headers.remove(header::CONTENT_LENGTH);
        Redacting::new(body, swapped).boxed()
    };
    Ok(Response::from_parts(parts, body))
}

/// `Ok` when `policy` lets a connection go to `addr` (in report mode, when it would refuse it
/// only by a deny rule, as when the session began).
fn address_in_force(
    policy: &policy::Policy,
    addr: std::net::SocketAddr,
) -> Result<(), crate::error::Failure> {
    crate::route::address_passes(policy, addr.ip(), addr.port()).map_err(|decision| {
        crate::error::Failure::AddressesDenied {
            addr: addr.ip(),
            decision,
        }
    })
}

/// The checks that need no TLS, for a plain-HTTP request in absolute form: an inspected rule's
/// `methods` and `paths` apply to it too (`http://` must not be a way around them), and no
/// credential placeholder may go to a host it is not for. Credentials are never put into plain
/// HTTP: the value would cross the network in clear. `Some`: the refusal to send.
pub(crate) fn screen_plain<B>(
    brokered: &crate::inspect::brokered::Brokered,
    decision: &Decision,
    target: &Target,
    req: &Request<B>,
    audit: &mut Audit,
    destination: &str,
) -> Option<Response<ResponseBody>> {
    let rules = decision
        .rule
        .as_ref()
        .filter(|_| decision.is_allowed())
        .and_then(|r| r.inspect.as_ref());
    if let Some(Err(miss)) = rules.map(|r| r.check(req.method().as_str(), req.uri().path())) {
        return Some(Refusal::Request(miss, decision.clone()).respond(audit, destination));
    }
    let name = match &target.host {
        policy::Host::Name(name) => Some(name),
        _ => None,
    };
    let uri_text = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let credential = brokered.exfiltration(name, req.headers(), uri_text)?;
    tracing::warn!(
        %destination,
        credential = %credential.label(),
        "credential placeholder sent to another host; refused as exfiltration"
    );
    let refusal = Refusal::Exfiltration(credential.clone(), decision.clone());
    Some(refusal.respond(audit, destination))
}

/// True when the request's Host header (and its URI's authority, if absolute) names the CONNECT
/// host, and a port when given names the CONNECT port.
fn names_connect_host<B>(req: &Request<B>, target: &Target) -> bool {
    let same = |authority: &str| match Target::parse_loose(authority, target.port) {
        Ok(named) => named.host == target.host && named.port == target.port,
        Err(_) => false,
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    let uri = req.uri().authority().map(|a| a.as_str());
    match (host, uri) {
        (None, None) => false,
        (host, uri) => host.is_none_or(same) && uri.is_none_or(same),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_must_be_the_connect_host() {
        let target = Target::parse_authority("api.example.com:443").unwrap();
        let cases = [
            ("/", Some("api.example.com"), true),
            ("/", Some("API.example.com.:443"), true),
            ("/", Some("api.example.com:8443"), false),
            ("/", Some("evil.example.com"), false),
            ("/", None, false),
            ("https://api.example.com/x", None, true),
            ("https://evil.example.com/x", Some("api.example.com"), false),
        ];
        for (uri, host, want) in cases {
            let mut req = Request::builder().uri(uri);
            if let Some(host) = host {
                req = req.header(header::HOST, host);
            }
            let req = req.body(()).unwrap();
            assert_eq!(names_connect_host(&req, &target), want, "{uri} {host:?}");
        }
    }
}
