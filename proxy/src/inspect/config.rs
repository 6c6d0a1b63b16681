//! Inspection settings that do not change with the policy: the CA that mints the leaves clients
//! see, and the TLS client configuration for origins (their roots).

use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::CertificateDer;

use super::ca::CertificateAuthority;

/// Inspection settings that do not change with the policy: the CA, and the TLS client
/// configuration for origins (their roots).
#[derive(Clone)]
pub struct InspectConfig {
    /// Mints the leaf certificates clients see.
    pub ca: Arc<CertificateAuthority>,
    pub(crate) upstream: Arc<rustls::ClientConfig>,
    roots: usize,
}

impl std::fmt::Debug for InspectConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "InspectConfig {{ ca: {:?}, roots: {} }}",
            self.ca, self.roots
        )
    }
}

impl InspectConfig {
    /// Inspection with `ca`, trusting `roots` (the system's, plus any given) for origins.
    pub fn new(
        ca: CertificateAuthority,
        roots: Vec<CertificateDer<'static>>,
    ) -> Result<Self, rustls::Error> {
        let (config, roots) = client_config(roots)?;
        Ok(Self {
            ca: Arc::new(ca),
            upstream: Arc::new(config),
            roots,
        })
    }

    /// How many origin roots were usable.
    pub fn roots(&self) -> usize {
        self.roots
    }
}

/// The TLS client configuration for origins: the given roots, HTTP/1.1 by ALPN, ring.
pub(crate) fn client_config(
    roots: Vec<CertificateDer<'static>>,
) -> Result<(ClientConfig, usize), rustls::Error> {
    let mut store = rustls::RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(roots);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, added))
}
