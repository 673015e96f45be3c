//! The HTTP facade's routing, free of wasm: upstream-compatible OAuth routes, `POST /sync` and
//! `POST /oauth/exchange`, for `wasmtime serve`, Spin and other wasi:http hosts. It is meant
//! for a public URL, so it is closed by default:
//!
//! - routes that act with the operator's credentials or return tokens need the API token;
//! - the browser routes bind the OAuth state to a cookie and hand the datasource (with its
//!   tokens) to a configured callback, server to server; the browser only learns its id and name;
//! - responses that carry a token or a state are `Cache-Control: no-store`;
//! - request bodies are capped (the glue answers `413` before reading a larger one), and request
//!   JSON with unknown fields is refused.
//!
//! Shapes of every request and response: `wit/facade.schema.json`.

mod auth;
mod config;
pub mod serverless;
mod shapes;

pub use config::*;
pub use shapes::{RootJson, TokensJson};

use coco_web::envelope::Kind;
use coco_web::links;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::error::Error;
use crate::http::{HttpRequest, Transport};
use crate::secret::{Secret, SecretBytes};
use crate::types::{AppCredentials, ConnectRequest, PageRequest, RedirectRequest, SyncOptions, Tokens};
use crate::{connect, oauth, page};
use serverless::kv::KvStore;
use shapes::{ExchangeBody, StatsJson, SyncBody, SyncOut};

/// Route patterns, as `spin.toml` must declare them (`{id}` is any connector id).
pub const ROUTES: [&str; 7] = [
    "/connector/{id}/dropbox/connect",
    "/connector/{id}/dropbox/oauth_redirect",
    "/api/coco/connector/{id}/dropbox/connect",
    "/api/coco/connector/{id}/dropbox/oauth_redirect",
    "/sync",
    "/oauth/exchange",
    "/api/connect-links",
];

/// The routes only the key-value build serves (`{id}` is a datasource id), as
/// `spin-kv.toml` must declare them besides the browser routes.
pub const KV_ROUTES: [&str; 3] = ["/datasources", "/datasources/{id}", "/sync/{id}"];

/// Fresh randomness for one request (the glue draws it from `wasi:random`).
pub struct Randomness {
    /// The state's nonce.
    pub nonce: [u8; oauth::NONCE_LEN],
    /// A new browser session cookie.
    pub cookie: [u8; 32],
    /// The nonce of the one value this request may seal (key-value build).
    pub seal_nonce: [u8; serverless::seal::NONCE_LEN],
    /// Names this request as a lease holder (key-value build).
    pub holder: [u8; 16],
}

/// An incoming request, reduced to what the routes read.
pub struct Incoming<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    /// Header names lower-cased.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl Incoming<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
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

    /// The web kit's error envelope, with its one status for `kind`.
    pub fn error(kind: Kind, message: &str) -> Self {
        Outgoing::json(kind.status(), &coco_web::envelope::body(kind, message, Default::default()))
    }

    /// Never cached: it carries a token, a state, or a session cookie.
    fn no_store(mut self) -> Self {
        self.headers.push(("cache-control", "no-store".into()));
        self.headers.push(("pragma", "no-cache".into()));
        self
    }

    fn with(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// The answer to a body over the cap; the glue sends it before reading the body.
pub fn too_large(limit: usize) -> Outgoing {
    Outgoing::error(Kind::TooLarge, &format!("the request body is larger than {limit} bytes"))
}

#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Connect { connector_id: &'a str, prefix: &'static str },
    Redirect { connector_id: &'a str, prefix: &'static str },
    Sync,
    Exchange,
    ConnectLinks,
    Datasources,
    Datasource { id: &'a str },
    SyncOne { id: &'a str },
}

impl Route<'_> {
    /// The methods a route answers; the first is the one named in `405`s.
    fn methods(&self) -> &'static [&'static str] {
        match self {
            Route::Connect { .. } | Route::Redirect { .. } | Route::Datasources => &["GET"],
            Route::Sync | Route::Exchange | Route::ConnectLinks | Route::SyncOne { .. } => &["POST"],
            Route::Datasource { .. } => &["GET", "DELETE"],
        }
    }

    /// Routes that are not a browser step: they need the API token. `/connect` takes the
    /// token or a connect link (checked by the route); `/oauth_redirect` is bound to the
    /// cookie and state that only `/connect` hands out.
    fn needs_token(&self) -> bool {
        !matches!(self, Route::Connect { .. } | Route::Redirect { .. })
    }
}

/// A datasource id in a path: upstream's are md5 hex; nothing that could reach another key.
fn datasource_id(s: &str) -> Option<&str> {
    (!s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then_some(s)
}

fn route(path: &str) -> Option<Route<'_>> {
    match path {
        "/sync" => return Some(Route::Sync),
        "/oauth/exchange" => return Some(Route::Exchange),
        "/api/connect-links" => return Some(Route::ConnectLinks),
        "/datasources" => return Some(Route::Datasources),
        _ => {}
    }
    if let Some(id) = path.strip_prefix("/datasources/") {
        return datasource_id(id).map(|id| Route::Datasource { id });
    }
    if let Some(id) = path.strip_prefix("/sync/") {
        return datasource_id(id).map(|id| Route::SyncOne { id });
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

/// The redirect URI for a connector: `COCO_REDIRECT_URI` when set; else derived from the request
/// as upstream does, trusting `X-Forwarded-*` only when told to. A public host needs one of
/// the two: behind a TLS proxy a request looks like plain http, and a guessed `http://` URI
/// is one Dropbox does not know (and a session cookie without `Secure`), so the browser routes
/// answer `503` naming the variable instead.
fn redirect_uri(
    config: &FacadeConfig,
    req: &Incoming<'_>,
    prefix: &str,
    connector_id: &str,
) -> Result<String, Outgoing> {
    if let Some(template) = &config.redirect_uri {
        return Ok(template.replace("{id}", connector_id));
    }
    let forwarded = |name| if config.trust_forwarded { req.header(name) } else { None };
    let proto = forwarded("x-forwarded-proto");
    let scheme = if proto == Some("https") { "https" } else { "http" };
    let host =
        forwarded("x-forwarded-host").or(req.header("host")).filter(|h| !h.is_empty()).unwrap_or("localhost:9000");
    if !is_loopback(host) && proto.is_none() {
        return Err(Outgoing::error(Kind::NotConfigured,
            &format!(
                "{ENV_REDIRECT_URI} is not set: a redirect URI is not guessed for the public host {host:?} (set it to the URI registered at Dropbox, e.g. https://{host}/connector/{{id}}/dropbox/oauth_redirect, or {ENV_TRUST_FORWARDED}=1 behind a proxy that sends X-Forwarded-Proto)"
            ),
        ));
    }
    Ok(format!("{scheme}://{host}{prefix}/connector/{connector_id}/dropbox/oauth_redirect"))
}

/// `localhost`, `127.0.0.1:9000`, `[::1]:8080`: a host only this machine reaches.
fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        },
    };
    name.eq_ignore_ascii_case("localhost")
        || name.to_ascii_lowercase().ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A connector error in the web kit's envelope: its kind's one status, with what a caller
/// acts on (the wait of a rate limit, the new root) and any tokens refreshed before it.
fn error_response(e: &Error, tokens: Option<TokensJson>) -> Outgoing {
    let kind = Kind::from_name(e.kind()).unwrap_or(Kind::Api);
    let mut extra = serde_json::Map::new();
    match e {
        Error::RateLimited(ms) => {
            extra.insert("retry_after_ms".into(), (*ms).into());
        }
        Error::RootChanged(r) => {
            extra.insert("root_info".into(), serde_json::to_value(RootJson::from(r.clone())).unwrap_or_default());
        }
        _ => {}
    }
    let mut body = coco_web::envelope::body(kind, &e.message(), extra);
    if let Some(t) = tokens {
        body["tokens"] = serde_json::to_value(t).unwrap_or_default();
    }
    let mut out = Outgoing::json(kind.status(), &body);
    if let Error::RateLimited(ms) = e {
        out.headers.push(("retry-after", coco_web::envelope::retry_after_secs(*ms).to_string()));
    }
    out
}

fn not_configured(e: &Error) -> Outgoing {
    Outgoing::error(Kind::NotConfigured, &e.message())
}

/// `401` without the API token; `503` when none is configured (never open by default).
fn authenticate(config: &FacadeConfig, req: &Incoming<'_>) -> Result<(), Outgoing> {
    let Some(expected) = &config.api_token else {
        return Err(Outgoing::error(Kind::NotConfigured, &format!("{ENV_API_TOKEN} is not set: this route is closed")));
    };
    match auth::presented_token(req) {
        Some(t) if auth::token_matches(expected, t) => Ok(()),
        _ => {
            Err(Outgoing::error(Kind::Unauthorized, "send the API token as `Authorization: Bearer …` or `X-API-TOKEN`")
                .with("www-authenticate", "Bearer".into()))
        }
    }
}

/// Serve one request. `now` is unix seconds. `kv`: the runtime's store (key-value build);
/// without one, the stateful routes do not exist and the redirect delivers to the callback.
pub fn handle<T: Transport>(
    config: &FacadeConfig,
    req: &Incoming<'_>,
    transport: &mut T,
    now: u64,
    random: &Randomness,
    kv: Option<&mut dyn KvStore>,
) -> Outgoing {
    let Some(route) = route(req.path) else {
        return Outgoing::error(Kind::NotFound, "no such route");
    };
    // Only the configured connectors have browser routes (each needs its redirect URI
    // registered at Dropbox): any other id is no route at all.
    if let Route::Connect { connector_id, .. } | Route::Redirect { connector_id, .. } = route {
        if !config.connector_ids.iter().any(|c| c == connector_id) {
            return Outgoing::error(
                Kind::NotFound,
                &format!("no connector {connector_id:?} here ({ENV_CONNECTOR_IDS})"),
            );
        }
    }
    let stateful = matches!(route, Route::Datasources | Route::Datasource { .. } | Route::SyncOne { .. });
    if stateful && kv.is_none() {
        return Outgoing::error(Kind::NotFound, "no such route (this build keeps no state: use POST /sync)");
    }
    let methods = route.methods();
    if !methods.iter().any(|m| req.method.eq_ignore_ascii_case(m)) {
        return Outgoing::error(Kind::MethodNotAllowed, &format!("use {}", methods.join(" or ")))
            .with("allow", methods.join(", "));
    }
    if req.body.len() > config.max_body_bytes {
        return too_large(config.max_body_bytes);
    }
    if route.needs_token() {
        if let Err(out) = authenticate(config, req) {
            return out;
        }
    }
    // Reading the store needs no Dropbox app.
    let mut kv = kv;
    if let Some(store) = kv.as_deref_mut() {
        match route {
            Route::Datasources => return serverless::list(store),
            Route::Datasource { id } if req.method.eq_ignore_ascii_case("GET") => return serverless::show(store, id),
            _ => {}
        }
    }
    let app = match &config.app {
        Ok(app) => app,
        // Upstream answers 503 when the app credentials are not configured.
        Err(e) => return not_configured(e),
    };
    let browser = |connector_id, prefix| BrowserStep { config, app, req, connector_id, prefix, now, random };
    match (route, kv) {
        (Route::Connect { connector_id, prefix }, kv) => connect_route(browser(connector_id, prefix), kv),
        (Route::ConnectLinks, _) => connect_links_route(config, app, req, now, random),
        (Route::Redirect { connector_id, prefix }, kv) => redirect_route(browser(connector_id, prefix), transport, kv),
        (Route::Exchange, _) => exchange_route(config, app, req, transport, now),
        (Route::Sync, _) => sync_route(app, req.body, transport, now),
        // `DELETE` (the reads were answered above).
        (Route::Datasource { id }, Some(kv)) => match &config.seal {
            Ok(seal) => {
                let force = req.query.split('&').any(|p| p == "force=true" || p == "force=1");
                serverless::remove(serverless::Call { config, app, seal, now, random }, kv, id, force, transport)
            }
            Err(e) => not_configured(e),
        },
        (Route::SyncOne { id }, Some(kv)) => match (&config.seal, &config.sink) {
            (Ok(seal), Ok(sink)) => {
                serverless::sync(serverless::Call { config, app, seal, now, random }, kv, sink, id, transport)
            }
            (Err(e), _) | (_, Err(e)) => not_configured(e),
        },
        // Answered above: the list, and every stateful route of a build without a store.
        (Route::Datasources, _) | (Route::Datasource { .. } | Route::SyncOne { .. }, None) => {
            Outgoing::error(Kind::NotFound, "no such route")
        }
    }
}

fn is_https(uri: &str) -> bool {
    uri.starts_with("https://")
}

/// What both browser routes read: the request, the app, and where the route was reached.
#[derive(Clone, Copy)]
struct BrowserStep<'a> {
    config: &'a FacadeConfig,
    app: &'a App,
    req: &'a Incoming<'a>,
    connector_id: &'a str,
    prefix: &'static str,
    now: u64,
    random: &'a Randomness,
}

/// `GET …/connect`: for a caller with the API token or a connect link, a new session cookie,
/// a state bound to it, `302` to Dropbox. With a store, a link is single-use: it binds to the
/// first browser that opens it (that browser may open it again), and any other is refused.
fn connect_route(step: BrowserStep<'_>, kv: Option<&mut dyn KvStore>) -> Outgoing {
    let BrowserStep { config, app, req, connector_id, prefix, now, random } = step;
    // Without a place to deliver the result, a finished flow would have nowhere to go.
    let destination =
        if kv.is_some() { config.seal.as_ref().map(|_| ()) } else { config.callback.as_ref().map(|_| ()) };
    if let Err(e) = destination {
        return not_configured(e);
    }
    let Some(api_token) = &config.api_token else {
        return Outgoing::error(
            Kind::NotConfigured,
            &format!("{ENV_API_TOKEN} is not set: connecting is closed (it takes the token or a link minted with it)"),
        );
    };
    let link = links::from_query(req.query).and_then(|t| links::check(app.state_secret.expose(), t, connector_id, now));
    let by_token = auth::presented_token(req).is_some_and(|p| auth::token_matches(api_token, p));
    if link.is_none() && !by_token {
        return Outgoing::error(Kind::Unauthorized,
            "starting a connect flow needs the API token or a link from POST /api/connect-links (links expire after 10 minutes)",
        )
        .no_store();
    }
    let redirect_uri = match redirect_uri(config, req, prefix, connector_id) {
        Ok(uri) => uri,
        Err(out) => return out,
    };
    let https = is_https(&redirect_uri);
    let cookie = coco_web::encode::base64_url(&random.cookie);
    if let (Some(link), Some(kv)) = (&link, kv) {
        if !by_token {
            match serverless::bind_link(kv, &link.nonce, link.expires_at, auth::session_cookie(req, https), &cookie) {
                Ok(true) => {}
                Ok(false) => {
                    return Outgoing::error(
                        Kind::Denied,
                        "this connect link was already opened in another browser: ask for a new one",
                    )
                    .no_store()
                }
                Err(e) => return Outgoing::error(Kind::StoreFailed, &e.to_string()),
            }
        }
    }
    let connect = ConnectRequest {
        connector_id: connector_id.to_string(),
        client_id: app.client_id.clone(),
        redirect_uri,
        state_secret: app.state_secret.clone(),
        now,
        state_ttl_secs: None,
        scopes: None,
        endpoints: app.endpoints.clone(),
        session_binding: Some(SecretBytes::new(cookie.as_bytes())),
    };
    match oauth::authorize_url(&connect, &random.nonce) {
        Ok(url) => Outgoing { status: 302, headers: vec![("location", url)], body: Vec::new() }
            .with("set-cookie", auth::set_cookie(https, Some(&cookie)))
            .no_store(),
        Err(e) => error_response(&e, None).no_store(),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkBody {
    #[serde(default)]
    connector_id: Option<String>,
}

/// `POST /api/connect-links` (API token): a link a browser can open to start connecting one
/// of the configured connectors, for ten minutes. `{"url","expires_at"}`.
fn connect_links_route(
    config: &FacadeConfig,
    app: &App,
    req: &Incoming<'_>,
    now: u64,
    random: &Randomness,
) -> Outgoing {
    let body: LinkBody = if req.body.iter().all(u8::is_ascii_whitespace) {
        LinkBody { connector_id: None }
    } else {
        match serde_json::from_slice(req.body) {
            Ok(b) => b,
            Err(e) => return Outgoing::error(Kind::InvalidInput, &format!("request body: {e}")),
        }
    };
    let connector_id = body.connector_id.unwrap_or_else(|| config.connector_ids[0].clone());
    if !config.connector_ids.contains(&connector_id) {
        return Outgoing::error(Kind::NotFound, &format!("no connector {connector_id:?} here ({ENV_CONNECTOR_IDS})"));
    }
    let expires_at = now + links::LINK_TTL_SECS;
    let ticket = links::mint(app.state_secret.expose(), &connector_id, expires_at, &random.nonce);
    // The connect route that sits beside the redirect URI the flow comes back to.
    let back = match redirect_uri(config, req, "", &connector_id) {
        Ok(uri) => uri,
        Err(out) => return out,
    };
    let url = format!("{}/connect?link={ticket}", back.trim_end_matches("/oauth_redirect"));
    Outgoing::json(200, &serde_json::json!({ "url": url, "expires_at": coco_web::encode::rfc3339(expires_at) }))
        .no_store()
}

/// `GET …/oauth_redirect`: only the browser that started the flow (its cookie) gets the code
/// exchanged; the datasource goes to the callback, the browser gets its id and name.
fn redirect_route<T: Transport>(step: BrowserStep<'_>, transport: &mut T, kv: Option<&mut dyn KvStore>) -> Outgoing {
    let BrowserStep { config, app, req, connector_id, prefix, now, random } = step;
    // Where the datasource goes: the store (key-value build) or the callback.
    let destination = match kv {
        Some(kv) => match &config.seal {
            Ok(seal) => Destination::Store(kv, seal),
            Err(e) => return not_configured(e),
        },
        None => match &config.callback {
            Ok(c) => Destination::Callback(c),
            Err(e) => return not_configured(e),
        },
    };
    let redirect_uri = match redirect_uri(config, req, prefix, connector_id) {
        Ok(uri) => uri,
        Err(out) => return out,
    };
    let https = is_https(&redirect_uri);
    let clear = auth::set_cookie(https, None);
    let Some(cookie) = auth::session_cookie(req, https) else {
        return Outgoing::error(
            Kind::Denied,
            "this sign-in was not started in this browser (no session cookie): start again at /connect",
        )
        .with("set-cookie", clear)
        .no_store();
    };
    let redirect = RedirectRequest {
        connector_id: connector_id.to_string(),
        app: AppCredentials { client_id: app.client_id.clone(), client_secret: app.client_secret.clone() },
        redirect_uri,
        redirect_query: req.query.to_string(),
        state_secret: app.state_secret.clone(),
        now,
        endpoints: app.endpoints.clone(),
        session_binding: Some(SecretBytes::new(cookie.as_bytes())),
    };
    let ds = match connect::handle_redirect(&redirect, transport) {
        Ok(ds) => ds,
        Err(e) => return error_response(&e, None).with("set-cookie", clear).no_store(),
    };
    let (id, name) = (ds.id.clone(), ds.name.clone());
    match destination {
        Destination::Store(kv, seal) => {
            if let Err(out) = serverless::store_connected(kv, seal, &ds, now, random) {
                return out.with("set-cookie", clear).no_store();
            }
        }
        Destination::Callback(callback) => {
            if let Err(why) = deliver(callback, &shapes::datasource_json(ds), transport) {
                return Outgoing::error(
                    Kind::CallbackFailed,
                    &format!("the connected account could not be delivered: {why}"),
                )
                .with("set-cookie", clear)
                .no_store();
            }
        }
    }
    connected_response(config, &id, &name).with("set-cookie", clear).no_store()
}

enum Destination<'a> {
    Store(&'a mut dyn KvStore, &'a serverless::seal::SealKey),
    Callback(&'a Callback),
}

/// `POST` the datasource JSON (with its tokens) to the callback; any 2xx is delivered.
fn deliver<T: Transport>(callback: &Callback, datasource: &serde_json::Value, transport: &mut T) -> Result<(), String> {
    let req = HttpRequest::post(callback.url.clone())
        .header("content-type", "application/json")
        .header("x-api-token", callback.token.expose())
        .body(datasource.to_string())
        .max_response_bytes(crate::http::MAX_ERROR_BODY_BYTES);
    match transport.send(&req) {
        Ok(resp) if (200..300).contains(&resp.status) => Ok(()),
        Ok(resp) => Err(format!("the callback answered {}", resp.status)),
        Err(e) => Err(format!("the callback is unreachable ({})", transport_reason(&e))),
    }
}

fn transport_reason(e: &crate::http::TransportError) -> &'static str {
    match e {
        crate::http::TransportError::Denied(_) => "the host refused the request",
        crate::http::TransportError::Failed(_) => "connection failed",
        crate::http::TransportError::TooLarge { .. } => "its answer is too large",
    }
}

/// Where the browser lands: `COCO_CONNECTED_URL` with the id and name, or the web kit's page.
fn connected_response(config: &FacadeConfig, id: &str, name: &str) -> Outgoing {
    use coco_web::landing::{connected, Landing, PAGE_HEADERS, REDIRECT_STATUS};
    match connected(config.connected_url.as_deref(), id, name) {
        Landing::Redirect(location) => {
            Outgoing { status: REDIRECT_STATUS, headers: vec![("location", location)], body: Vec::new() }
        }
        Landing::Page(page) => Outgoing {
            status: 200,
            headers: PAGE_HEADERS.iter().map(|(name, value)| (*name, value.to_string())).collect(),
            body: page.into_bytes(),
        },
    }
}

/// `POST /oauth/exchange` (API token): an orchestrator that receives the browser itself hands
/// over the redirect query (and the session cookie it saw) and gets the datasource back.
fn exchange_route<T: Transport>(
    config: &FacadeConfig,
    app: &App,
    req: &Incoming<'_>,
    transport: &mut T,
    now: u64,
) -> Outgoing {
    let body: ExchangeBody = match serde_json::from_slice(req.body) {
        Ok(b) => b,
        Err(e) => return Outgoing::error(Kind::InvalidInput, &format!("request body: {e}")),
    };
    let redirect_uri =
        match body.redirect_uri.or_else(|| config.redirect_uri.as_ref().map(|t| t.replace("{id}", &body.connector_id)))
        {
            Some(uri) => uri,
            None => {
                return Outgoing::error(
                    Kind::InvalidInput,
                    &format!("redirect_uri is required (or set {ENV_REDIRECT_URI})"),
                )
            }
        };
    let redirect = RedirectRequest {
        connector_id: body.connector_id,
        app: AppCredentials { client_id: app.client_id.clone(), client_secret: app.client_secret.clone() },
        redirect_uri,
        redirect_query: body.redirect_query,
        state_secret: app.state_secret.clone(),
        now,
        endpoints: app.endpoints.clone(),
        session_binding: body.session_cookie.map(|c| SecretBytes::new(c.into_bytes())),
    };
    match connect::handle_redirect(&redirect, transport) {
        Ok(ds) => Outgoing::json(200, &shapes::datasource_json(ds)).no_store(),
        Err(e) => error_response(&e, None).no_store(),
    }
}

/// `POST /sync` (API token): one page.
fn sync_route<T: Transport>(app: &App, body: &[u8], transport: &mut T, now: u64) -> Outgoing {
    let body: SyncBody = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => return Outgoing::error(Kind::InvalidInput, &format!("request body: {e}")),
    };
    let req = PageRequest {
        datasource_id: body.datasource.id,
        datasource_name: body.datasource.name,
        owner_id: body.datasource.owner_id,
        app: AppCredentials { client_id: app.client_id.clone(), client_secret: app.client_secret.clone() },
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
            max_page_bytes: body.options.max_page_bytes,
            recursive: true,
        },
        batch_number: body.batch_number.unwrap_or_default(),
        now,
        endpoints: app.endpoints.clone(),
    };
    let out = match page::sync_page(&req, transport) {
        Ok(r) => {
            let documents: Result<Vec<&RawValue>, _> =
                r.documents.iter().map(|d| serde_json::from_str::<&RawValue>(d.json)).collect();
            let Ok(documents) = documents else {
                return Outgoing::error(Kind::Internal, "a mapped document is not JSON");
            };
            Outgoing::json(
                200,
                &SyncOut {
                    deletes: &r.deletes,
                    documents,
                    cursor: &r.cursor,
                    has_more: r.has_more,
                    tokens: r.tokens.map(TokensJson::from),
                    stats: StatsJson::from(r.stats),
                },
            )
        }
        Err(f) => error_response(&f.error, f.tokens.map(TokensJson::from)),
    };
    out.no_store()
}

#[cfg(test)]
mod tests;
