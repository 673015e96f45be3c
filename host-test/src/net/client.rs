//! The host's one HTTP client: async, rustls with [`super::tls`]'s roots, proxies by
//! [`super::proxy`]'s decision, no redirects (credentials would follow them), connections
//! pooled. The sinks, `register` and the components' outbound requests all go through it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::failure::NetFailure;
use super::proxy::{self, ProxySettings};
use super::tls::{self, ClientIdentity, TlsSetupError, Trust};

/// Idle connections kept per host: the Coco sink writes `coco_api::DEFAULT_IN_FLIGHT` at once.
const IDLE_PER_HOST: usize = 256;

/// What every outbound connection of this process uses.
#[derive(Clone, Debug, Default)]
pub struct NetSettings {
    pub trust: Trust,
    pub proxy: ProxySettings,
}

#[derive(Debug, thiserror::Error)]
pub enum NetSetupError {
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error(transparent)]
    Proxy(#[from] proxy::BadProxy),
    #[error("the HTTP client: {0}")]
    Client(String),
}

impl NetSettings {
    /// `SSL_CERT_FILE`, the proxy variables, and `--ca-file`.
    pub fn from_env(ca_file: Option<&std::path::Path>) -> Result<Self, NetSetupError> {
        let get = |k: &str| std::env::var(k).ok();
        Ok(NetSettings { trust: Trust::from_env(get, ca_file), proxy: ProxySettings::from_env(get)? })
    }
}

static CONFIGURED: OnceLock<NetSettings> = OnceLock::new();
static SHARED: OnceLock<HttpClient> = OnceLock::new();

/// Set this process's settings (once, at start, before the first request).
pub fn configure(settings: NetSettings) -> Result<(), NetSetupError> {
    let client = HttpClient::new(&settings, None)?;
    let _ = CONFIGURED.set(settings);
    let _ = SHARED.set(client);
    Ok(())
}

/// This process's settings: as configured, or else from the environment alone.
pub fn settings() -> Result<NetSettings, NetSetupError> {
    match CONFIGURED.get() {
        Some(s) => Ok(s.clone()),
        None => NetSettings::from_env(None),
    }
}

/// A request's answer, its body read (up to a cap).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a request got no answer we can use.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    Net(NetFailure),
    #[error("the answer from {target} is over {limit} bytes")]
    TooLarge { target: String, limit: usize },
    #[error("bad request: {0}")]
    Bad(String),
}

impl SendError {
    /// Only a certificate problem is known not to pass by itself.
    pub fn is_permanent(&self) -> bool {
        match self {
            SendError::Net(f) => f.is_permanent(),
            SendError::TooLarge { .. } => false,
            SendError::Bad(_) => true,
        }
    }
}

/// The shared client (cheap to clone: one pool).
#[derive(Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
    proxy: Arc<ProxySettings>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").field("proxy", &self.proxy).finish_non_exhaustive()
    }
}

impl HttpClient {
    /// This process's client ([`configure`]d, or built from the environment on first use).
    pub fn shared() -> Result<HttpClient, NetSetupError> {
        if let Some(c) = SHARED.get() {
            return Ok(c.clone());
        }
        let client = HttpClient::new(&settings()?, None)?;
        Ok(SHARED.get_or_init(|| client).clone())
    }

    /// A client over `settings`, presenting `identity` where a server asks for one.
    pub fn new(settings: &NetSettings, identity: Option<&ClientIdentity>) -> Result<Self, NetSetupError> {
        let roots = tls::root_store(&settings.trust)?;
        let config = tls::client_config(&roots, identity)?;
        let decide = Arc::new(settings.proxy.clone());
        let mut builder = reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(IDLE_PER_HOST)
            .connect_timeout(Duration::from_secs(10))
            // Our decision below, not reqwest's own reading of the environment.
            .no_proxy();
        if !settings.proxy.is_empty() {
            let d = decide.clone();
            builder = builder.proxy(reqwest::Proxy::custom(move |url| d.proxy_for(url).cloned()));
        }
        let inner = builder.build().map_err(|e| NetSetupError::Client(e.to_string()))?;
        Ok(HttpClient { inner, proxy: decide })
    }

    /// The proxy a request to `url` goes through, as messages show it.
    pub fn proxy_for(&self, url: &url::Url) -> Option<String> {
        self.proxy.proxy_for(url).map(proxy::shown)
    }

    pub fn reqwest(&self) -> &reqwest::Client {
        &self.inner
    }

    /// Classify `e`, an error of a request to `url`.
    pub fn failure(&self, url: &url::Url, e: &reqwest::Error) -> NetFailure {
        NetFailure::classify(e, target(url), self.proxy_for(url))
    }

    /// Send one request and read its answer (at most `limit` bytes), all within `timeout`.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
        timeout: Duration,
        limit: usize,
    ) -> Result<Answer, SendError> {
        let parsed = url::Url::parse(url).map_err(|e| SendError::Bad(format!("{}: {e}", crate::redact::urls(url))))?;
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| SendError::Bad(e.to_string()))?;
        let mut req = self.inner.request(method, parsed.clone()).timeout(timeout).body(body);
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let mut resp = req.send().await.map_err(|e| SendError::Net(self.failure(&parsed, &e)))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| SendError::Net(self.failure(&parsed, &e)))? {
            if body.len() + chunk.len() > limit {
                return Err(SendError::TooLarge { target: target(&parsed), limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer { status, headers, body })
    }
}

/// `host:port` of a URL, for messages.
pub fn target(url: &url::Url) -> String {
    format!("{}:{}", url.host_str().unwrap_or("?"), url.port_or_known_default().unwrap_or(0))
}

/// Run `fut` to completion from blocking code (a delivery thread, `register`): on the
/// current runtime where there is one, else on a small runtime of the client's own.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    static OWN: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => tokio::task::block_in_place(|| handle.block_on(fut)),
        Err(_) => OWN
            .get_or_init(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("coco-http")
                    .enable_all()
                    .build()
                    .expect("a runtime for outbound requests")
            })
            .block_on(fut),
    }
}
