//! Helpers shared by the integration tests.

use std::path::PathBuf;
use std::process::Command;

/// The `egressd` binary cargo built for these tests.
pub fn egressd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_egressd"))
}

/// A path inside the repository.
pub fn repo(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The result of one finished run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `egressd ARGS...` to completion.
pub fn run(args: &[&str]) -> Run {
    let out = egressd().args(args).output().expect("egressd runs");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
