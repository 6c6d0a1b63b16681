//! Policy generations: each policy in force gets its own resolver (so its own cache), built from
//! what every generation shares.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use policy::Policy;
use resolve::{Lookups, Resolver};

use crate::input_file;

/// What every policy generation's resolver shares: settings, the bound on lookups in flight, and
/// the host's resolvers (read once, when a policy first needs them).
pub struct Generations {
    settings: resolve::Settings,
    metrics: metrics::Handle,
    lookups: Lookups,
    system_upstreams: OnceLock<Vec<SocketAddr>>,
}

impl Generations {
    /// Shares `settings` and one bound on lookups in flight across every generation.
    pub fn new(settings: &resolve::Settings, metrics: metrics::Handle) -> Self {
        Self {
            metrics,
            lookups: Lookups::new(settings.max_lookups),
            settings: settings.clone(),
            system_upstreams: OnceLock::new(),
        }
    }

    /// A resolver (and so a policy generation) for `policy`.
    pub fn resolver(&self, policy: Policy) -> Arc<Resolver> {
        let system: &[SocketAddr] = if policy.dns().upstreams.is_empty() {
            self.system_upstreams
                .get_or_init(|| resolve::system_upstreams(input_file::read))
        } else {
            &[]
        };
        Arc::new(
            Resolver::new(
                Arc::new(policy),
                system,
                &self.settings,
                self.lookups.clone(),
            )
            .with_metrics(self.metrics.clone()),
        )
    }
}
