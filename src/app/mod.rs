//! The App: the one owner of the sidecar's life. `egressd run` builds it from flags; it starts
//! (builds the resolver, proxy and stub, binds every listener), announces (the readiness line),
//! serves until asked to stop (reloading on SIGHUP), drains, cleans up and says how to exit.
//! docs/architecture.md walks through it; docs/launcher.md is the contract it keeps.

mod generations;
mod inspect;
mod listen;
mod memory;
mod metrics;
mod ready;
mod reload;
mod settings;
mod stop;

use std::sync::Arc;

use ::metrics::Metrics;
use anyhow::{Context, anyhow};
use audit::{Sink, Step};
use dnsstub::Stub;
use policy::Policy;
use proxy::Proxy;
use serve::Server;
use tokio_util::sync::CancellationToken;

use crate::exit::{Exit, Failure};
use generations::Generations;
use listen::Loops;
use ready::{Bound, Created, PolicyInfo, Ready};
pub use settings::Settings;
use stop::{Request, Requests};

/// A started sidecar: everything bound, nothing announced yet.
pub struct App {
    settings: Settings,
    sink: Sink,
    generations: Generations,
    policy: PolicyInfo,
    proxy: Proxy,
    stub: Option<Stub>,
    proxy_server: Server,
    dns_server: Server,
    metrics_server: Server,
    /// Where the app counts reloads and the policy in force.
    metrics: ::metrics::Handle,
    shutdown: CancellationToken,
    loops: Loops,
    bound: Bound,
    /// The Unix sockets bound, removed at exit or when start-up fails after binding them.
    created: Created,
    /// The CA's certificate and bundle, written just before readiness; `None` without a CA.
    inspection: Option<inspect::Prepared>,
}

impl App {
    /// Builds the proxy and the stub for `policy` and binds every listener. Fails (exit 3) if a
    /// listener cannot be bound; nothing has been announced then.
    pub async fn start(
        mut settings: Settings,
        policy: Policy,
        sink: Sink,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Self, Failure> {
        let secrets = inspect::secrets(&policy).map_err(Failure::bad_input)?;
        let inspection = inspect::prepare(&settings.inspect, &policy, &settings.sandbox_id)?;
        settings.proxy.inspect = inspection.as_ref().map(|p| p.config.clone());
        let handle = metrics.as_ref().map(|m| m.handle()).unwrap_or_default();
        settings.proxy.metrics = handle.clone();
        settings.stub.metrics = handle.clone();
        let generations = Generations::new(&settings.resolver, handle.clone());
        let policy = settings.applied(policy);
        let info = PolicyInfo::of(&policy);
        handle.policy(&info.sha256, info.mode.as_str());
        let resolver = generations.resolver(policy);
        let shutdown = CancellationToken::new();
        // Out of descriptors, clients waiting in a listen queue are told, never left in silence:
        // the proxy's (and SOCKS's) get a 503 `proxy-resources` (SOCKS: no acceptable method),
        // the stub's TCP clients SERVFAIL. Each server keeps one descriptor in reserve for that.
        let proxy_server =
            Server::with_reserve(settings.proxy.limits.max_connections, shutdown.clone());
        let dns_server = Server::with_reserve(settings.stub.max_tcp_connections, shutdown.clone());
        let metrics_server = Server::new(metrics::MAX_ACCEPTED, shutdown.clone());
        let mut loops = Loops::new();
        let mut created = Created::default();
        let proxy = Proxy::with_secrets(
            resolver.clone(),
            &secrets,
            settings.proxy.clone(),
            sink.clone(),
        );
        let mut bound = Bound {
            proxy: listen::proxy_tcp(settings.proxy_listen, &proxy, &proxy_server, &mut loops)
                .await?,
            proxy_unix: settings.proxy_unix.clone(),
            dns: None,
            dns_unix: settings.dns_unix.clone(),
            metrics: None,
            socks: None,
            socks_unix: settings.socks_unix.clone(),
        };
        if let Some(path) = &settings.proxy_unix {
            let mode = settings.proxy_unix_mode;
            listen::unix(
                "proxy unix",
                path,
                mode,
                proxy.clone(),
                &proxy_server,
                &mut loops,
            )?;
            created.add(path);
        }
        if let Some(addr) = settings.socks_listen {
            bound.socks =
                Some(listen::socks_tcp(addr, proxy.socks(), &proxy_server, &mut loops).await?);
        }
        if let Some(path) = &settings.socks_unix {
            let mode = settings.socks_unix_mode;
            listen::unix(
                "socks unix",
                path,
                mode,
                proxy.socks(),
                &proxy_server,
                &mut loops,
            )?;
            created.add(path);
        }
        if let (Some(addr), Some(registry)) = (settings.metrics_listen, metrics) {
            let endpoint =
                metrics::Endpoint::new(registry).requiring(settings.metrics_credential.clone());
            bound.metrics =
                Some(listen::metrics(addr, endpoint, &metrics_server, &mut loops).await?);
        }
        let stub = match settings.dns_listen {
            None => None,
            Some(addr) => {
                let stub = Stub::new(resolver, settings.stub.clone(), sink.clone());
                bound.dns = Some(listen::dns(addr, &stub, &dns_server, &mut loops).await?);
                if let Some(path) = &settings.dns_unix {
                    listen::unix(
                        "dns unix",
                        path,
                        0o600,
                        stub.clone(),
                        &dns_server,
                        &mut loops,
                    )?;
                    created.add(path);
                }
                Some(stub)
            }
        };
        Ok(Self {
            settings,
            sink,
            generations,
            policy: info,
            proxy,
            stub,
            proxy_server,
            dns_server,
            metrics_server,
            metrics: handle,
            shutdown,
            loops,
            bound,
            created,
            inspection,
        })
    }

    /// Announces readiness, serves until a stop request (or a listener failure, or, when
    /// `audit_failed` is given, audit events that cannot be written), drains and cleans up.
    /// `Ok(Exit::Ok)` after a clean stop; exit 4 when a listener or the audit log failed.
    pub async fn run(
        mut self,
        audit_failed: Option<tokio::sync::oneshot::Receiver<()>>,
    ) -> Result<Exit, Failure> {
        let mut requests = Requests::install(self.settings.exit_on_stdin_eof, audit_failed)
            .context("cannot install signal handlers")
            .map_err(Failure::start)?;
        let credential = (
            self.settings.proxy.credential.as_ref(),
            self.settings.credential_source,
        );
        let ca_files = match &self.inspection {
            Some(prepared) => Some(inspect::write_files(
                self.settings.ready_file.as_deref(),
                prepared,
            )?),
            None => None,
        };
        let ready = Ready::new(
            &self.settings.sandbox_id,
            &self.bound,
            self.policy.clone(),
            credential,
            ca_files.as_ref(),
        );
        if let Err(failure) = ready.announce(self.settings.ready_file.as_deref()) {
            if let Some(files) = &ca_files {
                files.remove();
            }
            return Err(failure);
        }
        self.lifecycle(Step::Ready, None);
        self.loops.open();
        tokio::spawn(memory::watch(
            vec![self.proxy_server.clone(), self.dns_server.clone()],
            self.shutdown.clone(),
        ));
        tracing::info!(proxy = %self.bound.proxy, dns = ?self.bound.dns, metrics = ?self.bound.metrics, socks = ?self.bound.socks, sandbox_id = %self.settings.sandbox_id, mode = %self.policy.mode, "ready");
        self.warn_report_mode();
        let outcome = loop {
            tokio::select! {
                request = requests.next() => match request {
                    Request::Shutdown(why) => break Ok(why),
                    Request::Reload => self.reload(),
                    Request::Fail(why) => break Err(anyhow!(why)),
                },
                ended = self.loops.join_next() => {
                    break Err(match ended {
                        Some(Ok(Err(e))) => e,
                        Some(Err(e)) => anyhow!("listener task failed: {e}"),
                        Some(Ok(Ok(()))) | None => anyhow!("a listener stopped"),
                    });
                }
            }
        };
        let why = match &outcome {
            Ok(why) => (*why).to_owned(),
            Err(error) => format!("{error:#}"),
        };
        self.lifecycle(Step::Stopping, Some(&why));
        self.shutdown.cancel();
        // The accept loops return at once when cancelled; waiting for them means every listening
        // socket is closed before draining starts, so no connection is accepted after this point.
        while self.loops.join_next().await.is_some() {}
        self.created.remove();
        if let Some(ready_file) = &self.settings.ready_file {
            ready::cleanup(&[ready_file.as_path()]);
        }
        if let Some(files) = &ca_files {
            files.remove();
        }
        if let Err(error) = outcome {
            tracing::error!(%error, "exiting");
            return Err(Failure {
                code: Exit::RuntimeFailed,
                error,
            });
        }
        tracing::info!(%why, deadline = ?self.settings.drain_timeout, "shutting down; draining");
        let deadline = self.settings.drain_timeout;
        let (proxy, dns, _) = tokio::join!(
            self.proxy_server.drain(deadline),
            self.dns_server.drain(deadline),
            self.metrics_server.drain(deadline)
        );
        if proxy.left + dns.left > 0 {
            tracing::warn!(
                open = proxy.left + dns.left,
                "drain deadline passed; closing what is left"
            );
        }
        Ok(Exit::Ok)
    }
}
