//! Header rewriting: hop-by-hop headers out (RFC 9110 §7.6.1), attribution headers in.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use policy::{HeaderTemplate, HeaderVars};

/// Headers that describe one hop and never travel further. `Connection` may name more.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including every header named in `Connection`. `Transfer-Encoding`
/// is left for hyper, which owns message framing on both sides.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .chain(headers.get_all("proxy-connection").iter())
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Attribution headers, rendered once per policy generation.
#[derive(Clone, Debug, Default)]
pub struct Attribution {
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Attribution {
    /// Renders the policy's templates and the extra ones (which win on a name clash) for one
    /// sandbox id. Templates were validated when parsed; a value that still fails HTTP's rules is
    /// skipped with an error log rather than sent malformed.
    pub fn render(
        policy_headers: &[HeaderTemplate],
        extra: &[HeaderTemplate],
        sandbox_id: &str,
    ) -> Self {
        let vars = HeaderVars { sandbox_id };
        let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
        for template in policy_headers.iter().chain(extra) {
            let name = HeaderName::from_bytes(template.name().as_bytes());
            let value = HeaderValue::from_str(&template.render(&vars));
            match (name, value) {
                (Ok(name), Ok(value)) => {
                    headers.retain(|(n, _)| *n != name);
                    headers.push((name, value));
                }
                _ => tracing::error!(
                    header = template.name(),
                    "attribution header cannot be rendered; not sent"
                ),
            }
        }
        Self { headers }
    }

    /// Sets every attribution header on `headers`, replacing whatever the client sent under the
    /// same names (a sandbox cannot spoof its identity).
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret, x-other"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-other", HeaderValue::from_static("1"));
        h.insert(
            "proxy-authorization",
            HeaderValue::from_static("Basic Zm9vOmJhcg=="),
        );
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["accept"]);
    }

    #[test]
    fn attribution_replaces_client_copies_and_extra_wins() {
        let policy = [HeaderTemplate::parse("X-Sandbox", "{sandbox_id}").unwrap()];
        let extra = [
            HeaderTemplate::parse("x-sandbox", "flag-{sandbox_id}").unwrap(),
            HeaderTemplate::parse("X-Agent", "ci").unwrap(),
        ];
        let attribution = Attribution::render(&policy, &extra, "sb-1");
        let mut h = HeaderMap::new();
        h.append("x-sandbox", HeaderValue::from_static("spoofed"));
        h.append("x-sandbox", HeaderValue::from_static("spoofed-again"));
        attribution.apply(&mut h);
        assert_eq!(
            h.get_all("x-sandbox").iter().collect::<Vec<_>>(),
            ["flag-sb-1"]
        );
        assert_eq!(h["x-agent"], "ci");
    }
}
