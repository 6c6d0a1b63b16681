//! The suggested policy as TOML text: a new policy, or the current one with rules appended; and
//! the text of one `[[allow]]` rule, which `egressd explain` prints too.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::time::SystemTime;

use policy::{RuleKey, allow_rule_toml};

use super::plan::{Note, Pattern, Plan, Suggestion};
use super::tally::{Dest, Seen, Tally};

/// Names listed in a wildcard's comment before "and N more".
const LISTED_MEMBERS: usize = 5;
/// Width of comment paragraphs.
const WIDTH: usize = 100;

/// The output: `current` (the text of --policy) with the suggestions appended, or a new
/// deny-by-default policy holding them.
pub fn policy(plan: &Plan, tally: &Tally, current: Option<&str>, min_count: u64) -> String {
    let mut out = String::new();
    match current {
        Some(text) => {
            out.push_str(text);
            if !text.ends_with('\n') {
                out.push('\n');
            }
            out.push_str("\n# ---\n");
            header(&mut out, tally);
        }
        None => {
            header(&mut out, tally);
            left_out(&mut out, tally);
            out.push_str("version = 1\n\n[defaults]\naction = \"deny\"\nports = [80, 443]\n");
        }
    }
    for rule in &plan.rules {
        out.push('\n');
        out.push_str(&allow_rule(
            &rule.pattern,
            rule.ports.as_ref(),
            Some(&comment(rule)),
        ));
    }
    notes(
        &mut out,
        &plan.denied,
        "refused by a [[deny]] rule, which wins over every allow rule (remove or narrow the \
         rule to open these)",
    );
    notes(
        &mut out,
        &plan.unresolved,
        "never resolved, so an allow rule would not make them work (check the name, or the \
         resolver egressd was given)",
    );
    notes(
        &mut out,
        &plan.special,
        "special ranges, which no [[allow]] rule opens (only a [[danger_carve_out]] for the \
         address and port, plus a rule allowing it: docs/policy.md, \"Carve-outs\")",
    );
    let rare = format!("seen fewer than --min-count {min_count} times");
    let skipped = [
        (plan.allowed, "already allowed by the policy"),
        (plan.rare, rare.as_str()),
        (tally.malformed, "malformed target or name"),
        (tally.errors, "failure, not a refusal"),
        (tally.other_refusals, "refused, but not by the policy"),
    ];
    let skipped: Vec<String> = skipped
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{what}: {n}"))
        .collect();
    if !skipped.is_empty() {
        out.push_str("\n# Not suggested, and not listed:\n");
        for line in skipped {
            let _ = writeln!(out, "#   {line}");
        }
    }
    out
}

/// One `[[allow]]` rule; `ports` `None` leaves the key out (the policy's `defaults.ports`).
fn allow_rule(pattern: &Pattern, ports: Option<&BTreeSet<u16>>, comment: Option<&str>) -> String {
    let (key, value) = match pattern {
        Pattern::Exact(name) => (RuleKey::Host, name.as_str().to_owned()),
        Pattern::Below(domain) => (RuleKey::Host, format!("*.{domain}")),
        Pattern::Cidr(net) => (RuleKey::Cidr, net.to_string()),
    };
    allow_rule_toml(key, &value, ports, comment)
}

/// Without --policy: the output is not the whole next policy; say what the policy in force holds
/// that this does not.
fn left_out(out: &mut String, tally: &Tally) {
    out.push('\n');
    paragraph(
        out,
        "Written without --policy, this holds only what was refused: not what the policy in \
         force already allows (its rules, defaults, carve-outs and dns settings). Use it as \
         rules to add, or run `egressd suggest --policy CURRENT.toml` for the whole next policy.",
    );
    if !tally.port_refused.is_empty() {
        let listed: Vec<String> = tally
            .port_refused
            .iter()
            .map(|(dest, port)| destination(dest, Some(*port)))
            .collect();
        paragraph(
            out,
            &format!(
                "Refused only for their port (the policy in force allows these hosts on other \
                 ports, which this file does not): {}.",
                listed.join(", ")
            ),
        );
    }
    out.push('\n');
}

fn header(out: &mut String, tally: &Tally) {
    let span = &tally.span;
    let when = match (span.first.map(time), span.last.map(time)) {
        (Some(first), Some(last)) if first == last => format!(", at {first}"),
        (Some(first), Some(last)) => format!(", {first} to {last}"),
        _ => String::new(),
    };
    paragraph(
        out,
        &format!(
            "Suggested by `egressd suggest` from {} audit events ({} {}{when}). Review every \
             rule: each allows what a sandbox asked for, which is not always what it needs.",
            tally.events,
            span.sandboxes.len(),
            if span.sandboxes.len() == 1 {
                "sandbox"
            } else {
                "sandboxes"
            },
        ),
    );
}

/// `text` as `#` comment lines of at most [`WIDTH`] characters (a longer word gets its own line).
fn paragraph(out: &mut String, text: &str) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() > 1 && line.len() + 1 + word.len() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
}

fn comment(rule: &Suggestion) -> String {
    let mut text = String::new();
    if !rule.members.is_empty() {
        let listed: Vec<&str> = rule
            .members
            .iter()
            .take(LISTED_MEMBERS)
            .map(|n| n.as_str())
            .collect();
        let _ = write!(text, "{} names: {}", rule.members.len(), listed.join(", "));
        if rule.members.len() > LISTED_MEMBERS {
            let _ = write!(text, " and {} more", rule.members.len() - LISTED_MEMBERS);
        }
        if let Pattern::Below(domain) = &rule.pattern {
            let _ = write!(
                text,
                "; newly allows every other name below {domain} on the same ports, not only these"
            );
        }
        text.push_str("; ");
    }
    if rule.ports.is_none() {
        text.push_str("asked of the DNS stub only, so no port is known: defaults.ports; ");
    }
    text.push_str(&seen(&rule.seen));
    text
}

fn notes(out: &mut String, notes: &[Note], title: &str) {
    if notes.is_empty() {
        return;
    }
    out.push('\n');
    paragraph(out, &format!("Not suggested: {title}:"));
    for note in notes {
        let _ = writeln!(
            out,
            "#   {}: {}\n#     {}",
            destination(&note.dest, note.port),
            note.why,
            seen(&note.seen)
        );
        carve_out(out, note);
    }
}

/// For a special-range note whose addresses are known: the carve-out and allow rule that would
/// open it, commented out (the operator decides; docs/policy.md, "Carve-outs").
fn carve_out(out: &mut String, note: &Note) {
    let Some(port) = note.port else { return };
    if note.carve.is_empty() {
        return;
    }
    let ports = BTreeSet::from([port]);
    let mut rules = String::new();
    for addr in &note.carve {
        let net = ipnet::IpNet::from(*addr);
        rules.push_str(&carve_out_rule(&net, port));
    }
    let pattern = match &note.dest {
        Dest::Name(name) => Pattern::Exact(name.clone()),
        Dest::Ip(ip) => Pattern::Cidr(ipnet::IpNet::from(*ip)),
    };
    rules.push_str(&allow_rule(&pattern, Some(&ports), None));
    out.push_str("#     to open it anyway, uncomment (a hole in the special ranges: be sure):\n");
    for line in rules.lines() {
        let _ = writeln!(out, "#     {line}");
    }
}

fn carve_out_rule(net: &ipnet::IpNet, port: u16) -> String {
    format!("[[danger_carve_out]]\ncidr = \"{net}\"\nports = [{port}]\n")
}

fn destination(dest: &Dest, port: Option<u16>) -> String {
    let host = match dest {
        Dest::Name(name) => name.to_string(),
        Dest::Ip(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
        Dest::Ip(ip) => ip.to_string(),
    };
    match port {
        Some(port) => format!("{host}:{port}"),
        None => format!("{host} (DNS)"),
    }
}

fn seen(seen: &Seen) -> String {
    let times = if seen.count == 1 { "time" } else { "times" };
    let mut text = format!("refused {} {times}", seen.count);
    let sandboxes = seen.sandboxes.len();
    if sandboxes > 1 {
        let _ = write!(text, " in {sandboxes} sandboxes");
    }
    if let (Some(first), Some(last)) = (seen.first.map(time), seen.last.map(time)) {
        if first == last {
            let _ = write!(text, ", at {first}");
        } else {
            let _ = write!(text, ", {first} to {last}");
        }
    }
    text
}

fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}
