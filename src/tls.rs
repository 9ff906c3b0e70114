//! rustls for the connections to PostgreSQL and Redis: one crypto provider (ring, the
//! one the SMTP client links already), the trust roots, and the two weaker checks that
//! libpq's `sslmode` values ask for (`require` without a CA: encrypt, check nothing;
//! `verify-ca`: the chain, not the name).

use std::{path::Path, sync::Arc};

use anyhow::Context;
use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    client::WebPkiServerVerifier,
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime},
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// ring, built in and never picked by chance: a second provider linked in by some
/// dependency would otherwise make `ClientConfig::builder()` panic.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process-wide default, for clients that build their own rustls
/// configuration from it (the Redis client). Idempotent.
pub fn install_default_provider() {
    // Err only when a default is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Where the certificates a server's chain must lead to come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// Mozilla's roots, compiled in (`webpki-roots`): public CAs of managed services,
    /// and no CA bundle needed in the image.
    Bundled,
    /// The operating system's store (`sslrootcert=system`).
    System,
    /// The PEM certificates in a file: a private CA.
    File(std::path::PathBuf),
}

impl Roots {
    pub fn store(&self) -> anyhow::Result<RootCertStore> {
        let mut store = RootCertStore::empty();
        match self {
            Self::Bundled => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            Self::System => {
                let found = rustls_native_certs::load_native_certs();
                if found.certs.is_empty() {
                    anyhow::bail!(
                        "sslrootcert=system: no certificates found in the system's store ({} errors)",
                        found.errors.len()
                    );
                }
                store.add_parsable_certificates(found.certs);
            }
            Self::File(path) => {
                for cert in read_pem_certificates(path)? {
                    store
                        .add(cert)
                        .with_context(|| format!("sslrootcert {}: a certificate is not a usable CA", path.display()))?;
                }
            }
        }
        Ok(store)
    }
}

/// Every certificate in a PEM file; an error when there is none.
pub fn read_pem_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading the CA file {}", path.display()))?;
    pem_certificates(&pem, path)
}

/// The certificates in `pem`, read from `path`; an error when there is none.
pub fn pem_certificates(pem: &[u8], path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("the CA file {} is not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("the CA file {} holds no certificate", path.display());
    }
    Ok(certs)
}

/// How much of the server's certificate is checked.
#[derive(Debug)]
pub enum Verify {
    /// Nothing: the connection is encrypted, but anyone on the path could answer it.
    Nothing,
    /// The chain up to one of the roots, not the host name.
    Chain(RootCertStore),
    /// The chain and that the certificate names the host connected to.
    Full(RootCertStore),
}

pub fn client_config(verify: Verify) -> anyhow::Result<ClientConfig> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let config = match verify {
        Verify::Full(roots) => builder.with_root_certificates(roots).with_no_client_auth(),
        Verify::Chain(roots) => {
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("building the certificate verifier")?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly { inner }))
                .with_no_client_auth()
        }
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCheck { provider }))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// `verify-ca`: the full check, except that a certificate for another name passes.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain before the name, so a name error means the chain held.
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `require` and `prefer` without a CA, as libpq: any certificate. The handshake's
/// signatures are still checked, so the session keys belong to whoever holds the
/// certificate's key.
#[derive(Debug)]
struct NoCheck {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for NoCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
