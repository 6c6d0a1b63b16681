//! A request's destination as written by the client: read into a [`Target`] (with the port an
//! absolute-form URI implies), spelled again in egressd's canonical form for the request sent on,
//! and spelled for logs, audit events and error bodies without userinfo.

use std::net::{IpAddr, Ipv4Addr};

use policy::{Host, Target};

use crate::error::Failure;

/// The destination of an absolute-form request: its host, and its port (80 when none is
/// written). A port that is not 1-65535 (`0`, `65536`, empty) is malformed, never defaulted or
/// wrapped.
pub(crate) fn target_of(uri: &http::Uri, host: &str) -> Result<Target, Failure> {
    let authority = uri.authority().map_or("", |a| a.as_str());
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let after_host = match hostport.rfind(']') {
        Some(close) => &hostport[close + 1..],
        None => hostport.rfind(':').map_or("", |colon| &hostport[colon..]),
    };
    let port = match after_host.strip_prefix(':') {
        None if after_host.is_empty() => 80,
        Some(text) => text
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0 && text.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| Failure::MalformedTarget(format!("{text:?} is not a port (1-65535)")))?,
        None => {
            return Err(Failure::MalformedTarget(format!(
                "{authority:?} is not host[:port]"
            )));
        }
    };
    Ok(Target::new(host, port))
}

/// `http://TARGET/path?query` with the target in egressd's canonical form (lower-case A-label
/// names without a trailing dot, dotted-decimal IPv4, RFC 5952 IPv6, the port always written,
/// no userinfo).
pub(crate) fn canonical_uri(target: &Target, uri: &http::Uri) -> Result<http::Uri, Failure> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    format!("http://{target}{path}")
        .parse()
        .map_err(|_| Failure::BadRequest("the request URI cannot be forwarded"))
}

/// Puts `uri` in the form [`canonical_uri`] spells. A URI already spelled that way (the usual
/// case: a client writes what it was given) is left as it is, byte for byte the same as the
/// spelling would make it, without formatting and parsing it again.
pub(crate) fn canonicalize(target: &Target, uri: &mut http::Uri) -> Result<(), Failure> {
    if !is_canonical(target, uri) {
        *uri = canonical_uri(target, uri)?;
    }
    Ok(())
}

/// True when `uri` is byte for byte what [`canonical_uri`] would make of it: `http://`, the
/// target's canonical host (a name or an IPv4 address; IPv6 literals always take the long way)
/// and its port in plain decimal, no userinfo, and a path.
fn is_canonical(target: &Target, uri: &http::Uri) -> bool {
    let (Some("http"), Some(authority), Some(_)) =
        (uri.scheme_str(), uri.authority(), uri.path_and_query())
    else {
        return false;
    };
    let Some((host, port)) = authority.as_str().rsplit_once(':') else {
        return false;
    };
    let port_canonical = !port.starts_with('0')
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>() == Ok(target.port);
    port_canonical
        && match &target.host {
            Host::Name(name) => host == name.as_str(),
            Host::Ip(IpAddr::V4(v4)) => host.as_bytes() == DottedDecimal::new(*v4).as_bytes(),
            Host::Ip(IpAddr::V6(_)) | Host::Malformed(_) => false,
        }
}

/// An IPv4 address in dotted decimal, as `Ipv4Addr`'s `Display` writes it, on the stack.
struct DottedDecimal {
    text: [u8; 15],
    len: usize,
}

impl DottedDecimal {
    fn new(addr: Ipv4Addr) -> Self {
        let mut out = Self {
            text: [0; 15],
            len: 0,
        };
        for (i, octet) in addr.octets().into_iter().enumerate() {
            if i > 0 {
                out.push(b'.');
            }
            if octet >= 100 {
                out.push(b'0' + octet / 100);
            }
            if octet >= 10 {
                out.push(b'0' + octet / 10 % 10);
            }
            out.push(b'0' + octet % 10);
        }
        out
    }

    fn push(&mut self, byte: u8) {
        // At most 4 × 3 digits and 3 dots: 15 bytes.
        if let Some(slot) = self.text.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.text[..self.len]
    }
}

/// The `Host` header of a request sent on with the canonical `uri`: what the pooled client would
/// write from the URI itself (the port only when it is not 80), without formatting it again.
pub(crate) fn host_header(uri: &http::Uri) -> Option<http::HeaderValue> {
    let authority = uri.authority()?;
    let text = match authority.port_u16() {
        Some(80) => authority.host(),
        _ => authority.as_str(),
    };
    http::HeaderValue::from_str(text).ok()
}

/// A CONNECT target as logs, audit events and error bodies show it (without userinfo), and
/// whether it had userinfo.
pub(crate) fn loggable_authority(uri: &http::Uri) -> (String, bool) {
    let authority = uri.authority().map_or("", |a| a.as_str());
    match authority.rsplit_once('@') {
        Some((_, hostport)) => (hostport.to_owned(), true),
        None => (authority.to_owned(), false),
    }
}

/// The request URI as logs, audit events and error bodies show it: without userinfo
/// (`http://user:pass@host/` is written `http://host/`), so a credential in a URL is never
/// written anywhere.
pub(crate) fn loggable_uri(uri: &http::Uri) -> String {
    match uri.authority() {
        // What `Uri`'s `Display` writes, without the formatting machinery.
        Some(authority) if !authority.as_str().contains('@') => {
            let scheme = uri.scheme_str();
            let (path, query) = (uri.path(), uri.query());
            let mut text = String::with_capacity(
                scheme.map_or(0, |s| s.len() + 3)
                    + authority.as_str().len()
                    + path.len()
                    + query.map_or(0, |q| q.len() + 1),
            );
            if let Some(scheme) = scheme {
                text.push_str(scheme);
                text.push_str("://");
            }
            text.push_str(authority.as_str());
            text.push_str(path);
            if let Some(query) = query {
                text.push('?');
                text.push_str(query);
            }
            text
        }
        Some(authority) if authority.as_str().contains('@') => {
            let host = authority
                .as_str()
                .rsplit_once('@')
                .map_or(authority.as_str(), |(_, host)| host);
            let scheme = uri
                .scheme_str()
                .map(|s| format!("{s}://"))
                .unwrap_or_default();
            let rest = uri.path_and_query().map_or("", |p| p.as_str());
            format!("{scheme}{host}{rest}")
        }
        _ => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_never_reaches_a_log() {
        let cases = [
            (
                "http://user:pass@example.test/x?y",
                "http://example.test/x?y",
            ),
            (
                "http://a%40b:p%3Aw@example.test:8080/",
                "http://example.test:8080/",
            ),
            ("http://token@example.test/", "http://example.test/"),
            ("http://example.test/", "http://example.test/"),
            ("example.test:443", "example.test:443"),
        ];
        for (uri, want) in cases {
            let uri: http::Uri = uri.parse().unwrap();
            assert_eq!(loggable_uri(&uri), want);
        }
    }

    #[test]
    fn loggable_uri_is_the_uri_as_displayed_when_it_has_no_userinfo() {
        for uri in [
            "http://example.test/x?y",
            "http://Example.TEST:8080",
            "http://[::1]:80/a?",
            "example.test:443",
            "/relative?q",
            "*",
        ] {
            let uri: http::Uri = uri.parse().unwrap();
            assert_eq!(loggable_uri(&uri), uri.to_string());
        }
    }

    /// The shortcut leaves a URI alone only when the long way would spell it the same.
    #[test]
    fn canonicalize_spells_every_uri_as_canonical_uri_does() {
        let cases = [
            ("http://example.test:80/x?y", true),
            ("http://127.0.0.1:8080/bench", true),
            ("http://10.200.3.45:1/", true),
            ("http://example.test/x", false),
            ("http://EXAMPLE.test:80/x", false),
            ("http://example.test.:80/x", false),
            ("http://user@example.test:80/x", false),
            ("http://example.test:080/x", false),
            ("http://example.test:+80/x", false),
            ("HTTP://example.test:80/x", true),
            ("http://example.test:80", true),
            ("http://127.000.0.1:80/", false),
            ("http://[::1]:80/", false),
            ("http://[0:0::1]:80/", false),
            ("http://xn--bcher-kva.example:80/", true),
            ("http://[::1]:8080/", false),
            ("http://[2001:DB8::1]:80/", false),
        ];
        for (text, kept) in cases {
            let uri: http::Uri = text.parse().unwrap();
            let host = uri.host().unwrap();
            let Ok(target) = target_of(&uri, host) else {
                continue;
            };
            let mut canonicalized = uri.clone();
            let made =
                canonicalize(&target, &mut canonicalized).map(|()| canonicalized.to_string());
            let spelled = canonical_uri(&target, &uri).map(|u| u.to_string());
            assert_eq!(made.ok(), spelled.ok(), "{text}");
            if let Ok(uri) = canonical_uri(&target, &uri) {
                // What hyper-util's client writes when the request has no Host.
                let host = uri.host().unwrap();
                let want = match uri.port_u16() {
                    Some(80) => host.to_owned(),
                    _ => format!("{host}:{}", uri.port().unwrap()),
                };
                assert_eq!(host_header(&uri).unwrap(), want.as_str(), "{text}");
            }
            assert_eq!(is_canonical(&target, &uri), kept, "{text}");
        }
    }

    #[test]
    fn dotted_decimal_is_written_as_display_writes_it() {
        for addr in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.100.9",
            "127.0.0.1",
            "1.22.103.40",
        ] {
            let addr: Ipv4Addr = addr.parse().unwrap();
            assert_eq!(
                DottedDecimal::new(addr).as_bytes(),
                addr.to_string().as_bytes()
            );
        }
    }
}
