//! What would allow a denied destination: the `[[allow]]` rule to add (the text `egressd suggest`
//! writes), the port to add to a rule, the deny rule that must go first, or why no rule can
//! (special ranges). `egressd explain` prints it, and the proxy's refusals say it in their body.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::decide::{Decision, Reason};
use crate::model::{Action, Matcher, Policy, Rule};
use crate::target::{Host, Target};

/// What kind of change would allow a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Add an `[[allow]]` rule.
    AddRule,
    /// Add the port to a rule (or to `defaults.ports`), or add a rule.
    AddPort,
    /// A `[[deny]]` rule refuses it: remove or narrow it first.
    RemoveDenyRule,
    /// A special range: no rule opens it, only a `[[danger_carve_out]]`.
    SpecialRange,
}

impl Change {
    /// The stable code `egressd explain --json` prints as `action`.
    pub fn code(self) -> &'static str {
        match self {
            Self::AddRule => "add-rule",
            Self::AddPort => "add-port",
            Self::RemoveDenyRule => "remove-deny-rule",
            Self::SpecialRange => "special-range",
        }
    }
}

/// The way to allow a denied destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suggestion {
    /// What kind of change.
    pub change: Change,
    /// For people: what to do, ending with `add:` when [`Suggestion::toml`] follows.
    pub text: String,
    /// The `[[allow]]` rule to add, when one would allow the destination.
    pub toml: Option<String>,
}

/// Which key an `[[allow]]` rule's destination is written under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKey {
    /// `host = "..."`: a name or `*.suffix`.
    Host,
    /// `cidr = "..."`: a network.
    Cidr,
}

/// The TOML text of one `[[allow]]` rule: `key = value`, then `ports` (when given) and
/// `comment` (when given), each on its own line. `egressd suggest` writes its rules with it.
pub fn allow_rule_toml(
    key: RuleKey,
    value: &str,
    ports: Option<&BTreeSet<u16>>,
    comment: Option<&str>,
) -> String {
    let mut out = String::from("[[allow]]\n");
    let key = match key {
        RuleKey::Host => "host",
        RuleKey::Cidr => "cidr",
    };
    let _ = writeln!(out, "{key} = {}", quote(value));
    if let Some(ports) = ports {
        let list: Vec<String> = ports.iter().map(u16::to_string).collect();
        let _ = writeln!(out, "ports = [{}]", list.join(", "));
    }
    if let Some(comment) = comment {
        let _ = writeln!(out, "comment = {}", quote(comment));
    }
    out
}

/// `text` as a TOML basic string, escaped.
fn quote(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

impl Policy {
    /// What would allow `target`, given its `decision` and the `addresses` its name resolved to
    /// (each with its own decision; empty when not resolved: the name's `[dns.static]` addresses
    /// are used then). `None` when it is allowed (by its decision and, when addresses are given,
    /// at least one of them), or malformed (nothing to allow). When the name is allowed but no
    /// address passes, the first refusal says what to change.
    ///
    /// The change named works when applied: when every address the destination would reach is
    /// refused and some are in special ranges, an `[[allow]]` rule alone would not open it, so
    /// the TOML holds a `[[danger_carve_out]]` for each such address (and the rule, when one is
    /// still needed).
    pub fn suggest(
        &self,
        target: &Target,
        decision: &Decision,
        addresses: &[(IpAddr, Decision)],
    ) -> Option<Suggestion> {
        let refusal = if decision.is_allowed() {
            match addresses.first() {
                Some((_, first)) if !addresses.iter().any(|(_, d)| d.is_allowed()) => first,
                _ => return None,
            }
        } else {
            decision
        };
        let (key, value) = match &target.host {
            Host::Name(name) => (RuleKey::Host, name.as_str().to_owned()),
            Host::Ip(ip) => (RuleKey::Cidr, IpNet::from(*ip).to_string()),
            Host::Malformed(_) => return None,
        };
        // The rule for exactly this host and port.
        let rule = allow_rule_toml(key, &value, Some(&BTreeSet::from([target.port])), None);
        let carve_outs = self.carve_outs_needed(target, addresses);
        let located = |rule: &Rule| {
            format!(
                "{}[{}] at {}:{} ({}, ports {})",
                rule.kind.table(),
                rule.index,
                self.origin(),
                rule.line,
                rule.matcher,
                rule.ports
            )
        };
        let suggestion = match (&refusal.reason, &refusal.rule) {
            (Reason::MalformedTarget { .. }, _) => return None,
            (Reason::SpecialRange { special, .. }, _) if !carve_outs.is_empty() => {
                let rule_allows = self.allowing_rule(target).is_some()
                    || (self.default_action() == Action::Allow
                        && self.default_ports().contains(target.port));
                Suggestion {
                    change: Change::SpecialRange,
                    text: format!(
                        "no allow rule alone can allow it: {} ({}, {}) is reachable only through a \
                         [[danger_carve_out]] of the address and port{} (docs/policy.md, \
                         \"Carve-outs\"); if you mean it, add:",
                        special.range.net,
                        special.range.name,
                        special.range.rfc,
                        if rule_allows {
                            ""
                        } else {
                            ", with a rule that allows the destination"
                        }
                    ),
                    toml: Some(if rule_allows {
                        carve_outs.clone()
                    } else {
                        format!("{carve_outs}{rule}")
                    }),
                }
            }
            (Reason::SpecialRange { special, .. }, _) => Suggestion {
                change: Change::SpecialRange,
                text: format!(
                    "no allow rule can allow it: {} ({}, {}) is never reachable through policy \
                     rules but a [[danger_carve_out]] of the address and port, with a rule that \
                     allows the destination (docs/policy.md, \"Carve-outs\")",
                    special.range.net, special.range.name, special.range.rfc
                ),
                toml: None,
            },
            (Reason::DenyRule, Some(deny)) => {
                let after = match self.allowing_rule(target) {
                    Some(allow) => format!("; then {} allows it", located(allow)),
                    None if self.default_action() == Action::Allow
                        && self.default_ports().contains(target.port) =>
                    {
                        "; then the default action allows it".to_owned()
                    }
                    None => "; then add:".to_owned(),
                };
                let add = after.ends_with("add:");
                Suggestion {
                    change: Change::RemoveDenyRule,
                    text: format!(
                        "to allow it, remove or narrow {} first (deny rules win over every allow \
                         rule){after}",
                        located(deny),
                    ),
                    toml: add.then_some(rule),
                }
            }
            (Reason::PortNotAllowed { port }, named) => Suggestion {
                change: Change::AddPort,
                text: format!(
                    "to allow it, add port {port} to {}, or add:",
                    named
                        .as_deref()
                        .map_or("defaults.ports".to_owned(), located)
                ),
                toml: Some(rule),
            },
            _ => Suggestion {
                change: Change::AddRule,
                text: "to allow it, add:".to_owned(),
                toml: Some(rule),
            },
        };
        Some(match (suggestion.change, suggestion.toml) {
            // A rule is not enough when the name's every address is in a special range.
            (Change::AddRule | Change::AddPort | Change::RemoveDenyRule, Some(toml))
                if !carve_outs.is_empty() =>
            {
                Suggestion {
                    text: suggestion.text.replace(
                        "add:",
                        "add (its addresses are in special ranges, so the rule needs a \
                         [[danger_carve_out]] too: docs/policy.md, \"Carve-outs\"):",
                    ),
                    toml: Some(carve_outs + &toml),
                    ..suggestion
                }
            }
            (change, toml) => Suggestion {
                change,
                toml,
                ..suggestion
            },
        })
    }

    /// The `[[danger_carve_out]]` rules that must be added for `target` to be reachable: one per
    /// address in a special range, when every address it would reach (those given, its
    /// `[dns.static]` addresses, or the IP literal) is refused on the port. Empty otherwise.
    fn carve_outs_needed(&self, target: &Target, addresses: &[(IpAddr, Decision)]) -> String {
        let addrs: Vec<IpAddr> = match &target.host {
            _ if !addresses.is_empty() => addresses.iter().map(|(addr, _)| *addr).collect(),
            Host::Name(name) => self
                .dns()
                .static_records
                .get(name)
                .cloned()
                .unwrap_or_default(),
            Host::Ip(ip) => vec![*ip],
            Host::Malformed(_) => Vec::new(),
        };
        let refusals: Vec<(IpAddr, Decision)> = addrs
            .iter()
            .filter_map(|&addr| Some((addr, self.check_address(addr, target.port).err()?)))
            .collect();
        if addrs.is_empty() || refusals.len() < addrs.len() {
            return String::new();
        }
        let mut out = String::new();
        for (addr, refusal) in refusals {
            if let Reason::SpecialRange { .. } = refusal.reason {
                let _ = write!(
                    out,
                    "[[danger_carve_out]]\ncidr = {}\nports = [{}]\n",
                    quote(&IpNet::from(addr).to_string()),
                    target.port
                );
            }
        }
        out
    }

    /// The first `[[allow]]` rule that names the host and port, which would decide once the deny
    /// rules in front of it are gone.
    fn allowing_rule(&self, target: &Target) -> Option<&Rule> {
        self.allow_rules().iter().map(|r| &**r).find(|rule| {
            rule.ports.contains(target.port)
                && match (&rule.matcher, &target.host) {
                    (Matcher::Host(pattern), Host::Name(name)) => pattern.matches(name),
                    (Matcher::Cidr(net), Host::Ip(ip)) => net.contains(ip),
                    _ => false,
                }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"version = 1
[defaults]
ports = [443]

[[allow]]
host = "github.com"
ports = [443]

[[deny]]
host = "gist.github.com"
"#;

    fn suggestion(target: &str) -> Option<Suggestion> {
        let policy = Policy::parse(POLICY, "p.toml").unwrap();
        let target = Target::parse_loose(target, 443).unwrap();
        policy.suggest(&target, &policy.decide(&target), &[])
    }

    #[test]
    fn each_refusal_gets_its_change() {
        let add = suggestion("example.org:443").unwrap();
        assert_eq!(add.change, Change::AddRule);
        assert_eq!(
            add.toml.as_deref(),
            Some("[[allow]]\nhost = \"example.org\"\nports = [443]\n")
        );
        let port = suggestion("github.com:22").unwrap();
        assert_eq!(port.change, Change::AddPort);
        assert!(port.text.contains("allow[0] at p.toml:6"), "{}", port.text);
        let deny = suggestion("gist.github.com:443").unwrap();
        assert_eq!(deny.change, Change::RemoveDenyRule);
        assert!(deny.text.contains("deny[0] at p.toml:10"), "{}", deny.text);
        let special = suggestion("169.254.169.254:80").unwrap();
        assert_eq!(special.change, Change::SpecialRange);
        assert!(special.text.contains("RFC 3927"), "{}", special.text);
        assert_eq!(
            special.toml.as_deref(),
            Some(
                "[[danger_carve_out]]\ncidr = \"169.254.169.254/32\"\nports = [80]\n\
                 [[allow]]\ncidr = \"169.254.169.254/32\"\nports = [80]\n"
            )
        );
        let literal = suggestion("93.184.215.14:443").unwrap();
        assert_eq!(
            literal.toml.as_deref(),
            Some("[[allow]]\ncidr = \"93.184.215.14/32\"\nports = [443]\n")
        );
        assert_eq!(suggestion("github.com:443"), None);
        assert_eq!(suggestion("0x7f.1:443"), None);
    }
}
