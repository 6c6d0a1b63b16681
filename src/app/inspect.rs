//! TLS inspection's share of the App (docs/tls.md): when the CA exists, where its certificate is
//! written, what the sandbox's environment gains to trust it, and the brokered credentials' real
//! values, read at start and on every reload.
//!
//! The CA exists when the policy at start inspects something, or the launcher hands one over with
//! `--inspect-ca-cert`/`--inspect-ca-key`. A reload that brings the first inspected rule into a
//! sidecar started without a CA is refused: the sandbox's environment (which says what to trust)
//! was fixed at start, so a CA made later would not be trusted.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use policy::{Policy, ValueSource};
use proxy::{CertificateAuthority, InspectConfig, Secrets, certificate_pem};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::settings::InspectSettings;
use crate::exit::Failure;
use crate::input_file;

/// The CA's files on disk, for the readiness line, the environment and the cleanup.
#[derive(Clone, Debug)]
pub struct CaFiles {
    /// The CA certificate alone (PEM).
    pub cert: PathBuf,
    /// The system's roots followed by the CA certificate (PEM): for variables that replace a
    /// client's whole trust store.
    pub bundle: PathBuf,
    /// The private directory egressd made for them, if it made one.
    pub dir: Option<PathBuf>,
}

impl CaFiles {
    /// Variables that make common clients trust the CA (docs/tls.md lists each).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let cert = self.cert.display().to_string();
        let bundle = self.bundle.display().to_string();
        vec![
            // OpenSSL's default paths (Python's ssl, Ruby), Go: replaces the default store, so
            // the bundle carries the system's roots too. git and libcurl read their own variables
            // below; wget reads none (docs/tls.md gives its wgetrc line).
            ("SSL_CERT_FILE", bundle.clone()),
            ("CURL_CA_BUNDLE", bundle.clone()),
            ("REQUESTS_CA_BUNDLE", bundle.clone()),
            ("GIT_SSL_CAINFO", bundle.clone()),
            ("PIP_CERT", bundle.clone()),
            ("CARGO_HTTP_CAINFO", bundle.clone()),
            ("AWS_CA_BUNDLE", bundle.clone()),
            ("NPM_CONFIG_CAFILE", bundle),
            // Node adds these to its own bundled roots.
            ("NODE_EXTRA_CA_CERTS", cert),
        ]
    }

    /// Removes what egressd wrote (never a launcher's own files).
    pub fn remove(&self) {
        for path in [&self.cert, &self.bundle] {
            if let Err(error) = std::fs::remove_file(path) {
                tracing::debug!(path = %path.display(), %error, "could not remove at exit");
            }
        }
        if let Some(dir) = &self.dir
            && let Err(error) = std::fs::remove_dir(dir)
        {
            tracing::debug!(path = %dir.display(), %error, "could not remove at exit");
        }
    }
}

/// Inspection as prepared at start: the proxy's settings, and the PEM texts to write once
/// everything is bound.
pub struct Prepared {
    pub config: InspectConfig,
    /// The CA certificate.
    pub cert: String,
    /// The system's roots, then the CA certificate.
    pub bundle: String,
}

/// Makes (or loads) the CA when `policy` inspects or the launcher gave one, and loads the
/// origins' roots. `Ok(None)`: no CA. Bad files are bad input (exit 2).
pub fn prepare(
    settings: &InspectSettings,
    policy: &Policy,
    sandbox_id: &str,
) -> Result<Option<Prepared>, Failure> {
    let ca = match &settings.ca_files {
        Some((cert, key)) => {
            let read = |path: &Path, what: &str| {
                input_file::read_to_string(path)
                    .with_context(|| format!("cannot read {what} {}", path.display()))
                    .map_err(Failure::bad_input)
            };
            let (cert_pem, key_pem) = (
                read(cert, "--inspect-ca-cert")?,
                read(key, "--inspect-ca-key")?,
            );
            CertificateAuthority::from_pem(&cert_pem, &key_pem)
                .context("--inspect-ca-cert/--inspect-ca-key")
                .map_err(Failure::bad_input)?
        }
        None if policy.inspects() => CertificateAuthority::generate(sandbox_id)
            .context("cannot make the inspection CA")
            .map_err(Failure::start)?,
        None => return Ok(None),
    };
    let system = rustls_native_certs::load_native_certs();
    for error in &system.errors {
        tracing::warn!(%error, "some of the system's root certificates could not be read");
    }
    let mut roots: Vec<CertificateDer<'static>> = system.certs;
    let system_count = roots.len();
    if let Some(path) = &settings.upstream_roots {
        let extra = input_file::read(path)
            .map_err(|e| e.to_string())
            .and_then(|pem| {
                CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| {
                Failure::bad_input(anyhow!(
                    "cannot read --inspect-upstream-roots {}: {e}",
                    path.display()
                ))
            })?;
        if extra.is_empty() {
            return Err(Failure::bad_input(anyhow!(
                "--inspect-upstream-roots {} holds no PEM certificate",
                path.display()
            )));
        }
        roots.extend(extra);
    }
    let mut bundle: String = roots[..system_count].iter().map(certificate_pem).collect();
    bundle.push_str(ca.cert_pem());
    let cert_pem = ca.cert_pem().to_owned();
    let config = InspectConfig::new(ca, roots)
        .context("cannot configure TLS to origins")
        .map_err(Failure::start)?;
    tracing::info!(origin_roots = config.roots(), "TLS inspection ready");
    Ok(Some(Prepared {
        config,
        cert: cert_pem,
        bundle,
    }))
}

/// Writes the CA certificate and the bundle beside `ready_file` (`READY.ca.pem`,
/// `READY.ca-bundle.pem`), else into a private directory made now; mode 0644, written aside then
/// renamed.
pub fn write_files(ready_file: Option<&Path>, prepared: &Prepared) -> Result<CaFiles, Failure> {
    let (cert, bundle) = (prepared.cert.as_str(), prepared.bundle.as_str());
    let (cert_path, bundle_path, dir) = match ready_file {
        Some(ready) => {
            let beside = |suffix: &str| {
                let mut path = ready.as_os_str().to_owned();
                path.push(suffix);
                PathBuf::from(path)
            };
            (beside(".ca.pem"), beside(".ca-bundle.pem"), None)
        }
        None => {
            let dir = private_dir().map_err(Failure::start)?;
            (dir.join("ca.pem"), dir.join("ca-bundle.pem"), Some(dir))
        }
    };
    let files = CaFiles {
        cert: cert_path,
        bundle: bundle_path,
        dir,
    };
    for (path, text) in [(&files.cert, cert), (&files.bundle, bundle)] {
        write_public(path, text)
            .with_context(|| format!("cannot write the CA certificate to {}", path.display()))
            .inspect_err(|_| files.remove())
            .map_err(Failure::start)?;
    }
    Ok(files)
}

/// A new directory only egressd's user may enter (0700), in the temporary directory.
fn private_dir() -> anyhow::Result<PathBuf> {
    let base = std::env::temp_dir();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut last = None;
    for attempt in 0..10u32 {
        let dir = base.join(format!(
            "egressd-{}-{:08x}",
            std::process::id(),
            nanos.wrapping_add(attempt)
        ));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        match builder.create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) => last = Some(e),
        }
    }
    Err(anyhow!(
        "cannot create a private directory in {}: {}",
        base.display(),
        last.map_or_else(String::new, |e| e.to_string())
    ))
}

/// Writes a certificate (public: mode 0644) aside, then renames it into place.
fn write_public(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut aside = path.as_os_str().to_owned();
    aside.push(".tmp");
    let aside = PathBuf::from(aside);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o644);
    let mut file = options.open(&aside)?;
    file.write_all(text.as_bytes())?;
    drop(file);
    std::fs::rename(&aside, path)
}

/// Reads the real value of every `[[credential]]` of `policy`: files without a trailing newline,
/// variables from egressd's environment. An error names the credential and where it looked,
/// never a value.
pub fn secrets(policy: &Policy) -> anyhow::Result<Secrets> {
    let mut secrets = Secrets::new();
    for credential in policy.credentials() {
        let label = credential.label();
        let value = match &credential.source {
            ValueSource::File(path) => input_file::read_to_string(Path::new(path))
                .map(|text| text.trim_end_matches(['\n', '\r']).to_owned())
                .with_context(|| format!("{label}: cannot read value_file {path}"))?,
            ValueSource::Env(name) => {
                std::env::var(name).map_err(|e| anyhow!("{label}: value_env {name}: {e}"))?
            }
        };
        secrets
            .insert(credential.index, &value)
            .with_context(|| format!("{label}: the value from {}", credential.source))?;
    }
    Ok(secrets)
}
