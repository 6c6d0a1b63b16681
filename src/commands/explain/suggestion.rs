//! What would allow a denied destination: the `[[allow]]` rule to add (the same text `egressd
//! suggest` writes), the port to add to a rule, the deny rule that must go first, or why no rule
//! can (special ranges).

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use policy::{Action, Decision, Host, Matcher, Policy, Reason, Rule, Target};
use serde::Serialize;

use crate::commands::suggest::{Pattern, allow_rule};

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

/// `None` when the destination is allowed, or malformed (nothing to allow). `addresses` are the
/// resolved addresses checked: when the name is allowed but none of them passes, the first
/// refusal says what to change.
pub fn for_denial(
    policy: &Policy,
    target: &Target,
    decision: &Decision,
    addresses: &[(IpAddr, Decision)],
) -> Option<Suggestion> {
    let refusal = if decision.is_allowed() {
        if addresses.is_empty() || addresses.iter().any(|(_, d)| d.is_allowed()) {
            return None;
        }
        &addresses[0].1
    } else {
        decision
    };
    let pattern = match &target.host {
        Host::Name(name) => Pattern::Exact(name.clone()),
        Host::Ip(ip) => Pattern::Cidr(IpNet::from(*ip)),
        Host::Malformed(_) => return None,
    };
    // The rule for exactly this host and port.
    let rule = allow_rule(&pattern, Some(&BTreeSet::from([target.port])), None);
    let located = |rule: &Rule| {
        format!(
            "{}[{}] at {}:{} ({}, ports {})",
            rule.kind.table(),
            rule.index,
            policy.origin(),
            rule.line,
            rule.matcher,
            rule.ports
        )
    };
    let suggestion = match (&refusal.reason, &refusal.rule) {
        (Reason::MalformedTarget { .. }, _) => return None,
        (Reason::SpecialRange { special, .. }, _) => Suggestion {
            action: "special-range",
            text: format!(
                "no allow rule can allow it: {} ({}, {}) is never reachable through policy rules \
                 but a [[danger_carve_out]] of the address and port, with a rule that allows the \
                 destination (docs/policy.md, \"Carve-outs\")",
                special.range.net, special.range.name, special.range.rfc
            ),
            toml: None,
        },
        (Reason::DenyRule, Some(deny)) => {
            let after = match allowing_rule(policy, target) {
                Some(allow) => format!("; then {} allows it", located(allow)),
                None if policy.default_action() == Action::Allow
                    && policy.default_ports().contains(target.port) =>
                {
                    "; then the default action allows it".to_owned()
                }
                None => "; then add:".to_owned(),
            };
            let add = after.ends_with("add:");
            Suggestion {
                action: "remove-deny-rule",
                text: format!(
                    "to allow it, remove or narrow {} first (deny rules win over every allow \
                     rule){after}",
                    located(deny),
                ),
                toml: add.then_some(rule),
            }
        }
        (Reason::PortNotAllowed { port }, named) => Suggestion {
            action: "add-port",
            text: format!(
                "to allow it, add port {port} to {}, or add:",
                named
                    .as_deref()
                    .map_or("defaults.ports".to_owned(), located)
            ),
            toml: Some(rule),
        },
        _ => Suggestion {
            action: "add-rule",
            text: "to allow it, add:".to_owned(),
            toml: Some(rule),
        },
    };
    Some(suggestion)
}

/// The first `[[allow]]` rule that names the host and port, which would decide once the deny
/// rules in front of it are gone.
fn allowing_rule<'a>(policy: &'a Policy, target: &Target) -> Option<&'a Rule> {
    policy.allow_rules().iter().map(|r| &**r).find(|rule| {
        rule.ports.contains(target.port)
            && match (&rule.matcher, &target.host) {
                (Matcher::Host(pattern), Host::Name(name)) => pattern.matches(name),
                (Matcher::Cidr(net), Host::Ip(ip)) => net.contains(ip),
                _ => false,
            }
    })
}
