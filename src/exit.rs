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
