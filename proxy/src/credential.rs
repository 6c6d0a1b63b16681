//! The per-sandbox proxy credential: every request must carry `Proxy-Authorization: Basic`
//! with user `egressd` and the sandbox's secret, so another process on the same loopback (another
//! sandbox's job, say) cannot use this sandbox's proxy, identity and policy.
//!
//! The secret is compared in constant time and never written anywhere by this crate: refusals say
//! only that it was missing or wrong.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use http::header::PROXY_AUTHORIZATION;
use subtle::ConstantTimeEq;

use crate::error::Failure;

/// The user name of the credential.
pub const USER: &str = "egressd";

/// Characters a secret may have: URL-safe (RFC 3986 unreserved without `.` and `~`), so it needs no
/// percent-encoding as userinfo in a proxy URL.
fn url_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Shortest secret accepted from a launcher: 22 URL-safe characters carry 128 bits at best.
pub const MIN_SECRET_LEN: usize = 22;

/// Why a secret cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Too short to be a secret.
    #[error("the proxy credential is {0} characters; use at least {MIN_SECRET_LEN}")]
    TooShort(usize),
    /// A character that would need percent-encoding in a URL.
    #[error("the proxy credential may only use letters, digits, '-' and '_' (URL-safe)")]
    NotUrlSafe,
}

/// The secret and the `Basic` token that carries it.
#[derive(Clone)]
pub struct Credential {
    secret: String,
    token: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(<secret>)")
    }
}

impl Credential {
    /// A credential for `secret`, which must be URL-safe and at least [`MIN_SECRET_LEN`] long.
    pub fn new(secret: &str) -> Result<Self, SecretError> {
        if !secret.chars().all(url_safe) {
            return Err(SecretError::NotUrlSafe);
        }
        if secret.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort(secret.len()));
        }
        Ok(Self {
            token: STANDARD.encode(format!("{USER}:{secret}")),
            secret: secret.to_owned(),
        })
    }

    /// A fresh credential: 128 bits from the operating system's CSPRNG, in hex.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)?;
        let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        // Hex is URL-safe and 32 characters long.
        Self::new(&secret).map_err(|_| getrandom::Error::UNEXPECTED)
    }

    /// The secret, for the proxy URL the launcher hands the sandbox.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Checks the request's `Proxy-Authorization`: exactly one field, carrying the credential.
    /// More than one is invalid even when one of them is right: a request is not a list of
    /// guesses, and proxies in front of egressd may each read a different one.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<(), Failure> {
        let mut values = headers.get_all(PROXY_AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(match headers.contains_key(PROXY_AUTHORIZATION) {
                true => Failure::ProxyAuthInvalid,
                false => Failure::ProxyAuthRequired,
            });
        };
        match self.is_carried_by(value.as_bytes()) {
            true => Ok(()),
            false => Err(Failure::ProxyAuthInvalid),
        }
    }
}

impl Credential {
    /// True when an `Authorization` or `Proxy-Authorization` value is `Basic` with this
    /// credential (compared in constant time). The metrics endpoint asks it too.
    pub fn is_carried_by(&self, value: &[u8]) -> bool {
        let Some((scheme, token)) = value.split_first_chunk_of_space() else {
            return false;
        };
        scheme.eq_ignore_ascii_case(b"basic")
            && bool::from(token.trim_ascii().ct_eq(self.token.as_bytes()))
    }

    /// Checks a SOCKS username/password (RFC 1929): user [`USER`] and the secret. Both are
    /// compared whole, the secret in constant time.
    pub(crate) fn check_login(&self, user: &[u8], password: &[u8]) -> Result<(), Failure> {
        let user_ok = user == USER.as_bytes();
        let secret_ok = bool::from(password.ct_eq(self.secret.as_bytes()));
        if user_ok && secret_ok {
            Ok(())
        } else {
            Err(Failure::ProxyAuthInvalid)
        }
    }
}

/// `Basic dG9r` → (`Basic`, `dG9r`).
trait SplitScheme {
    fn split_first_chunk_of_space(&self) -> Option<(&[u8], &[u8])>;
}

impl SplitScheme for [u8] {
    fn split_first_chunk_of_space(&self) -> Option<(&[u8], &[u8])> {
        let at = self.iter().position(|&b| b == b' ')?;
        Some((&self[..at], &self[at + 1..]))
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(PROXY_AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_the_right_basic_credential_passes() {
        let c = Credential::new("0123456789abcdef0123456789abcdef").unwrap();
        let good = STANDARD.encode("egressd:0123456789abcdef0123456789abcdef");
        let cases = [
            (vec![format!("Basic {good}")], Ok(())),
            (vec![format!("basic {good}")], Ok(())),
            (vec![format!("Basic  {good} ")], Ok(())),
            // More than one field is invalid, whichever of them is right.
            (
                vec!["Basic Zm9vOmJhcg==".to_owned(), format!("Basic {good}")],
                Err("proxy-auth-invalid"),
            ),
            (
                vec![format!("Basic {good}"), "Basic Zm9vOmJhcg==".to_owned()],
                Err("proxy-auth-invalid"),
            ),
            (
                vec![format!("Basic {good}"), format!("Basic {good}")],
                Err("proxy-auth-invalid"),
            ),
            (vec![], Err("proxy-auth-required")),
            (vec!["Basic".to_owned()], Err("proxy-auth-invalid")),
            (vec![format!("Bearer {good}")], Err("proxy-auth-invalid")),
            (
                vec![STANDARD.encode("other:0123456789abcdef0123456789abcdef")],
                Err("proxy-auth-invalid"),
            ),
            (
                vec![format!(
                    "Basic {}",
                    STANDARD.encode("egressd:0123456789abcdef0123456789abcdeF")
                )],
                Err("proxy-auth-invalid"),
            ),
            (vec![format!("Basic {good}x")], Err("proxy-auth-invalid")),
        ];
        for (values, want) in cases {
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            let got = c.check(&headers(&values)).map_err(|f| f.reason_code());
            assert_eq!(got, want, "{values:?}");
        }
    }

    #[test]
    fn only_the_user_egressd_with_the_secret_logs_in() {
        let c = Credential::new("0123456789abcdef0123456789abcdef").unwrap();
        let secret = b"0123456789abcdef0123456789abcdef";
        assert!(c.check_login(b"egressd", secret).is_ok());
        for (user, password) in [
            (&b"egressd"[..], &b"0123456789abcdef0123456789abcdeF"[..]),
            (b"egressd", b"0123456789abcdef0123456789abcdef0"),
            (b"egressd", b""),
            (b"Egressd", secret),
            (b"", secret),
            (b"egressd\0", secret),
        ] {
            let got = c.check_login(user, password).map_err(|f| f.reason_code());
            assert_eq!(got, Err("proxy-auth-invalid"), "{user:?}");
        }
    }

    #[test]
    fn secrets_are_url_safe_and_long_enough() {
        assert_eq!(
            Credential::new("short").unwrap_err(),
            SecretError::TooShort(5)
        );
        assert_eq!(
            Credential::new("has space in it 0123456789").unwrap_err(),
            SecretError::NotUrlSafe
        );
        assert_eq!(
            Credential::new("p%40ss0123456789012345678").unwrap_err(),
            SecretError::NotUrlSafe
        );
        let a = Credential::generate().unwrap();
        let b = Credential::generate().unwrap();
        assert_eq!(a.secret().len(), 32);
        assert_ne!(a.secret(), b.secret());
        assert!(!format!("{a:?}").contains(a.secret()));
    }
}
