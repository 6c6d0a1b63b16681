//! The inspection CA: made at start (its key only ever in memory) or loaded from a launcher's
//! files, and the leaf certificates it mints, one per name the sandbox connects to, cached and
//! short-lived.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// How long a minted leaf certificate is valid.
pub const LEAF_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How long a minted leaf is served from the cache: well inside its lifetime, so a client never
/// sees one about to expire.
const LEAF_REUSE: Duration = Duration::from_secs(12 * 3600);
/// Leaves kept at most; past it the cache starts over (each leaf costs a few kilobytes).
const LEAF_CACHE: usize = 1024;
/// How long a CA made at start is valid. Its key dies with the process, so nothing can be signed
/// with it afterwards whatever the date says.
const CA_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// Clock skew allowed for: certificates start being valid this long before they are made.
const BACKDATE: Duration = Duration::from_secs(3600);

/// Why the CA could not be made, loaded, or sign.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// rcgen refused (a bad key or certificate, or a name it cannot encode).
    #[error("{0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the key.
    #[error("{0}")]
    Tls(#[from] rustls::Error),
    /// The key is not a PEM private key rcgen can sign with.
    #[error("the CA key is not a PKCS#8, PKCS#1 or SEC1 PEM private key of a supported type")]
    Key,
    /// The certificate file does not hold a CA certificate.
    #[error("the CA certificate file holds no PEM certificate")]
    NoCertificate,
    /// The random number generator failed.
    #[error("no randomness: {0}")]
    Random(getrandom::Error),
}

/// The CA that signs leaf certificates for inspected names.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    provider: Arc<CryptoProvider>,
    leaves: Mutex<HashMap<String, Leaf>>,
}

struct Leaf {
    config: Arc<ServerConfig>,
    made: Instant,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertificateAuthority(<key in memory>)")
    }
}

impl CertificateAuthority {
    /// A new CA: an ECDSA P-256 key made now, kept in this process's memory only, and a
    /// self-signed certificate naming `label` (the sandbox id, say) in its common name.
    pub fn generate(label: &str) -> Result<Self, CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "egressd");
        let suffix = if label.is_empty() {
            String::new()
        } else {
            format!(
                " for {}",
                label
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(40)
                    .collect::<String>()
            )
        };
        name.push(DnType::CommonName, format!("egressd inspection CA{suffix}"));
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(serial()?);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_LIFETIME;
        let cert = params.self_signed(&key)?;
        Ok(Self::with_issuer(Issuer::new(params, key), cert.pem()))
    }

    /// A CA from a launcher's PEM files (a CA baked into a VM image, say).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CaError> {
        let key = KeyPair::from_pem(key_pem).map_err(|_| CaError::Key)?;
        let first = first_certificate_pem(cert_pem).ok_or(CaError::NoCertificate)?;
        let issuer = Issuer::from_ca_cert_pem(&first, key)?;
        Ok(Self::with_issuer(issuer, first))
    }

    fn with_issuer(issuer: Issuer<'static, KeyPair>, cert_pem: String) -> Self {
        Self {
            issuer,
            cert_pem,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            leaves: Mutex::new(HashMap::new()),
        }
    }

    /// The CA certificate, PEM: what clients must trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The TLS server configuration presenting a leaf certificate for `name` (a canonical DNS
    /// name), minted now or taken from the cache. It offers h2, then HTTP/1.1 (ALPN).
    pub(crate) fn server_config(&self, name: &str) -> Result<Arc<ServerConfig>, CaError> {
        {
            let leaves = self.leaves.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(leaf) = leaves.get(name)
                && leaf.made.elapsed() < LEAF_REUSE
            {
                return Ok(leaf.config.clone());
            }
        }
        let config = Arc::new(self.mint(name)?);
        let mut leaves = self.leaves.lock().unwrap_or_else(|p| p.into_inner());
        if leaves.len() >= LEAF_CACHE {
            leaves.retain(|_, leaf| leaf.made.elapsed() < LEAF_REUSE);
            if leaves.len() >= LEAF_CACHE {
                leaves.clear();
            }
        }
        leaves.insert(
            name.to_owned(),
            Leaf {
                config: config.clone(),
                made: Instant::now(),
            },
        );
        Ok(config)
    }

    fn mint(&self, name: &str) -> Result<ServerConfig, CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![name.to_owned()])?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.serial_number = Some(serial()?);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + LEAF_LIFETIME;
        let cert = params.signed_by(&key, &self.issuer)?;
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], private)?;
        // HTTP/2 when the client offers it (each stream a request of its own), else HTTP/1.1.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// 16 random bytes, the top bit clear (serials are positive integers).
fn serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(CaError::Random)?;
    bytes[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&bytes))
}

/// The first `CERTIFICATE` block of a PEM text.
fn first_certificate_pem(text: &str) -> Option<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = text.find(BEGIN)?;
    let end = text[start..].find(END)? + start + END.len();
    Some(format!("{}\n", &text[start..end]))
}

/// A DER certificate as PEM text, for CA bundles.
pub fn certificate_pem(der: &CertificateDer<'_>) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_are_cached_per_name_and_a_loaded_ca_signs_too() {
        let ca = CertificateAuthority::generate("sb-1").unwrap();
        let a = ca.server_config("a.example").unwrap();
        assert!(Arc::ptr_eq(&a, &ca.server_config("a.example").unwrap()));
        assert!(!Arc::ptr_eq(&a, &ca.server_config("b.example").unwrap()));
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(!format!("{ca:?}").contains("PRIVATE"));

        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let loaded = CertificateAuthority::from_pem(&cert.pem(), &key.serialize_pem()).unwrap();
        loaded.server_config("c.example").unwrap();
        assert!(CertificateAuthority::from_pem("nothing", &key.serialize_pem()).is_err());
    }

    #[test]
    fn pem_round_trip() {
        let der = CertificateDer::from(vec![1u8; 100]);
        let pem = certificate_pem(&der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        assert_eq!(first_certificate_pem(&pem).unwrap(), pem);
    }
}
