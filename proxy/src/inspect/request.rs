//! One request inside an inspected TLS session, in order: the Host (or absolute URI) must name
//! the CONNECT host → the name is decided again under the policy in force now → the rule's
//! `methods` and `paths` → no other host's credential placeholder → hop-by-hop headers out, this
//! host's credentials in, `Host` set to the judged name, attribution headers set → the origin.
//! A WebSocket upgrade goes the same way; the origin's `101` hands both connections to
//! `websocket.rs`. Every refusal is an HTTP response inside the TLS session, with the reason (and rule) headers,
//! and an audit event; so is every served request.

use std::convert::Infallible;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use policy::{CredentialRule, Decision, METHOD_OVERRIDE_HEADERS, RequestMiss, Target};

use crate::audit::Audit;
use crate::body::{Counted, ResponseBody, empty, full};
use crate::error::Failure;
use crate::headers::{strip_egressd_headers, strip_hop_by_hop};
use crate::inspect::brokered::{Encoded, Redacting, Swapped, scrub_head, scrub_headers};
use crate::inspect::session::Session;
use crate::inspect::websocket::{self, Relay};
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
    /// The origin accepted a WebSocket that carried a real value with an extension (compression)
    /// egressd did not offer: its frames could not be scrubbed.
    Extension,
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
            Self::Encoded(_) | Self::Extension => "credential-encoding",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::CredentialUnavailable(_) | Self::Encoded(_) | Self::Extension => {
                StatusCode::BAD_GATEWAY
            }
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
            Self::Extension => "the origin accepted a WebSocket that carried a brokered \
                 credential with an extension (compression) egressd did not offer, whose frames \
                 egressd cannot scrub of the credential"
                .to_owned(),
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
            Self::HostMismatch | Self::Tunnel | Self::Encoded(_) | Self::Extension => None,
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
    // Taken before anything is sent: hyper hands the client's connection over through it once
    // the `101` has been written.
    let upgrade = websocket::requested(&req).then(|| hyper::upgrade::on(&mut req));
    // HTTP/1.x sends one request at a time; HTTP/2 streams run at once.
    let sequential = req.version() != Version::HTTP_2;
    let trailers = asks_for_trailers(req.headers());
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    if upgrade.is_some() {
        websocket::restore_upgrade(headers);
    }
    if trailers {
        // The one `TE` HTTP/2 allows, and what gRPC needs to get its status.
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
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
        // So that the response can be scrubbed of the value, should the origin echo it: whole
        // (a range of an echo could hold a slice of the value, too short to be recognised, and
        // slices add up) and not encoded.
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        headers.remove(header::RANGE);
        headers.remove(header::IF_RANGE);
        // A WebSocket goes without compression, so that its frames can be scrubbed too.
        headers.remove(header::SEC_WEBSOCKET_EXTENSIONS);
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
    let upstream = &session.upstream;
    // The address was checked when the session began, under the policy of then; the request
    // goes there (over an open connection, or a new one) only if the policy of now allows it.
    if let Some(addr) = upstream.direct_addr()
        && let Err(failure) = address_in_force(generation.router.policy(), addr)
    {
        return Ok(refuse(&mut audit, &destination, failure));
    }
    // The response timeout runs from the end of the upload, as on the plain path.
    let sent = await_response(upstream.send(req, sequential), upload.as_deref(), limits).await;
    let addr = upstream.addr();
    let response = match sent {
        Err(failure) => {
            if let Failure::UpstreamTls(error) = &failure {
                tracing::warn!(%destination, %error, "origin certificate refused");
            }
            return Ok(refuse(&mut audit, &destination, failure));
        }
        Ok(response) => response,
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        audit.allowed(&decision, Some(addr), response.status().as_u16());
        return Ok(switch(
            &session,
            upgrade,
            response,
            audit,
            destination,
            &swapped,
        ));
    }
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

/// The origin's `101`: when it accepts the WebSocket the client asked for, the client gets it
/// and the session keeps both connections for the relay; any other switch is refused (502).
fn switch(
    session: &Session,
    client: Option<hyper::upgrade::OnUpgrade>,
    mut response: Response<Incoming>,
    mut audit: Audit,
    destination: String,
    swapped: &[Swapped],
) -> Response<ResponseBody> {
    let Some(client) = client.filter(|_| websocket::accepted(&response)) else {
        tracing::info!(%destination, "the origin switched to a protocol nobody asked for; refused");
        let failure = Failure::Upstream(
            "the origin switched to a protocol the request did not ask for".to_owned(),
        );
        return refuse(&mut audit, &destination, failure);
    };
    if !swapped.is_empty()
        && response
            .headers()
            .contains_key(header::SEC_WEBSOCKET_EXTENSIONS)
    {
        // RFC 6455 §9.1: an extension the client did not offer is the origin's error; it would
        // hide the value from the scrubbing.
        tracing::warn!(%destination, "the origin agreed a WebSocket extension egressd did not offer; refused");
        return Refusal::Extension.respond(&mut audit, &destination);
    }
    let origin = hyper::upgrade::on(&mut response);
    let (mut parts, _) = response.into_parts();
    if !swapped.is_empty() {
        // As for every response to a brokered request: the origin's reason phrase goes nowhere.
        parts.extensions.remove::<hyper::ext::ReasonPhrase>();
    }
    strip_hop_by_hop(&mut parts.headers);
    strip_egressd_headers(&mut parts.headers);
    scrub_headers(&mut parts.headers, swapped);
    websocket::restore_upgrade(&mut parts.headers);
    let relay = Relay::new(client, origin, audit, destination, swapped.to_vec());
    *session
        .relay
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(relay);
    Response::from_parts(parts, empty())
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

/// True when the client's `TE` names `trailers` (a gRPC client's does).
fn asks_for_trailers(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
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
    fn te_trailers_is_recognised_in_any_spelling() {
        let cases = [
            (vec!["trailers"], true),
            (vec!["gzip, Trailers"], true),
            (vec!["deflate", "trailers;q=0.5"], true),
            (vec!["gzip"], false),
            (vec![], false),
            (vec!["trailersx"], false),
        ];
        for (values, want) in cases {
            let mut headers = http::HeaderMap::new();
            for value in &values {
                headers.append(header::TE, HeaderValue::from_str(value).unwrap());
            }
            assert_eq!(asks_for_trailers(&headers), want, "{values:?}");
        }
    }

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
