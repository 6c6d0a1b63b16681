//! From `egressd run`'s flags to what the App needs: every check of a flag's value happens here,
//! before anything starts, so a bad flag exits 2 with nothing bound.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use dnsstub::StubConfig;
use policy::{HeaderError, HeaderTemplate, Mode, Policy};
use proxy::{Credential, Limits, ParentProxy, ProxyConfig};

use crate::cli::RunArgs;
use crate::exit::Failure;
use crate::input_file;

/// What `egressd run` was asked to do.
pub struct Settings {
    /// The policy file; `None`: the built-in policy (nothing to reload).
    pub policy_path: Option<PathBuf>,
    /// The sandbox's identity.
    pub sandbox_id: String,
    /// The proxy's TCP address.
    pub proxy_listen: SocketAddr,
    /// The proxy's Unix socket, if any.
    pub proxy_unix: Option<PathBuf>,
    /// Its permissions.
    pub proxy_unix_mode: u32,
    /// Where the proxy credential came from.
    pub credential_source: CredentialSource,
    /// The DNS stub's address; `None` without a stub.
    pub dns_listen: Option<SocketAddr>,
    /// The DNS stub's Unix socket, if any.
    pub dns_unix: Option<PathBuf>,
    /// Where to write the readiness line too.
    pub ready_file: Option<PathBuf>,
    /// Stop when stdin closes.
    pub exit_on_stdin_eof: bool,
    /// How long draining may take.
    pub drain_timeout: Duration,
    /// The proxy's settings.
    pub proxy: ProxyConfig,
    /// The stub's settings.
    pub stub: StubConfig,
    /// The resolver's settings.
    pub resolver: resolve::Settings,
    /// TLS inspection's flags.
    pub inspect: InspectSettings,
    /// `--mode`: wins over the policy's `defaults.mode`, at start and on every reload.
    pub mode: Option<Mode>,
    /// `--metrics-listen`: where to serve `/metrics`; `None`: no metrics.
    pub metrics_listen: Option<SocketAddr>,
    /// `--metrics-require-credential`: the credential a scraper must send.
    pub metrics_credential: Option<Credential>,
    /// `--socks-listen`: the SOCKS5 listener's address; `None`: none.
    pub socks_listen: Option<SocketAddr>,
    /// `--socks-unix`: the SOCKS5 listener's Unix socket, if any.
    pub socks_unix: Option<PathBuf>,
    /// Its permissions.
    pub socks_unix_mode: u32,
}

/// TLS inspection's flags (docs/tls.md).
#[derive(Clone, Debug, Default)]
pub struct InspectSettings {
    /// `--inspect-ca-cert` and `--inspect-ca-key`: a launcher's CA instead of one made at start.
    pub ca_files: Option<(PathBuf, PathBuf)>,
    /// `--inspect-upstream-roots`: more roots to verify origins with.
    pub upstream_roots: Option<PathBuf>,
}

impl Settings {
    /// Checks and converts the flags.
    pub fn from_args(args: &RunArgs) -> Result<Self, Failure> {
        let dns_listen = (!args.no_dns).then_some(args.dns_listen);
        for (flag, addr) in [
            ("--proxy-listen", Some(args.proxy_listen)),
            ("--dns-listen", dns_listen),
            ("--metrics-listen", args.metrics_listen),
            ("--socks-listen", args.socks_listen),
        ] {
            if let Some(addr) = addr
                && !addr.ip().is_loopback()
                && !args.danger_listen_non_loopback
            {
                return Err(Failure::bad_input(anyhow!(
                    "{flag} {addr} is not a loopback address; add --danger-listen-non-loopback if you mean it"
                )));
            }
        }
        #[cfg(not(unix))]
        if args.proxy_unix.is_some() || args.dns_unix.is_some() || args.socks_unix.is_some() {
            return Err(Failure::bad_input(anyhow!(
                "--proxy-unix, --dns-unix and --socks-unix need a Unix system"
            )));
        }
        check_sandbox_id(&args.sandbox_id)?;
        let (credential, credential_source) = credential(args)?;
        let metrics_credential = match (args.metrics_require_credential, &credential) {
            (false, _) => None,
            (true, Some(credential)) => Some(credential.clone()),
            (true, None) => {
                return Err(Failure::bad_input(anyhow!(
                    "--metrics-require-credential needs the proxy credential, which \
                     --no-proxy-credential turns off"
                )));
            }
        };
        let l = &args.limits;
        let limits = Limits {
            connect_timeout: l.connect_timeout.0,
            dns_timeout: l.dns_timeout.0,
            tunnel_idle_timeout: l.tunnel_idle_timeout.0,
            header_read_timeout: l.header_read_timeout.0,
            max_header_bytes: l.max_header_bytes as usize,
            max_connections: l.max_connections as usize,
            response_timeout: l.response_timeout.0,
            upload_idle_timeout: l.upload_idle_timeout.0,
            response_idle_timeout: l.response_idle_timeout.0,
            ..Limits::DEFAULT
        };
        Ok(Self {
            policy_path: args.policy.clone(),
            sandbox_id: args.sandbox_id.clone(),
            proxy_listen: args.proxy_listen,
            proxy_unix: args.proxy_unix.clone(),
            proxy_unix_mode: args.proxy_unix_mode.unwrap_or(0o600),
            credential_source,
            dns_listen,
            dns_unix: args.dns_unix.clone(),
            ready_file: args.ready_file.clone(),
            exit_on_stdin_eof: args.exit_on_stdin_eof,
            drain_timeout: args.drain_timeout.0,
            proxy: ProxyConfig {
                sandbox_id: args.sandbox_id.clone(),
                extra_headers: extra_headers(&args.headers, args.headers_from_env)?,
                limits,
                parent: parent_proxy(args)?,
                credential,
                inspect: None,
                metrics: metrics::Handle::default(),
            },
            stub: StubConfig {
                sandbox_id: args.sandbox_id.clone(),
                ..StubConfig::default()
            },
            resolver: resolve::Settings::DEFAULT,
            inspect: InspectSettings {
                ca_files: args
                    .inspect_ca_cert
                    .clone()
                    .zip(args.inspect_ca_key.clone()),
                upstream_roots: args.inspect_upstream_roots.clone(),
            },
            mode: args.mode.map(Mode::from),
            metrics_listen: args.metrics_listen,
            metrics_credential,
            socks_listen: args.socks_listen,
            socks_unix: args.socks_unix.clone(),
            socks_unix_mode: args.socks_unix_mode.unwrap_or(0o600),
        })
    }

    /// The policy as it is applied: in `--mode`'s mode when one was given.
    pub fn applied(&self, policy: Policy) -> Policy {
        match self.mode {
            Some(mode) => policy.with_mode(mode),
            None => policy,
        }
    }
}

/// Where the proxy credential came from, as the readiness line says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialSource {
    /// Made at start.
    Generated,
    /// Read from `--proxy-credential-file`.
    File,
    /// `--no-proxy-credential`.
    None,
}

fn credential(args: &RunArgs) -> Result<(Option<Credential>, CredentialSource), Failure> {
    if args.no_proxy_credential {
        return Ok((None, CredentialSource::None));
    }
    let Some(path) = &args.proxy_credential_file else {
        let credential = Credential::generate()
            .map_err(|e| Failure::start(anyhow!("cannot make a proxy credential: {e}")))?;
        return Ok((Some(credential), CredentialSource::Generated));
    };
    let text = input_file::read_to_string(path).map_err(|e| {
        Failure::bad_input(anyhow!(
            "cannot read --proxy-credential-file {}: {e}",
            path.display()
        ))
    })?;
    let credential = Credential::new(text.trim_end_matches(['\n', '\r'])).map_err(|e| {
        Failure::bad_input(anyhow!("--proxy-credential-file {}: {e}", path.display()))
    })?;
    Ok((Some(credential), CredentialSource::File))
}

/// The sandbox id goes into audit events and, through `{sandbox_id}`, into forwarded headers: a
/// line break there could forge a header or an audit line, so any control character fails the
/// start rather than being stripped (the id would no longer be the launcher's).
fn check_sandbox_id(id: &str) -> Result<(), Failure> {
    match id.chars().find(|c| c.is_control()) {
        Some(c) => Err(Failure::bad_input(anyhow!(
            "--sandbox-id (EGRESSD_SANDBOX_ID) holds the control character U+{:04X}; give an id without CR, LF or other control characters",
            u32::from(c)
        ))),
        None => Ok(()),
    }
}

/// The attribution headers: one per `--header` flag, whose value must hold no control character
/// at all (a newline would otherwise make a second header a launcher never meant, an
/// `X-Sandbox-Id` say); from EGRESSD_HEADERS, one per line, each held to the same rule (a CR
/// before a line's end is an error too, never trimmed). Values are not printed in errors: a
/// header may carry a token.
fn extra_headers(headers: &[String], from_env: bool) -> Result<Vec<HeaderTemplate>, Failure> {
    let source = if from_env {
        "EGRESSD_HEADERS"
    } else {
        "--header"
    };
    let lines: Vec<&str> = if from_env {
        headers.iter().flat_map(|h| h.split('\n')).collect()
    } else {
        headers.iter().map(String::as_str).collect()
    };
    lines
        .into_iter()
        .enumerate()
        .filter(|(_, h)| !h.trim().is_empty())
        .map(|(i, h)| {
            let n = i + 1;
            let (name, value) = h.split_once(':').ok_or_else(|| {
                Failure::bad_input(anyhow!("{source} #{n}: write 'Name: value'"))
            })?;
            let name = name.trim();
            if let Some(c) = h.chars().find(|c| c.is_control()) {
                return Err(Failure::bad_input(anyhow!(
                    "{source} #{n} ({name:?}) holds the control character U+{:04X}; give one header per flag, without CR, LF or other control characters",
                    u32::from(c)
                )));
            }
            HeaderTemplate::parse(name, value.trim()).map_err(|error| match error {
                // The placeholder's text is a piece of the value, which may be a token.
                HeaderError::Placeholder { name, .. } => Failure::bad_input(anyhow!(
                    "{source} #{n}: the value of {name:?} has a brace that is not {{sandbox_id}} (write {{{{ and }}}} for literal braces)"
                )),
                error => Failure::bad_input(anyhow!("{source} #{n}: {error}")),
            })
        })
        .collect()
}

fn parent_proxy(args: &RunArgs) -> Result<Option<ParentProxy>, Failure> {
    let Some(addr) = args.parent_proxy else {
        return Ok(None);
    };
    let authorization = match &args.parent_proxy_auth {
        None => None,
        Some(value) => {
            let mut value = http::HeaderValue::from_str(value).map_err(|_| {
                Failure::bad_input(anyhow!("--parent-proxy-auth is not a valid header value"))
            })?;
            // Never shown by a Debug print (a log line, a panic message).
            value.set_sensitive(true);
            Some(value)
        }
    };
    Ok(Some(ParentProxy {
        addr,
        authorization,
    }))
}
