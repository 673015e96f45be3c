//! A throwaway PKI for the TLS tests: a CA made at test time, a server certificate for the
//! names the tests use, and helpers to reach https stand-ins from the test itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Names every test server's certificate carries (the browser test gives each site a name).
pub const SERVER_NAMES: [&str; 4] = ["localhost", "127.0.0.1", "coco.test", "dropbox.test"];

/// A CA and one server certificate it signed, written as PEM files into a folder.
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Pki {
    /// A new CA named `name`, with its server certificate, under `dir/name/`.
    pub fn new(dir: &Path, name: &str) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
        ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(SERVER_NAMES.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        leaf.distinguished_name.push(DnType::CommonName, "coco test server");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        let pki = Pki {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        std::fs::write(&pki.ca, &pki.ca_pem).unwrap();
        std::fs::write(&pki.cert, &pki.cert_pem).unwrap();
        std::fs::write(&pki.key, &pki.key_pem).unwrap();
        pki
    }

    /// The stand-ins' server configuration.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        dropbox_emulator::tls::server_config(&self.cert_pem, &self.key_pem).unwrap()
    }
}

/// An answer read by [`https`].
pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookie: Option<String>,
    pub body: String,
}

/// One request from the test, trusting `ca` only, following no redirect.
pub async fn https(method: &str, url: &str, ca: &Pki, headers: &[(&str, &str)], body: Option<String>) -> Answer {
    let roots = coco_host::net::tls::only_roots(std::slice::from_ref(&ca.ca)).unwrap();
    let config = coco_host::net::tls::client_config(&roots, None).unwrap();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let mut req = client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e:?}"));
    let header = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (location, set_cookie) = (header("location"), header("set-cookie"));
    Answer { status: resp.status().as_u16(), location, set_cookie, body: resp.text().await.unwrap_or_default() }
}
