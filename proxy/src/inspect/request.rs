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
use policy::{CredentialRule, Decision, METHOD_OVERRIDE_HEADERS, RequestMiss, Target};

use crate::audit::Audit;
use crate::body::{Counted, ResponseBody, full};
use crate::error::Failure;
use crate::headers::{strip_egressd_headers, strip_hop_by_hop};
use crate::inspect::brokered::{Encoded, Redacting, scrub_head};
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
    /// The origin answered a request that carried a real value in a coding egressd cannot scrub.
    Encoded(Encoded),
    /// `CONNECT` (or another authority-form request) inside the session: there is nothing to
    /// tunnel to from here, and the origin would read it as a request for `/`.
    Tunnel,
}

impl Refusal {
    fn code(&self) -> &'static str {
        match self {
            Self::HostMismatch => "host-mismatch",
            Self::Request(miss, _) => miss.code(),
            Self::Exfiltration(..) => "credential-exfiltration",
            Self::CredentialUnavailable(_) => "credential-unavailable",
            Self::Tunnel => "connect-in-session",
            Self::Encoded(_) => "credential-encoding",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::CredentialUnavailable(_) | Self::Encoded(_) => StatusCode::BAD_GATEWAY,
            Self::Tunnel => StatusCode::METHOD_NOT_ALLOWED,
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
            Self::Encoded(Encoded(coding)) => format!(
                "the origin answered a request that carried a brokered credential in {coding} \
                 coding, which egressd cannot scrub of the credential (it asked for identity)"
            ),
            Self::Tunnel => "CONNECT and other authority-form requests are not served inside an \
                 inspected session; send requests for paths (GET /path) on it"
                .to_owned(),
        }
    }

    /// What to do about a refusal by the rule's `methods` or `paths`, on one line, as other
    /// refusals' bodies say it (`refusal.rs`).
    fn advice(&self) -> Option<String> {
        let Self::Request(miss, decision) = self else {
            return None;
        };
        let rule = decision
            .rule
            .as_ref()
            .map_or("the rule".to_owned(), |r| format!("rule {}", r.label()));
        Some(match miss {
            RequestMiss::Method => {
                format!("to allow it, add the method to the `methods` of {rule} in the policy")
            }
            RequestMiss::MethodOverride => format!(
                "send the request without the method-override header, or add the method it names \
                 to the `methods` of {rule} in the policy"
            ),
            RequestMiss::Path => format!(
                "to allow it, add a glob that matches the path to the `paths` of {rule} in the \
                 policy"
            ),
            RequestMiss::AmbiguousPath => "send the path without dot segments ('.', '..') and \
                 without an encoded '/' or '\\': no glob allows an ambiguous path"
                .to_owned(),
            RequestMiss::PathParameters => format!(
                "send the path without ';' parameters, or add a glob that writes ';' to the \
                 `paths` of {rule} in the policy"
            ),
        })
    }

    /// The label for the rule header: the allow rule, or the credential.
    fn rule_label(&self) -> Option<String> {
        match self {
            Self::HostMismatch | Self::Tunnel | Self::Encoded(_) => None,
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
        let mut text = format!(
            "egressd: {} {}: {destination}: {}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            self.detail()
        );
        if let Some(advice) = self.advice() {
            text.push_str(&format!("egressd: {advice}\n"));
        }
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
        if status == StatusCode::METHOD_NOT_ALLOWED {
            // RFC 9110 §15.5.6: a 405 names the methods the target does support.
            headers.insert(header::ALLOW, HeaderValue::from_static(SESSION_METHODS));
        }
        if let Some(label) = self
            .rule_label()
            .and_then(|l| HeaderValue::from_str(&l).ok())
        {
            headers.insert(RULE_HEADER, label);
        }
        response
    }
}

/// What a 405 inside a session names in `Allow`: the request methods served there.
const SESSION_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

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
    if is_authority_form(&req) {
        tracing::info!(%destination, method = %req.method(), "authority-form request inside an inspected session; refused");
        return Ok(Refusal::Tunnel.respond(&mut audit, &destination));
    }
    if req.headers().get_all(header::HOST).iter().nth(1).is_some() {
        // RFC 9112 §3.2: more than one Host is a bad request, whichever the origin would read.
        let failure = Failure::BadRequest("the request has more than one Host header");
        return Ok(refuse(&mut audit, &destination, failure));
    }
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
    if let Some(Err(miss)) = rules.map(|r| check_rules(r, &req)) {
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
            if let Failure::UpstreamTls(error) = &failure {
                tracing::warn!(%destination, %error, "origin certificate refused");
            }
            return Ok(refuse(&mut audit, &destination, failure));
        }
        Ok(response) => response,
    };
    let (mut parts, body) = response.into_parts();
    if !swapped.is_empty()
        && let Err(encoded) = scrub_head(&mut parts, &swapped)
    {
        tracing::warn!(%destination, coding = %encoded.0, "encoded answer to a brokered request; refused");
        return Ok(Refusal::Encoded(encoded).respond(&mut audit, &destination));
    }
    audit.allowed(&decision, Some(addr), parts.status.as_u16());
    strip_hop_by_hop(&mut parts.headers);
    strip_egressd_headers(&mut parts.headers);
    let down = audit.bytes.down.clone();
    let body = Counted::with_audit(body, down, limits.response_idle_timeout, audit);
    let body = if swapped.is_empty() {
        body.boxed()
    } else {
        parts.headers.remove(header::CONTENT_LENGTH);
        Redacting::new(body, swapped).boxed()
    };
    Ok(Response::from_parts(parts, body))
}

/// `Ok` when `policy` lets a connection go to `addr` (in report mode, when it would refuse it
/// only by a deny rule, as when the session began).
fn address_in_force(policy: &policy::Policy, addr: std::net::SocketAddr) -> Result<(), Failure> {
    crate::route::address_passes(policy, addr.ip(), addr.port()).map_err(|decision| {
        Failure::AddressesDenied {
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
    if let Some(Err(miss)) = rules.map(|r| check_rules(r, req)) {
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

/// An inspected rule's `methods` and `paths` for one request: its method, its path, and the
/// method any method-override header names (a value that is not text names no allowed method).
fn check_rules<B>(rules: &policy::Inspection, req: &Request<B>) -> Result<(), RequestMiss> {
    rules.check(req.method().as_str(), req.uri().path())?;
    for name in METHOD_OVERRIDE_HEADERS {
        for value in req.headers().get_all(name) {
            rules.check_override(value.to_str().unwrap_or(""))?;
        }
    }
    Ok(())
}

/// True for `CONNECT`, and for any request whose target is in authority form (`host:port`, no
/// scheme, no path).
fn is_authority_form<B>(req: &Request<B>) -> bool {
    req.method() == http::Method::CONNECT
        || (req.uri().scheme().is_none() && req.uri().authority().is_some())
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
