//! What the requests of one inspected session share: set up by `spawn` (`inspect/mod.rs`), read
//! by every request (`request.rs`).

use std::sync::Arc;

use policy::{DomainName, Target};
use tokio::sync::Mutex;

use super::upstream::Upstream;
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
    pub(crate) upstream: Mutex<Upstream>,
}
