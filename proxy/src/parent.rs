//! Chaining through a parent proxy: everything egressd sends to the parent, in one place. The
//! policy is enforced first, always; the parent only ever sees requests egressd allowed.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use policy::Target;
use tokio::net::TcpStream;

use crate::body::empty;
use crate::error::Failure;
use crate::headers::Attribution;
use crate::limits::Limits;
use crate::route::dial;

/// A parent HTTP proxy that egressd forwards everything through, after enforcing the policy.
#[derive(Clone, Debug)]
pub struct ParentProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Sent as `Proxy-Authorization` on every request to it.
    pub authorization: Option<HeaderValue>,
}

impl ParentProxy {
    /// Connects to the parent under the connect timeout.
    pub(crate) async fn dial(&self, limits: &Limits) -> Result<TcpStream, Failure> {
        dial(self.addr, limits.connect_timeout).await
    }

    /// Adds the parent's credentials to a request egressd forwards through it.
    pub(crate) fn authorize(&self, headers: &mut HeaderMap) {
        if let Some(auth) = &self.authorization {
            headers.insert(header::PROXY_AUTHORIZATION, auth.clone());
        }
    }

    /// Opens a tunnel to `target` through the parent: `CONNECT` with the attribution headers and
    /// the parent's credentials; anything but `200` is a refusal.
    pub(crate) async fn tunnel(
        &self,
        target: &Target,
        attribution: &Attribution,
        limits: &Limits,
    ) -> Result<hyper::upgrade::Upgraded, Failure> {
        let stream = self.dial(limits).await?;
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
        attribution.apply(req.headers_mut());
        self.authorize(req.headers_mut());
        let response =
            match tokio::time::timeout(limits.response_timeout, sender.send_request(req)).await {
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
}
