//! Whom the host trusts, and how it proves itself: rustls configurations built once at start
//! from the platform's roots plus the operator's (`SSL_CERT_FILE`, `--ca-file`), an optional
//! client certificate, and `serve`'s own certificate. A file that does not load stops the
//! start with its path and the reason; nothing falls back to trusting less carefully.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The system bundles of the usual distributions, first found wins (OpenSSL's own probe).
const PLATFORM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{what} {path}: {why}")]
    File { what: &'static str, path: String, why: String },
    #[error("TLS: {0}")]
    Rustls(String),
}

fn file_error(what: &'static str, path: &Path, why: impl std::fmt::Display) -> TlsSetupError {
    TlsSetupError::File { what, path: path.display().to_string(), why: why.to_string() }
}

/// The extra roots an operator gave: `SSL_CERT_FILE` (the usual convention) and `--ca-file`.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    pub extra_roots: Vec<PathBuf>,
    /// `--ca-file` alone: named for this program (SSL_CERT_FILE often names the public bundle).
    pub ca_file: Option<PathBuf>,
}

impl Trust {
    /// `SSL_CERT_FILE` from `get`, then `ca_file`.
    pub fn from_env(get: impl Fn(&str) -> Option<String>, ca_file: Option<&Path>) -> Self {
        let mut extra_roots: Vec<PathBuf> =
            get("SSL_CERT_FILE").filter(|v| !v.trim().is_empty()).map(PathBuf::from).into_iter().collect();
        extra_roots.extend(ca_file.map(Path::to_path_buf));
        Trust { extra_roots, ca_file: ca_file.map(Path::to_path_buf) }
    }
}

/// The crypto provider every configuration uses (ring; wasmtime's own TLS uses it too).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file; a file with none is an error (a wrong path, a key file).
pub fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let pem = std::fs::read(path).map_err(|e| file_error(what, path, e))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(what, path, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(what, path, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(what: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let pem = std::fs::read(path).map_err(|e| file_error(what, path, e))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| file_error(what, path, format!("no PEM private key: {e}")))
}

/// The platform's roots (the system bundle; Mozilla's compiled-in list where a system has none,
/// e.g. a minimal container) plus every extra root.
pub fn root_store(trust: &Trust) -> Result<rustls::RootCertStore, TlsSetupError> {
    let mut store = rustls::RootCertStore::empty();
    match PLATFORM_BUNDLES.iter().map(Path::new).find(|p| p.is_file()) {
        Some(bundle) => {
            let found = rustls_native_certs::load_certs_from_paths(Some(bundle), None);
            let (added, _ignored) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
        }
        None => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    store.roots.extend(only_roots(&trust.extra_roots)?.roots);
    Ok(store)
}

/// Only the roots in `files` (PostgreSQL's `sslrootcert`, as libpq reads it).
pub fn only_roots(files: &[PathBuf]) -> Result<rustls::RootCertStore, TlsSetupError> {
    let mut store = rustls::RootCertStore::empty();
    for path in files {
        for cert in certificates("CA file", path)? {
            store.add(cert).map_err(|e| file_error("CA file", path, format!("not a usable CA certificate: {e}")))?;
        }
    }
    Ok(store)
}

/// A client certificate and its key (Elasticsearch clusters that require mTLS).
#[derive(Clone, Debug)]
pub struct ClientIdentity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The client configuration: verify every server against `roots`, optionally present `identity`.
pub fn client_config(
    roots: &rustls::RootCertStore,
    identity: Option<&ClientIdentity>,
) -> Result<rustls::ClientConfig, TlsSetupError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?
        .with_root_certificates(roots.clone());
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some(id) => {
            let chain = certificates("client certificate", &id.cert)?;
            let key = private_key("client key", &id.key)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| file_error("client certificate", &id.cert, format!("does not match its key: {e}")))
        }
    }
}

/// `serve`'s own certificate chain and key, for terminating TLS itself.
pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsSetupError> {
    let chain = certificates("TLS certificate", cert)?;
    let key_der = private_key("TLS key", key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| file_error("TLS certificate", cert, format!("does not match the key: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_cert_file_comes_first_then_the_flag() {
        let t = Trust::from_env(|k| (k == "SSL_CERT_FILE").then(|| "/a.pem".into()), Some(Path::new("/b.pem")));
        assert_eq!(t.extra_roots, vec![PathBuf::from("/a.pem"), PathBuf::from("/b.pem")]);
        assert!(Trust::from_env(|_| Some(String::new()), None).extra_roots.is_empty());
    }

    #[test]
    fn unusable_files_are_named_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = root_store(&Trust { extra_roots: vec![missing.clone()], ca_file: None }).unwrap_err().to_string();
        assert!(e.starts_with("CA file ") && e.contains("missing.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = root_store(&Trust { extra_roots: vec![empty], ca_file: None }).unwrap_err().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = server_config(&missing, &missing).unwrap_err().to_string();
        assert!(e.starts_with("TLS certificate"), "{e}");
    }

    #[test]
    fn the_platform_roots_are_never_empty() {
        assert!(!root_store(&Trust::default()).unwrap().is_empty());
    }
}
