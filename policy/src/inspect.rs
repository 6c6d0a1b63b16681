//! TLS inspection in the policy: which allow rules are terminated (`inspect = true`), the method
//! and path rules each request inside them must pass, and the brokered credentials
//! (`[[credential]]`) the proxy swaps in for a placeholder.
//!
//! Pure like the rest of the crate: a credential says *where* its real value comes from (a file
//! or an environment variable), never the value; the binary reads it and hands it to the proxy.
//!
//! | key | on | meaning |
//! |---|---|---|
//! | `inspect = true` | `[[allow]]` host rules | terminate TLS for the rule's names; check every request |
//! | `methods = [...]` | inspected rules | request methods allowed (exact, upper case); absent: any |
//! | `paths = [...]` | inspected rules | path globs (`*` matches any run, `/` included); absent: any |

use std::fmt;

use crate::name::{DomainName, HostPattern};

/// The request rules of an inspected allow rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inspection {
    /// Methods allowed, as written (upper case); empty: every method.
    pub methods: Vec<String>,
    /// Path globs, one of which the path must match; empty: every path.
    pub paths: Vec<PathGlob>,
}

/// Why a request inside an inspected connection is refused by its rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestMiss {
    /// The method is not in `methods`.
    Method,
    /// The path matches none of `paths`.
    Path,
    /// The path has dot segments (`/a/../b`, also percent-encoded) or an encoded `/` or `\`: an
    /// origin may read it as another path than the one matched, so a rule with `paths` refuses it.
    AmbiguousPath,
    /// The path has `;` parameters (`/ok/..;/admin`, also `%3B`), which servers that honour them
    /// (Tomcat, Spring) strip before routing; refused unless a glob that matches writes `;`.
    PathParameters,
    /// A method-override header (`X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override`)
    /// names a method that is not in `methods`: frameworks that honour it would run that method.
    MethodOverride,
}

/// The request headers through which frameworks let a request name another method.
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

impl RequestMiss {
    /// A stable machine-readable code, used in the proxy's reason header and the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Method | Self::MethodOverride => "method-not-allowed",
            Self::Path | Self::AmbiguousPath | Self::PathParameters => "path-not-allowed",
        }
    }
}

impl fmt::Display for RequestMiss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Method => "the rule's `methods` do not include this method",
            Self::Path => "the path matches none of the rule's `paths`",
            Self::AmbiguousPath => {
                "the path has dot segments or an encoded '/' or '\\', which the rule's `paths` refuse"
            }
            Self::PathParameters => {
                "the path has ';' parameters, which the rule's `paths` refuse unless a glob writes ';'"
            }
            Self::MethodOverride => {
                "a method-override header names a method the rule's `methods` do not include"
            }
        })
    }
}

impl Inspection {
    /// Checks one request: the method exactly (methods are case-sensitive), then the path (without
    /// the query) against the globs.
    pub fn check(&self, method: &str, path: &str) -> Result<(), RequestMiss> {
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == method) {
            return Err(RequestMiss::Method);
        }
        if self.paths.is_empty() {
            return Ok(());
        }
        if is_ambiguous(path) {
            return Err(RequestMiss::AmbiguousPath);
        }
        let parameters = has_parameters(path);
        let mut matching = self.paths.iter().filter(|glob| glob.matches(path));
        match matching.next() {
            None => Err(RequestMiss::Path),
            Some(_) if !parameters => Ok(()),
            Some(first) if first.writes_parameters() => Ok(()),
            Some(_) if matching.any(PathGlob::writes_parameters) => Ok(()),
            Some(_) => Err(RequestMiss::PathParameters),
        }
    }

    /// Checks the method a method-override header names (as written, trimmed): it must be one
    /// of `methods`, when the rule has them.
    pub fn check_override(&self, method: &str) -> Result<(), RequestMiss> {
        match self.methods.is_empty() || self.methods.iter().any(|m| m == method.trim()) {
            true => Ok(()),
            false => Err(RequestMiss::MethodOverride),
        }
    }
}

/// True when `path` has `;` parameters, written or percent-encoded.
fn has_parameters(path: &str) -> bool {
    path.contains(';') || path.to_ascii_lowercase().contains("%3b")
}

/// True when `path` could mean another path to an origin that normalizes it.
fn is_ambiguous(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    if lower.contains('\\') || lower.contains("%2f") || lower.contains("%5c") {
        return true;
    }
    // A segment's parameters (`..;x`) are stripped by the servers that honour them.
    lower
        .replace("%2e", ".")
        .replace("%3b", ";")
        .split('/')
        .map(|segment| segment.split(';').next().unwrap_or(segment))
        .any(|segment| segment == "." || segment == "..")
}

/// A path glob: `*` matches any run of characters, `/` included; everything else matches itself.
/// The whole path must match: `/ok/*` matches `/ok/1` and `/ok/a/b`, not `/ok` or `/other/ok/1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathGlob(String);

/// Why a path glob is not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathGlobError {
    /// Paths are absolute.
    #[error("it must start with '/'")]
    Relative,
    /// Queries are not matched.
    #[error("it contains '?': paths are matched without the query string")]
    Query,
    /// Spaces and control characters never appear in a request path.
    #[error("it contains a space or a control character")]
    Character,
}

impl PathGlob {
    /// Parses a glob: starts with `/`, no `?`, no spaces or control characters.
    pub fn parse(text: &str) -> Result<Self, PathGlobError> {
        if !text.starts_with('/') {
            return Err(PathGlobError::Relative);
        }
        if text.contains('?') {
            return Err(PathGlobError::Query);
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(PathGlobError::Character);
        }
        Ok(Self(text.to_owned()))
    }

    /// True when the whole of `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        glob_match(self.0.as_bytes(), path.as_bytes())
    }

    /// True when the glob writes `;` itself: the policy's author expects path parameters.
    pub fn writes_parameters(&self) -> bool {
        self.0.contains(';')
    }
}

impl fmt::Display for PathGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Wildcard matching with `*` only, in linear space: on a mismatch, the last `*` takes one more
/// character.
fn glob_match(glob: &[u8], text: &[u8]) -> bool {
    let (mut g, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if g < glob.len() && glob[g] == b'*' {
            star = Some((g, t));
            g += 1;
        } else if g < glob.len() && glob[g] == text[t] {
            g += 1;
            t += 1;
        } else if let Some((star_g, star_t)) = star {
            g = star_g + 1;
            t = star_t + 1;
            star = Some((star_g, star_t + 1));
        } else {
            return false;
        }
    }
    glob[g..].iter().all(|&b| b == b'*')
}

/// Where a brokered credential's real value comes from. The policy never holds the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueSource {
    /// `value_file = "PATH"`: the file's contents, without a trailing newline.
    File(String),
    /// `value_env = "NAME"`: egressd's environment variable.
    Env(String),
}

impl fmt::Display for ValueSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "value_file {path:?}"),
            Self::Env(name) => write!(f, "value_env {name:?}"),
        }
    }
}

/// One `[[credential]]`: on requests to `host`, the proxy replaces `placeholder` in `header` with
/// the real value; the placeholder sent to any other host is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialRule {
    /// 0-based position in the `[[credential]]` list.
    pub index: usize,
    /// 1-based line of the credential's `host` key.
    pub line: usize,
    /// Where the real value may go: an inspected rule's name, or names below a suffix.
    pub host: HostPattern,
    /// The header that carries it, as written (`Authorization`).
    pub header: String,
    /// What the sandbox is given instead of the value.
    pub placeholder: String,
    /// Where the value comes from.
    pub source: ValueSource,
}

impl CredentialRule {
    /// True when the real value may be sent to `name`.
    pub fn applies_to(&self, name: &DomainName) -> bool {
        self.host.matches(name)
    }

    /// Short label for headers and logs: `credential[0] line 31`.
    pub fn label(&self) -> String {
        format!("credential[{}] line {}", self.index, self.line)
    }
}

/// Shortest placeholder accepted: a short one would turn up in unrelated headers and be refused as
/// exfiltration.
pub const MIN_PLACEHOLDER_LEN: usize = 8;

/// Why a placeholder is not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlaceholderError {
    /// Nothing to look for.
    #[error("the placeholder is empty")]
    Empty,
    /// Too short to be told apart from other text.
    #[error("the placeholder has {0} characters; use at least 8, unlike any real header text")]
    TooShort(usize),
    /// It must fit in a header value unchanged.
    #[error("the placeholder may only use visible ASCII characters (no spaces)")]
    Character,
}

/// Checks a placeholder: at least [`MIN_PLACEHOLDER_LEN`] visible ASCII characters.
pub(crate) fn check_placeholder(text: &str) -> Result<(), PlaceholderError> {
    if text.is_empty() {
        return Err(PlaceholderError::Empty);
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(PlaceholderError::Character);
    }
    if text.len() < MIN_PLACEHOLDER_LEN {
        return Err(PlaceholderError::TooShort(text.len()));
    }
    Ok(())
}

/// True when an inspected rule's `pattern` covers every name of the credential's `host`.
pub(crate) fn covers(pattern: &HostPattern, host: &HostPattern) -> bool {
    match (pattern, host) {
        (_, HostPattern::Exact(name)) => pattern.matches(name),
        (HostPattern::Below(outer), HostPattern::Below(inner)) => {
            outer == inner || inner.is_below(outer)
        }
        (HostPattern::Exact(_), HostPattern::Below(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(text: &str) -> PathGlob {
        PathGlob::parse(text).unwrap()
    }

    #[test]
    fn globs_match_the_whole_path_and_star_crosses_slashes() {
        let cases = [
            ("/ok/*", "/ok/1", true),
            ("/ok/*", "/ok/a/b", true),
            ("/ok/*", "/ok/", true),
            ("/ok/*", "/ok", false),
            ("/ok/*", "/other/ok/1", false),
            ("/v1/*/items", "/v1/a/b/items", true),
            ("/v1/*/items", "/v1/a/items/x", false),
            ("/exact", "/exact", true),
            ("/exact", "/exact/", false),
            ("/*", "/anything/at/all", true),
            ("/a*b*c", "/aXbYc", true),
            ("/a*b*c", "/aXcYb", false),
            ("/**", "/x", true),
        ];
        for (pattern, path, want) in cases {
            assert_eq!(glob(pattern).matches(path), want, "{pattern} vs {path}");
        }
    }

    #[test]
    fn bad_globs_are_refused() {
        assert_eq!(PathGlob::parse("ok/*"), Err(PathGlobError::Relative));
        assert_eq!(PathGlob::parse("/a?b=1"), Err(PathGlobError::Query));
        assert_eq!(PathGlob::parse("/a b"), Err(PathGlobError::Character));
    }

    #[test]
    fn requests_are_checked_by_method_then_path() {
        let rule = Inspection {
            methods: vec!["GET".into(), "HEAD".into()],
            paths: vec![glob("/ok/*")],
        };
        let cases = [
            ("GET", "/ok/1", Ok(())),
            ("get", "/ok/1", Err(RequestMiss::Method)),
            ("POST", "/ok/1", Err(RequestMiss::Method)),
            ("GET", "/nope", Err(RequestMiss::Path)),
            ("GET", "/ok/../admin", Err(RequestMiss::AmbiguousPath)),
            ("GET", "/ok/%2E%2e/admin", Err(RequestMiss::AmbiguousPath)),
            ("GET", "/ok/a%2Fb", Err(RequestMiss::AmbiguousPath)),
            ("GET", "/ok/a\\b", Err(RequestMiss::AmbiguousPath)),
            ("GET", "/ok/./x", Err(RequestMiss::AmbiguousPath)),
            ("GET", "/ok/..x/y", Ok(())),
        ];
        for (method, path, want) in cases {
            assert_eq!(rule.check(method, path), want, "{method} {path}");
        }
        assert_eq!(Inspection::default().check("BREW", "/../x"), Ok(()));
    }

    #[test]
    fn path_parameters_pass_only_a_glob_that_writes_them() {
        let strict = Inspection {
            methods: vec![],
            paths: vec![glob("/ok/*")],
        };
        let with_parameters = Inspection {
            methods: vec![],
            paths: vec![glob("/ok/*"), glob("/files/*;jsessionid=*")],
        };
        let cases = [
            (&strict, "/ok/..;/admin", Err(RequestMiss::AmbiguousPath)),
            (
                &strict,
                "/ok/%2e%2e%3b/admin",
                Err(RequestMiss::AmbiguousPath),
            ),
            (&strict, "/ok/.;x/admin", Err(RequestMiss::AmbiguousPath)),
            (&strict, "/ok/a;b=c", Err(RequestMiss::PathParameters)),
            (&strict, "/ok/a%3Bb", Err(RequestMiss::PathParameters)),
            (&strict, "/ok/a%3bb", Err(RequestMiss::PathParameters)),
            (&strict, "/other;x", Err(RequestMiss::Path)),
            (&strict, "/ok/a", Ok(())),
            (&with_parameters, "/files/a;jsessionid=1", Ok(())),
            (
                &with_parameters,
                "/ok/a;jsessionid=1",
                Err(RequestMiss::PathParameters),
            ),
            (
                &with_parameters,
                "/files/..;jsessionid=1/x",
                Err(RequestMiss::AmbiguousPath),
            ),
        ];
        for (rule, path, want) in cases {
            assert_eq!(rule.check("GET", path), want, "{path}");
        }
        assert_eq!(Inspection::default().check("GET", "/a;b"), Ok(()));
    }

    #[test]
    fn a_method_override_must_name_an_allowed_method() {
        let rule = Inspection {
            methods: vec!["GET".into(), "POST".into()],
            paths: vec![],
        };
        assert_eq!(rule.check_override("GET"), Ok(()));
        assert_eq!(rule.check_override(" POST "), Ok(()));
        for refused in ["DELETE", "delete", "GET, DELETE", ""] {
            assert_eq!(
                rule.check_override(refused),
                Err(RequestMiss::MethodOverride),
                "{refused:?}"
            );
        }
        assert_eq!(Inspection::default().check_override("DELETE"), Ok(()));
    }

    #[test]
    fn placeholders() {
        assert_eq!(check_placeholder(""), Err(PlaceholderError::Empty));
        assert_eq!(
            check_placeholder("short"),
            Err(PlaceholderError::TooShort(5))
        );
        assert_eq!(
            check_placeholder("has a space"),
            Err(PlaceholderError::Character)
        );
        assert_eq!(check_placeholder("PLACEHOLDER_TOKEN"), Ok(()));
    }

    #[test]
    fn coverage_of_credential_hosts() {
        let p = |s: &str| HostPattern::parse(s).unwrap();
        let cases = [
            ("api.example.com", "api.example.com", true),
            ("*.example.com", "api.example.com", true),
            ("*.example.com", "*.example.com", true),
            ("*.example.com", "*.api.example.com", true),
            ("*.api.example.com", "*.example.com", false),
            ("api.example.com", "*.example.com", false),
            ("*.example.com", "example.com", false),
        ];
        for (rule, credential, want) in cases {
            assert_eq!(
                covers(&p(rule), &p(credential)),
                want,
                "{rule} / {credential}"
            );
        }
    }
}
