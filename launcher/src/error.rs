//! What can go wrong starting or stopping egressd.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::exit::Status;

/// A failure of the launcher kit. Every start failure leaves no egressd running: the process was
/// killed (if it still ran) and reaped before the error is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The program could not be started (not found, not executable).
    #[error("cannot start {}: {source}", program.display())]
    Spawn {
        /// The program that was run.
        program: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// egressd exited before its readiness line: bad input (2) or a failed start (3). Its
    /// reason is on stderr, one line (a policy error adds the line:column detail after it).
    #[error("egressd exited before readiness with {status}: {}", last_line(stderr))]
    EarlyExit {
        /// The exit status.
        status: Status,
        /// egressd's last lines on stderr.
        stderr: Vec<String>,
    },
    /// No readiness line within the readiness timeout; egressd was killed.
    #[error(
        "egressd was not ready within {after:?} and was killed; its last words: {}",
        last_line(stderr)
    )]
    ReadinessTimeout {
        /// The timeout that passed.
        after: Duration,
        /// egressd's last lines on stderr.
        stderr: Vec<String>,
    },
    /// The first line on stdout is not a readiness line (not egressd, or not `egressd run`);
    /// the process was killed. The line itself is not kept: it would carry the proxy secret.
    #[error("egressd's first line on stdout is not a readiness line: {reason}")]
    BadReadiness {
        /// What is wrong with it.
        reason: String,
    },
    /// egressd could not be signalled.
    #[error("cannot signal egressd (pid {pid}): {source}")]
    Signal {
        /// Its process id.
        pid: u32,
        /// Why.
        source: io::Error,
    },
    /// egressd could not be waited for.
    #[error("cannot wait for egressd: {0}")]
    Wait(#[source] io::Error),
}

impl Error {
    /// The exit status, for a start that ended in an early exit.
    pub fn status(&self) -> Option<Status> {
        match self {
            Self::EarlyExit { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// egressd's last line on stderr, if the error has one.
    pub fn last_stderr_line(&self) -> Option<&str> {
        match self {
            Self::EarlyExit { stderr, .. } | Self::ReadinessTimeout { stderr, .. } => {
                stderr.last().map(String::as_str)
            }
            _ => None,
        }
    }
}

fn last_line(stderr: &[String]) -> &str {
    stderr.last().map_or("(nothing on stderr)", String::as_str)
}
