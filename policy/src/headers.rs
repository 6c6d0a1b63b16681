//! Attribution headers: name/value pairs the proxy sets on every forwarded request, replacing any
//! copy the sandbox sent. Values are templates that may name the sandbox id: `{sandbox_id}`.

use std::fmt;

/// Why an attribution header is not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Not an RFC 9110 token.
    #[error("{0:?} is not a header name (letters, digits and !#$%&'*+-.^_`|~ only)")]
    Name(String),
    /// A header the proxy must own, such as `Host` or `Connection`.
    #[error("{0:?} is managed by the proxy and cannot be set as an attribution header")]
    Reserved(String),
    /// Control characters (CR, LF, NUL...) in the value.
    #[error("the value of {0:?} contains a control character")]
    Value(String),
    /// A `{placeholder}` egressd does not know, or an unclosed brace.
    #[error(
        "the value of {name:?} uses {placeholder:?}; the only placeholder is {{sandbox_id}} (write {{{{ and }}}} for literal braces)"
    )]
    Placeholder {
        /// Header name.
        name: String,
        /// The offending text.
        placeholder: String,
    },
}

/// Headers that describe the connection or the message framing; the proxy owns them.
const RESERVED: &[&str] = &[
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    SandboxId,
}

/// One attribution header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderTemplate {
    name: String,
    parts: Vec<Part>,
}

/// Values the templates may use.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeaderVars<'a> {
    /// The sandbox id given to `egressd run`.
    pub sandbox_id: &'a str,
}

impl HeaderTemplate {
    /// Validates a name and a value template.
    pub fn parse(name: &str, value: &str) -> Result<Self, HeaderError> {
        check_name(name)?;
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(HeaderError::Value(name.to_owned()));
        }
        let placeholder_error = |placeholder: &str| HeaderError::Placeholder {
            name: name.to_owned(),
            placeholder: placeholder.to_owned(),
        };
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = value;
        while let Some(i) = rest.find(['{', '}']) {
            text.push_str(&rest[..i]);
            let tail = &rest[i..];
            if let Some(after) = tail.strip_prefix("{{") {
                text.push('{');
                rest = after;
            } else if let Some(after) = tail.strip_prefix("}}") {
                text.push('}');
                rest = after;
            } else if let Some(after) = tail.strip_prefix("{sandbox_id}") {
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(Part::SandboxId);
                rest = after;
            } else {
                let end = tail.find('}').map_or(tail.len(), |j| j + 1);
                return Err(placeholder_error(&tail[..end]));
            }
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Self {
            name: name.to_owned(),
            parts,
        })
    }

    /// The header name as written.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value with placeholders filled in. Control characters in the variables are dropped,
    /// so a sandbox id can never split a header.
    pub fn render(&self, vars: &HeaderVars<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::SandboxId => out.extend(vars.sandbox_id.chars().filter(|c| !c.is_control())),
            }
        }
        out
    }
}

impl fmt::Display for HeaderTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.name)?;
        for part in &self.parts {
            match part {
                Part::Text(text) => f.write_str(&text.replace('{', "{{").replace('}', "}}"))?,
                Part::SandboxId => f.write_str("{sandbox_id}")?,
            }
        }
        Ok(())
    }
}

/// A header name that the policy may set: an HTTP token, and not one the proxy owns.
pub(crate) fn check_name(name: &str) -> Result<(), HeaderError> {
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(HeaderError::Name(name.to_owned()));
    }
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return Err(HeaderError::Reserved(name.to_owned()));
    }
    Ok(())
}

/// True for an RFC 9110 token (a method or header name).
pub(crate) fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(is_tchar)
}

/// RFC 9110 §5.6.2 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_placeholders_and_escapes() {
        let t = HeaderTemplate::parse("X-Sandbox", "sb={sandbox_id} {{literal}}").unwrap();
        assert_eq!(
            t.render(&HeaderVars {
                sandbox_id: "job-7"
            }),
            "sb=job-7 {literal}"
        );
        assert_eq!(t.to_string(), "X-Sandbox: sb={sandbox_id} {{literal}}");
        let injected = HeaderVars {
            sandbox_id: "a\r\nEvil: 1",
        };
        assert_eq!(t.render(&injected), "sb=aEvil: 1 {literal}");
    }

    #[test]
    fn errors() {
        let cases = [
            ("X Bad", "v", HeaderError::Name("X Bad".into())),
            ("Host", "v", HeaderError::Reserved("Host".into())),
            (
                "proxy-authorization",
                "v",
                HeaderError::Reserved("proxy-authorization".into()),
            ),
            ("X-A", "a\nb", HeaderError::Value("X-A".into())),
            (
                "X-A",
                "{user}",
                HeaderError::Placeholder {
                    name: "X-A".into(),
                    placeholder: "{user}".into(),
                },
            ),
            (
                "X-A",
                "{sandbox_id",
                HeaderError::Placeholder {
                    name: "X-A".into(),
                    placeholder: "{sandbox_id".into(),
                },
            ),
            (
                "X-A",
                "a}b",
                HeaderError::Placeholder {
                    name: "X-A".into(),
                    placeholder: "}".into(),
                },
            ),
        ];
        for (name, value, want) in cases {
            assert_eq!(
                HeaderTemplate::parse(name, value),
                Err(want),
                "{name}: {value}"
            );
        }
    }
}
