//! WebSocket on an inspected host. The upgrade request (`GET` with `Upgrade: websocket` over
//! HTTP/1.1) is decided like any request of the session (`request.rs`: Host, the name under the
//! policy of now, `methods`, `paths`, placeholders, credentials in, attribution), and goes to the
//! origin with its upgrade headers put back. When the origin answers `101` with
//! `Upgrade: websocket`, the client gets that `101` and the frames are relayed both ways with
//! the tunnel idle timeout; the request's audit event is written when the relay ends, with the
//! bytes written each way.
//!
//! How the frames go depends on the upgrade request. Without a brokered credential they go as
//! they are (compressed or not: the extensions are the two ends' business). With one, the
//! request went without `Sec-WebSocket-Extensions` (no compression: `request.rs`), and the
//! origin's frames are scrubbed of the value on their way (`frames.rs`); the client's go as they
//! are (they carry nothing of the value: the client never had it).
//!
//! What it does not do: relay any other upgrade (`Upgrade: h2c` and the like are hop-by-hop
//! headers, removed, and the request goes on as a plain one), or WebSocket over HTTP/2 (RFC 8441's
//! extended CONNECT: the HTTP/2 server never sends `SETTINGS_ENABLE_CONNECT_PROTOCOL`, so
//! clients open an HTTP/1.1 connection for it).

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::audit::Audit;
use crate::inspect::brokered::{Masker, Swapped};
use crate::inspect::frames::{FrameError, FrameScrubber, Scrubbed};
use crate::limits::Limits;
use crate::tunnel::{self, TunnelEnd};

/// Each direction's relay buffer: a TLS record is at most 16 KiB, so a larger one would not
/// move more per read, and it is held for the relay's life.
const BUFFER: usize = 16 * 1024;

/// True when `req` asks for a WebSocket: an HTTP/1.1 `GET` whose `Connection` names `upgrade`
/// and whose `Upgrade` is `websocket` (RFC 6455 §4.1).
pub(crate) fn requested<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.method() == Method::GET
        && names_token(req.headers(), header::CONNECTION, "upgrade")
        && is_websocket(req.headers())
}

/// True when the origin's answer switches to WebSocket: `101` with `Upgrade: websocket`.
pub(crate) fn accepted<B>(response: &Response<B>) -> bool {
    response.status() == StatusCode::SWITCHING_PROTOCOLS && is_websocket(response.headers())
}

/// Puts back the upgrade headers that removing the hop-by-hop headers took out.
pub(crate) fn restore_upgrade(headers: &mut HeaderMap) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
}

fn is_websocket(headers: &HeaderMap) -> bool {
    let values = headers.get_all(header::UPGRADE);
    let mut protocols = values
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim);
    // One protocol, and it is WebSocket: an upgrade offering several is not what a WebSocket
    // client sends, and egressd relays nothing else.
    matches!(
        (protocols.next(), protocols.next()),
        (Some(p), None) if p.eq_ignore_ascii_case("websocket")
    )
}

fn names_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// A WebSocket both ends agreed to, waiting for the `101` to be written to the client.
pub(crate) struct Relay {
    client: OnUpgrade,
    origin: OnUpgrade,
    audit: Audit,
    destination: String,
    /// The values the upgrade request carried: the origin's frames are scrubbed of them.
    swapped: Vec<Swapped>,
}

impl Relay {
    pub(crate) fn new(
        client: OnUpgrade,
        origin: OnUpgrade,
        audit: Audit,
        destination: String,
        swapped: Vec<Swapped>,
    ) -> Self {
        Self {
            client,
            origin,
            audit,
            destination,
            swapped,
        }
    }

    /// Moves frames both ways (the origin's scrubbed, when the upgrade carried a brokered
    /// value) until both sides have closed, one fails, or nothing has moved for the tunnel idle
    /// timeout; then the request's audit event is written.
    pub(crate) async fn run(self, limits: &Limits) {
        let Self {
            client,
            origin,
            mut audit,
            destination,
            swapped,
        } = self;
        let (client, origin) = match tokio::join!(client, origin) {
            (Ok(client), Ok(origin)) => (client, origin),
            (Err(error), _) | (_, Err(error)) => {
                tracing::debug!(%destination, %error, "WebSocket ended before it opened");
                return;
            }
        };
        let (client, origin) = (TokioIo::new(client), TokioIo::new(origin));
        let idle = limits.tunnel_idle_timeout;
        let end = if swapped.is_empty() {
            tunnel::run(client, origin, &audit.bytes, idle, BUFFER).await
        } else {
            let scrubber = FrameScrubber::new(Masker::new(&swapped));
            let origin = Scrubbed::new(origin, scrubber, BUFFER);
            tunnel::run(client, origin, &audit.bytes, idle, BUFFER).await
        };
        match end {
            TunnelEnd::Closed => {}
            TunnelEnd::Idle => {
                tracing::debug!(%destination, "WebSocket closed after the idle timeout")
            }
            TunnelEnd::Error(error) => {
                let frame = error.get_ref().and_then(|e| e.downcast_ref::<FrameError>());
                if let Some(frame) = frame {
                    tracing::warn!(
                        %destination,
                        %frame,
                        "the origin sent a WebSocket frame egressd cannot scrub; closed"
                    );
                    audit.broke_off("upstream-error");
                } else {
                    tracing::debug!(%destination, %error, "WebSocket ended with an error")
                }
            }
        }
        drop(audit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_http11_get_upgrading_to_websocket_alone_is_relayed() {
        let cases = [
            ("GET", Version::HTTP_11, "Upgrade", "websocket", true),
            (
                "GET",
                Version::HTTP_11,
                "keep-alive, Upgrade",
                "WebSocket",
                true,
            ),
            ("GET", Version::HTTP_11, "keep-alive", "websocket", false),
            ("GET", Version::HTTP_11, "upgrade", "h2c", false),
            ("GET", Version::HTTP_11, "upgrade", "websocket, h2c", false),
            ("POST", Version::HTTP_11, "upgrade", "websocket", false),
            ("GET", Version::HTTP_10, "upgrade", "websocket", false),
        ];
        for (method, version, connection, upgrade, want) in cases {
            let req = Request::builder()
                .method(method)
                .version(version)
                .header(header::CONNECTION, connection)
                .header(header::UPGRADE, upgrade)
                .body(())
                .unwrap();
            assert_eq!(
                requested(&req),
                want,
                "{method} {version:?} {connection} {upgrade}"
            );
        }
    }

    #[test]
    fn only_a_101_to_websocket_is_accepted() {
        let response = |status: u16, upgrade: Option<&str>| {
            let mut builder = Response::builder().status(status);
            if let Some(upgrade) = upgrade {
                builder = builder.header(header::UPGRADE, upgrade);
            }
            builder.body(()).unwrap()
        };
        assert!(accepted(&response(101, Some("websocket"))));
        assert!(!accepted(&response(101, Some("h2c"))));
        assert!(!accepted(&response(101, None)));
        assert!(!accepted(&response(200, Some("websocket"))));
    }
}
