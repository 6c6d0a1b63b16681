//! `egressd explain`: the decision for one destination, for people (text) and machines (`--json`),
//! and for a denial, what would allow it (`suggestion`).

use std::net::IpAddr;

use anyhow::anyhow;
use policy::{Decision, Host, Policy, Rule, Target};
use serde::Serialize;

mod suggestion;

use crate::cli::ExplainArgs;
use crate::exit::{Exit, Failure};
use crate::load;

pub fn run(args: &ExplainArgs) -> Result<Exit, Failure> {
    let policy = load::policy(Some(&args.policy))?;
    let target = Target::parse_loose(&args.target, args.port)
        .map_err(|e| Failure::bad_input(anyhow!("cannot read target {:?}: {e}", args.target)))?;
    let decision = policy.decide(&target);
    let resolved = resolved_addresses(&policy, &target, &args.resolved);
    let addresses: Vec<(IpAddr, Decision)> = resolved
        .iter()
        .map(|&addr| (addr, policy.check_resolved(&decision, addr, target.port)))
        .collect();
    // A name is reachable when it is allowed and at least one address it resolves to passes; the
    // proxy connects only to such an address.
    let allowed = decision.is_allowed()
        && (addresses.is_empty() || addresses.iter().any(|(_, d)| d.is_allowed()));
    let report = Report {
        target: target.to_string(),
        verdict: if allowed { "allow" } else { "deny" },
        decision: DecisionView::new(&decision, &policy),
        malformed: target.host.malformed_reason(),
        resolved: addresses
            .iter()
            .map(|(addr, d)| AddressView {
                address: *addr,
                decision: DecisionView::new(d, &policy),
            })
            .collect(),
        note: match (&target.host, addresses.is_empty(), decision.is_allowed()) {
            (Host::Name(_), true, true) => Some(
                "name checked only: every address it resolves to is checked again (deny CIDR rules, special ranges); pass --resolved ADDR to see that check",
            ),
            _ => None,
        },
        suggestion: if allowed {
            None
        } else {
            suggestion::for_denial(&policy, &target, &decision, &addresses)
        },
    };
    if args.json {
        // Serializing plain structs of strings and numbers cannot fail.
        #[allow(clippy::expect_used)]
        let json = serde_json::to_string(&report).expect("report serializes");
        println!("{json}");
    } else {
        print_text(&report);
    }
    Ok(if allowed { Exit::Ok } else { Exit::Denied })
}

/// `--resolved` addresses if given, else the policy's static records for the name.
fn resolved_addresses(policy: &Policy, target: &Target, given: &[IpAddr]) -> Vec<IpAddr> {
    if !given.is_empty() {
        return given.to_vec();
    }
    match &target.host {
        Host::Name(name) => policy
            .dns()
            .static_records
            .get(name)
            .cloned()
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

#[derive(Serialize)]
struct Report {
    target: String,
    verdict: &'static str,
    decision: DecisionView,
    #[serde(skip_serializing_if = "Option::is_none")]
    malformed: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    resolved: Vec<AddressView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    suggestion: Option<suggestion::Suggestion>,
}

#[derive(Serialize)]
struct AddressView {
    address: IpAddr,
    decision: DecisionView,
}

#[derive(Serialize)]
struct DecisionView {
    verdict: String,
    reason: &'static str,
    explanation: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<RuleView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    special_range: Option<RangeView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    carve_out: Option<RuleView>,
}

#[derive(Serialize)]
struct RuleView {
    list: &'static str,
    index: usize,
    origin: String,
    line: usize,
    matches: String,
    ports: String,
}

#[derive(Serialize)]
struct RangeView {
    network: String,
    name: &'static str,
    rfc: &'static str,
    what: &'static str,
}

impl DecisionView {
    fn new(decision: &Decision, policy: &Policy) -> Self {
        let special = match &decision.reason {
            policy::Reason::SpecialRange { special, .. } => Some(special),
            _ => decision.carve_out.as_ref().map(|c| &c.special),
        };
        Self {
            verdict: decision.verdict().to_string(),
            reason: decision.reason.code(),
            explanation: decision.reason.to_string(),
            rule: decision.rule.as_deref().map(|r| RuleView::new(r, policy)),
            special_range: special.map(|s| RangeView {
                network: s.range.net.to_string(),
                name: s.range.name,
                rfc: s.range.rfc,
                what: s.range.what,
            }),
            carve_out: decision
                .carve_out
                .as_ref()
                .map(|c| RuleView::new(&c.rule, policy)),
        }
    }
}

impl RuleView {
    fn new(rule: &Rule, policy: &Policy) -> Self {
        Self {
            list: rule.kind.table(),
            index: rule.index,
            origin: policy.origin().to_owned(),
            line: rule.line,
            matches: rule.matcher.to_string(),
            ports: rule.ports.to_string(),
        }
    }
}

fn print_text(report: &Report) {
    println!("{} {}", report.verdict, report.target);
    print_decision("", &report.decision);
    if let Some(why) = &report.malformed {
        println!("  malformed: {why}");
    }
    for address in &report.resolved {
        println!(
            "  resolved {}: {}",
            address.address, address.decision.verdict
        );
        print_decision("  ", &address.decision);
    }
    if let Some(note) = report.note {
        println!("  note: {note}");
    }
    if let Some(suggestion) = &report.suggestion {
        println!("  {}", suggestion.text);
        // Unindented, so it can be pasted into the policy as it is.
        if let Some(toml) = &suggestion.toml {
            print!("{toml}");
        }
    }
}

fn print_decision(indent: &str, d: &DecisionView) {
    println!("{indent}  reason: {}: {}", d.reason, d.explanation);
    for (label, rule) in [("rule", &d.rule), ("carve-out", &d.carve_out)] {
        if let Some(r) = rule {
            println!(
                "{indent}  {label}: {}[{}] at {}:{}: {}, ports {}",
                r.list, r.index, r.origin, r.line, r.matches, r.ports
            );
        }
    }
    if let Some(range) = &d.special_range {
        println!(
            "{indent}  range: {} ({}, {}: {})",
            range.network, range.name, range.rfc, range.what
        );
    }
}
