//! TLS for the tracker and its clients, so that passwords, tokens and wrapped keys never cross
//! a network in clear: the tracker serves https with `--tls-cert`/`--tls-key`; peers and the
//! admin CLI verify the tracker's certificate against the public web's roots, or against a
//! private CA given with `--ca FILE`.
//!
//! rustls with the `aws-lc-rs` provider (aws-lc also does getcipher's RSA, so it is the only C
//! crypto library built); PEM files are read with `rustls-pki-types`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;

/// Why a certificate, key or CA file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificates from {}: {reason}", path.display())]
    Certificates { path: PathBuf, reason: String },
    #[error("{} holds no certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("cannot read a private key from {}: {reason}", path.display())]
    PrivateKey { path: PathBuf, reason: String },
    #[error("unusable TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("CA certificate in {} not accepted: {reason}", path.display())]
    Ca { path: PathBuf, reason: String },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Certificates {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The tracker's server side: a certificate chain and its private key, both PEM.
///
/// # Errors
/// A file that cannot be read or parsed, or a key that does not fit the certificate.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = read_certificates(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::PrivateKey {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client side: the public web's roots, plus the certificates of `ca` when given.
///
/// # Errors
/// A CA file that cannot be read or holds no usable certificate.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca {
        for cert in read_certificates(path)? {
            roots.add(cert).map_err(|e| TlsError::Ca {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
