//! Proxy settings that do not come from the policy: limits and timeouts (`limits.rs`), identity,
//! parent proxy, inspection.

use crate::credential::Credential;
use crate::inspect::config::InspectConfig;
use crate::limits::Limits;
use crate::parent::ParentProxy;

/// Everything the proxy needs besides the policy and the resolver.
#[derive(Clone, Debug, Default)]
pub struct ProxyConfig {
    /// The sandbox this egressd serves: filled into `{sandbox_id}` header templates and logged.
    pub sandbox_id: String,
    /// Extra attribution headers (`--header`), rendered and validated by the caller; they replace
    /// the policy's headers of the same name.
    pub extra_headers: Vec<policy::HeaderTemplate>,
    /// Limits and timeouts.
    pub limits: Limits,
    /// Optional parent proxy.
    pub parent: Option<ParentProxy>,
    /// The credential every request must carry; `None` accepts any caller that can connect.
    pub credential: Option<Credential>,
    /// TLS inspection (the CA and the origins' roots); `None` when no policy rule may inspect.
    pub inspect: Option<InspectConfig>,
    /// Where requests, open connections and tunnels, and connect times are counted (a no-op
    /// without `--metrics-listen`).
    pub metrics: metrics::Handle,
}
