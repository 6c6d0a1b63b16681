//! Logging: the human log (text or JSON lines) on stderr through `tracing`, and where audit
//! events go: a file, stdout (`-`), or stderr beside the log.
//!
//! Both destinations are written by writer threads of the audit crate ([`audit::Batched`]):
//! lines are formatted where they happen, queued, and written in batches. The queue never drops:
//! when it is full, the logging task waits. Dropping [`Logs`] writes out what is queued.

use std::fs::OpenOptions;
use std::path::Path;

use anyhow::Context;
use audit::{Batched, Destination, Guard, LostCount, OnFailure, Sink};
use tokio::sync::oneshot;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

use crate::cli::{AuditFailure, LogFormat, LogLevel};

mod json;

use json::JsonLines;

/// The running writers; dropping it writes out what they have queued.
pub struct Logs {
    audit: Sink,
    audit_lost: LostCount,
    audit_failed: Option<oneshot::Receiver<()>>,
    _guards: Vec<Guard>,
}

impl Logs {
    /// Where audit events go.
    pub fn audit_sink(&self) -> Sink {
        self.audit.clone()
    }

    /// How many audit events could not be written, so far.
    pub fn audit_lost(&self) -> LostCount {
        self.audit_lost.clone()
    }

    /// With `--on-audit-failure stop`: resolves when audit events can no longer be written.
    pub fn take_audit_failure(&mut self) -> Option<oneshot::Receiver<()>> {
        self.audit_failed.take()
    }
}

/// The log's writer, handed to tracing.
#[derive(Clone)]
struct LogWriter(Batched);

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = Batched;

    fn make_writer(&'a self) -> Self::Writer {
        self.0.clone()
    }
}

fn writer_thread(
    name: &str,
    out: Destination,
    on_failure: OnFailure,
) -> anyhow::Result<(Batched, Guard)> {
    audit::spawn_writer(name, out, on_failure)
        .with_context(|| format!("cannot start the {name} thread"))
}

/// Installs the global subscriber for the human log, and opens the audit destination: `audit`
/// when given (`-` is stdout), else stderr beside the log.
pub fn init(
    format: LogFormat,
    level: LogLevel,
    audit: Option<&Path>,
    on_failure: AuditFailure,
) -> anyhow::Result<Logs> {
    let level = match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    };
    // Our crates at the chosen level; dependencies (hyper, hickory) one step quieter at most.
    let ours = Targets::new()
        .with_default(level.min(LevelFilter::WARN))
        .with_target("egressd", level)
        .with_target("proxy", level)
        .with_target("dnsstub", level)
        .with_target("resolve", level)
        .with_target("serve", level)
        .with_target("policy", level);
    let (failed, audit_failed) = oneshot::channel();
    let mut audit_on_failure = Some(match on_failure {
        AuditFailure::KeepServing => OnFailure::KeepServing,
        AuditFailure::Stop => OnFailure::Stop(Box::new(move || {
            let _ = failed.send(());
        })),
    });
    // Without --audit-log, the stderr writer is the audit writer too.
    let stderr_on_failure = match audit {
        None => audit_on_failure.take(),
        Some(_) => None,
    };
    let (stderr, stderr_guard) = writer_thread(
        "egressd-log",
        Destination::Stream(Box::new(std::io::stderr())),
        stderr_on_failure.unwrap_or(OnFailure::KeepServing),
    )?;
    let mut guards = vec![stderr_guard];
    let layer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(LogWriter(stderr.clone()))
            .with_ansi(false)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .event_format(JsonLines)
            .with_writer(LogWriter(stderr.clone()))
            .boxed(),
    }
    .with_filter(ours);
    let audit_writer = match audit {
        None => stderr,
        Some(path) => {
            let dest = if path == Path::new("-") {
                Destination::Stream(Box::new(std::io::stdout()))
            } else {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open audit log {}", path.display()))?;
                Destination::File(file)
            };
            let on_failure = audit_on_failure.take().unwrap_or(OnFailure::KeepServing);
            let (writer, guard) = writer_thread("egressd-audit", dest, on_failure)?;
            guards.push(guard);
            writer
        }
    };
    tracing_subscriber::registry()
        .with(layer)
        .try_init()
        .context("cannot install the logger")?;
    Ok(Logs {
        audit_lost: audit_writer.lost(),
        audit: Sink::new(audit_writer),
        audit_failed: matches!(on_failure, AuditFailure::Stop).then_some(audit_failed),
        _guards: guards,
    })
}
