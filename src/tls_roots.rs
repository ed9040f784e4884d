//! What an outgoing HTTPS call to one of the partner's own services trusts: the identity
//! provider's discovery document and key set (`session.jwks`), the partner's app
//! (`session.forward`), the OpenTelemetry collector (`telemetry`).
//!
//! By default the public web PKI roots (Mozilla's, built in), as for every call. A service inside
//! the partner's network often has a certificate from the partner's own CA instead; its CA file
//! (PEM, one or more certificates) adds that CA to the roots for that service's calls alone. Calls
//! to Proof never trust it.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

/// A bundle larger than this is not a CA file.
const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;

/// The roots one source's calls trust, read once when the configuration is checked.
#[derive(Debug, Clone, Default)]
pub struct TlsRoots {
    /// The partner's CA certificates, besides the public roots; `None` without a CA file.
    extra: Option<Arc<RootCertStore>>,
}

impl TlsRoots {
    /// The public roots, and the CA certificates in the PEM file at `path` when it is not empty.
    /// A file that cannot be read, holds no certificate, or holds one that is not a CA
    /// certificate rustls can use as a root is refused with the reason, never quoting the file.
    pub fn with_ca_file(path: &str) -> Result<Self, String> {
        let path = path.trim();
        if path.is_empty() {
            return Ok(Self::default());
        }
        let size = std::fs::metadata(path)
            .map_err(|e| format!("cannot read {path:?}: {e}"))?
            .len();
        if size > MAX_CA_FILE_BYTES {
            return Err(format!(
                "{path:?} is larger than {MAX_CA_FILE_BYTES} bytes: not a CA file"
            ));
        }
        let pem = std::fs::read(path).map_err(|e| format!("cannot read {path:?}: {e}"))?;
        let certificates = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{path:?} is not a PEM file of certificates: {e}"))?;
        if certificates.is_empty() {
            return Err(format!(
                "{path:?} holds no certificate (PEM, \"-----BEGIN CERTIFICATE-----\")"
            ));
        }
        // Parsed into roots here, once, so that a bad certificate fails the configuration check
        // rather than every call.
        let mut extra = RootCertStore::empty();
        for certificate in certificates {
            extra
                .add(certificate)
                .map_err(|_| format!("{path:?} holds a certificate that is not valid X.509"))?;
        }
        Ok(Self {
            extra: Some(Arc::new(extra)),
        })
    }

    /// The TLS configuration for these roots; `None` without a CA file, when awc's own (the same
    /// public roots) applies. HTTP/2 and HTTP/1.1 are offered, as awc's own configuration does.
    pub fn client_config(&self) -> Option<Arc<ClientConfig>> {
        let extra = self.extra.as_ref()?;
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        roots.roots.extend(extra.roots.iter().cloned());
        let mut config = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Some(Arc::new(config))
    }
}
