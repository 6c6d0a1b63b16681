//! Decisions: may this sandbox reach this destination, and why.
//!
//! The order is fixed and documented in docs/policy.md:
//!
//! | stage | input | check | first hit |
//! |---|---|---|---|
//! | 1 | any target | host is malformed | deny `malformed-target` |
//! | 2 | name | `[[deny]]` host rules (name and port) | deny `deny-rule` |
//! | 2 | IP | `[[deny]]` CIDR rules (address and port) | deny `deny-rule` |
//! | 3 | IP | special ranges, unless a `[[danger_carve_out]]` covers address and port | deny `special-range` |
//! | 4 | name / IP | `[[allow]]` host / CIDR rules, first in file order | allow `allow-rule` |
//! | 5 | name / IP | a rule matched the host but not the port | deny `port-not-allowed` |
//! | 6 | name / IP | `defaults.action` on `defaults.ports` | `default-allow` / `default-deny` / `port-not-allowed` |
//!
//! A name that passes is resolved by the caller, and every resolved address goes through
//! [`Policy::check_resolved`]: stage 2 (CIDR deny rules) and stage 3 (special ranges) again.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::model::{Action, Policy, Rule};
use crate::name::DomainName;
use crate::ports::PortSet;
use crate::ranges::{SpecialMatch, classify};
use crate::target::{Host, Target};

/// Allow or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The connection may be made.
    Allow,
    /// The connection must not be made.
    Deny,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        })
    }
}

/// Why a decision came out as it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The host is neither a valid name nor an IP literal (an ambiguous IPv4 spelling included).
    MalformedTarget {
        /// What is wrong with it.
        why: String,
    },
    /// A `[[deny]]` rule matched (see [`Decision::rule`]).
    DenyRule,
    /// An `[[allow]]` rule matched (see [`Decision::rule`]).
    AllowRule,
    /// A rule named the host but not this port, or the default action does not cover it.
    PortNotAllowed {
        /// The port asked for.
        port: u16,
    },
    /// No rule named the destination and `defaults.action = "allow"`.
    DefaultAllow,
    /// No rule named the destination and `defaults.action = "deny"`.
    DefaultDeny,
    /// The address is in a built-in special range.
    SpecialRange {
        /// The address judged.
        addr: IpAddr,
        /// The range, and the embedding if the address carried IPv4.
        special: SpecialMatch,
    },
}

impl Reason {
    /// Allow or deny.
    pub fn verdict(&self) -> Verdict {
        match self {
            Self::AllowRule | Self::DefaultAllow => Verdict::Allow,
            _ => Verdict::Deny,
        }
    }

    /// A stable machine-readable code, used in the proxy's reason header, logs and `--json`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedTarget { .. } => "malformed-target",
            Self::DenyRule => "deny-rule",
            Self::AllowRule => "allow-rule",
            Self::PortNotAllowed { .. } => "port-not-allowed",
            Self::DefaultAllow => "default-allow",
            Self::DefaultDeny => "default-deny",
            Self::SpecialRange { .. } => "special-range",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MalformedTarget { why } => {
                write!(f, "the host is not a valid name or IP address: {why}")
            }
            Self::DenyRule => f.write_str("a deny rule matches"),
            Self::AllowRule => f.write_str("an allow rule matches"),
            Self::PortNotAllowed { port } => write!(f, "port {port} is not allowed for this host"),
            Self::DefaultAllow => f.write_str("no rule names it and the default action is allow"),
            Self::DefaultDeny => f.write_str("no rule names it and the default action is deny"),
            Self::SpecialRange { addr, special } => {
                let range = special.range;
                match special.via {
                    Some((embedding, v4)) => {
                        write!(f, "{addr} ({}) carries {v4}, which", embedding.name())?
                    }
                    None => write!(f, "{addr}")?,
                }
                write!(
                    f,
                    " is in the special range {} ({}, {}: {})",
                    range.net, range.name, range.rfc, range.what
                )
            }
        }
    }
}

/// A special-range address let through by a carve-out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CarveOut {
    /// The `[[danger_carve_out]]` rule.
    pub rule: Arc<Rule>,
    /// The range it opened.
    pub special: SpecialMatch,
}

/// The answer to "may this destination be reached", with the evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Why.
    pub reason: Reason,
    /// The rule that decided, if a rule did.
    pub rule: Option<Arc<Rule>>,
    /// Set when an address in a special range passed through a carve-out.
    pub carve_out: Option<CarveOut>,
}

impl Decision {
    fn new(reason: Reason, rule: Option<&Arc<Rule>>) -> Self {
        Self {
            reason,
            rule: rule.cloned(),
            carve_out: None,
        }
    }

    /// Allow or deny.
    pub fn verdict(&self) -> Verdict {
        self.reason.verdict()
    }

    /// True for allow.
    pub fn is_allowed(&self) -> bool {
        self.verdict() == Verdict::Allow
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.verdict(),
            self.reason.code(),
            self.reason
        )?;
        if let Some(rule) = &self.rule {
            write!(f, "; rule {rule}")?;
        }
        if let Some(carve) = &self.carve_out {
            write!(
                f,
                "; special range {} ({}) opened by {}",
                carve.special.range.net, carve.special.range.name, carve.rule
            )?;
        }
        Ok(())
    }
}

impl Policy {
    /// Decides a destination as the sandbox named it. For a name, this is the decision before
    /// resolution: resolve only if it allows, then pass every address to
    /// [`Policy::check_resolved`]. For an IP literal it is final.
    pub fn decide(&self, target: &Target) -> Decision {
        match &target.host {
            Host::Malformed(_) => {
                let why = target.host.malformed_reason().unwrap_or_default();
                Decision::new(Reason::MalformedTarget { why }, None)
            }
            Host::Name(name) => self.decide_name(name, target.port),
            Host::Ip(ip) => self.decide_ip(*ip, target.port),
        }
    }

    /// Judges one address a name resolved to, given the name's own decision: CIDR deny rules and
    /// the special ranges apply again. A denied name stays denied.
    pub fn check_resolved(&self, name_decision: &Decision, addr: IpAddr, port: u16) -> Decision {
        if !name_decision.is_allowed() {
            return name_decision.clone();
        }
        match self.check_address(addr, port) {
            Err(denied) => denied,
            Ok(carve_out) => Decision {
                carve_out,
                ..name_decision.clone()
            },
        }
    }

    /// May `name` be resolved at all? DNS knows no ports, so this asks whether a connection to
    /// the name could be allowed on some port: a `[[deny]]` host rule denies the name only if it
    /// covers every port; any `[[allow]]` host rule, or `defaults.action = "allow"`, allows it.
    /// The DNS stub answers REFUSED when this denies.
    pub fn decide_resolution(&self, name: &DomainName) -> Decision {
        let deny = self
            .deny_index
            .name_candidates(name)
            .filter(|&i| self.deny[i].ports == PortSet::Any)
            .min();
        if let Some(i) = deny {
            return Decision::new(Reason::DenyRule, Some(&self.deny[i]));
        }
        if let Some(i) = self.allow_index.name_candidates(name).min() {
            return Decision::new(Reason::AllowRule, Some(&self.allow[i]));
        }
        match self.default_action {
            Action::Allow => Decision::new(Reason::DefaultAllow, None),
            Action::Deny => Decision::new(Reason::DefaultDeny, None),
        }
    }

    /// May `addr` appear in a DNS answer for an allowed name? The port-agnostic twin of
    /// [`Policy::check_resolved`]: removed when a `[[deny]]` CIDR rule covering every port
    /// matches it, or when it is in a special range that no carve-out opens (on any port).
    /// `Ok` carries the carve-out that let a special address through, if one did.
    pub fn screen_answer(&self, addr: IpAddr) -> Result<Option<CarveOut>, Decision> {
        self.screen_address(addr, |ports| *ports == PortSet::Any, |_| true)
    }

    /// Judges one address a name resolved to, on `port`: stages 2 and 3 (CIDR deny rules, then
    /// the special ranges and carve-outs). `Ok` carries the carve-out that opened a special
    /// address, if one did. The caller has already decided the name; this is the half of
    /// [`Policy::check_resolved`] that does not need the name's decision again.
    pub fn check_address(&self, addr: IpAddr, port: u16) -> Result<Option<CarveOut>, Decision> {
        self.screen_address(
            addr,
            |ports| ports.contains(port),
            |ports| ports.contains(port),
        )
    }

    fn decide_name(&self, name: &DomainName, port: u16) -> Decision {
        let (deny, _) = first_match(&self.deny, self.deny_index.name_candidates(name), port);
        if let Some(rule) = deny {
            return Decision::new(Reason::DenyRule, Some(rule));
        }
        let (allow, port_miss) =
            first_match(&self.allow, self.allow_index.name_candidates(name), port);
        match allow {
            Some(rule) => Decision::new(Reason::AllowRule, Some(rule)),
            None => self.default_decision(port, port_miss),
        }
    }

    fn decide_ip(&self, ip: IpAddr, port: u16) -> Decision {
        let carve_out = match self.check_address(ip, port) {
            Err(denied) => return denied,
            Ok(carve_out) => carve_out,
        };
        let candidates = self
            .allow_index
            .cidr_rules()
            .iter()
            .copied()
            .filter(|&i| self.allow[i].contains_addr(ip));
        let (allow, port_miss) = first_match(&self.allow, candidates, port);
        let decision = match allow {
            Some(rule) => Decision::new(Reason::AllowRule, Some(rule)),
            None => self.default_decision(port, port_miss),
        };
        Decision {
            carve_out,
            ..decision
        }
    }

    /// CIDR deny rules whose ports satisfy `deny_applies`, then the special ranges, opened by a
    /// carve-out whose ports satisfy `carve_applies`.
    fn screen_address(
        &self,
        addr: IpAddr,
        deny_applies: impl Fn(&PortSet) -> bool,
        carve_applies: impl Fn(&PortSet) -> bool,
    ) -> Result<Option<CarveOut>, Decision> {
        let mut denying = self.deny_index.cidr_rules().iter().map(|&i| &self.deny[i]);
        if let Some(rule) = denying.find(|r| r.contains_addr(addr) && deny_applies(&r.ports)) {
            return Err(Decision::new(Reason::DenyRule, Some(rule)));
        }
        let Some(special) = classify(addr) else {
            return Ok(None);
        };
        match self
            .carve_outs
            .iter()
            .find(|r| r.contains_addr(addr) && carve_applies(&r.ports))
        {
            Some(rule) => Ok(Some(CarveOut {
                rule: rule.clone(),
                special,
            })),
            None => Err(Decision::new(Reason::SpecialRange { addr, special }, None)),
        }
    }

    fn default_decision(&self, port: u16, port_miss: Option<&Arc<Rule>>) -> Decision {
        if let Some(rule) = port_miss {
            return Decision::new(Reason::PortNotAllowed { port }, Some(rule));
        }
        match self.default_action {
            Action::Allow if self.default_ports.contains(port) => {
                Decision::new(Reason::DefaultAllow, None)
            }
            Action::Allow => Decision::new(Reason::PortNotAllowed { port }, None),
            Action::Deny => Decision::new(Reason::DefaultDeny, None),
        }
    }
}

/// Among the rules at `candidates` (positions whose pattern matched), the first in file order
/// whose ports include `port`, and the first whose ports do not.
fn first_match(
    rules: &[Arc<Rule>],
    candidates: impl Iterator<Item = usize>,
    port: u16,
) -> (Option<&Arc<Rule>>, Option<&Arc<Rule>>) {
    let (mut hit, mut miss): (Option<usize>, Option<usize>) = (None, None);
    for i in candidates {
        let slot = if rules[i].ports.contains(port) {
            &mut hit
        } else {
            &mut miss
        };
        *slot = Some(slot.map_or(i, |j| j.min(i)));
    }
    (hit.map(|i| &rules[i]), miss.map(|i| &rules[i]))
}
