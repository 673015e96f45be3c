//! The host's logic around the component: the connect flow, and the page loop that applies
//! each page durably, waits out rate limits (the component never sleeps), retries transient
//! failures with bounded exponential backoff and jitter, restarts listings on cursor resets,
//! and parks a datasource that needs re-authorization.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::keys::Keys;

mod parallel;
pub use crate::policy::RetryPolicy;
use crate::policy::{describe, next_action, Action, Counters, Event};
use crate::runtime::{
    AppCredentials, ConnectRequest, Endpoints, PageRequest, RedirectRequest, RevokeRequest, RootInfo, Runtime,
    RuntimeError, SyncFailure, SyncOptions, Tokens, WitError,
};
use crate::secret::Secret;
use crate::state::{
    Applied, ConnectorRecord, DatasourceRecord, EndpointsRecord, PageApply, ProfileRecord, RootRecord, Status, Store,
    StoreError, SyncState, TokensRecord,
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
    /// Subtrees a parallel initial listing found to list on their own.
    pub shards: u64,
    pub elapsed: Duration,
    /// Documents in the index after the run.
    pub documents_now: u64,
}

impl SyncReport {
    /// One applied page's counts.
    pub(crate) fn count_page(&mut self, stats: &crate::runtime::PageStats, applied: &Applied) {
        self.pages += 1;
        self.entries += u64::from(stats.entries);
        self.skipped += u64::from(stats.skipped);
        self.requests += u64::from(stats.requests);
        self.refreshes += u64::from(stats.refreshes);
        self.upserted += applied.upserted;
        self.deleted += applied.deleted;
        self.swept += applied.swept;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisconnectOutcome {
    Revoked,
    /// Dropbox no longer accepted the tokens (revoked by the user, or earlier).
    AlreadyRevoked,
}

/// Progress, for bars and logs. `Page` counts pages committed so far; a listing commits
/// several pages in one transaction ([`Host::listing_commit_docs`]), so one event may cover
/// more than one page.
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
    /// Listings in flight during an initial listing (1: sequential; more: `shards`).
    pub listing_parallelism: usize,
    /// During a sequential listing, fetched pages wait in the run until this many documents
    /// are waiting, then go in one transaction (0: each page in its own). See [`Pending`].
    pub listing_commit_docs: usize,
}

/// Documents a listing's group commit waits for by default: 8 pages of 2,000. A crash loses
/// at most these fetched pages (the cursor moves with them, so they are fetched again).
pub const DEFAULT_LISTING_COMMIT_DOCS: usize = 16_000;

/// A sync lease. It is renewed at half-life and before every rate-limit wait, so the longest
/// stretch without a renewal (half of it, a 120 s call, a 60 s backoff) stays well inside it.
const LEASE_TTL: Duration = Duration::from_secs(20 * 60);

use crate::clock::now_unix;

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

pub(crate) fn tokens_record(t: &Tokens) -> TokensRecord {
    TokensRecord {
        access_token: Secret::new(t.access_token.clone()),
        expires_at: t.expires_at,
        refresh_token: Secret::new(t.refresh_token.clone()),
    }
}

impl Host {
    pub fn new(runtime: Arc<Runtime>, store: Store) -> Self {
        Host {
            lease_holder: crate::state::new_lease_holder(),
            runtime,
            store,
            retry: RetryPolicy::default(),
            default_page_limit: 0,
            refresh_margin_secs: None,
            listing_parallelism: 1,
            listing_commit_docs: DEFAULT_LISTING_COMMIT_DOCS,
        }
    }

    fn keys(&self) -> &Keys {
        self.store.keys()
    }

    /// Step 1 of connecting: where to send the browser. `binding` is a secret only that browser
    /// holds (its cookie); None for the CLI, which completes the flow itself (`finish`).
    pub async fn authorize_url(&self, c: &ConnectorRecord, binding: Option<&[u8]>) -> Result<String, HostError> {
        let req = ConnectRequest {
            connector_id: c.id.clone(),
            client_id: c.client_id.clone(),
            redirect_uri: c.redirect_uri.clone(),
            state_secret: self.keys().state_secret().to_vec(),
            now: now_unix(),
            state_ttl_secs: None,
            scopes: None,
            endpoints: endpoints(&c.endpoints),
            session_binding: binding.map(<[u8]>::to_vec),
        };
        self.runtime.authorize_url(&req).await?.map_err(HostError::Connector)
    }

    /// Step 2: the URL (or query) the browser came back with → a stored datasource. `binding`
    /// must be what step 1 was given, as the returning browser presented it.
    pub async fn finish_connect(
        &self,
        c: &ConnectorRecord,
        redirected: &str,
        binding: Option<&[u8]>,
    ) -> Result<DatasourceRecord, HostError> {
        let req = RedirectRequest {
            connector_id: c.id.clone(),
            app: AppCredentials { client_id: c.client_id.clone(), client_secret: c.client_secret.expose().to_string() },
            redirect_uri: c.redirect_uri.clone(),
            redirect_query: redirected.to_string(),
            state_secret: self.keys().state_secret().to_vec(),
            now: now_unix(),
            endpoints: endpoints(&c.endpoints),
            session_binding: binding.map(<[u8]>::to_vec),
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

    pub fn page_request(&self, ds: &DatasourceRecord, cursor: Option<String>, batch: &str) -> PageRequest {
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
                recursive: true,
            },
            batch_number: batch.to_string(),
            now: now_unix(),
            endpoints: endpoints(&ds.endpoints),
        }
    }

    /// Sync until the account is fully indexed (`has_more = false`), holding the datasource's
    /// lease throughout: a second process gets [`StoreError::Leased`] instead of syncing too.
    pub async fn sync(&self, id: &str, mut observe: impl FnMut(&SyncEvent)) -> Result<SyncReport, HostError> {
        self.store.acquire_lease(id, &self.lease_holder, LEASE_TTL)?;
        let mut leased_at = Instant::now();
        let mut run = Run::new();
        let result = loop {
            // Renew once half the lease has passed (one step never outlasts the other half), not
            // on every page: each renewal is a write transaction. Losing it ends this run.
            if leased_at.elapsed() > LEASE_TTL / 2 {
                if let Err(e) = self.store.acquire_lease(id, &self.lease_holder, LEASE_TTL) {
                    break Err(e.into());
                }
                leased_at = Instant::now();
            }
            let pages_before = run.report.pages;
            let step = match self.step(id, &mut run).await {
                Ok(s) => s,
                Err(e) => break Err(e),
            };
            if run.report.pages > pages_before {
                let has_more = !matches!(step, Step::Done);
                observe(&SyncEvent::Page { pages: run.report.pages, entries: run.report.entries, has_more });
            }
            match step {
                Step::More => {}
                Step::Done => break Ok(()),
                Step::Wait { delay, capped } => {
                    observe(&SyncEvent::RateLimited { wait: delay, capped });
                    // A wait of up to 15 minutes must not run the lease out.
                    if let Err(e) = self.store.acquire_lease(id, &self.lease_holder, LEASE_TTL) {
                        break Err(e.into());
                    }
                    leased_at = Instant::now();
                    tokio::time::sleep(delay).await;
                }
                Step::Backoff { delay, why } => {
                    observe(&SyncEvent::Retry { attempt: run.counters.transient, delay, why });
                    tokio::time::sleep(delay).await;
                }
                Step::Restarted { why } => observe(&SyncEvent::Restart { why }),
            }
        };
        // A finished run gave its lease back with its last page. Otherwise give it back here;
        // a crash skips this, and the next process sees the holder is gone and takes over.
        let released = if result.is_ok() { Ok(()) } else { self.store.release_lease(id, &self.lease_holder) };
        result?;
        released?;
        run.report.documents_now = self.store.document_total(id)?;
        run.report.elapsed = run.started.elapsed();
        Ok(run.report)
    }

    /// One step of a run: fetch and apply ONE page, or decide what a failure means. The caller
    /// holds the datasource's lease and does the waiting, so a scheduler can interleave steps of
    /// many datasources page by page.
    pub async fn step(&self, id: &str, run: &mut Run) -> Result<Step, HostError> {
        let ds = self.store.datasource(id)?;
        if ds.status == Status::ReauthRequired {
            return Err(HostError::ReauthRequired {
                id: id.into(),
                detail: ds.status_detail.unwrap_or_else(|| "marked earlier".into()),
            });
        }
        let state = self.store.sync_state(id)?;
        if run.pending.is_empty() && crate::host::parallel::applies(self, &ds, &state) {
            return self.parallel_step(id, &ds, &state, run).await;
        }
        // Pages fetched but not yet applied come first: the next page continues from them.
        let cursor = run.pending.pages.last().map(|p| p.cursor.clone()).or_else(|| state.cursor.clone());
        let req = self.page_request(&ds, cursor.clone(), &run.batch);
        run.calls += 1;
        let failure = match self.runtime.sync_page(&req).await {
            Ok(Ok(page)) => {
                if !state.listing {
                    // Deltas: how long after the change in Dropbox each file reached the index.
                    let now = now_unix();
                    run.change_lags.extend(page.documents.iter().filter_map(|d| change_lag(d.json, now)));
                }
                let has_more = page.has_more;
                let stalled = page.stats.entries == 0 && cursor.as_deref() == Some(page.cursor.as_str());
                // Refreshed tokens are written at once; so is everything outside a listing.
                let may_wait = state.listing && has_more && !stalled && page.tokens.is_none();
                run.pending.push(page);
                if !(may_wait && run.pending.documents < self.listing_commit_docs) {
                    self.apply_pending(id, &state, run)?;
                }
                if !has_more {
                    if ds.status != Status::Ok || ds.status_detail.is_some() {
                        self.store.set_status(id, Status::Ok, None)?;
                    }
                    return Ok(Step::Done);
                }
                if ds.status != Status::Ok {
                    self.store.set_status(id, Status::Ok, None)?;
                }
                if !stalled {
                    run.counters.progressed();
                    return Ok(Step::More);
                }
                None
            }
            Ok(Err(f)) => {
                self.apply_pending(id, &state, run)?;
                self.count_failed_call(id, run, &f)?;
                Some(Ok(f.error))
            }
            // A trap or a timeout: the store is gone and nothing was applied (the pages
            // fetched before it are).
            Err(e) => {
                self.apply_pending(id, &state, run)?;
                Some(Err(e.to_string()))
            }
        };
        self.after_failure(id, run, failure)
    }

    /// Apply the run's waiting pages in one transaction, expecting the cursor `state` read
    /// (nothing else writes while the run holds the lease; if something did, the pages are
    /// dropped with the conflict and fetched again from the stored cursor).
    fn apply_pending(&self, id: &str, state: &SyncState, run: &mut Run) -> Result<(), HostError> {
        let pages = std::mem::take(&mut run.pending).pages;
        if pages.is_empty() {
            return Ok(());
        }
        let tokens: Vec<Option<TokensRecord>> = pages.iter().map(|p| p.tokens.as_ref().map(tokens_record)).collect();
        let mut expected = state.cursor.as_deref();
        let applies: Vec<PageApply<'_>> = pages
            .iter()
            .zip(&tokens)
            .map(|(p, t)| {
                let apply = PageApply {
                    expected_cursor: expected,
                    expected_generation: state.generation,
                    deletes: &p.deletes,
                    documents: &p.documents,
                    cursor: &p.cursor,
                    has_more: p.has_more,
                    tokens: t.as_ref(),
                    lease: Some(&self.lease_holder),
                };
                expected = Some(&p.cursor);
                apply
            })
            .collect();
        let applied = self.store.apply_pages(id, &applies)?;
        for (page, a) in pages.iter().zip(&applied) {
            run.report.count_page(&page.stats, a);
        }
        Ok(())
    }

    /// A call that failed still counts its requests, and keeps the tokens it refreshed.
    pub(crate) fn count_failed_call(&self, id: &str, run: &mut Run, f: &SyncFailure) -> Result<(), HostError> {
        run.report.requests += u64::from(f.stats.requests);
        run.report.refreshes += u64::from(f.stats.refreshes);
        if let Some(t) = &f.tokens {
            self.store.save_tokens(id, &tokens_record(t))?;
        }
        Ok(())
    }

    /// What a failed (or stalled: `None`) step means, by the retry policy: the next step.
    pub(crate) fn after_failure(
        &self,
        id: &str,
        run: &mut Run,
        failure: Option<Result<WitError, String>>,
    ) -> Result<Step, HostError> {
        run.last_failure = failure.as_ref().map(|f| match f {
            Ok(e) => (error_class(e), describe(e)),
            Err(why) => ("trap", why.clone()),
        });
        let event = match &failure {
            None => Event::Stalled,
            Some(Ok(e)) => Event::Failed(e),
            Some(Err(why)) => Event::Crashed(why),
        };
        let action = next_action(&event, &run.counters, &self.retry, rand::rng().random::<f64>());
        run.counters.record(&action);
        match action {
            Action::Continue => Ok(Step::More),
            Action::Wait { delay, capped } => {
                run.report.rate_limited += 1;
                run.report.rate_limit_wait += delay;
                let until = now_unix() + delay.as_secs().max(1);
                let detail = format!("rate-limited until {}", crate::clock::rfc3339(until));
                self.store.set_status(id, Status::RateLimited, Some(&detail))?;
                Ok(Step::Wait { delay, capped })
            }
            Action::Backoff { delay, why } => {
                run.report.retries += 1;
                Ok(Step::Backoff { delay, why })
            }
            Action::RestartListing { why } => {
                run.report.resets += 1;
                self.store.restart_listing(id)?;
                Ok(Step::Restarted { why })
            }
            Action::SetRootAndRestart { root } => {
                run.report.resets += 1;
                self.store.set_root_and_restart(id, &root)?;
                Ok(Step::Restarted { why: format!("root namespace is now {}", root.root_namespace_id) })
            }
            Action::ParkForReauth { detail } => {
                self.store.set_status(id, Status::ReauthRequired, Some(&detail))?;
                Err(HostError::ReauthRequired { id: id.into(), detail })
            }
            Action::Fail { detail } => {
                self.store.set_status(id, Status::Failing, Some(&detail))?;
                Err(HostError::Failing { id: id.into(), detail })
            }
        }
    }
}

/// One sync run's memory between steps: its batch number, retry counters and totals.
#[derive(Debug)]
pub struct Run {
    pub batch: String,
    pub counters: Counters,
    pub report: SyncReport,
    pub started: Instant,
    /// Seconds from a file's change in Dropbox (`updated`) to its delta reaching the index,
    /// for files of incremental pages since the caller last drained it.
    pub change_lags: Vec<f64>,
    /// The last failed step's error class and description.
    pub last_failure: Option<(&'static str, String)>,
    /// Listing pages fetched and not yet applied (a group commit; see
    /// [`Host::listing_commit_docs`]). Dropping a run drops them: the stored cursor is still
    /// before them.
    pub pending: Pending,
    /// Component calls that fetch from Dropbox (pages, the listing's first cursor) made so far:
    /// a parallel listing makes several per step, and a scheduler charges its budget by them.
    pub calls: u64,
}

/// Fetched pages waiting to be applied together. Never holds a page with refreshed tokens
/// (those are applied at once); its `Debug` shows counts only.
#[derive(Default)]
pub struct Pending {
    pages: Vec<crate::runtime::Page>,
    documents: usize,
}

impl Pending {
    fn push(&mut self, page: crate::runtime::Page) {
        self.documents += page.documents.len();
        self.pages.push(page);
    }

    /// Pages fetched and not yet applied.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pending({} pages, {} documents)", self.pages.len(), self.documents)
    }
}

impl Run {
    pub fn new() -> Self {
        Run {
            batch: new_batch_number(),
            counters: Counters::default(),
            report: SyncReport::default(),
            started: Instant::now(),
            change_lags: Vec::new(),
            last_failure: None,
            pending: Pending::default(),
            calls: 0,
        }
    }
}

impl Default for Run {
    fn default() -> Self {
        Run::new()
    }
}

/// What a step did, and what the caller should do next.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// A page was applied (or a retry is due at once): step again.
    More,
    /// The account is fully indexed (`has_more = false`).
    Done,
    /// Dropbox rate-limited us: step again after `delay` (the status says until when).
    Wait { delay: Duration, capped: bool },
    /// A transient failure: step again after `delay`.
    Backoff { delay: Duration, why: String },
    /// The listing starts over (cursor reset, new root): step again.
    Restarted { why: String },
}

/// A stable, short name for an error's class (metrics labels, API fields).
pub fn error_class(e: &WitError) -> &'static str {
    match e {
        WitError::InvalidInput(_) => "invalid_input",
        WitError::Denied(_) => "denied",
        WitError::InvalidClient(_) => "invalid_client",
        WitError::ReauthRequired(_) => "reauth_required",
        WitError::RateLimited(_) => "rate_limited",
        WitError::CursorReset(_) => "cursor_reset",
        WitError::RootChanged(_) => "root_changed",
        WitError::PathNotFound(_) => "path_not_found",
        WitError::Transient(_) => "transient",
        WitError::Api(_) => "api",
    }
}

/// Seconds between a document's `updated` (Dropbox's server_modified) and `now`.
fn change_lag(json: &str, now: u64) -> Option<f64> {
    #[derive(serde::Deserialize)]
    struct Updated<'a> {
        #[serde(borrow)]
        updated: Option<&'a str>,
    }
    let updated = serde_json::from_str::<Updated<'_>>(json).ok()?.updated?;
    let t = time::OffsetDateTime::parse(updated, &time::format_description::well_known::Rfc3339).ok()?;
    let secs = now as i64 - t.unix_timestamp();
    (secs >= 0).then_some(secs as f64)
}
