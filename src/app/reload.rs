//! SIGHUP: the policy file read again and, when valid, a new generation for the proxy and the
//! stub; lifecycle audit events.

use audit::{Lifecycle, Step};

use super::App;
use super::ready::PolicyInfo;
use crate::load;

impl App {
    /// Rereads the policy file; a bad one is logged and the current policy stays.
    pub(super) fn reload(&mut self) {
        let Some(path) = self.settings.policy_path.clone() else {
            tracing::info!("SIGHUP: running the built-in policy; nothing to reload");
            return;
        };
        match load::policy(Some(&path)) {
            Err(failure) => {
                let error = format!("{:#}", failure.error);
                tracing::error!(%error, "SIGHUP: policy reload failed; keeping the current policy");
                self.lifecycle(Step::ReloadFailed, Some(&error));
            }
            Ok(policy) => {
                self.policy = PolicyInfo {
                    origin: policy.origin().to_owned(),
                    sha256: policy.digest().to_owned(),
                };
                let resolver = self.generations.resolver(policy);
                self.proxy.reload(resolver.clone());
                if let Some(stub) = &self.stub {
                    stub.reload(resolver);
                }
                tracing::info!(policy = %path.display(), sha256 = %self.policy.sha256, "SIGHUP: policy reloaded");
                self.lifecycle(Step::Reloaded, None);
            }
        }
    }

    pub(super) fn lifecycle(&self, step: Step, detail: Option<&str>) {
        self.sink.emit(&Lifecycle {
            sandbox_id: &self.settings.sandbox_id,
            step,
            policy: &self.policy.origin,
            sha256: &self.policy.sha256,
            detail,
        });
    }
}
