//! Why a request was not served, tagged with who is at fault so the status code follows: the
//! client (400, 408, 414, 431), the policy (403), the destination or the network (502/504), or us
//! (503).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use policy::Decision;

/// Everything that ends a request without a response from the origin.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Failure {
    /// The request cannot be proxied as written.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The destination cannot be read as a host and port, or its spelling is ambiguous: the
    /// client's error (400), and what `egressd explain` calls a `malformed-target` deny.
    #[error("malformed destination: {0}")]
    MalformedTarget(String),
    /// The request carries no proxy credential.
    #[error("this proxy needs its credential: use the proxy URL from egressd's readiness line")]
    ProxyAuthRequired,
    /// The request carries a proxy credential, but not this sandbox's.
    #[error("wrong proxy credential: use the proxy URL from egressd's readiness line")]
    ProxyAuthInvalid,
    /// The policy refuses the destination as named.
    #[error("denied: {0}")]
    Denied(Decision),
    /// The name is allowed, but its resolution passes through a name the policy refuses.
    #[error("denied: the name resolves through {via}, which the policy refuses: {decision}")]
    ChainDenied {
        /// The refused name on the CNAME chain.
        via: String,
        /// Its decision.
        decision: Decision,
    },
    /// The name is allowed, but every address it resolved to is refused.
    #[error("denied: every address refused; first {addr}: {decision}")]
    AddressesDenied {
        /// The first refused address.
        addr: IpAddr,
        /// Its decision.
        decision: Decision,
    },
    /// The name does not exist or has no A/AAAA records.
    #[error("no address found for the name")]
    NoAddress,
    /// The resolver failed.
    #[error("name resolution failed: {0}")]
    Dns(String),
    /// The resolver did not answer in time.
    #[error("name resolution timed out")]
    DnsTimeout,
    /// Every allowed address refused the connection, or was unreachable.
    #[error("connection to {addr} failed: {error}")]
    Connect {
        /// The last address tried.
        addr: SocketAddr,
        /// What the last attempt returned.
        error: Arc<io::Error>,
    },
    /// The connection did not complete in time.
    #[error("connection to {addr} timed out")]
    ConnectTimeout {
        /// The address that did not answer.
        addr: SocketAddr,
    },
    /// The origin (or parent proxy) broke the exchange.
    #[error("upstream error: {0}")]
    Upstream(String),
    /// The TLS handshake with an inspected host's origin failed: its certificate does not verify
    /// for the name (unknown issuer, wrong name, expired) or the handshake broke.
    #[error("origin TLS failed: {0}")]
    UpstreamTls(String),
    /// The origin did not send a response head in time.
    #[error("upstream response timed out")]
    ResponseTimeout,
    /// The parent proxy refused the CONNECT.
    #[error("parent proxy answered {0}")]
    ParentRefused(StatusCode),
    /// The request head is over `--max-header-bytes`, or has more fields than the HTTP parser
    /// keeps (`MAX_HEAD_FIELDS`).
    #[error(
        "the request head is larger than {limit} bytes (--max-header-bytes) or has more than {MAX_HEAD_FIELDS} header fields"
    )]
    HeadTooLarge {
        /// `--max-header-bytes`.
        limit: usize,
    },
    /// The request target is longer than the HTTP parser accepts.
    #[error("the request target is longer than {MAX_URI_BYTES} bytes")]
    UriTooLong,
    /// The request head cannot be parsed (request line, a header, the framing headers), or the
    /// connection closed in the middle of it.
    #[error("malformed request head: {0}")]
    MalformedHead(String),
    /// The client did not finish its request head within `--header-read-timeout`.
    #[error("the request head did not arrive within {0:?} (--header-read-timeout)")]
    HeadTimeout(Duration),
    /// The client opened with the HTTP/2 connection preface; egressd speaks HTTP/1.1.
    #[error("egressd speaks HTTP/1.1 only (HTTP/2 prior knowledge is not served)")]
    Http2,
    /// The client's request body is malformed (bad chunked framing) or ended before its
    /// Content-Length.
    #[error("malformed request body: {0}")]
    RequestBody(String),
    /// The client sent no request body bytes for `--upload-idle-timeout`.
    #[error("the request body stalled: no bytes for {0:?} (--upload-idle-timeout)")]
    UploadTimeout(Duration),
    /// The destination took none of the request for `--upload-idle-timeout`.
    #[error("the destination read none of the request for {0:?} (--upload-idle-timeout)")]
    UploadStalled(Duration),
    /// egressd itself ran out of descriptors, buffers or memory (EMFILE, ENFILE, ENOBUFS,
    /// ENOMEM) while opening a connection.
    #[error("egressd is out of resources: {0}")]
    ProxyResources(Arc<io::Error>),
}

/// Header fields the HTTP parser keeps per request head (hyper's default, kept on the stack);
/// more is refused like a head over `--max-header-bytes`.
pub const MAX_HEAD_FIELDS: usize = 100;
/// Longest request target the HTTP parser accepts (hyper's `MAX_URI_LEN`); only reachable with
/// `--max-header-bytes` above it.
pub const MAX_URI_BYTES: usize = u16::MAX as usize - 1;

impl Failure {
    /// The status the client receives.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::MalformedTarget(_) => StatusCode::BAD_REQUEST,
            Self::ProxyAuthRequired | Self::ProxyAuthInvalid => {
                StatusCode::PROXY_AUTHENTICATION_REQUIRED
            }
            Self::Denied(_) | Self::ChainDenied { .. } | Self::AddressesDenied { .. } => {
                StatusCode::FORBIDDEN
            }
            Self::NoAddress
            | Self::Dns(_)
            | Self::Connect { .. }
            | Self::Upstream(_)
            | Self::UpstreamTls(_)
            | Self::ParentRefused(_) => StatusCode::BAD_GATEWAY,
            Self::DnsTimeout | Self::ConnectTimeout { .. } | Self::ResponseTimeout => {
                StatusCode::GATEWAY_TIMEOUT
            }
            Self::HeadTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::MalformedHead(_) | Self::RequestBody(_) => StatusCode::BAD_REQUEST,
            Self::HeadTimeout(_) | Self::UploadTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            // Answered with an HTTP/2 GOAWAY; the status is its HTTP/1 equivalent, for the audit.
            Self::Http2 => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            Self::UploadStalled(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::ProxyResources(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable reason code, sent in the `X-Egressd-Reason` header and the audit log.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::Denied(decision)
            | Self::ChainDenied { decision, .. }
            | Self::AddressesDenied { decision, .. } => decision.reason.code(),
            Self::BadRequest(_) => "bad-request",
            Self::MalformedTarget(_) => "malformed-target",
            Self::ProxyAuthRequired => "proxy-auth-required",
            Self::ProxyAuthInvalid => "proxy-auth-invalid",
            Self::NoAddress => "no-address",
            Self::Dns(_) => "dns-failure",
            Self::DnsTimeout => "dns-timeout",
            Self::Connect { error, .. } if error.kind() == io::ErrorKind::ConnectionRefused => {
                "upstream-refused"
            }
            Self::Connect { .. } => "upstream-unreachable",
            Self::ConnectTimeout { .. } | Self::ResponseTimeout => "upstream-timeout",
            Self::Upstream(_) => "upstream-error",
            Self::UpstreamTls(_) => "upstream-tls",
            Self::ParentRefused(_) => "parent-proxy-refused",
            Self::HeadTooLarge { .. } => "head-too-large",
            Self::UriTooLong => "uri-too-long",
            Self::MalformedHead(_) | Self::RequestBody(_) => "bad-request",
            Self::HeadTimeout(_) => "head-timeout",
            Self::Http2 => "http2-unsupported",
            Self::UploadTimeout(_) => "upload-timeout",
            Self::UploadStalled(_) => "upstream-timeout",
            Self::ProxyResources(_) => "proxy-resources",
        }
    }

    /// True when egressd refused the request (the policy, or the proxy credential); false when
    /// it failed otherwise.
    pub fn is_refusal(&self) -> bool {
        self.decision().is_some()
            || matches!(
                self,
                Self::ProxyAuthRequired | Self::ProxyAuthInvalid | Self::MalformedTarget(_)
            )
    }

    /// The policy decision behind a refusal, if the policy refused.
    pub fn decision(&self) -> Option<&Decision> {
        match self {
            Self::Denied(decision)
            | Self::ChainDenied { decision, .. }
            | Self::AddressesDenied { decision, .. } => Some(decision),
            _ => None,
        }
    }
}

/// The failure behind a client error (the pool's, or an inspected session's connection): the
/// connector's own, the request body's (`upload`), the origin connection's (carried in an
/// `io::Error`, whose `source` skips it), or else an upstream failure in the error's words.
pub(crate) fn failure_in(error: &(dyn std::error::Error + 'static)) -> Failure {
    let mut source = Some(error);
    while let Some(e) = source {
        let failure = e.downcast_ref::<Failure>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<Failure>())
        });
        if let Some(failure) = failure {
            return failure.clone();
        }
        source = e.source();
    }
    Failure::Upstream(format!("{error:#}"))
}
