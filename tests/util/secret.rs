//! The proxy credential as tests handle it: the secret read back from the readiness line, the
//! `Proxy-Authorization` header that carries it, and a wrong one that differs in one character.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The credential's user name (proxy::CREDENTIAL_USER; the contract, so spelled out here).
pub const USER: &str = "egressd";

/// The secret in the readiness line's `proxy_url` (`http://egressd:SECRET@ADDR`).
pub fn secret_of(ready: &serde_json::Value) -> String {
    let url = ready["proxy_url"].as_str().expect("proxy_url is a string");
    let userinfo = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split_once('@'))
        .map(|(userinfo, _)| userinfo)
        .unwrap_or_else(|| panic!("no userinfo in proxy_url {url}"));
    let (user, secret) = userinfo.split_once(':').expect("user:secret");
    assert_eq!(user, USER, "{url}");
    secret.to_owned()
}

/// `Basic base64("egressd:SECRET")`: the value a client sends.
pub fn basic(secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{USER}:{secret}")))
}

/// The `Proxy-Authorization` header line for `secret`.
pub fn proxy_authorization(secret: &str) -> String {
    format!("Proxy-Authorization: {}", basic(secret))
}

/// `secret` with its last character changed: the same length and alphabet, not the secret.
pub fn altered(secret: &str) -> String {
    let mut chars: Vec<char> = secret.chars().collect();
    let last = chars.last_mut().expect("a secret is not empty");
    *last = if *last == '0' { '1' } else { '0' };
    chars.into_iter().collect()
}

/// Every form in which `secret` could leak: itself and the `Basic` token that carries it.
pub fn leak_forms(secret: &str) -> [String; 2] {
    [
        secret.to_owned(),
        STANDARD.encode(format!("{USER}:{secret}")),
    ]
}
