//! The host's logic around the component: the connect flow, and the page loop that applies
//! each page durably, waits out rate limits (the component never sleeps), retries transient
//! failures with bounded exponential backoff and jitter, restarts listings on cursor resets,
//! and parks a datasource that needs re-authorization.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coco_dropbox::Secret;
use rand::Rng;

use crate::keys::Keys;
use crate::runtime::{
    AppCredentials, ConnectRequest, Endpoints, PageRequest, RedirectRequest, RevokeRequest, Runtime, RuntimeError,
    SyncOptions, Tokens, WitError,
};
use crate::store::{
    Applied, ConnectorRecord, DatasourceRecord, EndpointsRecord, PageApply, ProfileRecord, RootRecord, Status, Store,
    StoreError, TokensRecord,
};

/// A connector error, described without secrets (the component never puts any in messages).
#[derive(Debug, Clone)]
pub struct ConnectorError(pub WitError);

impl std::fmt::Display for ConnectorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            WitError::InvalidInput(m) => write!(f, "invalid input: {m}"),
            WitError::Denied(m) => write!(f, "denied: {m}"),
            WitError::InvalidClient(m) => write!(f, "invalid client credentials: {m}"),
            WitError::ReauthRequired(m) => write!(f, "re-authorization required: {m}"),
            WitError::RateLimited(ms) => write!(f, "rate limited: retry after {ms} ms"),
            WitError::CursorReset(m) => write!(f, "cursor reset: {m}"),
            WitError::RootChanged(r) => write!(f, "root namespace changed to {}", r.root_namespace_id),
            WitError::PathNotFound(p) => write!(f, "the configured folder {p:?} does not exist in this Dropbox"),
            WitError::Transient(m) => write!(f, "transient failure: {m}"),
            WitError::Api(m) => write!(f, "Dropbox API error: {m}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("{0}")]
    Connector(ConnectorError),
    #[error("datasource {id} must be connected again ({detail}); it is not synced until then")]
    ReauthRequired { id: String, detail: String },
    #[error("datasource {id} is failing: {detail}")]
    Failing { id: String, detail: String },
    #[error("{0}")]
    Browser(String),
}

/// Bounds on retrying. The defaults suit a scheduler; tests shorten them.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Consecutive transient failures before the datasource is marked failing.
    pub max_attempts: u32,
    /// Consecutive rate limits before giving up for this run.
    pub max_rate_limits: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            max_attempts: 6,
            max_rate_limits: 30,
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with "equal jitter": half fixed, half random.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << attempt.min(20)).min(self.max_delay);
        let half = exp / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }
}

/// What a sync run did.
#[derive(Clone, Debug, Default)]
pub struct SyncReport {
    pub pages: u64,
    pub entries: u64,
    pub upserted: u64,
    pub deleted: u64,
    pub swept: u64,
    pub skipped: u64,
    pub requests: u64,
    pub refreshes: u64,
    pub retries: u64,
    pub rate_limited: u64,
    pub rate_limit_wait: Duration,
    pub resets: u64,
    pub elapsed: Duration,
    /// Documents in the index after the run.
    pub documents_now: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisconnectOutcome {
    Revoked,
    /// Dropbox no longer accepted the tokens (revoked by the user, or earlier).
    AlreadyRevoked,
}

/// Progress, for bars and logs.
#[derive(Clone, Debug)]
pub enum SyncEvent {
    Page { pages: u64, entries: u64, has_more: bool },
    Retry { attempt: u32, delay: Duration, why: String },
    RateLimited { wait: Duration },
    Restart { why: String },
}

pub struct Host {
    pub runtime: Arc<Runtime>,
    pub store: Store,
    pub retry: RetryPolicy,
    /// list_folder limit when the datasource sets none.
    pub default_page_limit: u32,
    /// Refresh access tokens expiring within this many seconds (0: the component's 300).
    pub refresh_margin_secs: u32,
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Upstream's batch number is a 20-character xid per run; ours has the same shape.
pub fn new_batch_number() -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuv";
    let mut rng = rand::rng();
    (0..20).map(|_| ALPHABET[rng.random_range(0..32)] as char).collect()
}

fn endpoints(e: &EndpointsRecord) -> Endpoints {
    Endpoints {
        authorize: e.authorize.clone(),
        api: e.api.clone(),
        content: e.content.clone(),
        notify: e.notify.clone(),
    }
}

/// The datasource's app credentials, as the component takes them.
fn app_credentials(ds: &DatasourceRecord) -> AppCredentials {
    AppCredentials { client_id: ds.client_id.clone(), client_secret: ds.client_secret.expose().to_string() }
}

/// Stored tokens, as the component takes them.
fn wire_tokens(t: &TokensRecord) -> Tokens {
    Tokens {
        access_token: t.access_token.expose().to_string(),
        expires_at: t.expires_at,
        refresh_token: t.refresh_token.expose().to_string(),
    }
}

fn root_record(r: &crate::runtime::RootInfo) -> RootRecord {
    RootRecord {
        is_team: r.is_team,
        root_namespace_id: r.root_namespace_id.clone(),
        home_namespace_id: r.home_namespace_id.clone(),
        home_path: r.home_path.clone(),
    }
}

fn tokens_record(t: &Tokens) -> TokensRecord {
    TokensRecord {
        access_token: Secret::new(t.access_token.clone()),
        expires_at: t.expires_at,
        refresh_token: Secret::new(t.refresh_token.clone()),
    }
}

impl Host {
    pub fn new(runtime: Arc<Runtime>, store: Store) -> Self {
        Host { runtime, store, retry: RetryPolicy::default(), default_page_limit: 0, refresh_margin_secs: 0 }
    }

    fn keys(&self) -> &Keys {
        self.store.keys()
    }

    /// Step 1 of connecting: where to send the browser.
    pub async fn authorize_url(&self, c: &ConnectorRecord) -> Result<String, HostError> {
        let req = ConnectRequest {
            connector_id: c.id.clone(),
            client_id: c.client_id.clone(),
            redirect_uri: c.redirect_uri.clone(),
            state_secret: self.keys().state_secret().to_vec(),
            now: now_unix(),
            state_ttl_secs: 0,
            scopes: None,
            endpoints: endpoints(&c.endpoints),
        };
        self.runtime.authorize_url(&req).await?.map_err(|e| HostError::Connector(ConnectorError(e)))
    }

    /// Step 2: the URL (or query) the browser came back with → a stored datasource.
    pub async fn finish_connect(&self, c: &ConnectorRecord, redirected: &str) -> Result<DatasourceRecord, HostError> {
        let req = RedirectRequest {
            connector_id: c.id.clone(),
            app: AppCredentials { client_id: c.client_id.clone(), client_secret: c.client_secret.expose().to_string() },
            redirect_uri: c.redirect_uri.clone(),
            redirect_query: redirected.to_string(),
            state_secret: self.keys().state_secret().to_vec(),
            now: now_unix(),
            endpoints: endpoints(&c.endpoints),
        };
        let ds = self.runtime.handle_redirect(&req).await?.map_err(|e| HostError::Connector(ConnectorError(e)))?;
        let p = &ds.config.profile;
        let record = DatasourceRecord {
            id: ds.id.clone(),
            name: ds.name.clone(),
            connector_id: ds.connector_id.clone(),
            client_id: ds.config.client_id.clone(),
            client_secret: Secret::new(ds.config.client_secret.clone()),
            tokens: tokens_record(&ds.tokens),
            profile: ProfileRecord {
                account_id: p.account_id.clone(),
                email: p.email.clone(),
                name: p.name.clone(),
                picture: p.picture.clone(),
                root_info: root_record(&p.root_info),
            },
            endpoints: c.endpoints.clone(),
            path: String::new(),
            page_limit: 0,
            owner_id: None,
            status: Status::Ok,
            status_detail: None,
        };
        self.store.save_connected(&record)?;
        Ok(self.store.datasource(&ds.id)?)
    }

    /// Revoke the datasource's tokens at Dropbox and forget it (its index included). Tokens
    /// that no longer work are not an obstacle: there is nothing left to revoke.
    pub async fn disconnect(&self, id: &str) -> Result<DisconnectOutcome, HostError> {
        let ds = self.store.datasource(id)?;
        let req = RevokeRequest {
            app: app_credentials(&ds),
            tokens: wire_tokens(&ds.tokens),
            now: now_unix(),
            endpoints: endpoints(&ds.endpoints),
        };
        let outcome = match self.runtime.revoke(&req).await? {
            Ok(()) => DisconnectOutcome::Revoked,
            Err(WitError::ReauthRequired(_)) => DisconnectOutcome::AlreadyRevoked,
            Err(e) => return Err(HostError::Connector(ConnectorError(e))),
        };
        self.store.remove_datasource(id)?;
        Ok(outcome)
    }

    fn page_request(&self, ds: &DatasourceRecord, cursor: Option<String>, batch: &str) -> PageRequest {
        PageRequest {
            datasource_id: ds.id.clone(),
            datasource_name: ds.name.clone(),
            owner_id: ds.owner_id.clone(),
            app: app_credentials(ds),
            tokens: wire_tokens(&ds.tokens),
            cursor,
            options: SyncOptions {
                path: ds.path.clone(),
                page_limit: if ds.page_limit == 0 { self.default_page_limit } else { ds.page_limit },
                refresh_margin_secs: self.refresh_margin_secs,
                path_root: ds.path_root(),
            },
            batch_number: batch.to_string(),
            now: now_unix(),
            endpoints: endpoints(&ds.endpoints),
        }
    }

    /// Sync until the account is fully indexed (`has_more = false`).
    pub async fn sync(&self, id: &str, mut observe: impl FnMut(&SyncEvent)) -> Result<SyncReport, HostError> {
        let started = Instant::now();
        let batch = new_batch_number();
        let mut report = SyncReport::default();
        let mut attempts = 0u32;
        let mut rate_limits = 0u32;
        loop {
            let ds = self.store.datasource(id)?;
            if ds.status == Status::ReauthRequired {
                return Err(HostError::ReauthRequired {
                    id: id.into(),
                    detail: ds.status_detail.unwrap_or_else(|| "marked earlier".into()),
                });
            }
            let state = self.store.sync_state(id)?;
            let req = self.page_request(&ds, state.cursor.clone(), &batch);
            let failure = match self.runtime.sync_page(&req).await {
                Ok(Ok(page)) => {
                    let tokens = page.tokens.as_ref().map(tokens_record);
                    let applied: Applied = self.store.apply_page(
                        id,
                        &PageApply {
                            expected_cursor: state.cursor.as_deref(),
                            deletes: &page.deletes,
                            documents: &page.documents,
                            cursor: &page.cursor,
                            has_more: page.has_more,
                            tokens: tokens.as_ref(),
                        },
                    )?;
                    attempts = 0;
                    rate_limits = 0;
                    report.pages += 1;
                    report.entries += u64::from(page.stats.entries);
                    report.skipped += u64::from(page.stats.skipped);
                    report.requests += u64::from(page.stats.requests);
                    report.refreshes += u64::from(page.stats.refreshes);
                    report.upserted += applied.upserted;
                    report.deleted += applied.deleted;
                    report.swept += applied.swept;
                    observe(&SyncEvent::Page { pages: report.pages, entries: report.entries, has_more: page.has_more });
                    if !page.has_more {
                        break;
                    }
                    continue;
                }
                Ok(Err(f)) => {
                    report.requests += u64::from(f.stats.requests);
                    report.refreshes += u64::from(f.stats.refreshes);
                    if let Some(t) = &f.tokens {
                        self.store.save_tokens(id, &tokens_record(t))?;
                    }
                    f.error
                }
                // A trap or a timeout: the store is gone, nothing was applied; retry like a 5xx.
                Err(e) => WitError::Transient(e.to_string()),
            };
            match failure {
                WitError::RateLimited(ms) => {
                    rate_limits += 1;
                    report.rate_limited += 1;
                    if rate_limits > self.retry.max_rate_limits {
                        let detail = format!("rate limited {rate_limits} times in a row");
                        self.store.set_status(id, Status::Failing, Some(&detail))?;
                        return Err(HostError::Failing { id: id.into(), detail });
                    }
                    let wait = Duration::from_millis(ms);
                    observe(&SyncEvent::RateLimited { wait });
                    report.rate_limit_wait += wait;
                    tokio::time::sleep(wait).await;
                }
                WitError::Transient(why) => {
                    attempts += 1;
                    if attempts > self.retry.max_attempts {
                        let detail = format!("{} consecutive transient failures, last: {why}", attempts - 1);
                        self.store.set_status(id, Status::Failing, Some(&detail))?;
                        return Err(HostError::Failing { id: id.into(), detail });
                    }
                    let delay = self.retry.delay(attempts - 1);
                    report.retries += 1;
                    observe(&SyncEvent::Retry { attempt: attempts, delay, why });
                    tokio::time::sleep(delay).await;
                }
                WitError::CursorReset(why) => {
                    report.resets += 1;
                    observe(&SyncEvent::Restart { why: why.clone() });
                    self.store.restart_listing(id)?;
                }
                WitError::RootChanged(root) => {
                    report.resets += 1;
                    observe(&SyncEvent::Restart { why: format!("root namespace is now {}", root.root_namespace_id) });
                    self.store.set_root(id, &root_record(&root))?;
                    self.store.restart_listing(id)?;
                }
                WitError::ReauthRequired(detail) => {
                    self.store.set_status(id, Status::ReauthRequired, Some(&detail))?;
                    return Err(HostError::ReauthRequired { id: id.into(), detail });
                }
                other => {
                    let detail = ConnectorError(other).to_string();
                    self.store.set_status(id, Status::Failing, Some(&detail))?;
                    return Err(HostError::Failing { id: id.into(), detail });
                }
            }
        }
        self.store.set_status(id, Status::Ok, None)?;
        report.documents_now = self.store.document_count(id)?;
        report.elapsed = started.elapsed();
        Ok(report)
    }
}

/// Play the browser: open the authorize URL, take the redirect's Location without following
/// it (the emulator auto-approves; real Dropbox needs a person).
pub async fn browse_authorize(url: &str) -> Result<String, HostError> {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let resp =
            agent.get(&url).call().map_err(|e| HostError::Browser(format!("opening the authorize page: {e}")))?;
        match resp.headers().get("location").and_then(|l| l.to_str().ok()) {
            Some(loc) if resp.status().is_redirection() => Ok(loc.to_string()),
            _ => Err(HostError::Browser(format!(
                "the authorize page answered {} without a redirect (a real Dropbox needs a person to click Allow)",
                resp.status()
            ))),
        }
    })
    .await
    .map_err(|e| HostError::Browser(e.to_string()))?
}
