//! The facade's settings, from a lookup (environment variables, or Spin variables first).
//! Nothing here fails as a whole: each route says which setting it is missing (`503`).

use super::serverless::seal::SealKey;
use super::serverless::sink::CocoSink;
use crate::error::Error;
use crate::oauth;
use crate::secret::{Secret, SecretBytes};
use crate::types::Endpoints;

pub const ENV_CLIENT_ID: &str = "COCO_DROPBOX_CLIENT_ID";
pub const ENV_CLIENT_SECRET: &str = "COCO_DROPBOX_CLIENT_SECRET";
pub const ENV_STATE_SECRET: &str = "COCO_STATE_SECRET";
/// One base URL for every Dropbox service (an emulator); or the two below.
pub const ENV_BASE_URL: &str = "COCO_DROPBOX_BASE_URL";
pub const ENV_AUTHORIZE_URL: &str = "COCO_DROPBOX_AUTHORIZE_URL";
pub const ENV_API_URL: &str = "COCO_DROPBOX_API_URL";
/// Guards every route that is not a browser step (`Authorization: Bearer` or `X-API-TOKEN`).
pub const ENV_API_TOKEN: &str = "COCO_API_TOKEN";
/// Where `/oauth_redirect` delivers the connected datasource (server to server).
pub const ENV_CALLBACK_URL: &str = "COCO_DATASOURCE_CALLBACK_URL";
/// Sent as `X-API-TOKEN` with that delivery.
pub const ENV_CALLBACK_TOKEN: &str = "COCO_CALLBACK_TOKEN";
/// Where the browser goes after connecting (with `datasource_id` and `name`); else a small page.
pub const ENV_CONNECTED_URL: &str = "COCO_CONNECTED_URL";
/// The redirect URI registered at Dropbox; `{id}` stands for the connector id.
pub const ENV_REDIRECT_URI: &str = "COCO_REDIRECT_URI";
/// `1`: derive the redirect URI from `X-Forwarded-Proto`/`X-Forwarded-Host` (behind a proxy).
pub const ENV_TRUST_FORWARDED: &str = "COCO_TRUST_FORWARDED";
/// Largest request body read, in bytes (default 1 MiB).
pub const ENV_MAX_BODY_BYTES: &str = "COCO_MAX_BODY_BYTES";
/// Key-value build: tokens at rest are sealed with a key derived from this (≥ 32 bytes).
pub const ENV_SEAL_SECRET: &str = "COCO_SEAL_SECRET";
/// Key-value build: Coco Server's base URL, where `POST /sync/{id}` hands documents on.
pub const ENV_SERVER_URL: &str = "COCO_SERVER_URL";
/// Sent as `X-API-TOKEN` to Coco Server.
pub const ENV_SERVER_TOKEN: &str = "COCO_SERVER_TOKEN";
/// Key-value build: Coco writes in flight per page (1–1000; default 256). Each of Coco's
/// writes waits for its index's next refresh, so this is about the documents per second.
pub const ENV_SINK_IN_FLIGHT: &str = "COCO_SINK_IN_FLIGHT";
/// The connector ids whose browser routes exist, comma-separated (default `dropbox`): each
/// needs its redirect URI registered at Dropbox; any other id is a 404.
pub const ENV_CONNECTOR_IDS: &str = "COCO_CONNECTOR_IDS";
/// Key-value build: the store's name (wasmtime's in-memory provider: empty; Spin: `default`).
pub const ENV_KV_STORE: &str = "COCO_KV_STORE";
/// Entries per list_folder page (1–2000; default 2000).
pub const ENV_PAGE_LIMIT: &str = "COCO_PAGE_LIMIT";

pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// Spin component variables the `spin` build reads, and the environment variable each stands for.
/// (Spin variable names are lower-case with underscores.)
pub const SPIN_VARIABLES: [(&str, &str); 20] = [
    ("client_id", ENV_CLIENT_ID),
    ("client_secret", ENV_CLIENT_SECRET),
    ("state_secret", ENV_STATE_SECRET),
    ("base_url", ENV_BASE_URL),
    ("authorize_url", ENV_AUTHORIZE_URL),
    ("api_url", ENV_API_URL),
    ("api_token", ENV_API_TOKEN),
    ("callback_url", ENV_CALLBACK_URL),
    ("callback_token", ENV_CALLBACK_TOKEN),
    ("connected_url", ENV_CONNECTED_URL),
    ("redirect_uri", ENV_REDIRECT_URI),
    ("trust_forwarded", ENV_TRUST_FORWARDED),
    ("max_body_bytes", ENV_MAX_BODY_BYTES),
    ("seal_secret", ENV_SEAL_SECRET),
    ("coco_server_url", ENV_SERVER_URL),
    ("coco_server_token", ENV_SERVER_TOKEN),
    ("kv_store", ENV_KV_STORE),
    ("page_limit", ENV_PAGE_LIMIT),
    ("sink_in_flight", ENV_SINK_IN_FLIGHT),
    ("connector_ids", ENV_CONNECTOR_IDS),
];

/// The Spin variable standing for an environment variable, if any.
pub fn spin_variable_for(env_name: &str) -> Option<&'static str> {
    SPIN_VARIABLES.iter().find(|(_, e)| *e == env_name).map(|(v, _)| *v)
}

/// The Dropbox app the facade acts as.
pub struct App {
    pub client_id: String,
    pub client_secret: Secret,
    pub state_secret: SecretBytes,
    pub endpoints: Endpoints,
}

/// Server-to-server delivery of a connected datasource.
pub struct Callback {
    pub url: String,
    pub token: Secret,
}

pub struct FacadeConfig {
    pub app: Result<App, Error>,
    pub api_token: Option<Secret>,
    pub callback: Result<Callback, Error>,
    pub connected_url: Option<String>,
    pub redirect_uri: Option<String>,
    pub trust_forwarded: bool,
    pub max_body_bytes: usize,
    /// Key-value build: seals tokens at rest.
    pub seal: Result<SealKey, Error>,
    /// Key-value build: where pages go.
    pub sink: Result<CocoSink, Error>,
    /// Key-value build: the store to open (`None`: the runtime's default for this build).
    pub kv_store: Option<String>,
    pub page_limit: Option<u32>,
    /// The connector ids the browser routes answer for.
    pub connector_ids: Vec<String>,
}

impl FacadeConfig {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        let need = |k: &str| get(k).ok_or_else(|| Error::InvalidInput(format!("{k} is not set")));
        let app = (|| {
            let mut endpoints = match get(ENV_BASE_URL) {
                Some(base) => Endpoints::single(&base),
                None => Endpoints::dropbox(),
            };
            for (key, slot) in [(ENV_AUTHORIZE_URL, &mut endpoints.authorize), (ENV_API_URL, &mut endpoints.api)] {
                if let Some(v) = get(key) {
                    *slot = v.trim_end_matches('/').to_string();
                }
            }
            let state_secret = SecretBytes::new(need(ENV_STATE_SECRET)?.into_bytes());
            oauth::check_secret(&state_secret)?;
            Ok(App {
                client_id: need(ENV_CLIENT_ID)?,
                client_secret: Secret::new(need(ENV_CLIENT_SECRET)?),
                state_secret,
                endpoints,
            })
        })();
        // An http(s) URL and the token sent with every call to it.
        let endpoint = |url_var: &str, token_var: &str| {
            let url = need(url_var)?;
            match url::Url::parse(&url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => return Err(Error::InvalidInput(format!("{url_var} is not an http(s) URL"))),
            }
            Ok((url, Secret::new(need(token_var)?)))
        };
        let callback = endpoint(ENV_CALLBACK_URL, ENV_CALLBACK_TOKEN).map(|(url, token)| Callback { url, token });
        let max_body_bytes = match get(ENV_MAX_BODY_BYTES).map(|v| v.parse::<usize>()) {
            Some(Ok(n)) if n > 0 => n,
            _ => DEFAULT_MAX_BODY_BYTES,
        };
        let seal = need(ENV_SEAL_SECRET).and_then(|s| SealKey::derive(&SecretBytes::new(s.into_bytes())));
        let in_flight = match get(ENV_SINK_IN_FLIGHT).map(|v| v.parse::<usize>()) {
            Some(Ok(n)) if (1..=1000).contains(&n) => n,
            _ => coco_api::DEFAULT_IN_FLIGHT,
        };
        let sink = endpoint(ENV_SERVER_URL, ENV_SERVER_TOKEN).map(|(url, token)| CocoSink { url, token, in_flight });
        let page_limit = match get(ENV_PAGE_LIMIT).map(|v| v.parse::<u32>()) {
            Some(Ok(n)) if (1..=crate::page::MAX_PAGE_LIMIT).contains(&n) => Some(n),
            _ => None,
        };
        let mut connector_ids: Vec<String> = get(ENV_CONNECTOR_IDS)
            .unwrap_or_default()
            .split(',')
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty())
            .collect();
        if connector_ids.is_empty() {
            connector_ids.push("dropbox".into());
        }
        FacadeConfig {
            connector_ids,
            seal,
            sink,
            kv_store: get(ENV_KV_STORE),
            page_limit,
            app,
            api_token: get(ENV_API_TOKEN).map(Secret::new),
            callback,
            connected_url: get(ENV_CONNECTED_URL),
            redirect_uri: get(ENV_REDIRECT_URI),
            trust_forwarded: get(ENV_TRUST_FORWARDED).is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true")),
            max_body_bytes,
        }
    }
}
