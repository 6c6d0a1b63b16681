//! The validated policy: what [`crate::Policy::parse`] builds and every other crate reads.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

use crate::headers::HeaderTemplate;
use crate::inspect::{CredentialRule, Inspection};
use crate::name::{DomainName, HostPattern};
use crate::ports::PortSet;

/// What happens to a destination no rule names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Let it through (the special ranges stay shut).
    Allow,
    /// Refuse it: a strict allowlist.
    Deny,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        })
    }
}

/// How a policy is applied: enforced, or only reported (docs/policy.md, "Report mode").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Refusals are enforced: the default.
    #[default]
    Enforce,
    /// What the policy refuses by a rule or its default is let through and audited as
    /// `would-deny` (`would-refuse` in DNS); special ranges and malformed targets stay refused.
    Report,
}

impl Mode {
    /// `enforce` or `report`, as written in the policy and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Report => "report",
        }
    }

    /// Reads `enforce` or `report`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "enforce" => Some(Self::Enforce),
            "report" => Some(Self::Report),
            _ => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which list a rule belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleKind {
    /// `[[allow]]`
    Allow,
    /// `[[deny]]`
    Deny,
    /// `[[danger_carve_out]]`
    CarveOut,
}

impl RuleKind {
    /// The TOML table name.
    pub fn table(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::CarveOut => "danger_carve_out",
        }
    }
}

/// What a rule matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Matcher {
    /// Host names.
    Host(HostPattern),
    /// Addresses: IP literals and, for deny rules and carve-outs, resolved addresses.
    Cidr(IpNet),
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Host(pattern) => write!(f, "host \"{pattern}\""),
            Self::Cidr(net) => write!(f, "cidr \"{net}\""),
        }
    }
}

/// One rule of a policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Which list.
    pub kind: RuleKind,
    /// 0-based position within that list.
    pub index: usize,
    /// 1-based line of the rule's `host` or `cidr` key in the file.
    pub line: usize,
    /// What it matches.
    pub matcher: Matcher,
    /// Which ports.
    pub ports: PortSet,
    /// Set on `[[allow]]` host rules with `inspect = true`: TLS to these names is terminated and
    /// every request inside is checked against these request rules. `None`: an opaque tunnel.
    pub inspect: Option<Inspection>,
}

impl Rule {
    /// Short label for headers and logs: `allow[0] line 9`. Formatted where it is written, so an
    /// audit event pays no allocation for it.
    pub fn label(&self) -> RuleLabel<'_> {
        RuleLabel(self)
    }

    /// True when `addr` is in this rule's network, directly or as the IPv4 address it carries.
    pub(crate) fn contains_addr(&self, addr: IpAddr) -> bool {
        match &self.matcher {
            Matcher::Cidr(net) => {
                net.contains(&addr)
                    || match addr {
                        IpAddr::V6(v6) => crate::addr::embedded_ipv4(v6)
                            .is_some_and(|(v4, _)| net.contains(&IpAddr::V4(v4))),
                        IpAddr::V4(_) => false,
                    }
            }
            Matcher::Host(_) => false,
        }
    }
}

/// A rule's short label; see [`Rule::label`].
#[derive(Clone, Copy, Debug)]
pub struct RuleLabel<'a>(&'a Rule);

impl fmt::Display for RuleLabel<'_> {
    /// `allow[0] line 9`, written in pieces: an audit event carries it for every request, and
    /// the pieces cost a fraction of a `write!`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.kind.table())?;
        f.write_str("[")?;
        write_decimal(f, self.0.index)?;
        f.write_str("] line ")?;
        write_decimal(f, self.0.line)
    }
}

/// `n` in decimal, as `{}` writes it.
fn write_decimal(f: &mut fmt::Formatter<'_>, mut n: usize) -> fmt::Result {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        // A digit: `n % 10` is below 10.
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits are UTF-8.
    f.write_str(std::str::from_utf8(&digits[start..]).unwrap_or_default())
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}] at line {}: {}, ports {}",
            self.kind.table(),
            self.index,
            self.line,
            self.matcher,
            self.ports
        )?;
        if self.inspect.is_some() {
            f.write_str(", inspected")?;
        }
        Ok(())
    }
}

/// Settings for the DNS stub and the proxy's resolver.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsSettings {
    /// Resolvers to ask for allowed names. Empty: the host's resolver configuration.
    pub upstreams: Vec<SocketAddr>,
    /// Names answered locally, never sent upstream.
    pub static_records: BTreeMap<DomainName, Vec<IpAddr>>,
}

/// Host rules of one list, indexed so a lookup costs a few hash probes, not a scan.
#[derive(Clone, Debug, Default)]
pub(crate) struct HostIndex {
    exact: HashMap<String, Vec<usize>>,
    below: HashMap<String, Vec<usize>>,
    cidr: Vec<usize>,
}

impl HostIndex {
    pub(crate) fn build(rules: &[Arc<Rule>]) -> Self {
        let mut index = Self::default();
        for (i, rule) in rules.iter().enumerate() {
            match &rule.matcher {
                Matcher::Host(HostPattern::Exact(name)) => {
                    index
                        .exact
                        .entry(name.as_str().to_owned())
                        .or_default()
                        .push(i);
                }
                Matcher::Host(HostPattern::Below(suffix)) => {
                    index
                        .below
                        .entry(suffix.as_str().to_owned())
                        .or_default()
                        .push(i);
                }
                Matcher::Cidr(_) => index.cidr.push(i),
            }
        }
        index
    }

    /// Positions of the host rules whose pattern matches `name`, in no particular order.
    pub(crate) fn name_candidates<'a>(
        &'a self,
        name: &'a DomainName,
    ) -> impl Iterator<Item = usize> + 'a {
        let exact = self.exact.get(name.as_str()).into_iter().flatten();
        let below = name
            .parents()
            .filter_map(|parent| self.below.get(parent))
            .flatten();
        exact.chain(below).copied()
    }

    /// Positions of the CIDR rules, in file order.
    pub(crate) fn cidr_rules(&self) -> &[usize] {
        &self.cidr
    }
}

/// A validated policy. Build one with [`crate::Policy::parse`] or [`crate::Policy::builtin`].
#[derive(Clone, Debug)]
pub struct Policy {
    pub(crate) origin: String,
    pub(crate) digest: String,
    pub(crate) default_action: Action,
    pub(crate) default_ports: PortSet,
    pub(crate) mode: Mode,
    pub(crate) deny_message: Option<String>,
    pub(crate) refusals_inside_tls: bool,
    pub(crate) allow: Vec<Arc<Rule>>,
    pub(crate) deny: Vec<Arc<Rule>>,
    pub(crate) carve_outs: Vec<Arc<Rule>>,
    pub(crate) allow_index: HostIndex,
    pub(crate) deny_index: HostIndex,
    pub(crate) headers: Vec<HeaderTemplate>,
    pub(crate) dns: DnsSettings,
    pub(crate) credentials: Vec<Arc<CredentialRule>>,
}

impl Policy {
    /// Where the policy came from, as given to the parser.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// SHA-256 of the policy text, in hex: the same as `sha256sum` prints for the file.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The default action.
    pub fn default_action(&self) -> Action {
        self.default_action
    }

    /// Ports that rules without `ports` and the default action apply to.
    pub fn default_ports(&self) -> &PortSet {
        &self.default_ports
    }

    /// How the policy is applied: `defaults.mode`, or what [`Policy::with_mode`] set.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The same policy applied in `mode` (`egressd run --mode`, which wins over the file's).
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// `defaults.deny_message`: the policy's own text for the body of every refusal.
    pub fn deny_message(&self) -> Option<&str> {
        self.deny_message.as_deref()
    }

    /// `[[allow]]` rules in file order.
    pub fn allow_rules(&self) -> &[Arc<Rule>] {
        &self.allow
    }

    /// `[[deny]]` rules in file order.
    pub fn deny_rules(&self) -> &[Arc<Rule>] {
        &self.deny
    }

    /// `[[danger_carve_out]]` rules in file order.
    pub fn carve_outs(&self) -> &[Arc<Rule>] {
        &self.carve_outs
    }

    /// Attribution headers, sorted by name.
    pub fn headers(&self) -> &[HeaderTemplate] {
        &self.headers
    }

    /// DNS settings.
    pub fn dns(&self) -> &DnsSettings {
        &self.dns
    }

    /// `[[credential]]` entries in file order.
    pub fn credentials(&self) -> &[Arc<CredentialRule>] {
        &self.credentials
    }

    /// `defaults.refusals_inside_tls`: a refused CONNECT to any name is answered inside TLS, not
    /// only to names an inspected rule covers ([`Policy::inspects_name`]).
    pub fn refusals_inside_tls(&self) -> bool {
        self.refusals_inside_tls
    }

    /// True when an `[[allow]]` rule with `inspect = true` names `name` (on any port): its
    /// clients trust egressd's CA for it, so a refusal can be answered inside TLS.
    pub fn inspects_name(&self, name: &DomainName) -> bool {
        self.allow_index
            .name_candidates(name)
            .any(|i| self.allow[i].inspect.is_some())
    }

    /// True when some `[[allow]]` rule has `inspect = true`: egressd needs its CA.
    pub fn inspects(&self) -> bool {
        self.allow.iter().any(|rule| rule.inspect.is_some())
    }
}

/// SHA-256 of `text`, as lower-case hex.
pub(crate) fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_labels_read_as_written() {
        for (kind, index, line, want) in [
            (RuleKind::Allow, 0, 9, "allow[0] line 9"),
            (RuleKind::Deny, 10, 1234, "deny[10] line 1234"),
            (
                RuleKind::CarveOut,
                usize::MAX,
                100,
                "danger_carve_out[18446744073709551615] line 100",
            ),
        ] {
            let rule = Rule {
                kind,
                index,
                line,
                matcher: Matcher::Cidr("10.0.0.0/8".parse().unwrap()),
                ports: PortSet::Any,
                inspect: None,
            };
            assert_eq!(rule.label().to_string(), want);
            assert_eq!(format!("{}", rule.label()), want);
        }
    }
}
