//! The HTTP surface of `serve`: the connect flow for browsers (upstream's routes), Dropbox's
//! webhook, the admin API (API token), health and metrics. Closed by default: every route that
//! acts with the operator's credentials, changes state or reveals tenants needs the API token,
//! except the browser's OAuth redirect, which only completes a flow that browser started (cookie).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::auth;
use super::driver::{notice, reload};
use super::schedule::Waiting;
use super::{locked, Service, Trigger};
use coco_web::envelope::Kind;

use crate::clock::now_unix;
use crate::host::{DisconnectOutcome, HostError};
use crate::runtime::WitError;
use crate::secret::Secret;
use crate::state::{DatasourceRecord, ProfileRecord, RootRecord, Status, StoreError, TokensRecord};

type Svc = State<Arc<Service>>;

/// Request bodies larger than this are refused (`413`): the largest legitimate one is a
/// webhook notification or a delivered datasource, a few KiB.
const MAX_BODY_BYTES: usize = 1 << 20;

pub fn router(svc: Arc<Service>) -> Router {
    let browser = Router::new()
        .route("/connector/{id}/dropbox/connect", get(connect))
        .route("/connector/{id}/dropbox/oauth_redirect", get(oauth_redirect));
    Router::new()
        .merge(browser.clone())
        .nest("/api/coco", browser)
        .route("/dropbox/webhook", get(webhook_challenge).post(webhook))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/connect-links", post(connect_link))
        .route("/api/datasources", get(list).post(adopt))
        .route("/api/datasources/{id}", get(show).patch(patch).delete(remove))
        .route("/api/datasources/{id}/sync", post(sync_now))
        .route("/api/datasources/{id}/pause", post(pause))
        .route("/api/datasources/{id}/resume", post(resume))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(svc)
}

/// The web kit's envelope, with its one status for `kind`.
fn error(kind: Kind, message: impl Into<String>) -> Response {
    let body = coco_web::envelope::body(kind, &message.into(), Default::default());
    let status = StatusCode::from_u16(kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, Json(body)).into_response();
    no_store(&mut r);
    r
}

fn no_store(r: &mut Response) {
    r.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
}

fn unauthorized() -> Response {
    let mut r = error(Kind::Unauthorized, "this route needs the API token (X-API-TOKEN or Bearer)");
    r.headers_mut().insert("www-authenticate", HeaderValue::from_static("Bearer"));
    r
}

/// The route's API token check, as an early return.
macro_rules! require_token {
    ($svc:expr, $headers:expr) => {
        if !auth::has_token(&$headers, &$svc.config.api_token) {
            return unauthorized();
        }
    };
}

/// A store or host failure as an HTTP answer, without internals a caller cannot act on.
fn host_error(e: &HostError) -> Response {
    match e {
        HostError::Store(StoreError::NoDatasource(id)) => error(Kind::NotFound, format!("no datasource {id}")),
        HostError::Connector(WitError::Denied(m)) => error(Kind::Denied, m.clone()),
        HostError::Connector(WitError::InvalidInput(m)) => error(Kind::InvalidInput, m.clone()),
        HostError::Connector(WitError::InvalidClient(m)) => error(Kind::InvalidClient, m.clone()),
        HostError::Connector(WitError::RateLimited(ms)) => {
            let mut r = error(Kind::RateLimited, "Dropbox asked us to slow down");
            if let Ok(v) = HeaderValue::from_str(&coco_web::envelope::retry_after_secs(*ms).to_string()) {
                r.headers_mut().insert("retry-after", v);
            }
            r
        }
        HostError::Connector(e) => error(Kind::Dropbox, crate::policy::describe(e)),
        other => {
            tracing::error!("request failed: {other}");
            error(Kind::Internal, "the host failed; see its log")
        }
    }
}

async fn readyz(State(svc): Svc) -> Response {
    if svc.ready.load(std::sync::atomic::Ordering::SeqCst) && !svc.is_shutting_down() {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

async fn metrics(State(svc): Svc, headers: HeaderMap) -> Response {
    if !svc.config.open_metrics {
        require_token!(svc, headers);
    }
    let overview = match svc.host.store.overview() {
        Ok(o) => o,
        Err(e) => return host_error(&e.into()),
    };
    let now = now_unix() as i64;
    let m = &svc.metrics;
    m.lag.reset();
    m.datasources.reset();
    let schedule = locked(&svc.schedule);
    for o in &overview {
        let since = o.last_synced_at.unwrap_or(o.connected_at);
        m.lag.with_label_values(&[&o.id]).set((now - since).max(0) as f64);
        let state = schedule.slot(&o.id).map_or("unscheduled", |s| s.waiting.as_str());
        m.datasources.with_label_values(&[state]).inc();
    }
    drop(schedule);
    m.sink_backlog.reset();
    match svc.host.store.sink_backlogs() {
        Ok(backlogs) => {
            for b in backlogs {
                m.sink_backlog.with_label_values(&[b.sink.as_str()]).add(b.pending as i64);
            }
        }
        Err(e) => tracing::warn!("sink backlog for /metrics: {e}"),
    }
    let mut r = m.render().into_response();
    r.headers_mut().insert("content-type", HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    r
}

// ---- connect flow ----------------------------------------------------------------------

fn route_prefix(uri: &Uri) -> &'static str {
    if uri.path().starts_with("/api/coco/") {
        "/api/coco"
    } else {
        ""
    }
}

fn redirect_uri(svc: &Service, prefix: &str, connector_id: &str) -> String {
    format!("{}{prefix}/connector/{connector_id}/dropbox/oauth_redirect", svc.config.public_url.trim_end_matches('/'))
}

#[derive(Deserialize)]
struct ConnectQuery {
    #[serde(default)]
    ticket: Option<String>,
}

/// `GET …/connect`: a new cookie, a state bound to it, `302` to Dropbox.
async fn connect(
    State(svc): Svc,
    Path(connector_id): Path<String>,
    Query(q): Query<ConnectQuery>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let keys = svc.host.store.keys();
    let ticket =
        q.ticket.as_deref().and_then(|t| coco_web::links::check(keys.state_secret(), t, &connector_id, now_unix()));
    let by_token = auth::has_token(&headers, &svc.config.api_token);
    if !svc.config.open_connect && ticket.is_none() && !by_token {
        return error(
            Kind::Unauthorized,
            "starting a connect flow needs the API token or a link from POST /api/connect-links",
        );
    }
    let mut connector = match svc.host.store.connector(&connector_id) {
        Ok(Some(c)) => c,
        Ok(None) => return error(Kind::NotFound, format!("no connector {connector_id:?}")),
        Err(e) => return host_error(&e.into()),
    };
    connector.redirect_uri = redirect_uri(&svc, route_prefix(&uri), &connector_id);
    let https = connector.redirect_uri.starts_with("https://");
    let cookie = coco_web::encode::base64_url(&rand::random::<[u8; 32]>());
    // A link is single-use: it binds to the first browser that opens it (which may open it
    // again: it sends the cookie it was given); any other browser is refused.
    if let (Some(t), false) = (&ticket, by_token || svc.config.open_connect) {
        let presented = auth::session_cookie(&headers, https).map(coco_web::cookie::digest);
        match svc.host.store.bind_connect_link(
            &t.nonce,
            t.expires_at,
            presented.as_deref(),
            &coco_web::cookie::digest(&cookie),
        ) {
            Ok(true) => {}
            Ok(false) => {
                return error(
                    Kind::Denied,
                    "this connect link was already opened in another browser: ask for a new one",
                )
            }
            Err(e) => return host_error(&e.into()),
        }
    }
    match svc.host.authorize_url(&connector, Some(cookie.as_bytes())).await {
        Ok(url) => {
            let mut r = StatusCode::FOUND.into_response();
            let h = r.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&url) {
                h.insert("location", v);
            }
            if let Ok(v) = HeaderValue::from_str(&coco_web::cookie::set(https, Some(&cookie))) {
                h.insert("set-cookie", v);
            }
            no_store(&mut r);
            r
        }
        Err(e) => host_error(&e),
    }
}

/// `GET …/oauth_redirect`: only the browser holding the flow's cookie gets its code exchanged;
/// the datasource is stored here, the browser learns its id and name.
async fn oauth_redirect(State(svc): Svc, Path(connector_id): Path<String>, headers: HeaderMap, uri: Uri) -> Response {
    let connector = match svc.host.store.connector(&connector_id) {
        Ok(Some(c)) => c,
        Ok(None) => return error(Kind::NotFound, format!("no connector {connector_id:?}")),
        Err(e) => return host_error(&e.into()),
    };
    let mut connector = connector;
    connector.redirect_uri = redirect_uri(&svc, route_prefix(&uri), &connector_id);
    let https = connector.redirect_uri.starts_with("https://");
    let clear = HeaderValue::from_str(&coco_web::cookie::set(https, None)).ok();
    let with_clear = |mut r: Response| {
        if let Some(c) = &clear {
            r.headers_mut().insert("set-cookie", c.clone());
        }
        r
    };
    let Some(cookie) = auth::session_cookie(&headers, https) else {
        return with_clear(error(
            Kind::Denied,
            "this sign-in was not started in this browser (no session cookie): start again at /connect",
        ));
    };
    let query = uri.query().unwrap_or("");
    let ds = match svc.host.finish_connect(&connector, query, Some(cookie.as_bytes())).await {
        Ok(ds) => ds,
        Err(e) => return with_clear(host_error(&e)),
    };
    let _ = reload(&svc);
    notice(&svc, &ds.id, Trigger::Admin);
    with_clear(connected(&svc, &ds.id, &ds.name))
}

/// Where the browser lands: the configured page with id and name, or the web kit's page.
fn connected(svc: &Service, id: &str, name: &str) -> Response {
    use coco_web::landing::{connected, Landing, PAGE_HEADERS, REDIRECT_STATUS};
    let mut r = match connected(svc.config.connected_url.as_deref(), id, name) {
        Landing::Redirect(location) => {
            let mut r = StatusCode::from_u16(REDIRECT_STATUS).unwrap_or(StatusCode::FOUND).into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert("location", v);
            }
            r
        }
        Landing::Page(page) => {
            let mut r = (StatusCode::OK, page).into_response();
            for (name, value) in PAGE_HEADERS {
                r.headers_mut().insert(name, HeaderValue::from_static(value));
            }
            r
        }
    };
    no_store(&mut r);
    r
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkBody {
    connector_id: String,
}

/// `POST /api/connect-links`: a link a browser can open to start connecting (10 minutes).
async fn connect_link(State(svc): Svc, headers: HeaderMap, body: Bytes) -> Response {
    require_token!(svc, headers);
    let body: LinkBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(Kind::InvalidInput, format!("body: {e}")),
    };
    match svc.host.store.connector(&body.connector_id) {
        Ok(Some(_)) => {}
        Ok(None) => return error(Kind::NotFound, format!("no connector {:?}", body.connector_id)),
        Err(e) => return host_error(&e.into()),
    }
    let expires = now_unix() + coco_web::links::LINK_TTL_SECS;
    let nonce: [u8; 16] = rand::random();
    let ticket = coco_web::links::mint(svc.host.store.keys().state_secret(), &body.connector_id, expires, &nonce);
    let url = format!(
        "{}/connector/{}/dropbox/connect?ticket={ticket}",
        svc.config.public_url.trim_end_matches('/'),
        body.connector_id
    );
    let mut r = Json(json!({ "url": url, "expires_at": crate::clock::rfc3339(expires) })).into_response();
    no_store(&mut r);
    r
}

// ---- webhooks --------------------------------------------------------------------------

#[derive(Deserialize)]
struct Challenge {
    challenge: Option<String>,
}

/// Dropbox's verification: echo the challenge as plain text.
async fn webhook_challenge(Query(q): Query<Challenge>) -> Response {
    let Some(challenge) = q.challenge else {
        return error(Kind::InvalidInput, "missing challenge");
    };
    let mut r = (StatusCode::OK, challenge).into_response();
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static("text/plain"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    r
}

/// A signed notification: every datasource of a named account (of the signing app) syncs now.
async fn webhook(State(svc): Svc, headers: HeaderMap, body: Bytes) -> Response {
    let signature = headers.get("x-dropbox-signature").and_then(|v| v.to_str().ok()).unwrap_or("");
    let connectors = match svc.host.store.connectors() {
        Ok(c) => c,
        Err(e) => return host_error(&e.into()),
    };
    let signed_by: Vec<String> = connectors
        .iter()
        .filter(|c| super::webhook::signature_valid(c.client_secret.expose().as_bytes(), &body, signature))
        .map(|c| c.id.clone())
        .collect();
    if signed_by.is_empty() {
        svc.metrics.webhooks.with_label_values(&["bad-signature"]).inc();
        return error(Kind::BadSignature, "X-Dropbox-Signature does not match any app secret");
    }
    let accounts = match super::webhook::changed_accounts(&body) {
        Ok(a) => a,
        Err(why) => {
            svc.metrics.webhooks.with_label_values(&["unreadable"]).inc();
            return error(Kind::InvalidInput, why);
        }
    };
    // Only datasources of the app that signed: another app's tenants are not its business.
    let ids: Vec<String> = {
        let notes = locked(&svc.notes);
        accounts
            .iter()
            .filter_map(|a| notes.by_account.get(a))
            .flatten()
            .filter(|(_, connector)| signed_by.contains(connector))
            .map(|(id, _)| id.clone())
            .collect()
    };
    let woken = ids.iter().filter(|id| notice(&svc, id, Trigger::Webhook)).count();
    svc.metrics.webhooks.with_label_values(&["ok"]).inc();
    Json(json!({ "accounts": accounts.len(), "scheduled": woken })).into_response()
}

// ---- admin API -------------------------------------------------------------------------

fn unix_to_rfc3339(t: Option<i64>) -> serde_json::Value {
    t.map_or(serde_json::Value::Null, |t| crate::clock::rfc3339(t.max(0) as u64).into())
}

/// The admin API's view of every datasource (or one), with stable field names.
fn datasources_json(svc: &Service, only: Option<&str>) -> Result<Vec<serde_json::Value>, HostError> {
    let overview = svc.host.store.overview()?;
    // One datasource: count its documents alone, not the whole index.
    let counts = match only {
        Some(id) => std::iter::once((id.to_string(), svc.host.store.document_count(id)?)).collect(),
        None => svc.host.store.document_counts()?,
    };
    let now_unix = now_unix();
    let now = Instant::now();
    let backlogs = svc.host.store.sink_backlogs()?;
    let content = svc.host.store.all_content_counts(only)?;
    let schedule = locked(&svc.schedule);
    let notes = locked(&svc.notes);
    let mut out = Vec::new();
    for o in overview.iter().filter(|o| only.is_none_or(|id| id == o.id)) {
        let slot = schedule.slot(&o.id);
        let waiting = slot.map(|s| s.waiting);
        let syncing = slot.is_some_and(|s| s.running || s.in_run);
        let next_sync_at = match slot {
            Some(s) if !s.paused && !s.parked => {
                let at = now_unix + s.due.saturating_duration_since(now).as_secs();
                crate::clock::rfc3339(at).into()
            }
            _ => serde_json::Value::Null,
        };
        let status = if o.schedule.paused { "paused" } else { status_str(o.status) };
        let since = o.last_synced_at.unwrap_or(o.connected_at);
        let last_error = notes.last_error.get(&o.id).map(
            |(class, message, at)| json!({ "class": class, "message": message, "at": crate::clock::rfc3339(*at) }),
        );
        out.push(json!({
            "id": o.id,
            "name": o.name,
            "connector_id": o.connector_id,
            "account": { "account_id": o.account_id, "email": o.email },
            "status": status,
            "status_detail": o.status_detail,
            "phase": if o.listing { "full-listing" } else { "incremental" },
            "syncing": syncing,
            "waiting": waiting.map(Waiting::as_str),
            "documents": counts.get(&o.id).copied().unwrap_or(0),
            "pages": o.pages,
            "lag_secs": (now_unix as i64 - since).max(0),
            "last_synced_at": unix_to_rfc3339(o.last_synced_at),
            "last_error": last_error,
            "next_sync_at": next_sync_at,
            "interval_secs": o.schedule.interval_secs.map_or(svc.config.schedule.default_interval.as_secs(), u64::from),
            "paused": o.schedule.paused,
            "path": if o.path.is_empty() { "/" } else { o.path.as_str() },
            "page_limit": o.page_limit,
            "content": content.get(&o.id),
            "sinks": backlogs.iter().filter(|b| b.datasource_id == o.id).map(|b| json!({
                "sink": b.sink, "pending": b.pending, "delivered": b.delivered, "last_error": b.last_error,
            })).collect::<Vec<_>>(),
        }));
    }
    Ok(out)
}

fn status_str(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::ReauthRequired => "reauth-required",
        Status::Failing => "failing",
        Status::RateLimited => "rate-limited",
    }
}

async fn list(State(svc): Svc, headers: HeaderMap) -> Response {
    require_token!(svc, headers);
    match datasources_json(&svc, None) {
        Ok(all) => Json(json!({ "datasources": all })).into_response(),
        Err(e) => host_error(&e),
    }
}

async fn show(State(svc): Svc, headers: HeaderMap, Path(id): Path<String>) -> Response {
    require_token!(svc, headers);
    match datasources_json(&svc, Some(&id)) {
        Ok(mut one) if one.len() == 1 => Json(one.remove(0)).into_response(),
        Ok(_) => error(Kind::NotFound, format!("no datasource {id}")),
        Err(e) => host_error(&e),
    }
}

fn show_now(svc: &Service, id: &str, status: StatusCode) -> Response {
    match datasources_json(svc, Some(id)) {
        Ok(mut one) if one.len() == 1 => (status, Json(one.remove(0))).into_response(),
        Ok(_) => error(Kind::NotFound, format!("no datasource {id}")),
        Err(e) => host_error(&e),
    }
}

async fn sync_now(State(svc): Svc, headers: HeaderMap, Path(id): Path<String>) -> Response {
    require_token!(svc, headers);
    if let Err(e) = svc.host.store.datasource_view(&id) {
        return host_error(&e.into());
    }
    if !notice(&svc, &id, Trigger::Admin) {
        return error(Kind::NotSchedulable, "the datasource is paused or must be connected again");
    }
    show_now(&svc, &id, StatusCode::ACCEPTED)
}

async fn set_paused(svc: &Service, headers: &HeaderMap, id: &str, paused: bool) -> Response {
    require_token!(svc, *headers);
    if let Err(e) = svc.host.store.set_schedule(id, None, Some(paused)) {
        return host_error(&e.into());
    }
    if let Err(e) = reload(svc) {
        tracing::warn!("reload after pause/resume: {e:#}");
    }
    show_now(svc, id, StatusCode::OK)
}

async fn pause(State(svc): Svc, headers: HeaderMap, Path(id): Path<String>) -> Response {
    set_paused(&svc, &headers, &id, true).await
}

async fn resume(State(svc): Svc, headers: HeaderMap, Path(id): Path<String>) -> Response {
    set_paused(&svc, &headers, &id, false).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    /// Folder to index ("" or "/" = all); a change restarts the listing.
    #[serde(default)]
    path: Option<String>,
    /// 1..=2000, or 0 for the default.
    #[serde(default)]
    page_limit: Option<u32>,
    /// Seconds between re-syncs (>= 1), or null for the host's default.
    #[serde(default, deserialize_with = "double_option")]
    interval_secs: Option<Option<u32>>,
    /// Content extraction settings; fields left out keep their values.
    #[serde(default)]
    content: Option<ContentPatch>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContentPatch {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    max_download_bytes: Option<u64>,
    #[serde(default)]
    max_text_bytes: Option<u32>,
    /// Format names, or null for every format.
    #[serde(default, deserialize_with = "double_option_list")]
    formats: Option<Option<Vec<String>>>,
}

fn double_option_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<Vec<String>>>, D::Error> {
    Option::<Vec<String>>::deserialize(d).map(Some)
}

/// Tells `"interval_secs": null` (back to the default) from a missing field.
fn double_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    Option::<u32>::deserialize(d).map(Some)
}

async fn patch(State(svc): Svc, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    require_token!(svc, headers);
    let p: Patch = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return error(Kind::InvalidInput, format!("body: {e}")),
    };
    if let Some(limit) = p.page_limit.filter(|l| *l > 2000) {
        return error(Kind::InvalidInput, format!("page_limit {limit} is outside 0..=2000"));
    }
    if let Some(Some(0)) = p.interval_secs {
        return error(Kind::InvalidInput, "interval_secs must be at least 1");
    }
    if let Some(path) = &p.path {
        if path.chars().any(char::is_control) || (!path.is_empty() && !path.starts_with('/')) {
            return error(Kind::InvalidInput, "path must be \"\", \"/\" or start with \"/\"");
        }
    }
    let ds = match svc.host.store.datasource(&id) {
        Ok(ds) => ds,
        Err(e) => return host_error(&e.into()),
    };
    if p.path.is_some() || p.page_limit.is_some() {
        let path = p.path.map(|p| if p == "/" { String::new() } else { p.trim_end_matches('/').to_string() });
        let result =
            svc.host.store.set_options(&id, path.as_deref().unwrap_or(&ds.path), p.page_limit.unwrap_or(ds.page_limit));
        if let Err(e) = result {
            return host_error(&e.into());
        }
    }
    if let Some(interval) = p.interval_secs {
        if let Err(e) = svc.host.store.set_schedule(&id, Some(interval), None) {
            return host_error(&e.into());
        }
    }
    if let Some(c) = p.content {
        let mut settings = match svc.host.store.content_settings(&id) {
            Ok(s) => s,
            Err(e) => return host_error(&e.into()),
        };
        let before = settings.clone();
        settings.enabled = c.enabled.unwrap_or(settings.enabled);
        settings.max_download_bytes = c.max_download_bytes.unwrap_or(settings.max_download_bytes);
        settings.max_text_bytes = c.max_text_bytes.unwrap_or(settings.max_text_bytes);
        if let Some(formats) = c.formats {
            settings.formats = formats;
        }
        if let Err(why) = settings.validate() {
            return error(Kind::InvalidInput, format!("content: {why}"));
        }
        if settings != before {
            if let Err(e) = svc.host.store.set_content_settings(&id, &settings) {
                return host_error(&e.into());
            }
        }
    }
    if let Err(e) = reload(&svc) {
        tracing::warn!("reload after patch: {e:#}");
    }
    show_now(&svc, &id, StatusCode::OK)
}

async fn remove(State(svc): Svc, headers: HeaderMap, Path(id): Path<String>) -> Response {
    require_token!(svc, headers);
    match svc.host.disconnect(&id).await {
        Ok(outcome) => {
            let _ = reload(&svc);
            let revoked = match outcome {
                DisconnectOutcome::Revoked => "revoked",
                DisconnectOutcome::AlreadyRevoked => "already-revoked",
            };
            Json(json!({ "id": id, "removed": true, "tokens": revoked })).into_response()
        }
        Err(e) => host_error(&e),
    }
}

/// `POST /api/datasources`: a datasource the facade connected, delivered by its callback. The
/// app secret is the registered connector's (the facade never sends it).
async fn adopt(State(svc): Svc, headers: HeaderMap, body: Bytes) -> Response {
    require_token!(svc, headers);
    // The facade's callback body: the web kit's delivered datasource.
    let d: coco_web::datasource::Delivered = match serde_json::from_slice(&body) {
        Ok(d) => d,
        // serde's message may quote a value; this body carries tokens.
        Err(e) => {
            return error(
                Kind::InvalidInput,
                format!("not a datasource ({:?} error at line {} column {})", e.classify(), e.line(), e.column()),
            )
        }
    };
    let connector = match svc.host.store.connector(&d.connector.id) {
        Ok(Some(c)) => c,
        Ok(None) => return error(Kind::UnknownConnector, format!("no connector {:?} here", d.connector.id)),
        Err(e) => return host_error(&e.into()),
    };
    if connector.client_id != d.connector.config.client_id {
        return error(Kind::ClientMismatch, "the datasource belongs to another Dropbox app");
    }
    let expected = crate::registration::datasource_id(
        &connector.id,
        &d.connector.config.profile.account_id,
        &d.connector.config.profile.email,
    );
    if d.id != expected {
        return error(Kind::InvalidInput, "id is not md5(dropbox,connector,account,email)");
    }
    let p = d.connector.config.profile;
    let record = DatasourceRecord {
        id: d.id.clone(),
        name: d.name.clone(),
        connector_id: connector.id.clone(),
        client_id: connector.client_id.clone(),
        client_secret: connector.client_secret.clone(),
        tokens: TokensRecord {
            access_token: Secret::new(d.tokens.access_token),
            expires_at: d.tokens.expires_at,
            refresh_token: Secret::new(d.tokens.refresh_token),
        },
        profile: ProfileRecord {
            account_id: p.account_id,
            email: p.email,
            name: p.name,
            picture: p.picture,
            root_info: d
                .root_info
                .map(|r| RootRecord {
                    is_team: r.is_team,
                    root_namespace_id: r.root_namespace_id,
                    home_namespace_id: r.home_namespace_id,
                    home_path: r.home_path,
                })
                .unwrap_or_default(),
        },
        endpoints: connector.endpoints.clone(),
        path: String::new(),
        page_limit: 0,
        owner_id: None,
        status: Status::Ok,
        status_detail: None,
    };
    if let Err(e) = svc.host.store.save_connected(&record) {
        return host_error(&e.into());
    }
    let _ = reload(&svc);
    notice(&svc, &d.id, Trigger::Admin);
    show_now(&svc, &d.id, StatusCode::CREATED)
}
