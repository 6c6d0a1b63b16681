//! Reading a policy file, or taking the built-in one.

use std::path::Path;

use anyhow::Context;
use policy::Policy;

use crate::exit::Failure;

/// Reads and validates the policy at `path`; `None` means the built-in default policy. Every
/// validation error is reported, one per line, each with file:line:column.
pub fn policy(path: Option<&Path>) -> Result<Policy, Failure> {
    let Some(path) = path else {
        return Ok(Policy::builtin());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read policy {}", path.display()))
        .map_err(Failure::bad_input)?;
    Policy::parse(&text, &path.display().to_string())
        .map_err(|errors| Failure::bad_input(anyhow::anyhow!("invalid policy:\n{errors}")))
}
