//! The emulator on real HTTP (axum on 127.0.0.1): Dropbox's routes plus an `/__admin` API for
//! mutations, fault scripts, consent, token expiry and request counters.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;

use crate::model::{MutationError, Namespace};
use crate::state::{fault_reply, Config, Counters, Fault, FaultKind, FaultPlan, Notification, Reply, State, Webhook};

/// The state behind every route, and a signal raised after each change to any account (what
/// longpolls wait on).
struct Inner {
    state: Mutex<State>,
    changed: tokio::sync::watch::Sender<u64>,
    /// Set when stopping: held longpolls answer at once instead of holding the shutdown.
    closing: tokio::sync::watch::Sender<bool>,
}

type Shared = Arc<Inner>;

/// A running emulator. Dropping it stops the server.
pub struct Emulator {
    state: Shared,
    addr: SocketAddr,
    /// `https` when started with [`Emulator::start_tls`].
    scheme: &'static str,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Emulator {
    /// Generate the accounts and serve on `addr` (port 0 picks a free port).
    pub async fn start(config: Config, addr: SocketAddr) -> anyhow::Result<Self> {
        Self::start_with(config, addr, None).await
    }

    /// [`Emulator::start`] serving https with `tls` (its URLs are then `https://`).
    pub async fn start_tls(config: Config, addr: SocketAddr, tls: Arc<rustls::ServerConfig>) -> anyhow::Result<Self> {
        Self::start_with(config, addr, Some(tls)).await
    }

    async fn start_with(
        config: Config,
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> anyhow::Result<Self> {
        let state = Arc::new(Inner {
            state: Mutex::new(State::new(&config)),
            changed: tokio::sync::watch::Sender::new(0),
            closing: tokio::sync::watch::Sender::new(false),
        });
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = router(state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let stopped = async {
            let _ = rx.await;
        };
        let task = tokio::spawn(async move {
            match tls {
                Some(tls) => crate::tls::serve(listener, app, tls, stopped).await,
                None => {
                    let _ = axum::serve(listener, app).with_graceful_shutdown(stopped).await;
                }
            }
        });
        Ok(Emulator { state, addr, scheme, shutdown: Some(tx), task: Some(task) })
    }

    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The base URL under another host name that resolves to the same address (a browser
    /// test gives each site its own name).
    pub fn base_url_as(&self, host: &str) -> String {
        format!("{}://{host}:{}", self.scheme, self.addr.port())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Announce `account`'s change to longpolls and the webhook, as after [`Emulator::edit`].
    pub fn announce(&self, account: usize) {
        announce(&self.state, &[account]);
    }

    /// Requests served so far, by route.
    pub fn counters(&self) -> Counters {
        self.state().counters.clone()
    }

    /// Every entry of an account's namespace (team space included), in `path_lower` order.
    pub fn tree(&self, account: usize) -> Vec<Entry> {
        self.state().accounts.get(account).map(|a| entries_of(&a.home)).unwrap_or_default()
    }

    /// Change an account's files. The edits are logged, so cursors replay them as Dropbox does.
    /// The emulator is locked while the returned editor lives: keep it short. When it is
    /// dropped, longpolls wake and the webhook (if set) is notified.
    pub fn edit(&self, account: usize) -> AccountEditor<'_> {
        let state = self.state();
        assert!(account < state.accounts.len(), "the emulator has no account {account}");
        AccountEditor { state: Some(state), shared: &self.state, account }
    }

    /// Number of accounts.
    pub fn accounts(&self) -> usize {
        self.state().accounts.len()
    }

    /// An account's Dropbox `account_id` (what webhooks name).
    pub fn account_id(&self, account: usize) -> Option<String> {
        self.state().accounts.get(account).map(|a| a.account_id.clone())
    }

    /// Which account the emulated browser is signed in as (who approves the next consent).
    pub fn log_in(&self, account: usize) {
        let mut st = self.state();
        assert!(account < st.accounts.len(), "the emulator has no account {account}");
        st.login_account = account;
    }

    /// Added to every API and token request before it is answered, like a real round trip.
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.state().latency = latency;
    }

    /// Every longpoll answer from now on carries this `backoff` (seconds).
    pub fn set_longpoll_backoff(&self, backoff: Option<u64>) {
        self.state().longpoll_backoff = backoff;
    }

    /// Send change notifications to `url`, signed with `app_secret` (None stops them).
    pub fn set_webhook(&self, hook: Option<Webhook>) {
        self.state().webhook = hook;
    }

    /// Queue a one-off fault for the next matching request.
    pub fn push_fault(&self, fault: Fault) {
        self.state().faults.push_back(fault);
    }

    /// Forget every queued fault.
    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    /// Seeded random faults on every /2/ request (`None` turns them off).
    pub fn set_fault_plan(&self, plan: Option<FaultPlan>) {
        self.state().fault_plan = plan;
    }

    /// Whether the emulated user clicks Allow (true, the default) or Deny on the consent page.
    pub fn set_consent(&self, approve: bool) {
        self.state().approve_consent = approve;
    }

    /// Lifetime of access tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: std::time::Duration) {
        self.state().token_lifetime = lifetime;
    }

    /// Every access token issued so far expires now.
    pub fn expire_access_tokens(&self) {
        self.state().expire_access_tokens();
    }

    /// The user removes the app in their Dropbox settings: every token stops working.
    pub fn revoke_all(&self) {
        self.state().revoke_all();
    }

    /// Every token issued so far (revoked ones too), for secret-leak scans.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state().issued_tokens()
    }

    /// Stop serving and wait for the server task to end.
    pub async fn stop(mut self) {
        self.state.closing.send_replace(true);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.state.closing.send_replace(true);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// One entry of an emulated namespace, as a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Dropbox's `id` ("id:...").
    pub id: String,
    pub name: String,
    pub path_lower: String,
    pub path_display: String,
    pub is_folder: bool,
    pub size: u64,
    pub rev: String,
    pub content_hash: String,
    pub client_modified: String,
    pub server_modified: String,
}

fn entries_of(ns: &Namespace) -> Vec<Entry> {
    ns.nodes
        .iter()
        .map(|(path_lower, n)| Entry {
            id: n.id.clone(),
            name: n.name.clone(),
            path_lower: path_lower.clone(),
            path_display: n.path_display.clone(),
            is_folder: n.is_folder,
            size: n.size,
            rev: n.rev.clone(),
            content_hash: n.content_hash.clone(),
            client_modified: n.client_modified.clone(),
            server_modified: n.server_modified.clone(),
        })
        .collect()
}

/// Edits one account while holding the emulator's lock (see [`Emulator::edit`]).
pub struct AccountEditor<'a> {
    state: Option<MutexGuard<'a, State>>,
    shared: &'a Shared,
    account: usize,
}

impl Drop for AccountEditor<'_> {
    fn drop(&mut self) {
        // Unlock first: the woken longpolls and the webhook sender need the state.
        drop(self.state.take());
        announce(self.shared, &[self.account]);
    }
}

impl AccountEditor<'_> {
    fn st(&self) -> &State {
        self.state.as_ref().expect("held until drop")
    }

    fn st_mut(&mut self) -> &mut State {
        self.state.as_mut().expect("held until drop")
    }

    fn ns(&mut self) -> &mut Namespace {
        let account = self.account;
        &mut self.st_mut().accounts[account].home
    }

    /// Create a file or folder (parents must exist); returns its Dropbox id.
    pub fn add(&mut self, path: &str, is_folder: bool, size: u64) -> Result<String, MutationError> {
        self.ns().add(path, is_folder, size)
    }

    /// A new revision of a file, with a new size.
    pub fn modify(&mut self, path: &str, size: u64) -> Result<(), MutationError> {
        self.ns().modify(path, size)
    }

    /// Delete a file, or a folder and everything below it.
    pub fn delete(&mut self, path: &str) -> Result<(), MutationError> {
        self.ns().delete(path)
    }

    /// Write a file with exactly these bytes (new, or a new revision); returns its id.
    pub fn upload(&mut self, path: &str, bytes: Vec<u8>) -> Result<String, MutationError> {
        self.ns().upload(path, bytes)
    }

    /// Dropbox blocks (or unblocks) downloads of this file (`restricted_content`).
    pub fn set_restricted(&mut self, path: &str, restricted: bool) -> Result<(), MutationError> {
        self.ns().set_restricted(path, restricted)
    }

    /// Move or rename (case-only renames included); ids are kept.
    pub fn move_entry(&mut self, from: &str, to: &str) -> Result<(), MutationError> {
        self.ns().move_entry(from, to)
    }

    /// The account's entries now (see [`Emulator::tree`]).
    pub fn tree(&self) -> Vec<Entry> {
        entries_of(&self.st().accounts[self.account].home)
    }

    /// Invalidate every cursor of the account: their next use gets `409 reset`.
    pub fn reset_cursors(&mut self) {
        let account = self.account;
        self.st_mut().reset_cursors(account);
    }

    /// The team moves the member to another team space: old root ids get `422 invalid_root`.
    /// Returns the new root namespace id.
    pub fn change_team_root(&mut self) -> String {
        let account = self.account;
        self.st_mut().change_team_root(account);
        self.root_namespace_id()
    }

    /// The namespace Path-Root `root` calls must name.
    pub fn root_namespace_id(&self) -> String {
        self.st().accounts[self.account].root_namespace_id().to_string()
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A panicking handler must not wedge the emulator for everyone else.
    shared.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// After a change: wake longpolls, and notify the webhook in the background.
fn announce(shared: &Shared, accounts: &[usize]) {
    shared.changed.send_modify(|n| *n += 1);
    let (hook, note) = {
        let st = lock(shared);
        (st.webhook.clone(), st.notification(accounts))
    };
    if let (Some(hook), Some(note)) = (hook, note) {
        let shared = shared.clone();
        // Tests drive edits from plain threads too: only deliver where a runtime runs.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(deliver(shared, hook, note));
        }
    }
}

/// POST the notification, retrying with exponential backoff as Dropbox does.
async fn deliver(shared: Shared, hook: Webhook, note: Notification) {
    let mut wait = hook.first_retry;
    for attempt in 1..=hook.attempts.max(1) {
        lock(&shared).counters.webhook_attempts += 1;
        let (url, body, signature) = (hook.url.clone(), note.body.clone(), note.signature.clone());
        let ok = tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(std::time::Duration::from_secs(10)))
                .build()
                .into();
            agent
                .post(&url)
                .header("content-type", "application/json")
                .header("x-dropbox-signature", &signature)
                .send(&body[..])
                .map(|r| r.status().as_u16() == 200)
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if ok {
            lock(&shared).counters.webhooks_delivered += 1;
            return;
        }
        if attempt < hook.attempts {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    lock(&shared).counters.webhooks_failed += 1;
}

/// Counts a `list_folder` call in flight for its account until dropped.
struct InFlight {
    shared: Shared,
    account: usize,
}

impl InFlight {
    fn enter(st: &mut State, shared: &Shared, account: usize) -> Self {
        let n = st.in_flight.entry(account).or_default();
        *n += 1;
        if *n > 1 {
            st.counters.overlapping_list_calls += 1;
        }
        InFlight { shared: shared.clone(), account }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(n) = lock(&self.shared).in_flight.get_mut(&self.account) {
            *n = n.saturating_sub(1);
        }
    }
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/oauth2/authorize", get(authorize))
        .route("/oauth2/token", post(token))
        .route("/2/users/get_current_account", post(|s, h, b| rpc("users/get_current_account", s, h, b)))
        .route("/2/files/list_folder", post(|s, h, b| rpc("files/list_folder", s, h, b)))
        .route("/2/files/list_folder/continue", post(|s, h, b| rpc("files/list_folder/continue", s, h, b)))
        .route(
            "/2/files/list_folder/get_latest_cursor",
            post(|s, h, b| rpc("files/list_folder/get_latest_cursor", s, h, b)),
        )
        .route("/2/auth/token/revoke", post(|s, h, b| rpc("auth/token/revoke", s, h, b)))
        .route("/2/files/list_folder/longpoll", post(longpoll))
        .route("/2/files/download", post(|s, h, q, b| content("files/download", s, h, q, b)))
        .route("/2/files/export", post(|s, h, q, b| content("files/export", s, h, q, b)))
        .route("/home", get(web_page))
        .route("/home/{*path}", get(web_page))
        .route("/__admin/stats", get(admin_stats))
        .route("/__admin/tree", get(admin_tree))
        .route("/__admin/faults", post(admin_faults))
        .route("/__admin/mutate", post(admin_mutate))
        .route("/__admin/reset_cursors", post(admin_reset))
        .route("/__admin/consent", post(admin_consent))
        .route("/__admin/expire_tokens", post(admin_expire))
        .route("/__admin/revoke_all", post(admin_revoke_all))
        .route("/__admin/login", post(admin_login))
        .route("/__admin/webhook", post(admin_webhook))
        .with_state(state)
}

async fn send(reply: Reply) -> Response {
    if let Some(d) = reply.delay {
        tokio::time::sleep(d).await;
    }
    to_response(reply)
}

fn to_response(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = if reply.truncate {
        // Send half, then fail the stream: the client sees the connection cut mid-body.
        let half = Bytes::from(reply.body[..reply.body.len() / 2].to_vec());
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            vec![Ok(half), Err(std::io::Error::other("emulated connection drop"))];
        Body::from_stream(futures_util::stream::iter(chunks))
    } else {
        Body::from(reply.body)
    };
    let mut resp = (status, body).into_response();
    let headers = resp.headers_mut();
    headers.insert("content-type", HeaderValue::from_static(reply.content_type));
    for (k, v) in reply.headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            headers.insert(k, v);
        }
    }
    resp
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ").map(str::to_string)
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let raw = headers.get("authorization")?.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(raw).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape =
        |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
    Some((unescape(id)?, unescape(secret)?))
}

async fn authorize(AxState(s): AxState<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let reply = lock(&s).authorize(&q);
    send(reply).await
}

async fn token(AxState(s): AxState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let latency = lock(&s).latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let reply = {
        let mut st = lock(&s);
        // Only faults aimed at this route: the token endpoint is not an RPC route.
        match st.take_routed_fault("oauth2/token").and_then(|f| fault_reply(&f, Some("oauth2/token"))) {
            Some(r) => r,
            None => st.token_endpoint(basic(&headers), &form),
        }
    };
    send(reply).await
}

async fn rpc(route: &'static str, AxState(s): AxState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let has_body = !body.is_empty();
    if has_body && !content_type.starts_with("application/json") {
        let why = format!("Error in call to API function \"{route}\": Bad HTTP \"Content-Type\" header: \"{content_type}\".  Expecting one of \"application/json\", \"application/json; charset=utf-8\", \"text/plain; charset=dropbox-cors-hack\".");
        return send(Reply::text(400, why)).await;
    }
    let bearer = bearer(&headers);
    let path_root = headers.get("dropbox-api-path-root").and_then(|v| v.to_str().ok()).map(str::to_string);
    let path_root = path_root.as_deref();
    // The in-flight mark is held across the round trip, so overlapping calls are seen.
    let (latency, _in_flight) = {
        let mut st = lock(&s);
        let listing = matches!(route, "files/list_folder" | "files/list_folder/continue");
        let account = if listing { st.account_of(bearer.as_deref()) } else { None };
        (st.latency, account.map(|a| InFlight::enter(&mut st, &s, a)))
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let reply = answer(&mut lock(&s), route, |st| match route {
        "users/get_current_account" => st.current_account(bearer.as_deref()),
        "files/list_folder" => st.list_folder(bearer.as_deref(), &body, path_root),
        "files/list_folder/continue" => st.list_folder_continue(bearer.as_deref(), &body, path_root),
        "files/list_folder/get_latest_cursor" => st.get_latest_cursor(bearer.as_deref(), &body, path_root),
        "auth/token/revoke" => st.revoke(bearer.as_deref()),
        _ => Reply::text(404, "unknown route"),
    });
    send(reply).await
}

/// The reply to `route`: an injected fault's own answer if it has one (counted like a call),
/// else `serve`'s, damaged as the fault says (truncated, delayed, hung up).
fn answer(st: &mut State, route: &str, serve: impl FnOnce(&mut State) -> Reply) -> Reply {
    let fault = st.take_fault(route);
    if let Some(r) = fault.as_ref().and_then(|f| fault_reply(f, Some(route))) {
        st.counters.by_route.entry(route.to_string()).and_modify(|n| *n += 1).or_insert(1);
        return r;
    }
    let mut reply = serve(st);
    match fault {
        Some(FaultKind::Truncate) => reply.truncate = true,
        Some(FaultKind::Delay { ms }) => reply.delay = Some(std::time::Duration::from_millis(ms)),
        Some(FaultKind::Hangup) => {
            reply.body.clear();
            reply.truncate = true;
        }
        _ => {}
    }
    reply
}

/// `files/download` and `files/export`: the argument in `Dropbox-API-Arg` (or the `arg` query
/// parameter), which must be header-safe (ASCII) JSON; no request body, and no JSON or form
/// content type.
async fn content(
    route: &'static str,
    AxState(s): AxState<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !(content_type.is_empty()
        || content_type == "application/octet-stream"
        || content_type == "text/plain; charset=dropbox-cors-hack")
    {
        let why = format!("Error in call to API function \"{route}\": Bad HTTP \"Content-Type\" header: \"{content_type}\".  Expecting one of \"application/octet-stream\", \"text/plain; charset=dropbox-cors-hack\".");
        return send(Reply::text(400, why)).await;
    }
    if !body.is_empty() {
        return send(Reply::text(400, format!("Error in call to API function \"{route}\": This function requires its argument in the HTTP header; the body must be empty."))).await;
    }
    let arg = match (headers.get("dropbox-api-arg"), q.get("arg")) {
        (Some(v), _) => match v.to_str() {
            Ok(a) => a.to_string(),
            Err(_) => {
                return send(Reply::text(400, format!("Error in call to API function \"{route}\": HTTP header \"Dropbox-API-Arg\": the value must be HTTP-header-safe JSON (escape characters from 0x7F as \\uXXXX)"))).await
            }
        },
        (None, Some(a)) => a.clone(),
        (None, None) => {
            return send(Reply::text(400, format!("Error in call to API function \"{route}\": Missing argument: the Dropbox-API-Arg header or the arg URL parameter"))).await
        }
    };
    let bearer = bearer(&headers);
    let path_root = headers.get("dropbox-api-path-root").and_then(|v| v.to_str().ok()).map(str::to_string);
    let latency = lock(&s).latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let reply = answer(&mut lock(&s), route, |st| st.content(route, bearer.as_deref(), &arg, path_root.as_deref()));
    send(reply).await
}

/// `files/list_folder/longpoll`: no auth; answers when the cursor has changes, or at the timeout.
async fn longpoll(AxState(s): AxState<Shared>, body: Bytes) -> Response {
    let mut changed = s.changed.subscribe();
    let mut closing = s.closing.subscribe();
    let poll = {
        let mut st = lock(&s);
        let route = "files/list_folder/longpoll";
        if let Some(r) = st.take_routed_fault(route).and_then(|f| fault_reply(&f, Some(route))) {
            return to_response(r);
        }
        match st.longpoll_start(&body) {
            Ok(p) => p,
            Err(r) => return to_response(r),
        }
    };
    let deadline = tokio::time::Instant::now() + poll.timeout;
    loop {
        let now = {
            let st = lock(&s);
            st.longpoll_changes(&poll).map(|c| (c, st.longpoll_reply(c)))
        };
        match now {
            Err(r) => return to_response(r),
            Ok((true, reply)) => return to_response(reply),
            Ok((false, reply)) => {
                tokio::select! {
                    r = changed.changed() => if r.is_err() { return to_response(reply) },
                    _ = tokio::time::sleep_until(deadline) => return to_response(reply),
                    _ = closing.wait_for(|c| *c) => return to_response(reply),
                }
            }
        }
    }
}

async fn web_page(uri: axum::http::Uri) -> Response {
    send(Reply::text(200, format!("Emulated Dropbox web page for {}", uri.path()))).await
}

async fn admin_stats(AxState(s): AxState<Shared>) -> Response {
    let counters = lock(&s).counters.clone();
    Json(counters).into_response()
}

/// The account's tree: what a full sync must produce.
async fn admin_tree(AxState(s): AxState<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let account: usize = q.get("account").and_then(|a| a.parse().ok()).unwrap_or(0);
    let st = lock(&s);
    let Some(acct) = st.accounts.get(account) else {
        return to_response(Reply::text(404, "no such account"));
    };
    let entries: Vec<serde_json::Value> = acct
        .home
        .nodes
        .iter()
        .map(|(k, n)| serde_json::json!({ "id": n.id, "path_lower": k, "path_display": n.path_display, "folder": n.is_folder }))
        .collect();
    Json(serde_json::json!({ "account_id": acct.account_id, "email": acct.email, "entries": entries })).into_response()
}

async fn admin_faults(AxState(s): AxState<Shared>, Json(faults): Json<Vec<Fault>>) -> Response {
    let mut st = lock(&s);
    let n = faults.len();
    st.faults.extend(faults);
    Json(serde_json::json!({ "queued": n, "pending": st.faults.len() })).into_response()
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Mutation {
    AddFile {
        path: String,
        #[serde(default)]
        size: u64,
    },
    AddFolder {
        path: String,
    },
    Modify {
        path: String,
        #[serde(default)]
        size: u64,
    },
    Delete {
        path: String,
    },
    Move {
        from: String,
        to: String,
    },
}

async fn admin_mutate(
    AxState(s): AxState<Shared>,
    Query(q): Query<HashMap<String, String>>,
    Json(ops): Json<Vec<Mutation>>,
) -> Response {
    let account: usize = q.get("account").and_then(|a| a.parse().ok()).unwrap_or(0);
    let mut st = lock(&s);
    let Some(acct) = st.accounts.get_mut(account) else {
        return to_response(Reply::text(404, "no such account"));
    };
    for (i, op) in ops.into_iter().enumerate() {
        let ns = &mut acct.home;
        let r = match op {
            Mutation::AddFile { path, size } => ns.add(&path, false, size).map(|_| ()),
            Mutation::AddFolder { path } => ns.add(&path, true, 0).map(|_| ()),
            Mutation::Modify { path, size } => ns.modify(&path, size),
            Mutation::Delete { path } => ns.delete(&path),
            Mutation::Move { from, to } => ns.move_entry(&from, &to),
        };
        if let Err(e) = r {
            drop(st);
            announce(&s, &[account]);
            return to_response(Reply::text(409, format!("operation {i}: {e}")));
        }
    }
    let seq = acct.home.seq();
    drop(st);
    announce(&s, &[account]);
    Json(serde_json::json!({ "seq": seq })).into_response()
}

#[derive(Deserialize)]
struct Login {
    account: usize,
}

/// Sign the emulated browser in as another account.
async fn admin_login(AxState(s): AxState<Shared>, Json(l): Json<Login>) -> Response {
    let mut st = lock(&s);
    if l.account >= st.accounts.len() {
        return to_response(Reply::text(404, "no such account"));
    }
    st.login_account = l.account;
    Json(serde_json::json!({ "account": l.account, "account_id": st.accounts[l.account].account_id })).into_response()
}

#[derive(Deserialize)]
struct WebhookConfig {
    /// None turns notifications off.
    url: Option<String>,
    /// The app whose secret signs them (default: the only app).
    #[serde(default)]
    client_id: Option<String>,
}

/// Register (or remove) the webhook URL.
async fn admin_webhook(AxState(s): AxState<Shared>, Json(w): Json<WebhookConfig>) -> Response {
    let mut st = lock(&s);
    let hook = match w.url {
        None => None,
        Some(url) => match st.app_secret(w.client_id.as_deref()) {
            Some(secret) => Some(Webhook {
                url,
                app_secret: secret,
                attempts: 6,
                first_retry: std::time::Duration::from_millis(500),
            }),
            None => return to_response(Reply::text(404, "no such app")),
        },
    };
    st.webhook = hook;
    Json(serde_json::json!({ "webhook": st.webhook.as_ref().map(|h| h.url.clone()) })).into_response()
}

async fn admin_reset(AxState(s): AxState<Shared>) -> Response {
    lock(&s).reset_cursors(0);
    announce(&s, &[0]);
    Json(serde_json::json!({ "reset": true })).into_response()
}

#[derive(Deserialize)]
struct Consent {
    approve: bool,
}

async fn admin_consent(AxState(s): AxState<Shared>, Json(c): Json<Consent>) -> Response {
    lock(&s).approve_consent = c.approve;
    Json(serde_json::json!({ "approve": c.approve })).into_response()
}

async fn admin_expire(AxState(s): AxState<Shared>) -> Response {
    lock(&s).expire_access_tokens();
    Json(serde_json::json!({ "expired": true })).into_response()
}

async fn admin_revoke_all(AxState(s): AxState<Shared>) -> Response {
    lock(&s).revoke_all();
    Json(serde_json::json!({ "revoked": true })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn send_json(url: &str, body: &str) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let resp = agent.post(url).header("content-type", "application/json").send(body).unwrap();
        let status = resp.status().as_u16();
        (status, resp.into_body().read_to_string().unwrap_or_default())
    }

    async fn post_async(url: String, body: String) -> (u16, String) {
        tokio::task::spawn_blocking(move || send_json(&url, &body)).await.unwrap()
    }

    /// A listing cursor after a full listing of account 0.
    async fn finished_cursor(emu: &Emulator) -> String {
        let token = {
            let mut st = emu.state();
            st.issue_test_token(0)
        };
        let (url, auth) = (format!("{}/2/files/list_folder", emu.base_url()), format!("Bearer {token}"));
        let text = tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
            let resp = agent
                .post(&url)
                .header("authorization", &auth)
                .header("content-type", "application/json")
                .send(r#"{"path": "", "recursive": true}"#)
                .unwrap();
            resp.into_body().read_to_string().unwrap()
        })
        .await
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["has_more"], false);
        v["cursor"].as_str().unwrap().to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn longpoll_answers_on_change_checks_its_timeout_and_reports_resets() {
        let emu =
            Emulator::start(Config::single(3, 50, "app", "secret"), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let cursor = finished_cursor(&emu).await;
        let url = format!("{}/2/files/list_folder/longpoll", emu.base_url());
        let (status, _) = post_async(url.clone(), format!(r#"{{"cursor": "{cursor}", "timeout": 10}}"#)).await;
        assert_eq!(status, 400, "timeout below 30");
        let (status, _) = post_async(url.clone(), r#"{"cursor": "forged", "timeout": 30}"#.into()).await;
        assert_eq!(status, 400);
        // Held until a change, then answered at once.
        let waiting = tokio::spawn(post_async(url.clone(), format!(r#"{{"cursor": "{cursor}", "timeout": 30}}"#)));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "no change yet: the longpoll waits");
        emu.edit(0).add("/new.txt", false, 1).unwrap();
        let (status, body) = tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
        assert_eq!((status, body.as_str()), (200, r#"{"changes":true}"#));
        emu.edit(0).reset_cursors();
        let (status, body) = post_async(url, format!(r#"{{"cursor": "{cursor}", "timeout": 30}}"#)).await;
        assert_eq!(status, 409);
        assert!(body.contains("reset"), "{body}");
        emu.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn webhooks_are_signed_and_retried_until_answered() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let seen = Arc::new(Mutex::new(Vec::<(String, Vec<u8>)>::new()));
        let calls = Arc::new(AtomicUsize::new(0));
        let (seen2, calls2) = (seen.clone(), calls.clone());
        // A receiver that fails twice, then accepts.
        let app = Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: Bytes| {
                let (seen, calls) = (seen2.clone(), calls2.clone());
                async move {
                    let sig =
                        headers.get("x-dropbox-signature").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    seen.lock().unwrap().push((sig, body.to_vec()));
                    if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let emu =
            Emulator::start(Config::single(4, 20, "app", "app-secret"), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        emu.set_webhook(Some(Webhook {
            url: hook_url,
            app_secret: "app-secret".into(),
            attempts: 5,
            first_retry: Duration::from_millis(50),
        }));
        emu.edit(0).add("/hooked.txt", false, 1).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while emu.counters().webhooks_delivered == 0 {
            assert!(std::time::Instant::now() < deadline, "never delivered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let c = emu.counters();
        assert_eq!((c.webhook_attempts, c.webhooks_delivered, c.webhooks_failed), (3, 1, 0));
        let (sig, body) = seen.lock().unwrap()[2].clone();
        let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(b"app-secret").unwrap();
        hmac::Mac::update(&mut mac, &body);
        let want: String = hmac::Mac::finalize(mac).into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(sig, want);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["list_folder"]["accounts"][0], emu.account_id(0).unwrap());
        emu.stop().await;
    }
    /// POST to a content route: (status, `Dropbox-API-Result`, body).
    async fn content_call(
        url: String,
        token: String,
        arg: Vec<u8>,
        content_type: Option<&'static str>,
    ) -> (u16, Option<String>, Vec<u8>) {
        tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
            let mut req = agent.post(&url).header("authorization", &format!("Bearer {token}"));
            req = req.header("dropbox-api-arg", HeaderValue::from_bytes(&arg).unwrap());
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            let mut resp = req.send_empty().unwrap();
            let status = resp.status().as_u16();
            let result = resp.headers().get("dropbox-api-result").map(|v| v.to_str().unwrap().to_string());
            (status, result, resp.body_mut().read_to_vec().unwrap_or_default())
        })
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn download_and_export_follow_dropbox() {
        let emu =
            Emulator::start(Config::single(5, 10, "app", "secret"), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let (id, paper) = {
            let mut e = emu.edit(0);
            e.add("/D", true, 0).unwrap();
            let id = e.upload("/D/報告 🚀.txt", b"hello bytes".to_vec()).unwrap();
            let paper = e.upload("/D/Plan.paper", b"# Plan".to_vec()).unwrap();
            e.upload("/D/blocked.pdf", b"%PDF-1.4".to_vec()).unwrap();
            e.set_restricted("/D/blocked.pdf", true).unwrap();
            (id, paper)
        };
        let token = emu.state().issue_test_token(0);
        let download = format!("{}/2/files/download", emu.base_url());
        let export = format!("{}/2/files/export", emu.base_url());
        let call = |url: &str, arg: &str, ct| content_call(url.to_string(), token.clone(), arg.as_bytes().to_vec(), ct);
        // By id, by the current rev, and by path with the header-safe escapes Dropbox requires.
        let (status, result, body) = call(&download, &format!(r#"{{"path":"{id}"}}"#), None).await;
        assert_eq!((status, body.as_slice()), (200, &b"hello bytes"[..]));
        let meta: serde_json::Value = serde_json::from_str(&result.unwrap()).unwrap();
        assert_eq!(meta["name"], "報告 🚀.txt");
        assert_eq!(meta["size"], 11);
        assert_eq!(meta["content_hash"], crate::model::dropbox_content_hash(b"hello bytes"));
        let rev = meta["rev"].as_str().unwrap().to_string();
        assert_eq!(call(&download, &format!(r#"{{"path":"rev:{rev}"}}"#), None).await.0, 200);
        let escaped = r#"{"path":"/d/\u5831\u544a \ud83d\ude80.txt"}"#;
        assert_eq!(call(&download, escaped, None).await.2, b"hello bytes");
        // Raw UTF-8 in the header, a JSON content type, unknown paths, folders, restricted files.
        let raw =
            content_call(download.clone(), token.clone(), r#"{"path":"/d/報告 🚀.txt"}"#.as_bytes().to_vec(), None);
        assert_eq!(raw.await.0, 400);
        assert_eq!(call(&download, &format!(r#"{{"path":"{id}"}}"#), Some("application/json")).await.0, 400);
        let (status, _, body) = call(&download, r#"{"path":"id:nope"}"#, None).await;
        assert!(status == 409 && String::from_utf8_lossy(&body).contains("not_found"));
        let (status, _, body) = call(&download, r#"{"path":"/d"}"#, None).await;
        assert!(status == 409 && String::from_utf8_lossy(&body).contains("not_file"));
        let (status, _, body) = call(&download, r#"{"path":"/d/blocked.pdf"}"#, None).await;
        assert!(status == 409 && String::from_utf8_lossy(&body).contains("restricted_content"));
        // Paper: not downloadable; exported in one of its export options.
        let (status, _, body) = call(&download, &format!(r#"{{"path":"{paper}"}}"#), None).await;
        assert!(status == 409 && String::from_utf8_lossy(&body).contains("unsupported_file"));
        let (status, result, body) =
            call(&export, &format!(r#"{{"path":"{paper}","export_format":"markdown"}}"#), None).await;
        assert_eq!((status, body.as_slice()), (200, &b"# Plan"[..]));
        let meta: serde_json::Value = serde_json::from_str(&result.unwrap()).unwrap();
        assert_eq!(meta["export_metadata"]["name"], "Plan.paper.md");
        let (status, _, body) = call(&export, &format!(r#"{{"path":"{paper}","export_format":"docx"}}"#), None).await;
        assert!(status == 409 && String::from_utf8_lossy(&body).contains("invalid_export_format"));
        let (status, _, body) = call(&export, &format!(r#"{{"path":"{id}"}}"#), None).await;
        assert!(status == 409 && String::from_utf8_lossy(&body).contains("non_exportable"));
        let c = emu.counters();
        assert_eq!(
            (c.get("files/download"), c.get("files/export")),
            (7, 3),
            "requests refused with 400 are not counted"
        );
        emu.stop().await;
    }
}
