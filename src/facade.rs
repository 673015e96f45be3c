//! The HTTP facade's routing, free of wasm: upstream-compatible OAuth routes and `POST /sync`,
//! for `wasmtime serve`, Spin and other wasi:http hosts. Configuration comes from a lookup
//! (environment variables in the component); secrets never appear in a response.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::Error;
use crate::http::Transport;
use crate::secret::{Secret, SecretBytes};
use crate::types::{
    AppCredentials, ConnectRequest, Endpoints, PageRequest, RedirectRequest, RootInfo, SyncOptions, Tokens,
};
use crate::{connect, oauth, page};

/// Environment variables the facade reads.
pub const ENV_CLIENT_ID: &str = "COCO_DROPBOX_CLIENT_ID";
pub const ENV_CLIENT_SECRET: &str = "COCO_DROPBOX_CLIENT_SECRET";
pub const ENV_STATE_SECRET: &str = "COCO_STATE_SECRET";
/// One base URL for every Dropbox service (an emulator); or the two below.
pub const ENV_BASE_URL: &str = "COCO_DROPBOX_BASE_URL";
pub const ENV_AUTHORIZE_URL: &str = "COCO_DROPBOX_AUTHORIZE_URL";
pub const ENV_API_URL: &str = "COCO_DROPBOX_API_URL";

/// Spin component variables the `spin` build reads, and the environment variable each stands for.
/// (Spin variable names are lower-case with underscores.)
pub const SPIN_VARIABLES: [(&str, &str); 6] = [
    ("client_id", ENV_CLIENT_ID),
    ("client_secret", ENV_CLIENT_SECRET),
    ("state_secret", ENV_STATE_SECRET),
    ("base_url", ENV_BASE_URL),
    ("authorize_url", ENV_AUTHORIZE_URL),
    ("api_url", ENV_API_URL),
];

/// The Spin variable standing for an environment variable, if any.
pub fn spin_variable_for(env_name: &str) -> Option<&'static str> {
    SPIN_VARIABLES.iter().find(|(_, e)| *e == env_name).map(|(v, _)| *v)
}

/// Route patterns, as `spin.toml` must declare them (`{id}` is any connector id).
pub const ROUTES: [&str; 5] = [
    "/connector/{id}/dropbox/connect",
    "/connector/{id}/dropbox/oauth_redirect",
    "/api/coco/connector/{id}/dropbox/connect",
    "/api/coco/connector/{id}/dropbox/oauth_redirect",
    "/sync",
];

pub struct FacadeConfig {
    pub client_id: String,
    pub client_secret: Secret,
    pub state_secret: SecretBytes,
    pub endpoints: Endpoints,
}

impl FacadeConfig {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let need =
            |k: &str| get(k).filter(|v| !v.is_empty()).ok_or_else(|| Error::InvalidInput(format!("{k} is not set")));
        let mut endpoints = match get(ENV_BASE_URL) {
            Some(base) if !base.is_empty() => Endpoints::single(&base),
            _ => Endpoints::dropbox(),
        };
        for (key, slot) in [(ENV_AUTHORIZE_URL, &mut endpoints.authorize), (ENV_API_URL, &mut endpoints.api)] {
            if let Some(v) = get(key).filter(|v| !v.is_empty()) {
                *slot = v.trim_end_matches('/').to_string();
            }
        }
        let state_secret = SecretBytes::new(need(ENV_STATE_SECRET)?.into_bytes());
        oauth::check_secret(&state_secret)?;
        Ok(FacadeConfig {
            client_id: need(ENV_CLIENT_ID)?,
            client_secret: Secret::new(need(ENV_CLIENT_SECRET)?),
            state_secret,
            endpoints,
        })
    }
}

/// An incoming request, reduced to what the routes read.
pub struct Incoming<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    /// The `Host` header (authority) the client used.
    pub host: Option<&'a str>,
    /// `X-Forwarded-Proto`, when behind a TLS-terminating proxy.
    pub forwarded_proto: Option<&'a str>,
    pub body: &'a [u8],
}

#[derive(Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Outgoing {
    fn json(status: u16, value: &impl Serialize) -> Self {
        Outgoing {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }

    fn error(status: u16, kind: &str, message: &str) -> Self {
        Outgoing::json(status, &serde_json::json!({ "error": { "kind": kind, "message": message } }))
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Connect { connector_id: &'a str, prefix: &'static str },
    Redirect { connector_id: &'a str, prefix: &'static str },
    Sync,
}

fn route(path: &str) -> Option<Route<'_>> {
    if path == "/sync" {
        return Some(Route::Sync);
    }
    let (prefix, rest) = match path.strip_prefix("/api/coco") {
        Some(rest) => ("/api/coco", rest),
        None => ("", path),
    };
    let rest = rest.strip_prefix("/connector/")?;
    let (connector_id, tail) = rest.split_once('/')?;
    if connector_id.is_empty() {
        return None;
    }
    match tail {
        "dropbox/connect" => Some(Route::Connect { connector_id, prefix }),
        "dropbox/oauth_redirect" => Some(Route::Redirect { connector_id, prefix }),
        _ => None,
    }
}

/// The redirect URI for a connector, as upstream derives it from the request.
fn redirect_uri(req: &Incoming<'_>, prefix: &str, connector_id: &str) -> String {
    let scheme = if req.forwarded_proto == Some("https") { "https" } else { "http" };
    let host = req.host.filter(|h| !h.is_empty()).unwrap_or("localhost:9000");
    format!("{scheme}://{host}{prefix}/connector/{connector_id}/dropbox/oauth_redirect")
}

fn status_of(e: &Error) -> u16 {
    match e {
        Error::InvalidInput(_) => 400,
        Error::Denied(_) => 403,
        Error::InvalidClient(_) => 500,
        Error::ReauthRequired(_) => 401,
        Error::RateLimited(_) => 429,
        Error::CursorReset(_) | Error::RootChanged(_) => 409,
        Error::PathNotFound(_) => 404,
        Error::Transient(_) => 503,
        Error::Api(_) => 502,
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct RootJson {
    pub is_team: bool,
    pub root_namespace_id: String,
    pub home_namespace_id: String,
    #[serde(default)]
    pub home_path: Option<String>,
}

impl From<RootJson> for RootInfo {
    fn from(r: RootJson) -> Self {
        RootInfo {
            is_team: r.is_team,
            root_namespace_id: r.root_namespace_id,
            home_namespace_id: r.home_namespace_id,
            home_path: r.home_path,
        }
    }
}

impl From<RootInfo> for RootJson {
    fn from(r: RootInfo) -> Self {
        RootJson {
            is_team: r.is_team,
            root_namespace_id: r.root_namespace_id,
            home_namespace_id: r.home_namespace_id,
            home_path: r.home_path,
        }
    }
}

#[derive(Serialize, Deserialize, Clone)]
pub struct TokensJson {
    pub access_token: String,
    pub expires_at: u64,
    pub refresh_token: String,
}

impl From<Tokens> for TokensJson {
    fn from(t: Tokens) -> Self {
        TokensJson {
            access_token: t.access_token.into_inner(),
            expires_at: t.expires_at,
            refresh_token: t.refresh_token.into_inner(),
        }
    }
}

fn error_response(e: &Error, tokens: Option<TokensJson>) -> Outgoing {
    let status = status_of(e);
    let mut body = serde_json::json!({ "error": { "kind": e.kind(), "message": e.message() } });
    match e {
        Error::RateLimited(ms) => body["error"]["retry_after_ms"] = (*ms).into(),
        Error::RootChanged(r) => {
            body["error"]["root_info"] = serde_json::to_value(RootJson::from(r.clone())).unwrap_or_default()
        }
        _ => {}
    }
    if let Some(t) = tokens {
        body["tokens"] = serde_json::to_value(t).unwrap_or_default();
    }
    let mut out = Outgoing::json(status, &body);
    if let Error::RateLimited(ms) = e {
        out.headers.push(("retry-after", ms.div_ceil(1000).max(1).to_string()));
    }
    out
}

/// `POST /sync` request body.
#[derive(Deserialize)]
struct SyncBody {
    datasource: DatasourceRef,
    tokens: TokensJson,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    options: SyncOptionsJson,
    #[serde(default)]
    batch_number: Option<String>,
}

#[derive(Deserialize)]
struct DatasourceRef {
    id: String,
    name: String,
    #[serde(default)]
    owner_id: Option<String>,
}

#[derive(Deserialize, Default)]
struct SyncOptionsJson {
    #[serde(default)]
    path: String,
    #[serde(default)]
    page_limit: Option<u32>,
    #[serde(default)]
    refresh_margin_secs: Option<u32>,
    /// The account's `root_info` (from the redirect's datasource JSON); decides team-space rooting.
    #[serde(default)]
    root_info: Option<RootJson>,
}

#[derive(Serialize)]
struct SyncOut<'a> {
    deletes: &'a [String],
    documents: Vec<&'a RawValue>,
    cursor: &'a str,
    has_more: bool,
    tokens: Option<TokensJson>,
    stats: StatsJson,
}

#[derive(Serialize)]
struct StatsJson {
    entries: u32,
    skipped: u32,
    requests: u32,
    refreshes: u32,
}

/// Serve one request. `now` is unix seconds; `nonce` fresh randomness for a new state.
pub fn handle<T: Transport>(
    config: Result<FacadeConfig, Error>,
    req: &Incoming<'_>,
    transport: &mut T,
    now: u64,
    nonce: &[u8],
) -> Outgoing {
    let Some(route) = route(req.path) else {
        return Outgoing::error(404, "not-found", &format!("no route for {}", req.path));
    };
    let expected = if route == Route::Sync { "POST" } else { "GET" };
    if !req.method.eq_ignore_ascii_case(expected) {
        let mut out = Outgoing::error(405, "method-not-allowed", &format!("use {expected}"));
        out.headers.push(("allow", expected.into()));
        return out;
    }
    let config = match config {
        Ok(c) => c,
        // Upstream answers 503 when the app credentials are not configured.
        Err(e) => return Outgoing::error(503, "not-configured", &e.to_string()),
    };
    match route {
        Route::Connect { connector_id, prefix } => {
            let req = ConnectRequest {
                connector_id: connector_id.to_string(),
                client_id: config.client_id.clone(),
                redirect_uri: redirect_uri(req, prefix, connector_id),
                state_secret: config.state_secret,
                now,
                state_ttl_secs: None,
                scopes: None,
                endpoints: config.endpoints,
            };
            match oauth::authorize_url(&req, nonce) {
                Ok(url) => Outgoing { status: 302, headers: vec![("location", url)], body: Vec::new() },
                Err(e) => error_response(&e, None),
            }
        }
        Route::Redirect { connector_id, prefix } => {
            let redirect = RedirectRequest {
                connector_id: connector_id.to_string(),
                app: AppCredentials { client_id: config.client_id, client_secret: config.client_secret },
                redirect_uri: redirect_uri(req, prefix, connector_id),
                redirect_query: req.query.to_string(),
                state_secret: config.state_secret,
                now,
                endpoints: config.endpoints,
            };
            match connect::handle_redirect(&redirect, transport) {
                Ok(ds) => Outgoing::json(200, &datasource_json(ds)),
                Err(e) => error_response(&e, None),
            }
        }
        Route::Sync => sync(config, req.body, transport, now),
    }
}

/// Upstream's datasource document; `client_secret` is left out (the caller configured it).
fn datasource_json(ds: crate::types::Datasource) -> serde_json::Value {
    let p = &ds.config.profile;
    serde_json::json!({
        "id": ds.id,
        "type": "connector",
        "name": ds.name,
        "icon": "default",
        "enabled": true,
        "sync": { "enabled": true, "interval": "30s" },
        "connector": {
            "id": ds.connector_id,
            "config": {
                "client_id": ds.config.client_id,
                "refresh_token": ds.config.refresh_token.expose(),
                "profile": { "account_id": p.account_id, "email": p.email, "name": p.name, "picture": p.picture },
            }
        },
        "tokens": TokensJson::from(ds.tokens),
        "root_info": RootJson::from(p.root_info.clone()),
    })
}

fn sync<T: Transport>(config: FacadeConfig, body: &[u8], transport: &mut T, now: u64) -> Outgoing {
    let body: SyncBody = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => return Outgoing::error(400, "invalid-input", &format!("request body: {e}")),
    };
    let req = PageRequest {
        datasource_id: body.datasource.id,
        datasource_name: body.datasource.name,
        owner_id: body.datasource.owner_id,
        app: AppCredentials { client_id: config.client_id, client_secret: config.client_secret },
        tokens: Tokens {
            access_token: Secret::new(body.tokens.access_token),
            expires_at: body.tokens.expires_at,
            refresh_token: Secret::new(body.tokens.refresh_token),
        },
        cursor: body.cursor,
        options: SyncOptions {
            path: body.options.path,
            page_limit: body.options.page_limit,
            refresh_margin_secs: body.options.refresh_margin_secs,
            root_info: body.options.root_info.map(Into::into),
        },
        batch_number: body.batch_number.unwrap_or_default(),
        now,
        endpoints: config.endpoints,
    };
    match page::sync_page(&req, transport) {
        Ok(r) => {
            let documents: Result<Vec<&RawValue>, _> =
                r.documents.iter().map(|d| serde_json::from_str::<&RawValue>(&d.json)).collect();
            let Ok(documents) = documents else {
                return Outgoing::error(500, "internal", "a mapped document is not JSON");
            };
            Outgoing::json(
                200,
                &SyncOut {
                    deletes: &r.deletes,
                    documents,
                    cursor: &r.cursor,
                    has_more: r.has_more,
                    tokens: r.tokens.map(TokensJson::from),
                    stats: StatsJson {
                        entries: r.stats.entries,
                        skipped: r.stats.skipped,
                        requests: r.stats.requests,
                        refreshes: r.stats.refreshes,
                    },
                },
            )
        }
        Err(f) => error_response(&f.error, f.tokens.map(TokensJson::from)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::fake::Scripted;

    fn config() -> Result<FacadeConfig, Error> {
        FacadeConfig::from_lookup(|k| {
            match k {
                ENV_CLIENT_ID => Some("APPKEY"),
                ENV_CLIENT_SECRET => Some("APP-SECRET-xyz"),
                ENV_STATE_SECRET => Some("state-secret-0123456789"),
                _ => None,
            }
            .map(str::to_string)
        })
    }

    fn get(path: &str, query: &str) -> Outgoing {
        let req = Incoming {
            method: "GET",
            path,
            query,
            host: Some("coco.example:9000"),
            forwarded_proto: Some("https"),
            body: b"",
        };
        handle(config(), &req, &mut Scripted::offline(), 1_000, b"nonce-0123456789")
    }

    #[test]
    fn routes_match_upstream_and_the_api_prefix() {
        assert_eq!(route("/connector/abc/dropbox/connect"), Some(Route::Connect { connector_id: "abc", prefix: "" }));
        assert_eq!(
            route("/api/coco/connector/abc/dropbox/oauth_redirect"),
            Some(Route::Redirect { connector_id: "abc", prefix: "/api/coco" })
        );
        assert_eq!(route("/sync"), Some(Route::Sync));
        for bad in ["/connector//dropbox/connect", "/connector/abc/box/connect", "/", "/api/coco/sync"] {
            assert_eq!(route(bad), None, "{bad}");
        }
    }

    #[test]
    fn connect_redirects_with_the_derived_redirect_uri_and_no_secret() {
        let out = get("/api/coco/connector/dropbox/dropbox/connect", "");
        assert_eq!(out.status, 302);
        let location = &out.headers.iter().find(|(k, _)| *k == "location").unwrap().1;
        let u = url::Url::parse(location).unwrap();
        let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
        assert_eq!(q["redirect_uri"], "https://coco.example:9000/api/coco/connector/dropbox/dropbox/oauth_redirect");
        assert!(!location.contains("APP-SECRET") && !location.contains("state-secret"));
    }

    #[test]
    fn errors_have_fitting_statuses() {
        assert_eq!(get("/nope", "").status, 404);
        assert_eq!(get("/sync", "").status, 405);
        let denied = get("/connector/dropbox/dropbox/oauth_redirect", "error=access_denied&error_description=no");
        assert_eq!(denied.status, 403);
        let unconfigured = handle(
            Err(Error::InvalidInput(format!("{ENV_CLIENT_ID} is not set"))),
            &Incoming {
                method: "GET",
                path: "/connector/x/dropbox/connect",
                query: "",
                host: None,
                forwarded_proto: None,
                body: b"",
            },
            &mut Scripted::offline(),
            0,
            b"n",
        );
        assert_eq!(unconfigured.status, 503);
        let limited = error_response(&Error::RateLimited(1500), None);
        assert_eq!(limited.status, 429);
        assert!(limited.headers.contains(&("retry-after", "2".into())));
        let bad = handle(
            config(),
            &Incoming { method: "POST", path: "/sync", query: "", host: None, forwarded_proto: None, body: b"{" },
            &mut Scripted::offline(),
            0,
            b"n",
        );
        assert_eq!(bad.status, 400);
    }
}
