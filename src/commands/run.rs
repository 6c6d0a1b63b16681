//! `egressd run`: wiring only. Flags become [`Settings`], the policy is loaded, logging and the
//! runtime start, and the [`App`] does the rest (docs/launcher.md is the contract it keeps).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metrics::Metrics;

use crate::app::{App, Settings};
use crate::cli::RunArgs;
use crate::exit::{Exit, Failure};
use crate::{load, logging};

/// After draining, how long tasks still running may take to be dropped before exit.
const RUNTIME_GRACE: Duration = Duration::from_millis(500);

pub fn run(args: &RunArgs) -> Result<Exit, Failure> {
    let settings = Settings::from_args(args)?;
    let policy = load::sidecar_policy(args.policy.as_deref())?;
    // Dropped last: flushes the log and audit writers after the runtime is gone.
    let mut logs = logging::init(
        args.log_format,
        args.log_level,
        args.audit_log.as_deref(),
        args.on_audit_failure,
    )
    .map_err(Failure::start)?;
    let runtime = runtime(args.threads)?;
    let (sink, audit_failed) = (logs.audit_sink(), logs.take_audit_failure());
    let metrics = settings.metrics_listen.map(|_| {
        let lost = logs.audit_lost();
        let metrics = Metrics::new(move || lost.get());
        metrics.build_info(env!("CARGO_PKG_VERSION"), env!("EGRESSD_BUILD_COMMIT"));
        Arc::new(metrics)
    });
    let outcome = runtime.block_on(async move {
        let app = App::start(settings, policy, sink, metrics).await?;
        app.run(audit_failed).await
    });
    // Nothing may keep the process: tasks the drain deadline cut off are dropped here.
    runtime.shutdown_timeout(RUNTIME_GRACE);
    drop(logs);
    outcome
}

fn runtime(threads: Option<u16>) -> Result<tokio::runtime::Runtime, Failure> {
    match threads {
        Some(0) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(n))
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
    .context("cannot start the async runtime")
    .map_err(Failure::start)
}
