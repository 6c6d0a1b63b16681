//! DNS names in one canonical form, and the host patterns that match them.
//!
//! Every name is compared in the form a resolver would send on the wire: lower case, A-labels
//! (punycode) for internationalized labels, no trailing dot. Both sides of a comparison go through
//! [`DomainName::parse`], so `GitHub.COM.`, `github.com` and an IDN in either U-label or A-label
//! form meet as one string. A name that does not survive parsing never matches anything.

use std::fmt;

/// Longest name in presentation form without the trailing dot (RFC 1035 §2.3.4 allows 255 octets
/// on the wire, which is 253 characters of text).
const MAX_NAME_LEN: usize = 253;
/// Longest label (RFC 1035 §2.3.4).
const MAX_LABEL_LEN: usize = 63;

/// A syntactically valid DNS name: lower-case ASCII, A-labels, no trailing dot.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainName(String);

/// Why a text is not a usable DNS name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing, or only a dot.
    #[error("the name is empty")]
    Empty,
    /// `a..b`, `.a`, or two trailing dots.
    #[error("the name has an empty label")]
    EmptyLabel,
    /// The IDNA (UTS #46) mapping refused the name.
    #[error("the name is not a valid internationalized domain name")]
    Idna,
    /// A character other than letters, digits, `-` and `_`.
    #[error("the name contains {0:?}, which DNS names may not (letters, digits, '-', '_' only)")]
    Character(char),
    /// A label that starts or ends with a hyphen.
    #[error("a label starts or ends with '-'")]
    Hyphen,
    /// A label longer than 63 characters.
    #[error("a label is longer than 63 characters")]
    LabelTooLong,
    /// A name longer than 253 characters.
    #[error("the name is longer than 253 characters")]
    TooLong,
}

impl DomainName {
    /// Parses and canonicalizes a name: one trailing dot is ignored, case is folded, Unicode labels
    /// become A-labels (punycode).
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let trimmed = input.strip_suffix('.').unwrap_or(input);
        if trimmed.is_empty() {
            return Err(NameError::Empty);
        }
        let ascii = if trimmed.is_ascii() && !trimmed.contains("xn--") && !trimmed.contains("XN--")
        {
            // Nothing for UTS #46 to map but case; the LDH check names any bad character.
            if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
                std::borrow::Cow::Owned(trimmed.to_ascii_lowercase())
            } else {
                std::borrow::Cow::Borrowed(trimmed)
            }
        } else {
            idna::domain_to_ascii_cow(trimmed.as_bytes(), idna::AsciiDenyList::URL)
                .map_err(|_| NameError::Idna)?
        };
        check_ldh(&ascii)?;
        Ok(Self(ascii.into_owned()))
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `self` lies strictly below `suffix` on a label boundary: `a.b.com` is below
    /// `b.com`; `b.com` is not below itself and `xb.com` is not below `b.com`.
    pub fn is_below(&self, suffix: &DomainName) -> bool {
        let (name, suffix) = (self.0.as_bytes(), suffix.0.as_bytes());
        name.len() > suffix.len()
            && name.ends_with(suffix)
            && name[name.len() - suffix.len() - 1] == b'.'
    }

    /// The names strictly above this one, nearest first: `a.b.com` yields `b.com`, `com`.
    pub(crate) fn parents(&self) -> impl Iterator<Item = &str> {
        self.0.match_indices('.').map(|(i, _)| &self.0[i + 1..])
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_ldh(name: &str) -> Result<(), NameError> {
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(NameError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(NameError::LabelTooLong);
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(NameError::Hyphen);
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
        {
            return Err(NameError::Character(c));
        }
    }
    Ok(())
}

/// A host rule's pattern: one exact name, or every name strictly below a suffix (`*.suffix`).
///
/// | pattern              | matches                        | does not match          |
/// |----------------------|--------------------------------|-------------------------|
/// | `github.com`         | `github.com`, `GitHub.com.`    | `api.github.com`        |
/// | `*.github.com`       | `api.github.com`, `a.b.github.com` | `github.com`, `xgithub.com` |
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Exactly this name.
    Exact(DomainName),
    /// Any name with at least one more label in front of this suffix.
    Below(DomainName),
}

/// Why a host pattern in a policy is not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The name part is not a valid name.
    #[error(transparent)]
    Name(#[from] NameError),
    /// `*` somewhere other than as the whole first label.
    #[error("'*' is only allowed as the whole leftmost label, as in \"*.example.com\"")]
    WildcardPlacement,
    /// A bare `*`.
    #[error("a bare \"*\" would match every name; set `defaults.action` instead")]
    MatchesEverything,
}

impl HostPattern {
    /// Parses `name` or `*.suffix`.
    pub fn parse(input: &str) -> Result<Self, PatternError> {
        if input == "*" || input == "*." {
            return Err(PatternError::MatchesEverything);
        }
        match input.strip_prefix("*.") {
            Some(rest) if !rest.contains('*') => Ok(Self::Below(DomainName::parse(rest)?)),
            Some(_) => Err(PatternError::WildcardPlacement),
            None if input.contains('*') => Err(PatternError::WildcardPlacement),
            None => Ok(Self::Exact(DomainName::parse(input)?)),
        }
    }

    /// True when `name` matches this pattern.
    pub fn matches(&self, name: &DomainName) -> bool {
        match self {
            Self::Exact(exact) => exact == name,
            Self::Below(suffix) => name.is_below(suffix),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => write!(f, "{name}"),
            Self::Below(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> DomainName {
        DomainName::parse(s).unwrap()
    }

    #[test]
    fn canonical_forms_meet() {
        let cases = [
            ("GitHub.COM", "github.com"),
            ("github.com.", "github.com"),
            ("bücher.example", "xn--bcher-kva.example"),
            ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
            ("_dmarc.example.com", "_dmarc.example.com"),
        ];
        for (input, want) in cases {
            assert_eq!(name(input).as_str(), want, "input {input:?}");
        }
    }

    #[test]
    fn malformed_names_are_refused() {
        let cases = [
            ("", NameError::Empty),
            (".", NameError::Empty),
            ("a..b", NameError::EmptyLabel),
            ("a.b..", NameError::EmptyLabel),
            ("-a.com", NameError::Hyphen),
            ("a b.com", NameError::Character(' ')),
            ("a/b.com", NameError::Character('/')),
            ("bü cher.example", NameError::Idna),
            ("xn--zz.example", NameError::Idna),
            ("a!b.com", NameError::Character('!')),
        ];
        for (input, want) in cases {
            assert_eq!(DomainName::parse(input), Err(want), "input {input:?}");
        }
        assert_eq!(
            DomainName::parse(&"a".repeat(64)),
            Err(NameError::LabelTooLong)
        );
        let long = vec!["a".repeat(60); 5].join(".");
        assert_eq!(DomainName::parse(&long), Err(NameError::TooLong));
    }

    #[test]
    fn wildcard_matches_on_label_boundaries_only() {
        let pattern = HostPattern::parse("*.github.com").unwrap();
        let cases = [
            ("api.github.com", true),
            ("a.b.github.com", true),
            ("API.GitHub.com.", true),
            ("github.com", false),
            ("xgithub.com", false),
            ("github.com.evil.com", false),
        ];
        for (input, want) in cases {
            assert_eq!(pattern.matches(&name(input)), want, "input {input:?}");
        }
    }

    #[test]
    fn pattern_errors() {
        assert_eq!(
            HostPattern::parse("*"),
            Err(PatternError::MatchesEverything)
        );
        assert_eq!(
            HostPattern::parse("a.*.com"),
            Err(PatternError::WildcardPlacement)
        );
        assert_eq!(
            HostPattern::parse("*foo.com"),
            Err(PatternError::WildcardPlacement)
        );
        assert_eq!(
            HostPattern::parse("*.*.com"),
            Err(PatternError::WildcardPlacement)
        );
    }

    #[test]
    fn parents_nearest_first() {
        let n = name("a.b.com");
        assert_eq!(n.parents().collect::<Vec<_>>(), ["b.com", "com"]);
    }
}
