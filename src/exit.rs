//! Exit codes: few, documented in docs/launcher.md and docs/policy.md, and tested.

use std::process::ExitCode;

/// What a command's exit status means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Success; for `explain`, the destination is allowed.
    Ok = 0,
    /// `explain`: the destination is denied.
    Denied = 1,
    /// Bad input: an invalid policy, a bad flag or target, an unreadable file.
    BadInput = 2,
    /// `run`: start-up failed (address in use, unusable socket or file path).
    StartFailed = 3,
    /// `run`: a listener failed while running.
    RuntimeFailed = 4,
}

impl Exit {
    /// Every exit status egressd uses, for the man page's EXIT STATUS section.
    pub const ALL: [Exit; 5] = [
        Self::Ok,
        Self::Denied,
        Self::BadInput,
        Self::StartFailed,
        Self::RuntimeFailed,
    ];

    /// What the status means, in one sentence (docs/launcher.md, "Exit codes", says the same).
    pub fn meaning(self) -> &'static str {
        match self {
            Self::Ok => {
                "success: a clean shutdown of `run`; the destination is allowed for `explain`"
            }
            Self::Denied => "`explain`: the destination is denied",
            Self::BadInput => {
                "bad input: an invalid policy, a bad flag or target, an unreadable file, a line \
                 that is not an audit event; `run` exits so before its readiness line"
            }
            Self::StartFailed => {
                "`run`: start-up failed (address in use, socket path exists, audit log or ready \
                 file cannot be written), before the readiness line"
            }
            Self::RuntimeFailed => {
                "`run`: a listener failed while running, or the audit log could not be written \
                 with --on-audit-failure stop"
            }
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// An error on its way out of `main`, with the exit code it maps to.
pub struct Failure {
    pub code: Exit,
    pub error: anyhow::Error,
}

impl Failure {
    /// The input (policy, flag, file) is at fault.
    pub fn bad_input(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: Exit::BadInput,
            error: error.into(),
        }
    }

    /// The environment refused: a port in use, a path that cannot be created.
    pub fn start(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: Exit::StartFailed,
            error: error.into(),
        }
    }
}
