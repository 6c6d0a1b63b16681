//! Destinations: what a sandbox asks to reach, read from a CONNECT authority, a URL or the command
//! line.

use std::fmt;
use std::net::IpAddr;

use crate::addr::{Ipv4Literal, parse_ipv4_literal, parse_ipv6_literal};
use crate::name::{DomainName, NameError};

/// The host part of a destination, after canonicalization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// A valid DNS name in canonical form.
    Name(DomainName),
    /// An IP literal, in whichever form it was written.
    Ip(IpAddr),
    /// Neither: the text as received, kept for logs. Never matches a rule.
    Malformed(String),
}

impl Host {
    /// Reads a host as it appears in an authority: a name, an IPv4 literal in plain dotted decimal,
    /// or an IPv6 literal in brackets (brackets may be left off). Other numeric IPv4 spellings
    /// (`2130706433`, `0x7f.1`, `127.1`, `010.8.8.8`) are malformed: parsers disagree on them.
    pub fn parse(input: &str) -> Self {
        if input.starts_with('[') || input.contains(':') {
            return match parse_ipv6_literal(input) {
                Some(v6) => Self::Ip(IpAddr::V6(v6)),
                None => Self::Malformed(input.to_owned()),
            };
        }
        match parse_ipv4_literal(input) {
            Ipv4Literal::Addr(v4) => Self::Ip(IpAddr::V4(v4)),
            Ipv4Literal::Invalid | Ipv4Literal::Ambiguous(_) => Self::Malformed(input.to_owned()),
            Ipv4Literal::NotNumeric => match DomainName::parse(input) {
                Ok(name) => Self::Name(name),
                Err(_) => Self::Malformed(input.to_owned()),
            },
        }
    }

    /// Why the host is malformed, for explanations; `None` when it is not.
    pub fn malformed_reason(&self) -> Option<String> {
        match self {
            Self::Malformed(text) => {
                Some(match (parse_ipv4_literal(text), DomainName::parse(text)) {
                    (Ipv4Literal::Ambiguous(addr), _) => format!(
                        "{text:?} is an ambiguous IPv4 spelling: inet_aton and browsers read it as \
                     {addr}, other parsers refuse it or read it otherwise; write the address in \
                     plain dotted decimal"
                    ),
                    (_, Err(NameError::Empty)) => "empty host".to_owned(),
                    (_, Err(e)) => e.to_string(),
                    (_, Ok(_)) => {
                        "the host looks like an IP address but is not a valid one".to_owned()
                    }
                })
            }
            _ => None,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => write!(f, "{name}"),
            Self::Ip(IpAddr::V4(v4)) => write!(f, "{v4}"),
            Self::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]"),
            Self::Malformed(text) => write!(f, "{text:?}"),
        }
    }
}

/// A destination: host and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Where.
    pub host: Host,
    /// Which port.
    pub port: u16,
}

/// Why a target text cannot be read at all (as opposed to a host that is merely malformed, which
/// is a valid question with the answer "deny").
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Empty input.
    #[error("the target is empty")]
    Empty,
    /// `host:port` without a port, where one is required.
    #[error("{0:?} has no port; write HOST:PORT")]
    MissingPort(String),
    /// A port that is not 1-65535.
    #[error("{0:?} is not a port (1-65535)")]
    BadPort(String),
    /// A URL scheme egressd does not proxy.
    #[error("unsupported URL scheme {0:?}; use http, https, ws or wss")]
    Scheme(String),
    /// `[::1` and friends.
    #[error("unbalanced '[' in {0:?}")]
    Bracket(String),
}

impl Target {
    /// A target from parts received separately (an HTTP request's URI host and port).
    pub fn new(host: &str, port: u16) -> Self {
        Self {
            host: Host::parse(host),
            port,
        }
    }

    /// Reads an authority that must carry a port: the request target of `CONNECT host:port`.
    pub fn parse_authority(text: &str) -> Result<Self, TargetError> {
        let (host, port) = split_host_port(text)?;
        let port = port.ok_or_else(|| TargetError::MissingPort(text.to_owned()))?;
        Ok(Self {
            host: Host::parse(host),
            port,
        })
    }

    /// Reads a target as an operator writes it: a URL (`https://host/path`), `host:port`,
    /// `[v6]:port`, or a bare host or IP, which gets `default_port`.
    pub fn parse_loose(text: &str, default_port: u16) -> Result<Self, TargetError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(TargetError::Empty);
        }
        let (authority, default_port) = match text.split_once("://") {
            Some((scheme, rest)) => {
                let port = match scheme.to_ascii_lowercase().as_str() {
                    "http" | "ws" => 80,
                    "https" | "wss" => 443,
                    _ => return Err(TargetError::Scheme(scheme.to_owned())),
                };
                let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                let authority = &rest[..end];
                // Userinfo is dropped: it is never part of the destination.
                let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
                (authority, port)
            }
            None => (text, default_port),
        };
        // A bare IPv6 literal ("::1", "fd00::1") has colons but no port.
        if !authority.starts_with('[') && authority.matches(':').count() > 1 {
            return Ok(Self {
                host: Host::parse(authority),
                port: default_port,
            });
        }
        let (host, port) = split_host_port(authority)?;
        Ok(Self {
            host: Host::parse(host),
            port: port.unwrap_or(default_port),
        })
    }
}

/// Splits `host[:port]` and `[v6][:port]`.
fn split_host_port(text: &str) -> Result<(&str, Option<u16>), TargetError> {
    if text.is_empty() {
        return Err(TargetError::Empty);
    }
    let (host, port) = if text.starts_with('[') {
        let close = text
            .find(']')
            .ok_or_else(|| TargetError::Bracket(text.to_owned()))?;
        let rest = &text[close + 1..];
        let port = match rest.strip_prefix(':') {
            Some(port) => Some(port),
            None if rest.is_empty() => None,
            None => return Err(TargetError::BadPort(rest.to_owned())),
        };
        (&text[..=close], port)
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| TargetError::BadPort(p.to_owned()))?,
        ),
        None => None,
    };
    Ok((host, port))
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Host {
        Host::Ip(s.parse().unwrap())
    }

    #[test]
    fn host_forms() {
        let cases = [
            (
                "github.com",
                Host::Name(DomainName::parse("github.com").unwrap()),
            ),
            ("2130706433", Host::Malformed("2130706433".into())),
            ("0x7f.1", Host::Malformed("0x7f.1".into())),
            ("127.1", Host::Malformed("127.1".into())),
            ("010.8.8.8", Host::Malformed("010.8.8.8".into())),
            ("1.2.3.4", ip("1.2.3.4")),
            ("[::ffff:10.0.0.1]", ip("::ffff:10.0.0.1")),
            ("::1", ip("::1")),
            ("1.2.3.999", Host::Malformed("1.2.3.999".into())),
            (
                "[fe80::1%25eth0]",
                Host::Malformed("[fe80::1%25eth0]".into()),
            ),
            ("exa mple.com", Host::Malformed("exa mple.com".into())),
            ("", Host::Malformed(String::new())),
        ];
        for (input, want) in cases {
            assert_eq!(Host::parse(input), want, "{input:?}");
        }
    }

    #[test]
    fn loose_targets() {
        let cases = [
            ("https://GitHub.com/x?y", "github.com:443"),
            ("http://user:pw@github.com:8080/", "github.com:8080"),
            ("github.com:22", "github.com:22"),
            ("github.com", "github.com:443"),
            ("10.0.0.1", "10.0.0.1:443"),
            ("[::1]:80", "[::1]:80"),
            ("fd00::1", "[fd00::1]:443"),
            ("http://[::1]/", "[::1]:80"),
        ];
        for (input, want) in cases {
            assert_eq!(
                Target::parse_loose(input, 443).unwrap().to_string(),
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn unreadable_targets() {
        assert_eq!(Target::parse_loose("", 443), Err(TargetError::Empty));
        assert_eq!(
            Target::parse_loose("ftp://x", 443),
            Err(TargetError::Scheme("ftp".into()))
        );
        assert_eq!(
            Target::parse_loose("x:0", 443),
            Err(TargetError::BadPort("0".into()))
        );
        assert_eq!(
            Target::parse_loose("x:http", 443),
            Err(TargetError::BadPort("http".into()))
        );
        assert_eq!(
            Target::parse_authority("x.com"),
            Err(TargetError::MissingPort("x.com".into()))
        );
        assert_eq!(
            Target::parse_authority("[::1"),
            Err(TargetError::Bracket("[::1".into()))
        );
    }
}
