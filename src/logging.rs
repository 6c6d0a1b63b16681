//! Logging: human or JSON lines on stderr, and audit events to stderr, a file or stdout.
//!
//! Both writers run on their own threads: events are formatted where they happen, queued, and
//! written in batches (one `write(2)` per batch, not per event; see [`batch`]). The queue never
//! drops: when it is full, the logging task waits. Dropping the returned [`Guards`] writes out
//! what is queued.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::{FilterExt, FilterFn, Targets};
use tracing_subscriber::prelude::*;

use crate::cli::{LogFormat, LogLevel};

mod batch;
mod json;

use json::JsonLines;

/// Keeps the writer threads alive; dropping it writes out what they have queued.
pub struct Guards {
    _guards: Vec<batch::Guard>,
}

fn writer_thread<W: Write + Send + 'static>(
    name: &str,
    out: W,
) -> anyhow::Result<(batch::Batched, batch::Guard)> {
    batch::spawn(name, out).with_context(|| format!("cannot start the {name} thread"))
}

/// Installs the global subscriber. Audit events (target `egressd::audit`) go to `audit` when given
/// (`-` is stdout), and to the normal log otherwise.
pub fn init(format: LogFormat, level: LogLevel, audit: Option<&Path>) -> anyhow::Result<Guards> {
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
        .with_target("policy", level);
    let separate_audit = audit.is_some();
    let not_audit =
        FilterFn::new(move |meta| !(separate_audit && meta.target() == policy::AUDIT_TARGET));
    let (stderr_writer, stderr_guard) = writer_thread("egressd-log", std::io::stderr())?;
    let mut guards = vec![stderr_guard];
    let stderr = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(stderr_writer)
            .with_ansi(false)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .event_format(JsonLines)
            .with_writer(stderr_writer)
            .boxed(),
    }
    .with_filter(ours.and(not_audit));

    let audit_layer = match audit {
        None => None,
        Some(path) => {
            let (writer, guard) = if path == Path::new("-") {
                writer_thread("egressd-audit", std::io::stdout())?
            } else {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open audit log {}", path.display()))?;
                writer_thread("egressd-audit", file)?
            };
            guards.push(guard);
            let only_audit = FilterFn::new(|meta| meta.target() == policy::AUDIT_TARGET);
            let layer = tracing_subscriber::fmt::layer()
                .event_format(JsonLines)
                .with_writer(writer)
                .with_filter(only_audit);
            Some(layer.boxed())
        }
    };
    tracing_subscriber::registry()
        .with(stderr)
        .with(audit_layer)
        .try_init()
        .context("cannot install the logger")?;
    Ok(Guards { _guards: guards })
}
