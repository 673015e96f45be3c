//! TLS to PostgreSQL with libpq's `sslmode` meanings, over rustls. tokio-postgres parses only
//! `disable`, `prefer` and `require`, so the host reads `sslmode` and `sslrootcert` itself and
//! hands tokio-postgres a URL it accepts plus a connector that verifies as libpq would:
//!
//! | sslmode       | encrypted            | certificate checked          |
//! |---------------|----------------------|------------------------------|
//! | `disable`     | no                   | –                            |
//! | `prefer`      | if the server can    | no (as libpq)                |
//! | `require`     | yes                  | no; the chain with `sslrootcert` (as libpq) |
//! | `verify-ca`   | yes                  | chain, not the host name     |
//! | `verify-full` | yes                  | chain and host name          |

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::net::tls::{self, Trust};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(v: &str) -> Option<Self> {
        Some(match v {
            "disable" => SslMode::Disable,
            // libpq's `allow` tries without TLS first; tokio-postgres cannot, so it encrypts
            // when it can, as `prefer` does.
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// Whether the server's certificate is checked at all.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// A state URL split into what tokio-postgres takes and how TLS is to be done.
#[derive(Debug, PartialEq, Eq)]
pub struct PgTls {
    /// The URL with `sslmode` as tokio-postgres knows it and without `sslrootcert`.
    pub url: String,
    pub mode: SslMode,
    pub root_cert: Option<String>,
}

/// Read `sslmode` (default `prefer`, as libpq) and `sslrootcert` from a `postgres://` URL.
/// The rest of the URL is kept byte for byte (percent-encoding, several hosts).
pub fn split(url: &str) -> Result<PgTls, String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, query),
        None => (url, ""),
    };
    let mut mode = SslMode::Prefer;
    let mut root_cert = None;
    let mut kept = Vec::new();
    for segment in query.split('&').filter(|s| !s.is_empty()) {
        let (key, value) = segment.split_once('=').unwrap_or((segment, ""));
        let decoded = || percent_encoding::percent_decode_str(value).decode_utf8_lossy().into_owned();
        match key {
            "sslmode" => {
                let v = decoded();
                mode = SslMode::parse(&v).ok_or_else(|| {
                    format!("sslmode={v} is not one of disable, allow, prefer, require, verify-ca, verify-full")
                })?
            }
            "sslrootcert" => root_cert = Some(decoded()),
            _ => kept.push(segment),
        }
    }
    // libpq: `require` with a root certificate given verifies the chain, as `verify-ca`.
    if mode == SslMode::Require && root_cert.is_some() {
        mode = SslMode::VerifyCa;
    }
    let theirs = match mode {
        SslMode::Disable => "sslmode=disable",
        SslMode::Prefer => "sslmode=prefer",
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "sslmode=require",
    };
    kept.push(theirs);
    Ok(PgTls { url: format!("{base}?{}", kept.join("&")), mode, root_cert })
}

/// Whom a verifying mode trusts. As libpq: `sslrootcert` alone where it is given. Without it,
/// `verify-full` checks against the system's and the operator's roots; `verify-ca`, which skips
/// the name, only against `--ca-file` (a public root would vouch for any server that has any
/// public certificate, and SSL_CERT_FILE often names the public bundle).
fn roots(tls: &PgTls) -> Result<rustls::RootCertStore, String> {
    if let Some(root) = &tls.root_cert {
        return tls::only_roots(&[root.into()]).map_err(|e| e.to_string());
    }
    let trust: Trust = crate::net::client::settings().map(|s| s.trust).map_err(|e| e.to_string())?;
    match (tls.mode, &trust.ca_file) {
        (SslMode::VerifyCa, None) => Err(
            "sslmode=verify-ca needs sslrootcert (or --ca-file): without the name check, public roots would accept any server"
                .into(),
        ),
        (SslMode::VerifyCa, Some(ca)) => tls::only_roots(std::slice::from_ref(ca)).map_err(|e| e.to_string()),
        _ => tls::root_store(&trust).map_err(|e| e.to_string()),
    }
}

/// The rustls connector for `tls` (None for `disable`).
pub fn connector(tls: &PgTls) -> Result<Option<tokio_postgres_rustls::MakeRustlsConnect>, String> {
    if tls.mode == SslMode::Disable {
        return Ok(None);
    }
    let provider = tls::provider();
    let webpki = match tls.mode.verifies() {
        true => Some(
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots(tls)?), provider.clone())
                .build()
                .map_err(|e| format!("TLS: {e}"))?,
        ),
        // Nothing to verify the chain against: no roots are loaded.
        false => None,
    };
    let algorithms = provider.signature_verification_algorithms;
    let verifier: Arc<dyn ServerCertVerifier> = Arc::new(LibpqVerifier { mode: tls.mode, webpki, algorithms });
    let config = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(tokio_postgres_rustls::MakeRustlsConnect::new(config)))
}

/// Checks as much as the mode asks for: nothing (`prefer`, `require`), the chain
/// (`verify-ca`), or the chain and the name (`verify-full`). Handshake signatures are always
/// checked, so the session is with the holder of the certificate's key.
#[derive(Debug)]
struct LibpqVerifier {
    mode: SslMode,
    /// The chain's verifier, for the modes that verify.
    webpki: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for LibpqVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(webpki) = &self.webpki else { return Ok(ServerCertVerified::assertion()) };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. },
            )) if self.mode == SslMode::VerifyCa => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_modes_become_what_tokio_postgres_parses() {
        let table = [
            ("postgres://u@h/db", SslMode::Prefer, "postgres://u@h/db?sslmode=prefer", None),
            ("postgres://u@h/db?sslmode=disable", SslMode::Disable, "postgres://u@h/db?sslmode=disable", None),
            (
                "postgres://u:p%40ss@h:5433/db?application_name=my%20app&sslmode=verify-full&sslrootcert=%2Fetc%2Fpg.pem",
                SslMode::VerifyFull,
                "postgres://u:p%40ss@h:5433/db?application_name=my%20app&sslmode=require",
                Some("/etc/pg.pem"),
            ),
            (
                "postgres://u@h1:5432,h2:5433/db?target_session_attrs=read-write",
                SslMode::Prefer,
                "postgres://u@h1:5432,h2:5433/db?target_session_attrs=read-write&sslmode=prefer",
                None,
            ),
            ("postgres://u@h/db?sslmode=verify-ca", SslMode::VerifyCa, "postgres://u@h/db?sslmode=require", None),
            ("postgres://u@h/db?sslmode=require", SslMode::Require, "postgres://u@h/db?sslmode=require", None),
            (
                "postgres://u@h/db?sslmode=require&sslrootcert=/r.pem",
                SslMode::VerifyCa,
                "postgres://u@h/db?sslmode=require",
                Some("/r.pem"),
            ),
        ];
        for (url, mode, theirs, root) in table {
            let t = split(url).unwrap();
            assert_eq!((t.mode, t.url.as_str(), t.root_cert.as_deref()), (mode, theirs, root), "{url}");
        }
        assert!(split("postgres://u@h/db?sslmode=verify").unwrap_err().contains("sslmode=verify"));
        assert!(!SslMode::Require.verifies() && SslMode::VerifyCa.verifies());
    }
}
