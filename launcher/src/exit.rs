//! How egressd ended: its exit status mapped to the documented codes (docs/launcher.md, "Exit
//! codes"; the binary's `src/exit.rs`).

use std::fmt;
use std::process::ExitStatus;

/// egressd's exit status, by what it means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// 0: a clean shutdown (SIGTERM, SIGINT or stdin EOF, after the drain).
    Clean,
    /// 2: bad input (an invalid policy, a bad flag value, an unusable file); always before the
    /// readiness line.
    BadInput,
    /// 3: start-up failed (address in use, socket path exists, a file that cannot be written);
    /// always before the readiness line.
    StartFailed,
    /// 4: a listener failed while running, or the audit log could not be written with
    /// `--on-audit-failure stop`.
    RuntimeFailed,
    /// Another exit code (none is documented: not egressd, or a newer one).
    Code(i32),
    /// Ended by a signal it did not handle (SIGKILL, say), with the signal's number.
    Signal(i32),
}

impl Status {
    /// Maps a process's exit status.
    pub fn of(status: ExitStatus) -> Self {
        match status.code() {
            Some(0) => Self::Clean,
            Some(2) => Self::BadInput,
            Some(3) => Self::StartFailed,
            Some(4) => Self::RuntimeFailed,
            Some(code) => Self::Code(code),
            None => Self::signal_of(status),
        }
    }

    #[cfg(unix)]
    fn signal_of(status: ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        Self::Signal(status.signal().unwrap_or(0))
    }

    #[cfg(not(unix))]
    fn signal_of(_status: ExitStatus) -> Self {
        Self::Code(-1)
    }

    /// The exit code, if egressd exited (rather than being ended by a signal).
    pub fn code(self) -> Option<i32> {
        match self {
            Self::Clean => Some(0),
            Self::BadInput => Some(2),
            Self::StartFailed => Some(3),
            Self::RuntimeFailed => Some(4),
            Self::Code(code) => Some(code),
            Self::Signal(_) => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Clean => f.write_str("exit code 0 (clean shutdown)"),
            Self::BadInput => f.write_str("exit code 2 (bad input)"),
            Self::StartFailed => f.write_str("exit code 3 (start-up failed)"),
            Self::RuntimeFailed => f.write_str("exit code 4 (failed while running)"),
            Self::Code(code) => write!(f, "exit code {code}"),
            Self::Signal(signal) => write!(f, "ended by signal {signal}"),
        }
    }
}

/// How a started egressd ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    /// Its exit status.
    pub status: Status,
    /// Whether the launcher had to kill it: it had not exited by the stop's deadline (or the
    /// [`Sidecar`](crate::Sidecar) was dropped and it did not exit within the grace).
    pub killed: bool,
    /// The last lines egressd wrote on stderr (at most [`STDERR_TAIL`](crate::STDERR_TAIL)).
    pub stderr: Vec<String>,
}

impl Exit {
    /// A clean shutdown: exit code 0, not killed. Anything else means the sandbox lost its
    /// sidecar early (exit 4 while running) or its last events may be missing (killed).
    pub fn is_clean(&self) -> bool {
        self.status == Status::Clean && !self.killed
    }

    /// egressd's last line on stderr, if it wrote one.
    pub fn last_stderr_line(&self) -> Option<&str> {
        self.stderr.last().map(String::as_str)
    }
}
