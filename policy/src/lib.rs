//! egressd's policy model: one answer to "may this sandbox reach this destination, and why?".
//!
//! The proxy, the DNS stub and the generated host-firewall rules all ask this crate, so they cannot
//! disagree. It is pure: it parses text it is handed and answers questions, with no I/O, no async
//! runtime and no global state. It does not resolve names: callers resolve an allowed name and pass
//! every address back through [`Policy::check_resolved`].
//!
//! ```
//! use policy::{Policy, Target, Verdict};
//!
//! let policy = Policy::parse(r#"
//!     version = 1
//!     [defaults]
//!     action = "deny"
//!
//!     [[allow]]
//!     host = "*.githubusercontent.com"
//!     ports = [443]
//!     danger_public_suffix_wildcard = true # a public suffix: users' content
//! "#, "example.toml")?;
//!
//! let target = Target::parse_authority("raw.githubusercontent.com:443")?;
//! let decision = policy.decide(&target);
//! assert_eq!(decision.verdict(), Verdict::Allow);
//! assert_eq!(decision.rule.as_ref().map(|r| r.line), Some(7));
//!
//! // The name is allowed, but an address it resolves to in a private range is not.
//! let resolved = policy.check_resolved(&decision, "10.0.0.7".parse()?, 443);
//! assert_eq!(resolved.reason.code(), "special-range");
//!
//! // Denied names are never worth resolving.
//! let other = policy.decide(&Target::parse_authority("example.org:443")?);
//! assert_eq!(other.verdict(), Verdict::Deny);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod addr;
mod decide;
mod error;
mod headers;
mod inspect;
mod model;
mod name;
mod parse;
mod ports;
mod ranges;
mod report;
#[cfg(feature = "schema")]
mod schema;
mod suggestion;
mod target;

pub use addr::{Embedding, embedded_ipv4};
pub use decide::{CarveOut, Decision, Reason, Verdict};
pub use error::{ErrorKind, PolicyError, PolicyErrors};
pub use headers::{HeaderError, HeaderTemplate, HeaderVars};
pub use inspect::{
    CredentialRule, Inspection, METHOD_OVERRIDE_HEADERS, MIN_PLACEHOLDER_LEN, PathGlob,
    PathGlobError, PlaceholderError, RequestMiss, ValueSource,
};
pub use model::{Action, DnsSettings, Matcher, Mode, Policy, Rule, RuleKind, RuleLabel};
pub use name::{DomainName, HostPattern, NameError, PatternError};
pub use ports::{PortItem, PortSet, PortsError};
pub use ranges::{SPECIAL_RANGES, SpecialMatch, SpecialRange, classify, denied_networks};
#[cfg(feature = "schema")]
pub use schema::json_schema;
pub use suggestion::{Change, RuleKey, Suggestion, allow_rule_toml};
pub use target::{Host, Target, TargetError};

/// The built-in default policy's text, used when egressd is given no policy file: every public
/// destination on any port, and none of the special ranges.
pub const BUILTIN_POLICY: &str = include_str!("builtin.toml");

/// The name the built-in policy reports as its origin.
pub const BUILTIN_ORIGIN: &str = "<built-in>";

impl Policy {
    /// Parses and validates a policy. `origin` names the source in error messages (a path, or
    /// anything that helps a reader find the text). On failure, every problem found is returned,
    /// each with its line and column.
    pub fn parse(text: &str, origin: &str) -> Result<Self, PolicyErrors> {
        parse::parse(text, origin)
    }

    /// The built-in default policy.
    pub fn builtin() -> Self {
        // The built-in text is a constant of this crate and a unit test parses it, so this cannot
        // fail at run time.
        #[allow(clippy::expect_used)]
        Self::parse(BUILTIN_POLICY, BUILTIN_ORIGIN).expect("the built-in policy is valid")
    }
}

#[cfg(test)]
mod tests;
