//! Request handling: CONNECT tunnels and absolute-form forwarding, each decided by the policy
//! before anything is dialed. See docs/launcher.md for the request lifecycle.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use policy::{Policy, Target};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::task::TaskTracker;

use crate::audit::Audit;
use crate::body::{Counted, ResponseBody, empty, full};
use crate::config::ProxyConfig;
use crate::connector::{Connector, PeerAddr, dial_parent};
use crate::error::{Failure, rule_label};
use crate::headers::{Attribution, strip_hop_by_hop};
use crate::resolve::Resolver;
use crate::route::Router;
use crate::tunnel::{self, TunnelEnd};

/// Header naming the reason of a refusal or failure (a policy reason code, or an upstream code).
pub const REASON_HEADER: &str = "x-egressd-reason";
/// Header naming the policy rule behind a refusal: `deny[0] line 19`.
pub const RULE_HEADER: &str = "x-egressd-rule";

/// How long an idle pooled origin connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// Everything that changes when the policy is reloaded.
pub(crate) struct Generation {
    pub(crate) router: Arc<Router>,
    attribution: Attribution,
    client: Client<Connector, Counted<Incoming>>,
}

impl Generation {
    pub(crate) fn new(policy: Policy, resolver: Resolver, config: &ProxyConfig) -> Self {
        let attribution =
            Attribution::render(policy.headers(), &config.extra_headers, &config.sandbox_id);
        let router = Arc::new(Router {
            policy: Arc::new(policy),
            resolver,
            limits: config.limits.clone(),
        });
        let connector = Connector {
            router: router.clone(),
            parent: config.parent.clone(),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(32)
            .set_host(true)
            .build(connector);
        Self {
            router,
            attribution,
            client,
        }
    }
}

/// State shared by every connection.
pub(crate) struct Shared {
    pub(crate) generation: ArcSwap<Generation>,
    pub(crate) config: ProxyConfig,
    pub(crate) sandbox_id: Arc<str>,
    pub(crate) tracker: TaskTracker,
}

/// Serves one request.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    client: Arc<str>,
    permit: Arc<OwnedSemaphorePermit>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, std::convert::Infallible> {
    let generation = shared.generation.load_full();
    let response = if req.method() == Method::CONNECT {
        connect(&shared, &generation, client, permit, req).await
    } else {
        forward(&shared, &generation, client, req).await
    };
    Ok(response)
}

async fn connect(
    shared: &Arc<Shared>,
    generation: &Generation,
    client: Arc<str>,
    permit: Arc<OwnedSemaphorePermit>,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    let mut audit = Audit::new(
        shared.sandbox_id.clone(),
        client,
        "CONNECT",
        authority.clone(),
    );
    let target = match Target::parse_authority(&authority) {
        Ok(target) => target,
        Err(_) => {
            return refuse(
                &mut audit,
                &authority,
                Failure::BadRequest("CONNECT needs HOST:PORT"),
            );
        }
    };
    let limits = &shared.config.limits;
    let opened = match &shared.config.parent {
        None => generation.router.connect(&target).await.map(|routed| {
            let origin = Origin::Direct(routed.stream);
            (origin, routed.decision, Some(routed.addr))
        }),
        Some(parent) => match generation.router.decide(&target) {
            Ok(decision) => connect_via_parent(generation, parent, &target)
                .await
                .map(|upgraded| {
                    (
                        Origin::Parent(TokioIo::new(upgraded)),
                        decision,
                        Some(parent.addr),
                    )
                }),
            Err(failure) => Err(failure),
        },
    };
    let (origin, decision, addr) = match opened {
        Ok(opened) => opened,
        Err(failure) => return refuse(&mut audit, &authority, failure),
    };
    audit.allowed(&decision, addr, 200);
    let (idle, buffer) = (limits.tunnel_idle_timeout, limits.tunnel_buffer_bytes);
    shared.tracker.spawn(async move {
        // The connection permit lives as long as the tunnel.
        let _permit = permit;
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, "client left before the tunnel opened");
                return;
            }
        };
        let end = match origin {
            Origin::Direct(stream) => match upgraded.downcast::<TokioIo<tokio::net::TcpStream>>() {
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
    Response::new(empty())
}

/// The far side of a tunnel.
enum Origin {
    Direct(tokio::net::TcpStream),
    Parent(TokioIo<hyper::upgrade::Upgraded>),
}

/// Opens a tunnel through the parent proxy: `CONNECT` with the attribution headers and the
/// parent's credentials.
async fn connect_via_parent(
    generation: &Generation,
    parent: &crate::config::ParentProxy,
    target: &Target,
) -> Result<hyper::upgrade::Upgraded, Failure> {
    let stream = dial_parent(&generation.router, parent.addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Failure::Upstream(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(error) = conn.with_upgrades().await {
            tracing::debug!(%error, "parent proxy connection ended");
        }
    });
    let authority = target.to_string();
    let mut req = Request::builder()
        .method(Method::CONNECT)
        .uri(authority.as_str())
        .header(header::HOST, authority.as_str())
        .body(empty())
        .map_err(|_| Failure::BadRequest("target cannot be sent to the parent proxy"))?;
    generation.attribution.apply(req.headers_mut());
    if let Some(auth) = &parent.authorization {
        req.headers_mut()
            .insert(header::PROXY_AUTHORIZATION, auth.clone());
    }
    let timeout = generation.router.limits.response_timeout;
    let response = match tokio::time::timeout(timeout, sender.send_request(req)).await {
        Err(_) => return Err(Failure::ResponseTimeout),
        Ok(Err(e)) => return Err(Failure::Upstream(e.to_string())),
        Ok(Ok(response)) => response,
    };
    if response.status() != StatusCode::OK {
        return Err(Failure::ParentRefused(response.status()));
    }
    hyper::upgrade::on(response)
        .await
        .map_err(|e| Failure::Upstream(e.to_string()))
}

async fn forward(
    shared: &Arc<Shared>,
    generation: &Generation,
    client: Arc<str>,
    mut req: Request<Incoming>,
) -> Response<ResponseBody> {
    let uri_text = req.uri().to_string();
    let mut audit = Audit::new(
        shared.sandbox_id.clone(),
        client,
        req.method().as_str(),
        uri_text.clone(),
    );
    let (scheme, host) = (req.uri().scheme_str(), req.uri().host());
    let host = match (scheme, host) {
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
    let target = Target::new(host, req.uri().port_u16().unwrap_or(80));
    let decision = match generation.router.decide(&target) {
        Ok(decision) => decision,
        Err(failure) => return refuse(&mut audit, &uri_text, failure),
    };
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    // The origin learns the host from the request URI, never from a header the sandbox wrote.
    headers.remove(header::HOST);
    generation.attribution.apply(headers);
    if let Some(auth) = shared
        .config
        .parent
        .as_ref()
        .and_then(|p| p.authorization.as_ref())
    {
        headers.insert(header::PROXY_AUTHORIZATION, auth.clone());
    }
    let (parts, body) = req.into_parts();
    let req = Request::from_parts(parts, Counted::new(body, audit.bytes.up.clone()));
    let timeout = shared.config.limits.response_timeout;
    let response = match tokio::time::timeout(timeout, generation.client.request(req)).await {
        Err(_) => return refuse(&mut audit, &uri_text, Failure::ResponseTimeout),
        Ok(Err(error)) => return refuse(&mut audit, &uri_text, client_failure(&error)),
        Ok(Ok(response)) => response,
    };
    let peer = response.extensions().get::<PeerAddr>().map(|p| p.0);
    audit.allowed(&decision, peer, response.status().as_u16());
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let down = audit.bytes.down.clone();
    Response::from_parts(
        parts,
        http_body_util::BodyExt::boxed(Counted::with_audit(body, down, audit)),
    )
}

/// The failure behind a pool client error: the connector's own, or an upstream protocol error.
fn client_failure(error: &hyper_util::client::legacy::Error) -> Failure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(failure) = e.downcast_ref::<Failure>() {
            return failure.duplicate();
        }
        source = e.source();
    }
    Failure::Upstream(format!("{error:#}"))
}

/// Records `failure` in the audit record and builds the client's response: the status, a short
/// text body, and the reason (and rule) headers.
fn refuse(audit: &mut Audit, target: &str, failure: Failure) -> Response<ResponseBody> {
    audit.failed(&failure);
    failure_response(target, &failure)
}

/// The response for a request egressd did not serve.
pub(crate) fn failure_response(target: &str, failure: &Failure) -> Response<ResponseBody> {
    let status = failure.status();
    let detail = match failure {
        Failure::Denied(decision) | Failure::AddressesDenied { decision, .. } => {
            decision.to_string()
        }
        other => other.to_string(),
    };
    let text = format!(
        "egressd: {} {}: {target}: {detail}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut response = Response::new(full(text));
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
    if let Some(rule) = failure.decision().and_then(rule_label) {
        if let Ok(value) = HeaderValue::from_str(&rule) {
            headers.insert(RULE_HEADER, value);
        }
    }
    response
}

impl Failure {
    /// A copy for a failure only seen by reference (inside a pool client error).
    fn duplicate(&self) -> Self {
        match self {
            Self::BadRequest(m) => Self::BadRequest(m),
            Self::Denied(d) => Self::Denied(d.clone()),
            Self::AddressesDenied { addr, decision } => Self::AddressesDenied {
                addr: *addr,
                decision: decision.clone(),
            },
            Self::NoAddress => Self::NoAddress,
            Self::Dns(m) => Self::Dns(m.clone()),
            Self::DnsTimeout => Self::DnsTimeout,
            Self::Connect { addr, error } => Self::Connect {
                addr: *addr,
                error: std::io::Error::new(error.kind(), error.to_string()),
            },
            Self::ConnectTimeout { addr } => Self::ConnectTimeout { addr: *addr },
            Self::Upstream(m) => Self::Upstream(m.clone()),
            Self::ResponseTimeout => Self::ResponseTimeout,
            Self::ParentRefused(s) => Self::ParentRefused(*s),
        }
    }
}
