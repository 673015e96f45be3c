//! The host's logic around the component: the connect flow, and the page loop that applies
//! each page durably, waits out rate limits (the component never sleeps), retries transient
//! failures with bounded exponential backoff and jitter, restarts listings on cursor resets,
//! and parks a datasource that needs re-authorization.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::keys::Keys;
pub use crate::policy::RetryPolicy;
use crate::policy::{describe, next_action, Action, Counters, Event};
use crate::runtime::{
    AppCredentials, ConnectRequest, Endpoints, PageRequest, RedirectRequest, RevokeRequest, RootInfo, Runtime,
    RuntimeError, SyncOptions, Tokens, WitError,
};
use crate::secret::Secret;
use crate::store::{
    Applied, ConnectorRecord, DatasourceRecord, EndpointsRecord, PageApply, ProfileRecord, RootRecord, Status, Store,
    StoreError, TokensRecord,
};

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The component's error, in the host's one wording ([`describe`]).
    #[error("{}", describe(.0))]
    Connector(WitError),
    #[error("datasource {id} must be connected again ({detail}); it is not synced until then")]
    ReauthRequired { id: String, detail: String },
    #[error("datasource {id} is failing: {detail}")]
    Failing { id: String, detail: String },
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
    RateLimited { wait: Duration, capped: bool },
    Restart { why: String },
}

pub struct Host {
    /// This process's name in sync leases.
    pub lease_holder: String,
    pub runtime: Arc<Runtime>,
    pub store: Store,
    pub retry: RetryPolicy,
    /// list_folder limit when the datasource sets none (0: the component's default, 2000).
    pub default_page_limit: u32,
    /// Refresh access tokens expiring within this many seconds (None: the component's 300).
    pub refresh_margin_secs: Option<u32>,
}

/// A sync lease. It is renewed at half-life and before every rate-limit wait, so the longest
/// stretch without a renewal (half of it, a 120 s call, a 60 s backoff) stays well inside it.
const LEASE_TTL: Duration = Duration::from_secs(20 * 60);

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
    Endpoints { authorize: e.authorize.clone(), api: e.api.clone() }
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

impl From<&RootInfo> for RootRecord {
    fn from(r: &RootInfo) -> Self {
        RootRecord {
            is_team: r.is_team,
            root_namespace_id: r.root_namespace_id.clone(),
            home_namespace_id: r.home_namespace_id.clone(),
            home_path: r.home_path.clone(),
        }
    }
}

impl From<&RootRecord> for RootInfo {
    fn from(r: &RootRecord) -> Self {
        RootInfo {
            is_team: r.is_team,
            root_namespace_id: r.root_namespace_id.clone(),
            home_namespace_id: r.home_namespace_id.clone(),
            home_path: r.home_path.clone(),
        }
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
        Host {
            lease_holder: crate::store::new_lease_holder(),
            runtime,
            store,
            retry: RetryPolicy::default(),
            default_page_limit: 0,
            refresh_margin_secs: None,
        }
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
            state_ttl_secs: None,
            scopes: None,
            endpoints: endpoints(&c.endpoints),
            // The CLI completes the flow itself (`finish`); no browser cookie to bind to.
            session_binding: None,
        };
        self.runtime.authorize_url(&req).await?.map_err(HostError::Connector)
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
            session_binding: None,
        };
        let ds = self.runtime.handle_redirect(&req).await?.map_err(HostError::Connector)?;
        let p = &ds.config.profile;
        let record = DatasourceRecord {
            id: ds.id.clone(),
            name: ds.name.clone(),
            connector_id: ds.connector_id.clone(),
            client_id: ds.config.client_id.clone(),
            // The component does not echo the app secret: it is the connector's.
            client_secret: c.client_secret.clone(),
            tokens: tokens_record(&ds.tokens),
            profile: ProfileRecord {
                account_id: p.account_id.clone(),
                email: p.email.clone(),
                name: p.name.clone(),
                picture: p.picture.clone(),
                root_info: RootRecord::from(&p.root_info),
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
            Err(e) => return Err(HostError::Connector(e)),
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
                page_limit: Some(if ds.page_limit == 0 { self.default_page_limit } else { ds.page_limit })
                    .filter(|n| *n != 0),
                refresh_margin_secs: self.refresh_margin_secs,
                // The component decides from the account's root whether to root calls there.
                root_info: Some(RootInfo::from(&ds.profile.root_info)),
                max_page_bytes: None,
            },
            batch_number: batch.to_string(),
            now: now_unix(),
            endpoints: endpoints(&ds.endpoints),
        }
    }

    /// Sync until the account is fully indexed (`has_more = false`), holding the datasource's
    /// lease throughout: a second process gets [`StoreError::Leased`] instead of syncing too.
    pub async fn sync(&self, id: &str, observe: impl FnMut(&SyncEvent)) -> Result<SyncReport, HostError> {
        self.store.acquire_lease(id, &self.lease_holder, LEASE_TTL)?;
        let result = self.sync_leased(id, Instant::now(), observe).await;
        // A crash skips this; the next process sees the holder is gone and takes over.
        let released = self.store.release_lease(id, &self.lease_holder);
        let report = result?;
        released?;
        Ok(report)
    }

    async fn sync_leased(
        &self,
        id: &str,
        mut leased_at: Instant,
        mut observe: impl FnMut(&SyncEvent),
    ) -> Result<SyncReport, HostError> {
        let started = Instant::now();
        let batch = new_batch_number();
        let mut report = SyncReport::default();
        let mut counters = Counters::default();
        loop {
            let ds = self.store.datasource(id)?;
            if ds.status == Status::ReauthRequired {
                return Err(HostError::ReauthRequired {
                    id: id.into(),
                    detail: ds.status_detail.unwrap_or_else(|| "marked earlier".into()),
                });
            }
            let state = self.store.sync_state(id)?;
            // Renew once half the lease has passed (one step never outlasts the other half), not
            // on every page: each renewal is a write transaction. Losing it ends this run.
            if leased_at.elapsed() > LEASE_TTL / 2 {
                self.store.acquire_lease(id, &self.lease_holder, LEASE_TTL)?;
                leased_at = Instant::now();
            }
            let req = self.page_request(&ds, state.cursor.clone(), &batch);
            let failure = match self.runtime.sync_page(&req).await {
                Ok(Ok(page)) => {
                    let tokens = page.tokens.as_ref().map(tokens_record);
                    let applied: Applied = self.store.apply_page(
                        id,
                        &PageApply {
                            expected_cursor: state.cursor.as_deref(),
                            expected_generation: state.generation,
                            deletes: &page.deletes,
                            documents: &page.documents,
                            cursor: &page.cursor,
                            has_more: page.has_more,
                            tokens: tokens.as_ref(),
                        },
                    )?;
                    if ds.status != Status::Ok {
                        self.store.set_status(id, Status::Ok, None)?;
                    }
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
                    let stalled = page.stats.entries == 0 && state.cursor.as_deref() == Some(page.cursor.as_str());
                    if !stalled {
                        counters.progressed();
                        continue;
                    }
                    None
                }
                Ok(Err(f)) => {
                    report.requests += u64::from(f.stats.requests);
                    report.refreshes += u64::from(f.stats.refreshes);
                    if let Some(t) = &f.tokens {
                        self.store.save_tokens(id, &tokens_record(t))?;
                    }
                    Some(Ok(f.error))
                }
                // A trap or a timeout: the store is gone and nothing was applied.
                Err(e) => Some(Err(e.to_string())),
            };
            let event = match &failure {
                None => Event::Stalled,
                Some(Ok(e)) => Event::Failed(e),
                Some(Err(why)) => Event::Crashed(why),
            };
            let action = next_action(&event, &counters, &self.retry, rand::rng().random::<f64>());
            counters.record(&action);
            match action {
                Action::Continue => {}
                Action::Wait { delay, capped } => {
                    report.rate_limited += 1;
                    report.rate_limit_wait += delay;
                    let until = now_unix() + delay.as_secs().max(1);
                    let detail = format!("rate-limited until {}", crate::store::rfc3339(until));
                    self.store.set_status(id, Status::RateLimited, Some(&detail))?;
                    observe(&SyncEvent::RateLimited { wait: delay, capped });
                    // A wait of up to 15 minutes must not run the lease out.
                    self.store.acquire_lease(id, &self.lease_holder, LEASE_TTL)?;
                    leased_at = Instant::now();
                    tokio::time::sleep(delay).await;
                }
                Action::Backoff { delay, why } => {
                    report.retries += 1;
                    observe(&SyncEvent::Retry { attempt: counters.transient, delay, why });
                    tokio::time::sleep(delay).await;
                }
                Action::RestartListing { why } => {
                    report.resets += 1;
                    observe(&SyncEvent::Restart { why });
                    self.store.restart_listing(id)?;
                }
                Action::SetRootAndRestart { root } => {
                    report.resets += 1;
                    observe(&SyncEvent::Restart { why: format!("root namespace is now {}", root.root_namespace_id) });
                    self.store.set_root_and_restart(id, &root)?;
                }
                Action::ParkForReauth { detail } => {
                    self.store.set_status(id, Status::ReauthRequired, Some(&detail))?;
                    return Err(HostError::ReauthRequired { id: id.into(), detail });
                }
                Action::Fail { detail } => {
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
