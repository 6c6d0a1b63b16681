//! The readiness line, typed (docs/launcher.md, "Readiness"). Fields egressd adds later are
//! ignored, so a launcher built against this kit keeps working with a newer egressd.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::Error;

/// egressd's readiness line: where it listens and what to export into the sandbox.
///
/// It carries the proxy credential's secret (in `proxy_url` and `env`): keep it away from other
/// users and sandboxes. Its `Debug` output leaves the secret out.
#[derive(Clone, Deserialize)]
#[non_exhaustive]
pub struct Ready {
    /// egressd's version.
    pub version: String,
    /// egressd's process id.
    pub pid: u32,
    /// The sandbox id, as given.
    pub sandbox_id: String,
    /// The proxy's bound TCP address.
    pub proxy: SocketAddr,
    /// The proxy as a URL with the credential as userinfo: `http://egressd:SECRET@127.0.0.1:PORT`
    /// (no userinfo with `--no-proxy-credential`).
    pub proxy_url: String,
    /// Where the credential's secret came from.
    pub proxy_credential: CredentialSource,
    /// The proxy's Unix socket, if one was asked for.
    pub proxy_unix: Option<PathBuf>,
    /// The DNS stub's address (UDP and TCP), `None` with `--no-dns`.
    pub dns: Option<SocketAddr>,
    /// The DNS stub's Unix socket, if one was asked for.
    pub dns_unix: Option<PathBuf>,
    /// The policy in force.
    pub policy: PolicyInfo,
    /// How the policy is applied.
    pub mode: Mode,
    /// In report mode, what it means in one sentence.
    pub mode_detail: Option<String>,
    /// The metrics endpoint's address, if one was asked for.
    pub metrics: Option<SocketAddr>,
    /// With TLS inspection: the CA certificate egressd wrote.
    pub inspect_ca: Option<PathBuf>,
    /// With TLS inspection: the system's roots plus the CA.
    pub inspect_ca_bundle: Option<PathBuf>,
    /// The variables to export into the sandbox (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, their
    /// lower-case twins, `NO_PROXY`, and with a CA the bundle variables): pass them whole, e.g.
    /// `Command::envs(&ready.env)`.
    pub env: BTreeMap<String, String>,
    /// Always `"ready"`; checked by [`Ready::parse`].
    event: String,
}

/// Which policy is in force.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyInfo {
    /// The policy file's path, or `<built-in>`.
    pub origin: String,
    /// The SHA-256 of its text, in hex.
    pub sha256: String,
}

/// Where the proxy credential's secret came from (`proxy_credential`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum CredentialSource {
    /// A random secret egressd made at start (the default).
    Generated,
    /// `--proxy-credential-file`.
    File,
    /// `--no-proxy-credential`: the proxy serves requests without one.
    None,
}

/// How the policy is applied (`--mode`, or the policy's `defaults.mode`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Mode {
    /// Refusals are enforced.
    Enforce,
    /// Refusals by a rule or the default are let through and audited `would-deny`; special
    /// ranges and malformed targets stay refused.
    Report,
}

impl Mode {
    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Report => "report",
        }
    }
}

impl Ready {
    /// Parses a readiness line (or the `--ready-file`'s text).
    pub fn parse(line: &str) -> Result<Self, Error> {
        let ready: Self =
            serde_json::from_str(line.trim_end()).map_err(|e| Error::BadReadiness {
                reason: e.to_string(),
            })?;
        if ready.event != "ready" {
            return Err(Error::BadReadiness {
                reason: "its event is not \"ready\"".to_owned(),
            });
        }
        Ok(ready)
    }

    /// The `env` block as `KEY=VALUE` strings (for APIs that take them so).
    pub fn env_pairs(&self) -> Vec<String> {
        self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

impl fmt::Debug for Ready {
    /// Leaves the secret out: `proxy_url` and the `env` values are not shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ready")
            .field("version", &self.version)
            .field("pid", &self.pid)
            .field("sandbox_id", &self.sandbox_id)
            .field("proxy", &self.proxy)
            .field("proxy_url", &"<secret>")
            .field("proxy_credential", &self.proxy_credential)
            .field("proxy_unix", &self.proxy_unix)
            .field("dns", &self.dns)
            .field("dns_unix", &self.dns_unix)
            .field("policy", &self.policy)
            .field("mode", &self.mode)
            .field("metrics", &self.metrics)
            .field("inspect_ca", &self.inspect_ca)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The documented example (docs/launcher.md, "Readiness"), with a field a newer egressd
    /// might add.
    const LINE: &str = r#"{"event":"ready","version":"0.1.0","pid":4242,"sandbox_id":"job-42","proxy":"127.0.0.1:41234","proxy_url":"http://egressd:e6a465b5c6fd1264059c3d1219e0551b@127.0.0.1:41234","proxy_credential":"generated","proxy_unix":null,"dns":"127.0.0.1:53535","dns_unix":null,"policy":{"origin":"/etc/egressd/ci.toml","sha256":"5ec07"},"mode":"enforce","mode_detail":null,"metrics":"127.0.0.1:9464","inspect_ca":null,"inspect_ca_bundle":null,"env":{"HTTP_PROXY":"http://egressd:e6a465b5c6fd1264059c3d1219e0551b@127.0.0.1:41234","NO_PROXY":"localhost,127.0.0.1,::1"},"added_later":1}"#;

    #[test]
    fn parses_the_documented_line() {
        let ready = Ready::parse(LINE).unwrap();
        assert_eq!(ready.pid, 4242);
        assert_eq!(ready.proxy, "127.0.0.1:41234".parse().unwrap());
        assert_eq!(ready.dns, Some("127.0.0.1:53535".parse().unwrap()));
        assert_eq!(ready.proxy_credential, CredentialSource::Generated);
        assert_eq!(ready.mode, Mode::Enforce);
        assert_eq!(ready.policy.origin, "/etc/egressd/ci.toml");
        assert_eq!(ready.env["HTTP_PROXY"], ready.proxy_url);
        assert!(
            ready
                .env_pairs()
                .contains(&"NO_PROXY=localhost,127.0.0.1,::1".to_owned())
        );
    }

    #[test]
    fn debug_leaves_the_secret_out() {
        let ready = Ready::parse(LINE).unwrap();
        let shown = format!("{ready:?}");
        assert!(!shown.contains("e6a465b5"), "{shown}");
        assert!(shown.contains("HTTP_PROXY"), "{shown}");
    }

    #[test]
    fn refuses_what_is_not_a_readiness_line() {
        for line in [
            "",
            "hello",
            r#"{"event":"ready"}"#,
            &LINE.replace(r#""event":"ready""#, r#""event":"started""#),
            &LINE.replace("127.0.0.1:41234\",\"proxy_url", "nowhere\",\"proxy_url"),
        ] {
            let error = Ready::parse(line).unwrap_err();
            assert!(matches!(error, Error::BadReadiness { .. }), "{line}");
            assert!(!error.to_string().contains("e6a465b5"), "{error}");
        }
    }
}
