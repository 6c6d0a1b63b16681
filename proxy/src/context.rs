//! What the requests of one proxy share (`Shared`), what changes when the policy is reloaded
//! (`Generation`), and what the requests of one client connection share (`Connection`): the
//! context every worker (`connect`, `forward`, `inspect`, ...) is handed by the dispatcher
//! (`handler`), defined below both so that workers never import the dispatcher.

use std::sync::Arc;

use audit::Sink;
use resolve::Resolver;
use serve::Snapshot;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::task::TaskTracker;

use crate::audit::Caller;
use crate::client_io::Exchange;
use crate::config::ProxyConfig;
use crate::connector::Connector;
use crate::headers::Attribution;
use crate::inspect::brokered::{Brokered, Secrets};
use crate::pool::Pool;
use crate::route::Router;

/// What every connection of the proxy shares.
pub(crate) struct Shared {
    pub(crate) generation: Snapshot<Generation>,
    pub(crate) config: ProxyConfig,
    pub(crate) sandbox_id: Arc<str>,
    pub(crate) sink: Sink,
}

/// Everything that changes when the policy is reloaded.
pub(crate) struct Generation {
    pub(crate) router: Arc<Router>,
    pub(crate) attribution: Arc<Attribution>,
    /// The origin connections of absolute-form requests.
    pub(crate) pool: Pool,
    /// The policy's `[[credential]]` entries with their real values.
    pub(crate) brokered: Brokered,
}

/// What every request of one connection shares.
pub(crate) struct Connection {
    pub(crate) shared: Arc<Shared>,
    pub(crate) caller: Caller,
    /// The connection's place under the limit; tunnels keep it for their whole life.
    pub(crate) permit: Arc<OwnedSemaphorePermit>,
    /// Where tunnels run, drained at shutdown.
    pub(crate) tasks: TaskTracker,
    /// Whether a response is owed on the connection, for [`ClientIo`].
    pub(crate) exchange: Exchange,
    /// The record of a 407 for a request without the credential, held until the connection's
    /// next request says whether it was a challenge the client answered (audited `challenge`)
    /// or a refusal (the next request lacks the credential too, or the connection ends:
    /// audited `deny`). Boxed: rare (a credential set and a request without it), and inline
    /// it would make every connection's state 0.2 KiB larger for the connection's life.
    pub(crate) challenged: std::sync::Mutex<Option<Box<crate::audit::Audit>>>,
}

impl Shared {
    /// Who is asking, for the audit records of one client connection.
    pub(crate) fn caller(&self, peer: serve::Peer) -> Caller {
        Caller {
            sink: self.sink.clone(),
            sandbox_id: self.sandbox_id.clone(),
            client: Arc::from(peer.to_string()),
            metrics: self.config.metrics.clone(),
        }
    }
}

impl Generation {
    pub(crate) fn new(resolver: Arc<Resolver>, config: &ProxyConfig, secrets: &Secrets) -> Self {
        let policy = resolver.policy().clone();
        let brokered = Brokered::new(&policy, secrets);
        let attribution = Arc::new(Attribution::render(
            policy.headers(),
            &config.extra_headers,
            &config.sandbox_id,
        ));
        let router = Arc::new(Router {
            resolver,
            limits: config.limits.clone(),
            metrics: config.metrics.clone(),
        });
        let connector = match &config.parent {
            None => Connector::Direct(router.clone()),
            Some(parent) => Connector::Parent(parent.clone(), config.limits.clone()),
        };
        Self {
            router,
            attribution,
            pool: Pool::new(connector),
            brokered,
        }
    }
}
