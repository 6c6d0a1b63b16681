//! What would allow a denied destination, as `egressd explain` shows it: the policy crate's
//! [`policy::Suggestion`] (which the proxy's refusals say too), serialized for `--json`.

use std::net::IpAddr;

use policy::{Decision, Policy, Target};
use serde::Serialize;

/// The way to allow a denied destination.
#[derive(Serialize)]
pub struct Suggestion {
    /// `add-rule`, `add-port`, `remove-deny-rule` or `special-range`.
    pub action: &'static str,
    /// For people: what to do, ending with `add:` when `toml` follows.
    pub text: String,
    /// The `[[allow]]` rule to add, when one would allow the destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub toml: Option<String>,
}

/// `None` when the destination is allowed, or malformed (nothing to allow); see
/// [`Policy::suggest`].
pub fn for_denial(
    policy: &Policy,
    target: &Target,
    decision: &Decision,
    addresses: &[(IpAddr, Decision)],
) -> Option<Suggestion> {
    let suggestion = policy.suggest(target, decision, addresses)?;
    Some(Suggestion {
        action: suggestion.change.code(),
        text: suggestion.text,
        toml: suggestion.toml,
    })
}
