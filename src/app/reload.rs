//! SIGHUP: the policy file read again and, when valid, a new generation for the proxy and the
//! stub; lifecycle audit events.

use anyhow::anyhow;
use audit::{Lifecycle, Step};
use policy::Mode;

use super::ready::PolicyInfo;
use super::{App, inspect};
use crate::load;

impl App {
    /// Rereads the policy file; a bad one (or one whose brokered credentials cannot be read, or
    /// one that inspects TLS when egressd started without a CA) is logged and the current policy
    /// stays.
    pub(super) fn reload(&mut self) {
        let Some(path) = self.settings.policy_path.clone() else {
            tracing::info!("SIGHUP: running the built-in policy; nothing to reload");
            return;
        };
        let loaded = load::sidecar_policy(Some(&path))
            .map_err(|failure| failure.error)
            .and_then(|policy| {
                if policy.inspects() && self.settings.proxy.inspect.is_none() {
                    return Err(anyhow!(
                        "the policy inspects TLS, but egressd started without a CA (the sandbox's \
                         environment cannot trust one made now): restart egressd with this policy, \
                         or start it with --inspect-ca-cert/--inspect-ca-key"
                    ));
                }
                let secrets = inspect::secrets(&policy)?;
                Ok((policy, secrets))
            });
        match loaded {
            Err(error) => {
                let error = format!("{error:#}");
                tracing::error!(%error, "SIGHUP: policy reload failed; keeping the current policy");
                self.metrics.reloaded(false);
                self.lifecycle(Step::ReloadFailed, Some(&error));
            }
            Ok((policy, secrets)) => {
                let policy = self.settings.applied(policy);
                self.policy = PolicyInfo::of(&policy);
                self.metrics.reloaded(true);
                self.metrics
                    .policy(&self.policy.sha256, self.policy.mode.as_str());
                let resolver = self.generations.resolver(policy);
                self.proxy.reload_with_secrets(resolver.clone(), &secrets);
                if let Some(stub) = &self.stub {
                    stub.reload(resolver);
                }
                tracing::info!(policy = %path.display(), sha256 = %self.policy.sha256, mode = %self.policy.mode, "SIGHUP: policy reloaded");
                self.lifecycle(Step::Reloaded, None);
                self.warn_report_mode();
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
            mode: self.policy.mode.as_str(),
        });
    }

    /// Report mode lets refusals through: say so on stderr whenever it comes into force.
    pub(super) fn warn_report_mode(&self) {
        if self.policy.mode == Mode::Report {
            tracing::warn!(
                "report mode: what the policy refuses by a rule or its default is let through and \
                 audited as would-deny / would-refuse; special ranges and malformed targets stay refused"
            );
        }
    }
}
