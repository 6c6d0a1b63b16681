//! Header rewriting: hop-by-hop headers out (RFC 9110 §7.6.1), attribution headers in (and every
//! client header that an origin could read as one out), egressd's own headers out of responses.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use policy::{HeaderTemplate, HeaderVars};

/// Headers that describe one hop and never travel further. `Connection` may name more.
static HOP_BY_HOP: [HeaderName; 8] = [
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
    // One pass over the names first: a message carries few of these (often none, or only the
    // proxy credential), and each removal hashes its name. Only those present are removed, in
    // the same order as ever (a removal moves the last header into the gap).
    let mut present = [false; HOP_BY_HOP.len()];
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present[i] = true;
        }
    }
    if !present.contains(&true) {
        return;
    }
    // `Connection` and `Proxy-Connection` (the first two) name more.
    if present[0] || present[1] {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .chain(headers.get_all("proxy-connection").iter())
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in &named {
            headers.remove(name);
        }
    }
    for (name, _) in HOP_BY_HOP
        .iter()
        .zip(present)
        .filter(|(_, present)| *present)
    {
        headers.remove(name);
    }
}

/// The prefix of egressd's own response headers (`x-egressd-reason`, `x-egressd-rule`).
const EGRESSD_PREFIX: &str = "x-egressd-";

/// Removes every `x-egressd-*` header from a response egressd did not write (an origin's, a
/// parent proxy's), so a reason header the sandbox sees is always egressd's own.
pub fn strip_egressd_headers(headers: &mut HeaderMap) {
    let foreign: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(EGRESSD_PREFIX))
        .cloned()
        .collect();
    for name in foreign {
        headers.remove(name);
    }
}

/// Attribution headers, rendered once per policy generation.
#[derive(Clone, Debug, Default)]
pub struct Attribution {
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Their names folded as CGI, WSGI, Rack and PHP fold them (`_` read as `-`, any case).
    folded: Vec<String>,
}

/// A header name as many origin stacks read it: lower case, `_` and `-` the same.
fn fold(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'_' => '-',
            b => char::from(b.to_ascii_lowercase()),
        })
        .collect()
}

/// True when `name` folds to `folded` without allocating.
fn folds_to(name: &str, folded: &str) -> bool {
    name.len() == folded.len()
        && name.bytes().zip(folded.bytes()).all(|(a, b)| {
            let a = if a == b'_' {
                b'-'
            } else {
                a.to_ascii_lowercase()
            };
            a == b
        })
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
        let folded = headers
            .iter()
            .map(|(name, _)| fold(name.as_str()))
            .collect();
        Self { headers, folded }
    }

    /// Sets every attribution header on `headers`, removing first whatever the client sent under
    /// the same names or names an origin would read as the same (`X_Sandbox_Id` for
    /// `X-Sandbox-Id`): a sandbox cannot spoof its identity.
    pub fn apply(&self, headers: &mut HeaderMap) {
        self.strip_lookalikes(headers);
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
    }

    /// Removes every header that folds to an attribution header's name (request trailers get
    /// this, since they never carry attribution).
    pub fn strip_lookalikes(&self, headers: &mut HeaderMap) {
        if self.folded.is_empty() {
            return;
        }
        let lookalikes: Vec<HeaderName> = headers
            .keys()
            .filter(|name| self.folded.iter().any(|f| folds_to(name.as_str(), f)))
            .cloned()
            .collect();
        for name in lookalikes {
            headers.remove(name);
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

    /// Removing only the hop-by-hop headers present leaves the others in the order removing
    /// every one of them (absent ones too) left them.
    #[test]
    fn stripping_keeps_the_order_of_the_full_removal() {
        let all = [
            "connection",
            "proxy-connection",
            "keep-alive",
            "proxy-authorization",
            "te",
            "upgrade",
            "trailer",
            "proxy-authenticate",
        ];
        for mask in 0u32..(1 << all.len()) {
            let mut h = HeaderMap::new();
            h.insert("accept", HeaderValue::from_static("*/*"));
            for (i, name) in all.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    h.insert(*name, HeaderValue::from_static("x-named, keep-alive"));
                }
                h.append(
                    HeaderName::from_bytes(format!("x-{i}").as_bytes()).unwrap(),
                    HeaderValue::from_static("1"),
                );
            }
            h.insert("x-named", HeaderValue::from_static("1"));
            h.insert("host", HeaderValue::from_static("example.test"));
            let mut old = h.clone();
            let named: Vec<HeaderName> = old
                .get_all(header::CONNECTION)
                .iter()
                .chain(old.get_all("proxy-connection").iter())
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
                .collect();
            for name in named.iter().chain(HOP_BY_HOP.iter()) {
                old.remove(name);
            }
            strip_hop_by_hop(&mut h);
            let order = |m: &HeaderMap| {
                m.iter()
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect::<Vec<_>>()
            };
            assert_eq!(order(&h), order(&old), "mask {mask:#b}");
        }
    }

    #[test]
    fn lookalikes_of_attribution_headers_are_removed_whatever_their_spelling() {
        let attribution = Attribution::render(
            &[HeaderTemplate::parse("X-Sandbox-Id", "sb-1").unwrap()],
            &[],
            "",
        );
        let mut h = HeaderMap::new();
        for spoof in [
            "x_sandbox_id",
            "X_SANDBOX-ID",
            "x-sandbox_id",
            "X-Sandbox-Id",
        ] {
            h.append(
                HeaderName::from_bytes(spoof.as_bytes()).unwrap(),
                HeaderValue::from_static("spoofed"),
            );
        }
        h.insert("x-sandbox-idx", HeaderValue::from_static("kept"));
        h.insert("x-sandbox", HeaderValue::from_static("kept"));
        attribution.apply(&mut h);
        assert_eq!(
            h.get_all("x-sandbox-id").iter().collect::<Vec<_>>(),
            ["sb-1"]
        );
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        let mut trailers = HeaderMap::new();
        trailers.insert("x_sandbox_id", HeaderValue::from_static("spoofed"));
        attribution.strip_lookalikes(&mut trailers);
        assert!(trailers.is_empty());
    }

    #[test]
    fn egressd_headers_from_upstream_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("x-egressd-reason", HeaderValue::from_static("allow-rule"));
        h.insert(
            "x-egressd-rule",
            HeaderValue::from_static("allow[0] line 1"),
        );
        h.insert("x-egressd-anything", HeaderValue::from_static("1"));
        h.insert("x-egressdd", HeaderValue::from_static("kept"));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        strip_egressd_headers(&mut h);
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, ["content-type", "x-egressdd"]);
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
