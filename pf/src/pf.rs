//! macOS pf anchors: the pf renderer of a [`Plan`].
//!
//! The output keeps to a small subset of pf.conf(5) that the OpenBSD-4.3-era pf of macOS 13–15
//! accepts (see docs/pf.md): comments, `table <name> const { ... }` (continued with `\`), and
//! `block`/`pass` rules of the form
//! `ACTION out quick inet|inet6 proto PROTOS from any to DEST [port PORTS] [user UID]`.
//! No `match`, no `*-to` translations, no `received-on`; `user` never appears on an ICMP rule.

use std::fmt::Write;

use crate::plan::host_or_net;
use crate::{BlockPolicy, Dest, Family, Icmp, IcmpScope, Plan, Rule, TableEntry, Verdict};

/// The default anchor: stock macOS `/etc/pf.conf` evaluates `anchor "com.apple/*"`, so rules
/// loaded there take effect without editing pf.conf.
pub const DEFAULT_ANCHOR: &str = "com.apple/egressd";

const TABLE4: &str = "egressd_special4";
const TABLE6: &str = "egressd_special6";

/// Checks an anchor name against pf's grammar: `/`-separated segments of letters, digits, `_`,
/// `-` and `.`; no empty segment, no `..`; not starting with `_` (reserved by pf).
pub fn check_anchor(name: &str) -> Result<(), crate::Error> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('_')
        && name.split('/').all(|segment| {
            !segment.is_empty()
                && segment != ".."
                && segment != "."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(crate::Error::Anchor(name.to_owned()))
    }
}

/// Renders `plan` as an anchor for `anchor` (whose name goes into the instructions).
pub fn render(plan: &Plan, anchor: &str) -> String {
    let mut out = String::new();
    for line in &plan.about {
        let _ = writeln!(out, "# {line}");
    }
    if plan.icmp == Icmp::Closed {
        let _ = writeln!(
            out,
            "# icmp:   NOT closed by this anchor: pf matches no ICMP by user. The job's sandbox-exec\n\
             #         section (egressd sbpl) refuses its ICMP but to loopback (docs/pf.md)."
        );
    } else {
        let _ = writeln!(out, "# icmp:   open (--allow-icmp).");
    }
    let _ = writeln!(
        out,
        "# other:  IP protocols but TCP and UDP (SCTP, raw IP...) NOT closed by user: pf's `user`\n\
         #         matches TCP and UDP only. macOS gives a non-root user no raw or SCTP socket\n\
         #         (ICMP only, refused by the sandbox-exec section's (deny network-outbound))."
    );
    let host_wide = plan
        .sections
        .iter()
        .flat_map(|s| &s.rules)
        .any(|r| r.icmp == Some(IcmpScope::HostEcho));
    if host_wide {
        let _ = writeln!(
            out,
            "# host:   --block-icmp: ICMP echo requests to the special ranges are refused for EVERY\n\
             #         user of this host, not only this one (loopback excepted)."
        );
    }
    let a = anchor;
    let _ = write!(
        out,
        "#\n\
         # Load:    sudo pfctl -a {a} -f THIS_FILE\n\
         # Verify:  sudo pfctl -a {a} -sr\n"
    );
    if plan.uses_tables {
        let _ = writeln!(out, "#          sudo pfctl -a {a} -t {TABLE4} -T show");
    }
    let _ = write!(
        out,
        "# Enable:  sudo pfctl -E       (prints a token; pf stays enabled while any token is held)\n\
         # Release: sudo pfctl -X TOKEN (never `pfctl -d`: it disables pf for everything that uses it)\n\
         # Remove:  sudo pfctl -a {a} -F all\n"
    );
    if plan.uses_tables {
        table(&mut out, TABLE4, &plan.special4);
        table(&mut out, TABLE6, &plan.special6);
    }
    for section in &plan.sections {
        let _ = writeln!(out, "\n# {}", section.comment);
        let mut last = String::new();
        for rule in &section.rules {
            // The comment that stands for an ICMP rule pf cannot write is said once, not per family.
            let line = rule_line(rule, plan);
            if line != last {
                let _ = writeln!(out, "{line}");
            }
            last = line;
        }
    }
    out
}

fn table(out: &mut String, name: &str, entries: &[TableEntry]) {
    let _ = writeln!(
        out,
        "\n# Special ranges from egressd's built-in list (docs/policy.md):"
    );
    for entry in entries {
        let _ = writeln!(out, "#   {:<24} {}", entry.net.to_string(), entry.label());
    }
    let _ = writeln!(out, "table <{name}> const {{ \\");
    for (i, entry) in entries.iter().enumerate() {
        let sep = if i + 1 == entries.len() { "" } else { "," };
        let _ = writeln!(out, "    {}{sep} \\", entry.net);
    }
    let _ = writeln!(out, "}}");
}

fn rule_line(rule: &Rule, plan: &Plan) -> String {
    let action = match (rule.verdict, plan.block) {
        (Verdict::Pass, _) => "pass",
        (Verdict::Block, BlockPolicy::Return) => "block return",
        (Verdict::Block, BlockPolicy::Drop) => "block drop",
    };
    let (af, table, icmp) = match rule.family {
        Family::V4 => ("inet", TABLE4, "proto icmp icmp-type echoreq"),
        Family::V6 => ("inet6", TABLE6, "proto icmp6 icmp6-type echoreq"),
    };
    let to = match &rule.dest {
        Dest::Net(net) => host_or_net(net),
        Dest::Special => format!("<{table}>"),
        Dest::Any => "any".to_owned(),
    };
    if rule.icmp == Some(IcmpScope::Subject) {
        return "# (none: pf's `user` matches TCP and UDP only; the sandbox-exec section refuses it)"
            .to_owned();
    }
    if rule.other_protocols {
        return "# (none: pf's `user` matches TCP and UDP only; on macOS a non-root user has no other)"
            .to_owned();
    }
    if rule.icmp == Some(IcmpScope::HostEcho) {
        // pf's `user` matches sockets of TCP and UDP only: an ICMP rule is host-wide, and loopback
        // is excepted so the host can still ping itself.
        let except = host_or_net(&rule.family.loopback());
        return format!(
            "pass out quick {af} {icmp} from any to {except}\n{action} out quick {af} {icmp} from any to {to}"
        );
    }
    let proto = if rule.udp {
        "proto { tcp udp }"
    } else {
        "proto tcp"
    };
    let ports = rule
        .port_list(":", " ")
        .map(|list| format!(" port {{ {list} }}"))
        .unwrap_or_default();
    format!(
        "{action} out quick {af} {proto} from any to {to}{ports} user {}",
        plan.uid
    )
}
