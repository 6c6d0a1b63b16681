//! Logging: the human log (text or JSON lines) on stderr through `tracing`, and where audit
//! events go: a file, stdout (`-`), or stderr beside the log.
//!
//! Both destinations are written by writer threads of the audit crate ([`audit::Batched`]):
//! lines are formatted where they happen, queued, and written in batches. The queue never drops:
//! when it is full, the logging task waits. Dropping [`Logs`] writes out what is queued.

use std::fs::OpenOptions;
use std::path::Path;

use anyhow::Context;
use audit::{Batched, Guard, Sink};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

use crate::cli::{LogFormat, LogLevel};

mod json;

use json::JsonLines;

/// The running writers; dropping it writes out what they have queued.
pub struct Logs {
    audit: Sink,
    _guards: Vec<Guard>,
}

impl Logs {
    /// Where audit events go.
    pub fn audit_sink(&self) -> Sink {
        self.audit.clone()
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

fn writer_thread<W: std::io::Write + Send + 'static>(
    name: &str,
    out: W,
) -> anyhow::Result<(Batched, Guard)> {
    audit::spawn_writer(name, out).with_context(|| format!("cannot start the {name} thread"))
}

/// Installs the global subscriber for the human log, and opens the audit destination: `audit`
/// when given (`-` is stdout), else stderr beside the log.
pub fn init(format: LogFormat, level: LogLevel, audit: Option<&Path>) -> anyhow::Result<Logs> {
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
    let (stderr, stderr_guard) = writer_thread("egressd-log", std::io::stderr())?;
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
        Some(path) if path == Path::new("-") => {
            let (writer, guard) = writer_thread("egressd-audit", std::io::stdout())?;
            guards.push(guard);
            writer
        }
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open audit log {}", path.display()))?;
            let (writer, guard) = writer_thread("egressd-audit", file)?;
            guards.push(guard);
            writer
        }
    };
    tracing_subscriber::registry()
        .with(layer)
        .try_init()
        .context("cannot install the logger")?;
    Ok(Logs {
        audit: Sink::new(audit_writer),
        _guards: guards,
    })
}
