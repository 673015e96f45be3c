//! What went wrong on the way to another machine, in one line that names the host and the
//! reason, and whether trying again can help. A certificate that does not verify or is for
//! another name stays that way until an operator acts: retrying it only delays the message.

/// Why a request did not get an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetFailureKind {
    /// The server's certificate does not verify (unknown issuer, expired, revoked, bad).
    Certificate(String),
    /// The certificate is valid but for another name.
    Hostname,
    /// The server refused our client certificate, or the TLS handshake failed otherwise.
    Handshake(String),
    /// The proxy answered the CONNECT with a refusal (with the reason where it gave one).
    ProxyRefused(Option<String>),
    /// No connection (refused, unreachable, no such host).
    Connect(String),
    Timeout,
    Other(String),
}

/// A failed request: the kind, the target `host:port`, and the proxy it went through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetFailure {
    pub kind: NetFailureKind,
    pub target: String,
    pub proxy: Option<String>,
}

impl NetFailure {
    /// Another attempt cannot succeed until someone acts: a certificate or the trust, or the
    /// proxy's policy (a refused CONNECT is an answer, not an outage).
    pub fn is_permanent(&self) -> bool {
        matches!(self.kind, NetFailureKind::Certificate(_) | NetFailureKind::Hostname | NetFailureKind::ProxyRefused(_))
    }

    /// Classify an error of the HTTP client (its source chain holds rustls' and the
    /// connector's errors) for a request to `target` through `proxy`.
    pub fn classify(e: &(dyn std::error::Error + 'static), target: String, proxy: Option<String>) -> Self {
        NetFailure { kind: kind_of(e), target, proxy }
    }
}

impl std::fmt::Display for NetFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = &self.target;
        match &self.kind {
            NetFailureKind::Certificate(why) => write!(
                f,
                "TLS: the certificate of {t} does not verify ({why}); trust its CA with --ca-file/COCO_CA_FILE or SSL_CERT_FILE"
            ),
            NetFailureKind::Hostname => write!(f, "TLS: the certificate of {t} is not valid for that name"),
            NetFailureKind::Handshake(why) => write!(f, "TLS: the handshake with {t} failed: {why}"),
            NetFailureKind::ProxyRefused(why) => {
                write!(f, "proxy {} refused to open a tunnel (CONNECT) to {t}", self.proxy.as_deref().unwrap_or("(unknown)"))?;
                match why {
                    Some(why) => write!(f, ": {why}"),
                    None => Ok(()),
                }
            }
            NetFailureKind::Connect(why) => match &self.proxy {
                Some(p) => write!(f, "cannot reach {t} through proxy {p}: {why}"),
                None => write!(f, "cannot reach {t}: {why}"),
            },
            NetFailureKind::Timeout => write!(f, "{t} did not answer in time"),
            NetFailureKind::Other(why) => write!(f, "request to {t} failed: {why}"),
        }
    }
}

/// An error and its causes in one line (`a: b: c`), looking inside `io::Error`s.
pub fn reasons(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out: Vec<String> = Vec::new();
    for err in chain(e) {
        let text = err.to_string();
        // Wrappers often repeat their cause's text: keep each reason once.
        if !out.last().is_some_and(|prev| prev.contains(&text)) {
            out.push(text);
        }
    }
    out.join(": ")
}

/// Every error in the chain, looking inside `io::Error`s (whose `source()` skips the error
/// they wrap, which is where rustls puts its reason).
fn chain<'a>(e: &'a (dyn std::error::Error + 'static)) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        out.push(err);
        next = match err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    out
}

fn kind_of(e: &(dyn std::error::Error + 'static)) -> NetFailureKind {
    let errors = chain(e);
    for err in &errors {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return match tls {
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. },
                ) => NetFailureKind::Hostname,
                rustls::Error::InvalidCertificate(why) => NetFailureKind::Certificate(certificate_reason(&why.clone())),
                other => NetFailureKind::Handshake(other.to_string()),
            };
        }
    }
    // The proxy's answer to CONNECT: a refusal is its policy; anything else about the tunnel
    // (the proxy down, the connection cut) is an outage like any other.
    let text: Vec<String> = errors.iter().map(|e| e.to_string().to_ascii_lowercase()).collect();
    if text.iter().any(|t| t.contains("proxy authorization required")) {
        return NetFailureKind::ProxyRefused(Some("it asks for credentials (407): give them in the proxy URL".into()));
    }
    if text.iter().any(|t| t.contains("tunnel error: unsuccessful") || t.contains("unsuccessful tunnel")) {
        return NetFailureKind::ProxyRefused(None);
    }
    if text.iter().any(|t| t.contains("tunnel")) {
        return NetFailureKind::Connect(errors.last().map(|e| e.to_string()).unwrap_or_default());
    }
    if let Some(r) = errors.iter().find_map(|e| e.downcast_ref::<reqwest::Error>()) {
        if r.is_timeout() {
            return NetFailureKind::Timeout;
        }
        if r.is_connect() {
            let innermost = errors.last().map(|e| e.to_string()).unwrap_or_default();
            return NetFailureKind::Connect(innermost);
        }
    }
    if errors
        .iter()
        .any(|e| e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut))
    {
        return NetFailureKind::Timeout;
    }
    NetFailureKind::Other(errors.last().map(|e| e.to_string()).unwrap_or_default())
}

fn certificate_reason(why: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match why {
        C::UnknownIssuer => "unknown issuer: not signed by a trusted CA".into(),
        C::Expired | C::ExpiredContext { .. } => "expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => "not valid yet".into(),
        C::Revoked => "revoked".into(),
        C::BadSignature => "bad signature".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapped(inner: rustls::Error) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, inner)
    }

    #[test]
    fn rustls_reasons_inside_io_errors_are_found() {
        let table = [
            (rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer), true, "does not verify"),
            (
                rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName),
                true,
                "not valid for that name",
            ),
            (rustls::Error::InvalidCertificate(rustls::CertificateError::Expired), true, "expired"),
            (rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate), false, "handshake"),
        ];
        for (inner, permanent, says) in table {
            let e = wrapped(inner);
            let f = NetFailure::classify(&e, "es.example:9200".into(), None);
            assert_eq!(f.is_permanent(), permanent, "{f}");
            assert!(f.to_string().contains(says) && f.to_string().contains("es.example:9200"), "{f}");
        }
    }

    #[test]
    fn a_refused_tunnel_names_the_proxy_and_a_proxy_outage_is_not_a_refusal() {
        let proxy = || Some("http://proxy:3128".to_string());
        let e = std::io::Error::other("tunnel error: unsuccessful");
        let f = NetFailure::classify(&e, "api.dropboxapi.com:443".into(), proxy());
        assert_eq!(f.kind, NetFailureKind::ProxyRefused(None));
        assert!(f.is_permanent());
        assert_eq!(
            f.to_string(),
            "proxy http://proxy:3128 refused to open a tunnel (CONNECT) to api.dropboxapi.com:443"
        );
        let e = std::io::Error::other("tunnel error: proxy authorization required");
        let f = NetFailure::classify(&e, "api.dropboxapi.com:443".into(), proxy());
        assert!(
            f.is_permanent() && f.to_string().ends_with("it asks for credentials (407): give them in the proxy URL"),
            "{f}"
        );
        for outage in ["tunnel error: failed to create underlying connection", "tunnel error: unexpected end of file"] {
            let f = NetFailure::classify(&std::io::Error::other(outage), "api.dropboxapi.com:443".into(), proxy());
            assert!(!f.is_permanent(), "{outage}: {f}");
        }
    }
}
