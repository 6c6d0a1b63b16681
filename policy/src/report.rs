//! Report mode (`defaults.mode = "report"`): which refusals are let through to be recorded.
//!
//! A policy in report mode decides exactly as in enforce mode ([`Policy::decide`] does not change);
//! the proxy and the DNS stub then ask here whether a refusal may pass. Only refusals that an
//! `[[allow]]` rule or a narrower `[[deny]]` rule could undo are let through (`deny-rule`,
//! `default-deny`, `port-not-allowed`): those are what a policy is learned from. Never a
//! malformed target (there is nothing to learn: no rule can name it), and never an address in a
//! special range that no carve-out opens on the port, whatever the rule that refused it first:
//! report mode is not a way to reach the LAN, loopback or the metadata service.
//!
//! | refusal | report mode |
//! |---|---|
//! | `deny-rule`, `default-deny`, `port-not-allowed` | let through, audited `would-deny` / `would-refuse` |
//! | the same, for an IP (literal or resolved) in a special range no carve-out opens | refused |
//! | `special-range` | refused |
//! | `malformed-target` | refused |

use std::net::IpAddr;

use crate::decide::{Decision, Reason};
use crate::model::{Mode, Policy};
use crate::ranges::classify;
use crate::target::{Host, Target};

impl Policy {
    /// True when this policy is in report mode and `decision` is a refusal report mode lets
    /// through, as far as the name goes: `deny-rule`, `default-deny` or `port-not-allowed`. For an
    /// address, ask [`Policy::reports_address`], which also keeps the special ranges shut.
    pub fn reports(&self, decision: &Decision) -> bool {
        self.mode == Mode::Report
            && !decision.is_allowed()
            && matches!(
                decision.reason,
                Reason::DenyRule | Reason::DefaultDeny | Reason::PortNotAllowed { .. }
            )
    }

    /// [`Policy::reports`] for a connection to `addr` on `port` (an IP literal, or an address a
    /// name resolved to): also false when `addr` is in a special range that no carve-out opens on
    /// `port`, even when a deny rule refused it first.
    pub fn reports_address(&self, decision: &Decision, addr: IpAddr, port: u16) -> bool {
        self.reports(decision) && self.opens(addr, port)
    }

    /// [`Policy::reports`] for a destination as named: for an IP literal, its address must be
    /// reachable too ([`Policy::reports_address`]); a name's addresses are judged once resolved.
    pub fn reports_target(&self, target: &Target, decision: &Decision) -> bool {
        match &target.host {
            Host::Name(_) => self.reports(decision),
            Host::Ip(ip) => self.reports_address(decision, *ip, target.port),
            Host::Malformed(_) => false,
        }
    }

    /// True when `addr` is outside the special ranges, or a carve-out opens it on `port`.
    fn opens(&self, addr: IpAddr, port: u16) -> bool {
        classify(addr).is_none()
            || self
                .carve_outs
                .iter()
                .any(|rule| rule.contains_addr(addr) && rule.ports.contains(port))
    }
}

#[cfg(test)]
mod tests {
    use crate::{Mode, Policy, Target};

    const POLICY: &str = r#"
version = 1
[defaults]
action = "deny"
mode = "report"
ports = [443]

[[allow]]
host = "allowed.test"
ports = [443]

[[deny]]
host = "denied.test"

[[deny]]
cidr = "10.0.0.0/8"

[[deny]]
cidr = "203.0.112.0/24"

[[danger_carve_out]]
cidr = "10.1.0.0/16"
ports = [5432]
"#;

    /// (target, enforce verdict code, let through in report mode)
    const CASES: &[(&str, &str, bool)] = &[
        ("allowed.test:443", "allow-rule", false),
        ("allowed.test:80", "port-not-allowed", true),
        ("other.test:443", "default-deny", true),
        ("denied.test:443", "deny-rule", true),
        ("203.0.112.9:443", "deny-rule", true),
        ("8.8.8.8:443", "default-deny", true),
        // A deny rule decides first, but the address is private: it stays shut...
        ("10.2.0.1:443", "deny-rule", false),
        // ...unless a carve-out opens it on this port.
        ("10.1.0.1:5432", "deny-rule", true),
        ("10.1.0.1:22", "deny-rule", false),
        ("169.254.169.254:80", "special-range", false),
        ("127.0.0.1:8080", "special-range", false),
        ("[::ffff:169.254.169.254]:80", "special-range", false),
        ("0177.0.0.1:80", "malformed-target", false),
    ];

    #[test]
    fn report_mode_lets_through_what_a_rule_could_open_and_nothing_special() {
        let policy = Policy::parse(POLICY, "report.toml").unwrap();
        assert_eq!(policy.mode(), Mode::Report);
        for &(target, code, through) in CASES {
            let target = Target::parse_loose(target, 443).unwrap();
            let decision = policy.decide(&target);
            assert_eq!(decision.reason.code(), code, "{target}");
            assert_eq!(
                policy.reports_target(&target, &decision),
                through,
                "{target}: {decision}"
            );
        }
    }

    #[test]
    fn resolved_addresses_in_special_ranges_stay_shut() {
        let policy = Policy::parse(POLICY, "report.toml").unwrap();
        let name = policy.decide(&Target::parse_authority("other.test:443").unwrap());
        assert!(policy.reports(&name));
        assert!(policy.reports_address(&name, "93.184.215.14".parse().unwrap(), 443));
        assert!(!policy.reports_address(&name, "192.168.1.1".parse().unwrap(), 443));
        assert!(!policy.reports_address(&name, "::1".parse().unwrap(), 443));
    }

    #[test]
    fn enforce_mode_reports_nothing() {
        let policy = Policy::parse(POLICY, "report.toml")
            .unwrap()
            .with_mode(Mode::Enforce);
        for &(target, _, _) in CASES {
            let target = Target::parse_loose(target, 443).unwrap();
            assert!(!policy.reports_target(&target, &policy.decide(&target)));
        }
        let default = Policy::parse("version = 1\n", "t").unwrap();
        assert_eq!(default.mode(), Mode::Enforce);
        assert_eq!(default.deny_message(), None);
    }

    #[test]
    fn deny_message_is_kept_as_written() {
        let policy = Policy::parse(
            "version = 1\n[defaults]\ndeny_message = \"Ask #infra.\\nTicket: INFRA-1\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(policy.deny_message(), Some("Ask #infra.\nTicket: INFRA-1"));
    }
}
