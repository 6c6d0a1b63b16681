//! `egressd suggest`: a policy from audit logs, allowing what sandboxes asked for and were refused.
//!
//! The audit logs are read (`read`) into refusals counted per destination (`tally`), which are
//! turned into rules (`plan`: too rare, already allowed, deny-ruled and special-range destinations
//! set aside, sibling names grouped) and written as TOML (`render`). The output is parsed again
//! before it is printed: what `egressd suggest` prints always passes `egressd check`.

mod group;
mod judge;
mod plan;
mod read;
mod render;
mod tally;

use std::path::Path;

use anyhow::{Context, anyhow};
use policy::Policy;

use crate::cli::SuggestArgs;
use crate::exit::{Exit, Failure};

pub fn run(args: &SuggestArgs) -> Result<Exit, Failure> {
    let current = match &args.policy {
        Some(path) => Some(current_policy(path)?),
        None => None,
    };
    let mut tally = tally::Tally::default();
    for path in &args.audit {
        read::read(path, &mut tally)?;
    }
    let plan = plan::build(
        &tally,
        current.as_ref().map(|(policy, _)| policy),
        args.min_count,
        args.group,
    );
    let text = render::policy(
        &plan,
        &tally,
        current.as_ref().map(|(_, text)| text.as_str()),
        args.min_count,
    );
    // Appending to a policy written in an unusual way (`allow = [...]` inline, say) could make
    // invalid TOML; say so rather than print a policy egressd would refuse.
    if let Err(errors) = Policy::parse(&text, "<suggested>") {
        return Err(Failure::bad_input(anyhow!(
            "the suggested policy would not be valid; is --policy written with `[[allow]]` \
             tables?\n{errors}"
        )));
    }
    print!("{text}");
    Ok(Exit::Ok)
}

/// The policy given with --policy, and its text, kept as written.
fn current_policy(path: &Path) -> Result<(Policy, String), Failure> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read policy {}", path.display()))
        .map_err(Failure::bad_input)?;
    let policy = Policy::parse(&text, &path.display().to_string())
        .map_err(|errors| Failure::bad_input(anyhow!("invalid policy:\n{errors}")))?;
    Ok((policy, text))
}
