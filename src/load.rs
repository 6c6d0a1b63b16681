//! Reading a policy file, or taking the built-in one.

use std::path::Path;

use anyhow::Context;
use policy::Policy;

use crate::exit::Failure;
use crate::input_file;

/// Reads and validates the policy at `path`; `None` means the built-in default policy. Every
/// validation error is reported, one per line, each with file:line:column.
pub fn policy(path: Option<&Path>) -> Result<Policy, Failure> {
    let Some(path) = path else {
        return Ok(Policy::builtin());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read policy {}", path.display()))
        .map_err(Failure::bad_input)?;
    parse(&text, path)
}

/// [`policy`] for `egressd run` (at start and on SIGHUP): the file must be a regular file, opened
/// without blocking ([`input_file`]), so a FIFO is refused instead of hanging the sidecar.
pub fn sidecar_policy(path: Option<&Path>) -> Result<Policy, Failure> {
    let Some(path) = path else {
        return Ok(Policy::builtin());
    };
    let text = input_file::read_to_string(path)
        .with_context(|| format!("cannot read --policy {}", path.display()))
        .map_err(Failure::bad_input)?;
    parse(&text, path)
}

fn parse(text: &str, path: &Path) -> Result<Policy, Failure> {
    Policy::parse(text, &path.display().to_string())
        .map_err(|errors| Failure::bad_input(anyhow::anyhow!("invalid policy:\n{errors}")))
}
