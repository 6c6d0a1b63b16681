//! Logging: human or JSON lines on stderr, and audit events to stderr, a file or stdout.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::filter::{FilterFn, Targets};
use tracing_subscriber::prelude::*;

use crate::cli::{LogFormat, LogLevel};

/// Installs the global subscriber. Audit events (target `egressd::audit`) go to `audit` when given
/// (`-` is stdout), and to the normal log otherwise.
pub fn init(format: LogFormat, level: LogLevel, audit: Option<&Path>) -> anyhow::Result<()> {
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
        FilterFn::new(move |meta| !(separate_audit && meta.target() == proxy::AUDIT_TARGET));
    let stderr = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(std::io::stderr)
            .boxed(),
    }
    .with_filter(ours.and(not_audit));

    let audit_layer = match audit {
        None => None,
        Some(path) => {
            let only_audit = FilterFn::new(|meta| meta.target() == proxy::AUDIT_TARGET);
            let layer = tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false);
            Some(if path == Path::new("-") {
                layer
                    .with_writer(std::io::stdout)
                    .with_filter(only_audit)
                    .boxed()
            } else {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open audit log {}", path.display()))?;
                layer
                    .with_writer(Mutex::new(file))
                    .with_filter(only_audit)
                    .boxed()
            })
        }
    };
    tracing_subscriber::registry()
        .with(stderr)
        .with(audit_layer)
        .try_init()
        .context("cannot install the logger")?;
    Ok(())
}
