//! What a refusal says, for people and agents who only see what their client prints: the body's
//! plain lines (what was refused and why; what to do, from [`policy::Policy::suggest`] or the
//! failure; the policy's own `deny_message`), and a short reason in the status line's reason
//! phrase (`403 Forbidden by egressd: special-range 10.0.0.0/8`), which pip, npm and wget print
//! when they print nothing else of a refused request.

use std::fmt::Write;
use std::net::IpAddr;

use hyper::ext::ReasonPhrase;
use policy::{Decision, Policy, Reason, Target};

use crate::error::Failure;

/// Longest reason phrase written, in bytes: a status line, not a page.
const PHRASE_MAX: usize = 120;

/// The body of the response to `failure` for `target` (a CONNECT authority or a URL as
/// logged): the first line as egressd has always written it (status, target, why), then what to
/// do, then for a policy refusal the policy's `deny_message`. `policy` is the one that judged
/// the request, when one did.
pub(crate) fn body(target: &str, failure: &Failure, policy: Option<&Policy>) -> String {
    let status = failure.status();
    let detail = match failure {
        Failure::Denied(decision) | Failure::AddressesDenied { decision, .. } => {
            decision.to_string()
        }
        other => other.to_string(),
    };
    // No target when no request was read (a head egressd refused before parsing it).
    let named = if target.is_empty() {
        String::new()
    } else {
        format!("{target}: ")
    };
    let mut text = format!(
        "egressd: {} {}: {named}{detail}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    if let Some(advice) = advice(target, failure, policy) {
        let _ = writeln!(text, "egressd: {advice}");
    }
    if failure.decision().is_some()
        && let Some(message) = policy.and_then(Policy::deny_message)
    {
        text.push_str(message.trim_end());
        text.push('\n');
    }
    text
}

/// What to do about `failure`, on one line: for a policy refusal the change that would allow
/// it (or that no rule can), otherwise what the client can do.
fn advice(target: &str, failure: &Failure, policy: Option<&Policy>) -> Option<String> {
    let policy_advice = |target: &Target, decision: &Decision, addresses: &[(IpAddr, Decision)]| {
        let suggestion = policy?.suggest(target, decision, addresses)?;
        Some(match suggestion.toml {
            Some(toml) => format!("{} {}", suggestion.text, one_line(&toml)),
            None => suggestion.text,
        })
    };
    let named = parse_target(target);
    match failure {
        Failure::Denied(decision) => policy_advice(named.as_ref()?, decision, &[]),
        // The refused address, so that a carve-out the advice names opens the address the
        // proxy would dial.
        Failure::AddressesDenied { addr, decision } => {
            policy_advice(named.as_ref()?, decision, &[(*addr, decision.clone())])
        }
        Failure::ChainDenied { via, decision } => {
            let port = named.map_or(443, |t| t.port);
            let via = Target::new(via.trim_end_matches('.'), port);
            policy_advice(&via, decision, &[]).map(|advice| format!("for {via}: {advice}"))
        }
        Failure::MalformedTarget(_) => Some(
            "write the destination as a host name, a dotted-decimal IPv4 or a bracketed IPv6 \
             address, with a port from 1 to 65535: no policy rule allows a malformed destination"
                .to_owned(),
        ),
        Failure::BadRequest(_) => Some(
            "send absolute-form requests (GET http://host/path) or CONNECT host:port to the proxy"
                .to_owned(),
        ),
        Failure::ProxyAuthRequired | Failure::ProxyAuthInvalid => Some(
            "take the proxy URL, credential included, from egressd's readiness line (proxy_url, \
             or the HTTP_PROXY it exports)"
                .to_owned(),
        ),
        Failure::NoAddress | Failure::Dns(_) | Failure::DnsTimeout => Some(
            "the policy allows the name, but it could not be resolved: check its spelling, the \
             policy's [dns] upstreams and [dns.static], or retry"
                .to_owned(),
        ),
        Failure::Connect { .. }
        | Failure::ConnectTimeout { .. }
        | Failure::Upstream(_)
        | Failure::UpstreamTls(_)
        | Failure::ResponseTimeout
        | Failure::UploadStalled(_)
        | Failure::ParentRefused(_) => Some(
            "the policy allows it; the destination or the network failed: nothing in the policy \
             changes that, retry later"
                .to_owned(),
        ),
        Failure::HeadTooLarge { .. } | Failure::UriTooLong => Some(
            "send a smaller request head (fewer or shorter headers, a shorter URL), or raise \
             egressd's --max-header-bytes"
                .to_owned(),
        ),
        Failure::MalformedHead(_) | Failure::RequestBody(_) => Some(
            "the request is not valid HTTP/1.1: send it as RFC 9112 writes it"
                .to_owned(),
        ),
        Failure::HeadTimeout(_) | Failure::UploadTimeout(_) => Some(
            "the client stopped sending in the middle of its request: send it whole, without pauses"
                .to_owned(),
        ),
        Failure::Http2 => Some("speak HTTP/1.1, without HTTP/2 prior knowledge, to the proxy".to_owned()),
        Failure::ProxyResources(_) => Some(
            "egressd is out of descriptors or memory for the moment: retry shortly".to_owned(),
        ),
    }
}

/// A TOML rule on one line, for a body line: `[[allow]] host = "x" ports = [443]`.
fn one_line(toml: &str) -> String {
    toml.lines().collect::<Vec<_>>().join(" ")
}

/// The target as the policy reads it: a CONNECT authority, or a URL's host and port.
fn parse_target(target: &str) -> Option<Target> {
    let default_port = if target.starts_with("https://") {
        443
    } else {
        80
    };
    Target::parse_loose(target, default_port).ok()
}

/// The reason phrase for `failure`: the status's own, then `by egressd:`, the reason code and
/// what it concerns (the special range, the rule, the port or the target). Only characters a
/// reason phrase may hold (RFC 9112 §4: tabs, spaces, visible ASCII); at most [`PHRASE_MAX`].
pub(crate) fn reason_phrase(target: &str, failure: &Failure) -> Option<ReasonPhrase> {
    let status = failure.status();
    let code = failure.reason_code();
    let about = match failure.decision().map(|d| (&d.reason, &d.rule)) {
        Some((Reason::SpecialRange { special, .. }, _)) => special.range.net.to_string(),
        Some((Reason::PortNotAllowed { port }, _)) => format!("port {port}"),
        Some((_, Some(rule))) => rule.label().to_string(),
        Some(_) => target.to_owned(),
        None => String::new(),
    };
    let about = match failure {
        Failure::ChainDenied { via, .. } => format!("via {via}"),
        _ => about,
    };
    let phrase = format!(
        "{} by egressd: {code} {about}",
        status.canonical_reason().unwrap_or("Refused")
    );
    let phrase = phrase.trim_end();
    let mut bytes: Vec<u8> = phrase
        .bytes()
        .map(|b| match b {
            b'\t' | b' ' | 0x21..=0x7e => b,
            _ => b'?',
        })
        .collect();
    bytes.truncate(PHRASE_MAX);
    ReasonPhrase::try_from(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "version = 1\n[defaults]\nports = [443]\ndeny_message = \"Ask #infra.\"\n\n\
                          [[deny]]\nhost = \"gist.github.com\"\n";

    fn denied(policy: &Policy, target: &str) -> Failure {
        Failure::Denied(policy.decide(&Target::parse_loose(target, 80).unwrap()))
    }

    #[test]
    fn a_policy_refusal_says_what_why_and_what_to_do() {
        let policy = Policy::parse(POLICY, "p.toml").unwrap();
        let failure = denied(&policy, "example.org:443");
        let text = body("example.org:443", &failure, Some(&policy));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with("egressd: 403 Forbidden: example.org:443: deny (default-deny)")
        );
        assert_eq!(
            lines[1],
            "egressd: to allow it, add: [[allow]] host = \"example.org\" ports = [443]"
        );
        assert_eq!(lines[2], "Ask #infra.");

        let special = denied(&policy, "http://10.0.0.5:5432/");
        let text = body("http://10.0.0.5:5432/", &special, Some(&policy));
        assert!(text.contains("RFC 1918"), "{text}");
        assert!(
            text.contains(
                "reachable only through a [[danger_carve_out]] of the address and port, with a \
                 rule that allows the destination"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "add: [[danger_carve_out]] cidr = \"10.0.0.5/32\" ports = [5432] [[allow]] \
                 cidr = \"10.0.0.5/32\" ports = [5432]"
            ),
            "{text}"
        );
        let phrase = reason_phrase("http://10.0.0.5:5432/", &special).unwrap();
        assert_eq!(
            phrase.as_bytes(),
            b"Forbidden by egressd: special-range 10.0.0.0/8"
        );
        let rule = denied(&policy, "gist.github.com:443");
        assert_eq!(
            reason_phrase("gist.github.com:443", &rule)
                .unwrap()
                .as_bytes(),
            b"Forbidden by egressd: deny-rule deny[0] line 7"
        );
        assert!(body("gist.github.com:443", &rule, Some(&policy)).contains("remove or narrow"));
    }

    #[test]
    fn other_failures_say_what_to_do_without_the_policy_text() {
        let policy = Policy::parse(POLICY, "p.toml").unwrap();
        let text = body("x:1", &Failure::ProxyAuthRequired, Some(&policy));
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(!text.contains("#infra"), "{text}");
        assert_eq!(
            reason_phrase("x:1", &Failure::ProxyAuthRequired)
                .unwrap()
                .as_bytes(),
            b"Proxy Authentication Required by egressd: proxy-auth-required"
        );
        let policy = Policy::parse("version = 1\n", "p.toml").unwrap();
        let odd = reason_phrase("h\u{e9}\r\n:1", &denied(&policy, "example.org:443")).unwrap();
        assert!(odd.as_bytes().iter().all(|b| (0x20..0x7f).contains(b)));
    }
}
