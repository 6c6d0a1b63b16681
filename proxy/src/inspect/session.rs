//! What the requests of one inspected session share: set up by `spawn` (`inspect/mod.rs`), read
//! by every request (`request.rs`).

use std::sync::Arc;

use policy::{DomainName, Target};

use super::upstream::Upstream;
use super::websocket::Relay;
use crate::audit::Caller;
use crate::context::Shared;

/// What the requests of one inspected session share.
pub(crate) struct Session {
    pub(crate) shared: Arc<Shared>,
    pub(crate) caller: Caller,
    pub(crate) target: Target,
    pub(crate) name: DomainName,
    /// `host` or `host:port` (port when not 443): the Host header sent, and the URLs logged.
    pub(crate) authority: String,
    /// The origin connections, shared by the session's requests (HTTP/2 streams run at once).
    pub(crate) upstream: Upstream,
    /// The WebSocket the session's last request opened, relayed once the `101` has been sent.
    pub(crate) relay: std::sync::Mutex<Option<Relay>>,
}
