//! Policy errors: every one names the file, the line and column, what is wrong, and what would be
//! valid.

use std::fmt;

use crate::headers::HeaderError;
use crate::inspect::{PathGlobError, PlaceholderError};
use crate::name::{NameError, PatternError};
use crate::ports::PortsError;

/// One problem in a policy file, with its position.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}:{column}: {kind}")]
pub struct PolicyError {
    /// The file name (or `<built-in>`) as given to the parser.
    pub origin: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong.
    pub kind: ErrorKind,
}

/// What is wrong, without the position.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// TOML syntax, an unknown key or a value of the wrong type, as the TOML reader words it.
    #[error("{0}")]
    Toml(String),
    /// `version` is not one this build reads.
    #[error("unsupported policy version {0}; this egressd reads version 1")]
    Version(i64),
    /// `defaults.mode` is neither `enforce` nor `report`.
    #[error("invalid mode {0:?}: write \"enforce\" (the default) or \"report\"")]
    Mode(String),
    /// A `defaults.deny_message` that cannot be shown as plain text.
    #[error("invalid deny_message: {0}")]
    DenyMessage(&'static str),
    /// A rule with both or neither of `host` and `cidr`.
    #[error("a rule needs exactly one of `host = \"NAME\"` or `cidr = \"NET/LEN\"`")]
    RuleShape,
    /// A carve-out written with `host`.
    #[error(
        "a carve-out opens addresses, not names: write `cidr = \"NET/LEN\"` and `ports = [...]`"
    )]
    CarveOutHost,
    /// A bad host pattern.
    #[error("invalid host pattern {pattern:?}: {error}")]
    Host {
        /// As written.
        pattern: String,
        /// Why.
        error: PatternError,
    },
    /// An `[[allow]]` wildcard over a public suffix (`*.com`, `*.co.uk`, `*.github.io`): every
    /// name below it belongs to someone else.
    #[error(
        "\"*.{suffix}\" allows every name below the public suffix \"{suffix}\", whose names are registered by unrelated owners: name the hosts (or `*.DOMAIN` of a domain you trust), or add `danger_public_suffix_wildcard = true` to the rule if you mean it"
    )]
    PublicSuffixWildcard {
        /// The suffix, as canonicalized.
        suffix: String,
    },
    /// `danger_public_suffix_wildcard` on a rule it does not apply to.
    #[error(
        "`danger_public_suffix_wildcard` is only for an [[allow]] rule whose host is a wildcard (\"*.SUFFIX\")"
    )]
    PublicSuffixKeyMisplaced,
    /// A bad CIDR.
    #[error(
        "invalid CIDR {text:?}: write an IPv4 or IPv6 network such as \"192.0.2.0/24\" or \"2001:db8::/32\""
    )]
    Cidr {
        /// As written.
        text: String,
    },
    /// A CIDR with host bits set (`10.0.0.1/8`): almost always a typo.
    #[error("CIDR {text:?} has host bits set; did you mean \"{network}\"?")]
    CidrHostBits {
        /// As written.
        text: String,
        /// The network it truncates to.
        network: String,
    },
    /// A bad `ports` value.
    #[error("invalid ports: {0}")]
    Ports(#[from] PortsError),
    /// A carve-out without an explicit port list.
    #[error(
        "a carve-out must list its ports explicitly (not \"any\"): carve-outs are narrow by design"
    )]
    CarveOutPorts,
    /// A carve-out wider than allowed.
    #[error(
        "carve-out {net} is too broad; the widest allowed is /{max} for {family}: name the hosts or subnet you need"
    )]
    CarveOutTooBroad {
        /// As written.
        net: String,
        /// The smallest prefix length accepted.
        max: u8,
        /// IPv4 or IPv6.
        family: &'static str,
    },
    /// A carve-out that opens nothing special.
    #[error(
        "carve-out {0} covers no special range; reach public addresses with an [[allow]] rule instead"
    )]
    CarveOutUseless(String),
    /// A bad attribution header.
    #[error("invalid header: {0}")]
    Header(#[from] HeaderError),
    /// A bad upstream resolver address.
    #[error(
        "invalid DNS upstream {0:?}: write an IP address with an optional port, such as \"127.0.0.1:53\" or \"[::1]:53\""
    )]
    Upstream(String),
    /// A bad static record name.
    #[error("invalid static record name {name:?}: {error}")]
    StaticName {
        /// As written.
        name: String,
        /// Why.
        error: NameError,
    },
    /// A bad static record address.
    #[error("invalid static record address {0:?}: write IPv4 or IPv6 addresses")]
    StaticAddr(String),
    /// A static record with no addresses.
    #[error("static record {0:?} lists no addresses")]
    StaticEmpty(String),
    /// `inspect`, `methods` or `paths` on a `[[deny]]` rule or a carve-out.
    #[error(
        "`{key}` is only for [[allow]] rules: a [[{table}]] rule never lets a connection through to inspect"
    )]
    InspectNotAllow {
        /// The key.
        key: &'static str,
        /// The rule's table.
        table: &'static str,
    },
    /// `inspect`, `methods` or `paths` on a CIDR rule.
    #[error(
        "`{key}` needs a host rule (`host = \"NAME\"`): TLS is inspected per name, and a CIDR rule's IP literals have none"
    )]
    InspectCidr {
        /// The key.
        key: &'static str,
    },
    /// `methods` or `paths` on a rule that is not inspected.
    #[error(
        "`{key}` needs `inspect = true` on the same rule: without it the connection is an opaque tunnel whose requests egressd cannot see"
    )]
    RequestRuleWithoutInspect {
        /// The key.
        key: &'static str,
    },
    /// `methods = []` or `paths = []`.
    #[error("`{key}` is empty, which would refuse every request; leave it out to allow any {what}")]
    EmptyList {
        /// The key.
        key: &'static str,
        /// What it lists.
        what: &'static str,
    },
    /// A method that is not an upper-case HTTP token.
    #[error(
        "invalid method {0:?}: write an upper-case HTTP method such as \"GET\" or \"POST\" (methods are case-sensitive)"
    )]
    Method(String),
    /// A bad path glob.
    #[error(
        "invalid path glob {glob:?}: {error}; write e.g. \"/v1/*\" (`*` matches any run, '/' included)"
    )]
    PathGlob {
        /// As written.
        glob: String,
        /// Why.
        error: PathGlobError,
    },
    /// A credential whose host no inspected allow rule covers.
    #[error(
        "credential host {0:?} is not covered by an [[allow]] rule with `inspect = true`: egressd can only put the value into requests it inspects"
    )]
    CredentialNotInspected(String),
    /// A credential with both or neither of `value_file` and `value_env`.
    #[error(
        "a credential needs exactly one of `value_file = \"PATH\"` or `value_env = \"NAME\"` (where egressd reads the real value)"
    )]
    CredentialSource,
    /// A bad `value_env` name.
    #[error(
        "invalid environment variable name {0:?}: write a name such as \"GITHUB_TOKEN\" (no '=', no NUL, not empty)"
    )]
    CredentialEnv(String),
    /// An empty `value_file`.
    #[error("`value_file` is empty: write the path of the file holding the real value")]
    CredentialFile,
    /// A bad credential header.
    #[error("invalid credential header: {0}")]
    CredentialHeader(HeaderError),
    /// A bad placeholder.
    #[error("invalid credential placeholder: {0}")]
    Placeholder(#[from] PlaceholderError),
    /// Two credentials for the same host and header.
    #[error(
        "a credential for host {host:?} and header {header:?} is already defined on line {line}"
    )]
    CredentialDuplicate {
        /// The host as written.
        host: String,
        /// The header as written.
        header: String,
        /// The first one's line.
        line: usize,
    },
}

/// Every problem found in one policy file, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// Turns byte offsets into 1-based line and column numbers.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self { text }
    }

    /// Line and column of byte `offset`; offsets past the end or inside a character are clamped.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        let index = LineIndex::new("ab\ncdé\nf");
        assert_eq!(index.position(0), (1, 1));
        assert_eq!(index.position(3), (2, 1));
        assert_eq!(index.position(7), (2, 4));
        assert_eq!(index.position(8), (3, 1));
        assert_eq!(index.position(99), (3, 2));
        assert_eq!(index.position(6), (2, 3));
    }
}
