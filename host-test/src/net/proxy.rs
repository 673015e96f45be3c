//! Which proxy, if any, a request goes through: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and
//! `NO_PROXY` with curl's meanings. One pure decision, used by the client for every request
//! and by error messages, so what is logged is what was done.

use std::net::IpAddr;

/// The proxies from the environment.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProxySettings {
    /// For `https://` targets: a CONNECT tunnel through it.
    pub https: Option<url::Url>,
    /// For `http://` targets: the request is sent to it in absolute form.
    pub http: Option<url::Url>,
    pub no_proxy: NoProxy,
}

/// A proxy URL is shown without its credentials.
impl std::fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |u: &Option<url::Url>| u.as_ref().map(shown);
        f.debug_struct("ProxySettings")
            .field("https", &show(&self.https))
            .field("http", &show(&self.http))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// The proxy URL as messages show it: no user, no password.
pub fn shown(proxy: &url::Url) -> String {
    let mut u = proxy.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.as_str().trim_end_matches('/').to_string()
}

/// `NO_PROXY`: targets reached directly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NoProxy {
    all: bool,
    rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    /// `example.com` or `.example.com`: the domain and every name under it.
    Domain { suffix: String, port: Option<u16> },
    /// An address, or a network in CIDR form.
    Network { addr: IpAddr, prefix: u8 },
}

impl NoProxy {
    /// Comma- or space-separated entries: `*`, a domain (leading dot optional, optional
    /// `:port`), an IP address or a CIDR network. Unparseable entries are skipped, as curl does.
    pub fn parse(list: &str) -> Self {
        let mut out = NoProxy::default();
        for entry in list.split([',', ' ']).map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                out.all = true;
            } else if let Some(rule) = Rule::parse(entry) {
                out.rules.push(rule);
            }
        }
        out
    }

    /// Whether `host` (a name or an address, IPv6 with or without brackets) on `port` is
    /// reached directly.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.all {
            return true;
        }
        let host = host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        self.rules.iter().any(|rule| match rule {
            Rule::Domain { suffix, port: p } => {
                p.is_none_or(|p| p == port)
                    && (host == *suffix || host.strip_suffix(suffix.as_str()).is_some_and(|head| head.ends_with('.')))
            }
            Rule::Network { addr, prefix } => ip.is_some_and(|ip| in_network(ip, *addr, *prefix)),
        })
    }
}

impl Rule {
    fn parse(entry: &str) -> Option<Rule> {
        let entry = entry.to_ascii_lowercase();
        if let Some((addr, prefix)) = entry.split_once('/') {
            let addr: IpAddr = addr.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix: u8 = prefix.parse().ok().filter(|p| *p <= max)?;
            return Some(Rule::Network { addr, prefix });
        }
        let bare = entry.trim_start_matches('[').trim_end_matches(']');
        if let Ok(addr) = bare.parse::<IpAddr>() {
            return Some(Rule::Network { addr, prefix: if addr.is_ipv4() { 32 } else { 128 } });
        }
        // `[::1]:8080` or `host:port`.
        if let Some((host, port)) = entry.rsplit_once(':') {
            let port = port.parse::<u16>().ok()?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if let Ok(addr) = host.parse::<IpAddr>() {
                // curl ignores the port of an address entry.
                return Some(Rule::Network { addr, prefix: if addr.is_ipv4() { 32 } else { 128 } });
            }
            let suffix = host.trim_start_matches('.').trim_end_matches('.').to_string();
            return (!suffix.is_empty()).then_some(Rule::Domain { suffix, port: Some(port) });
        }
        let suffix = entry.trim_start_matches('.').trim_end_matches('.').to_string();
        (!suffix.is_empty()).then_some(Rule::Domain { suffix, port: None })
    }
}

fn in_network(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// A proxy variable that is set but not a URL: refused at start rather than ignored.
#[derive(Debug, thiserror::Error)]
#[error("{name} is not a proxy URL (e.g. http://proxy.example:3128): {why}")]
pub struct BadProxy {
    pub name: &'static str,
    pub why: String,
}

impl ProxySettings {
    /// From the environment through `get`. The lower-case names win over the upper-case
    /// ones, as in curl; `ALL_PROXY` serves both schemes when the specific one is not set.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, BadProxy> {
        let var = |lower: &'static str, upper: &'static str| -> Result<Option<url::Url>, BadProxy> {
            let (name, value) = match get(lower).filter(|v| !v.trim().is_empty()) {
                Some(v) => (lower, v),
                None => match get(upper).filter(|v| !v.trim().is_empty()) {
                    Some(v) => (upper, v),
                    None => return Ok(None),
                },
            };
            let value = value.trim();
            // `proxy:3128` means http://proxy:3128, as curl reads it.
            let with_scheme = if value.contains("://") { value.to_string() } else { format!("http://{value}") };
            let url = url::Url::parse(&with_scheme).map_err(|e| BadProxy { name, why: e.to_string() })?;
            match url.scheme() {
                "http" | "https" if url.host_str().is_some() => Ok(Some(url)),
                "http" | "https" => Err(BadProxy { name, why: "no host".into() }),
                other => Err(BadProxy { name, why: format!("scheme {other} is not supported (http or https)") }),
            }
        };
        let all = var("all_proxy", "ALL_PROXY")?;
        let https = var("https_proxy", "HTTPS_PROXY")?.or_else(|| all.clone());
        let http = var("http_proxy", "HTTP_PROXY")?.or(all);
        let no_proxy = get("no_proxy").or_else(|| get("NO_PROXY")).map(|v| NoProxy::parse(&v)).unwrap_or_default();
        Ok(ProxySettings { https, http, no_proxy })
    }

    /// The proxy for a request to `target`, or None for a direct connection.
    pub fn proxy_for(&self, target: &url::Url) -> Option<&url::Url> {
        let host = target.host_str()?;
        let port = target.port_or_known_default()?;
        let proxy = match target.scheme() {
            "https" => self.https.as_ref(),
            "http" => self.http.as_ref(),
            _ => None,
        }?;
        (!self.no_proxy.matches(host, port)).then_some(proxy)
    }

    pub fn is_empty(&self) -> bool {
        self.https.is_none() && self.http.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> ProxySettings {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ProxySettings::from_env(|k| vars.get(k).cloned()).unwrap()
    }

    fn via(s: &ProxySettings, target: &str) -> Option<String> {
        s.proxy_for(&url::Url::parse(target).unwrap()).map(shown)
    }

    #[test]
    fn the_scheme_picks_the_proxy_and_no_proxy_wins() {
        let s = settings(&[
            ("HTTPS_PROXY", "http://user:pw@proxy.corp:3128"),
            ("HTTP_PROXY", "proxy.corp:8080"),
            ("NO_PROXY", "localhost,.internal.corp, 10.0.0.0/8,[::1],coco.example:9000"),
        ]);
        let table = [
            ("https://api.dropboxapi.com/2/files/list_folder", Some("http://proxy.corp:3128")),
            ("http://es.example:9200/_bulk", Some("http://proxy.corp:8080")),
            ("https://localhost:8443/", None),
            ("https://internal.corp/", None),
            ("https://coco.internal.corp/", None),
            ("https://notinternal.corp/", Some("http://proxy.corp:3128")),
            ("https://10.1.2.3/", None),
            ("https://11.1.2.3/", Some("http://proxy.corp:3128")),
            ("http://[::1]:9000/", None),
            ("https://coco.example:9000/", None),
            ("https://coco.example/", Some("http://proxy.corp:3128")),
            ("https://LOCALHOST./", None),
        ];
        for (target, want) in table {
            assert_eq!(via(&s, target).as_deref(), want, "{target}");
        }
    }

    #[test]
    fn lower_case_wins_all_proxy_fills_in_and_star_disables() {
        let s = settings(&[
            ("https_proxy", "http://lower:1"),
            ("HTTPS_PROXY", "http://upper:2"),
            ("ALL_PROXY", "http://all:3"),
        ]);
        assert_eq!(via(&s, "https://x/").as_deref(), Some("http://lower:1"));
        assert_eq!(via(&s, "http://x/").as_deref(), Some("http://all:3"));
        let s = settings(&[("HTTPS_PROXY", "http://p:1"), ("NO_PROXY", "*")]);
        assert_eq!(via(&s, "https://x/"), None);
        assert!(settings(&[]).is_empty());
        assert_eq!(via(&settings(&[("HTTPS_PROXY", " ")]), "https://x/"), None);
    }

    #[test]
    fn a_bad_proxy_variable_is_refused_and_credentials_stay_hidden() {
        let bad = ProxySettings::from_env(|k| (k == "HTTPS_PROXY").then(|| "socks5://p:1080".to_string()));
        assert!(bad.unwrap_err().to_string().contains("HTTPS_PROXY"));
        let bad = ProxySettings::from_env(|k| (k == "HTTP_PROXY").then(|| "http://".to_string()));
        assert!(bad.is_err());
        let s = settings(&[("HTTPS_PROXY", "http://user:hunter2@proxy:3128")]);
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
