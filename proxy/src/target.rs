//! A request's destination as written by the client: read into a [`Target`] (with the port an
//! absolute-form URI implies), spelled again in egressd's canonical form for the request sent on,
//! and spelled for logs, audit events and error bodies without userinfo.

use policy::Target;

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
}
