//! The content worker: claim due files from the store's queue, fetch each through the
//! component (`fetch-content`, one file per call, with its own memory and time limits), and
//! record the outcome. A trap or timeout is the file's problem ("crashed"), not the host's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::now_unix;
use crate::host::{Host, HostError};
use crate::runtime::content_api::{self as api, AppCredentials, ContentError, Endpoints, RootInfo, Tokens};
use crate::runtime::{RuntimeError, WitError};
use crate::secret::Secret;
use crate::state::content::{ContentJob, Outcome};
use crate::state::{Status, TokensRecord};

/// How long a claimed file stays invisible to other workers.
const CLAIM_SECS: u64 = 300;

/// What a content run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContentReport {
    pub calls: u64,
    pub done: u64,
    pub skipped: u64,
    pub failed: u64,
    pub retried: u64,
    /// Results dropped because the file changed while it was being fetched.
    pub stale: u64,
    pub bytes: u64,
    pub requests: u64,
    pub elapsed: Duration,
}

impl ContentReport {
    fn add(&mut self, o: &Outcome, recorded: bool, bytes: u64, requests: u64) {
        self.calls += 1;
        self.bytes += bytes;
        self.requests += requests;
        if !recorded {
            self.stale += 1;
            return;
        }
        match o {
            Outcome::Done { .. } => self.done += 1,
            Outcome::Skipped { .. } => self.skipped += 1,
            Outcome::Failed { .. } => self.failed += 1,
            Outcome::Retry { .. } => self.retried += 1,
        }
    }
}

/// Backoff for the n-th transient failure of a file: 30 s, 1 min, 2 min, … capped at 1 h.
pub fn transient_delay(attempts: i64) -> u64 {
    30u64.saturating_mul(1 << attempts.clamp(0, 7)).min(3600)
}

/// The component's answer as an outcome for the store (pure).
pub fn outcome_of(
    result: Result<Result<api::Content, api::ContentFailure>, RuntimeError>,
    attempts: i64,
) -> (Outcome, u64, u64) {
    match result {
        Ok(Ok(c)) => {
            let (bytes, requests) = (c.bytes, u64::from(c.requests));
            (Outcome::Done { text: c.text, format: c.format, truncated: c.truncated, bytes }, bytes, requests)
        }
        Ok(Err(f)) => {
            let requests = u64::from(f.requests);
            let o = match f.error {
                ContentError::Skipped(s) => {
                    let (reason, detail) = skip_words(&s);
                    Outcome::Skipped { reason: reason.into(), detail }
                }
                ContentError::Failed(e) => failure(&WitError::from(e), attempts),
            };
            (o, 0, requests)
        }
        // The parser ran out of memory, stack or time, or panicked: deterministic for these
        // bytes, so wait for the file to change.
        Err(e @ (RuntimeError::Trap(_) | RuntimeError::Timeout(_) | RuntimeError::Malformed(_))) => {
            (Outcome::Skipped { reason: "crashed".into(), detail: e.to_string() }, 0, 0)
        }
        Err(e @ RuntimeError::Instantiate(_)) => {
            (Outcome::Retry { class: "instantiate".into(), detail: e.to_string(), delay_secs: 60, free: false }, 0, 0)
        }
        // A certificate that does not verify: later, once an operator fixed the trust.
        Err(e @ RuntimeError::Network(_)) => {
            (Outcome::Retry { class: "network".into(), detail: e.to_string(), delay_secs: 300, free: false }, 0, 0)
        }
    }
}

fn skip_words(s: &api::Skip) -> (&'static str, String) {
    match s {
        api::Skip::TooLarge((bytes, limit)) => {
            ("too_large", format!("{bytes} bytes is over the {limit}-byte download cap"))
        }
        api::Skip::Unsupported(m) => ("unsupported", m.clone()),
        api::Skip::Restricted(m) => ("restricted", m.clone()),
        api::Skip::NotExportable(m) => ("not_exportable", m.clone()),
        api::Skip::Gone(m) => ("gone", m.clone()),
        api::Skip::Malformed(m) => ("malformed", m.clone()),
        api::Skip::Hostile(m) => ("hostile", m.clone()),
    }
}

fn failure(e: &WitError, attempts: i64) -> Outcome {
    let class = crate::host::error_class(e).to_string();
    let detail = crate::policy::describe(e);
    let retry = |delay_secs, free| Outcome::Retry { class: class.clone(), detail: detail.clone(), delay_secs, free };
    match e {
        WitError::RateLimited(ms) => retry(ms.div_ceil(1000).max(1), true),
        WitError::Transient(_) => retry(transient_delay(attempts), false),
        // The page sync owns these: it re-roots, or parks the datasource for re-connecting.
        WitError::RootChanged(_) | WitError::ReauthRequired(_) | WitError::InvalidClient(_) => retry(600, true),
        _ => Outcome::Failed { class, detail },
    }
}

impl Host {
    /// Fetch one claimed file through the component (refreshed tokens are saved at once).
    /// Returns the outcome for [`crate::state::Store::finish_content`], the bytes received
    /// and the requests made.
    pub async fn call_content(&self, job: &ContentJob) -> Result<(Outcome, u64, u64), HostError> {
        let ds = self.store.datasource(&job.datasource_id)?;
        if ds.status == Status::ReauthRequired {
            let o = Outcome::Retry {
                class: "reauth_required".into(),
                detail: "the datasource must be connected again".into(),
                delay_secs: 600,
                free: true,
            };
            return Ok((o, 0, 0));
        }
        let settings = self.store.content_settings(&job.datasource_id)?;
        let req = api::ContentRequest {
            app: AppCredentials {
                client_id: ds.client_id.clone(),
                client_secret: ds.client_secret.expose().to_string(),
            },
            tokens: Tokens {
                access_token: ds.tokens.access_token.expose().to_string(),
                expires_at: ds.tokens.expires_at,
                refresh_token: ds.tokens.refresh_token.expose().to_string(),
            },
            now: now_unix(),
            endpoints: Endpoints { authorize: ds.endpoints.authorize.clone(), api: ds.endpoints.api.clone() },
            content: ds.endpoints.content_url(),
            refresh_margin_secs: self.refresh_margin_secs,
            root_info: Some({
                let r = &ds.profile.root_info;
                RootInfo {
                    is_team: r.is_team,
                    root_namespace_id: r.root_namespace_id.clone(),
                    home_namespace_id: r.home_namespace_id.clone(),
                    home_path: r.home_path.clone(),
                }
            }),
            file_id: job.file_id.clone(),
            rev: job.rev.clone(),
            name: job.name.clone(),
            size: job.size,
            downloadable: job.downloadable,
            export_as: job.export_as.clone(),
            export_options: job.export_options.clone(),
            limits: api::ContentLimits {
                max_download_bytes: Some(settings.max_download_bytes),
                max_text_bytes: Some(settings.max_text_bytes),
                formats: settings.formats.clone(),
            },
        };
        let result = self.runtime.fetch_content(&req).await;
        let refreshed = match &result {
            Ok(Ok(c)) => c.tokens.clone(),
            Ok(Err(f)) => f.tokens.clone(),
            Err(_) => None,
        };
        if let Some(t) = refreshed {
            self.store.save_tokens(
                &job.datasource_id,
                &TokensRecord {
                    access_token: Secret::new(t.access_token),
                    expires_at: t.expires_at,
                    refresh_token: Secret::new(t.refresh_token),
                },
            )?;
        }
        Ok(outcome_of(result, job.attempts))
    }

    /// Fetch one claimed file and record the outcome at once.
    pub async fn fetch_content(&self, job: &ContentJob) -> Result<(Outcome, bool), HostError> {
        let (outcome, _, _) = self.call_content(job).await?;
        let recorded = self.store.finish_content(&[(job.clone(), outcome.clone())])?[0];
        Ok((outcome, recorded))
    }
}

impl AsRef<Host> for Host {
    fn as_ref(&self) -> &Host {
        self
    }
}

/// Tells a content drain when to end.
#[derive(Debug, Default)]
pub struct DrainControl {
    /// More files may be queued (a listing is running): wait for them instead of returning.
    pub more_coming: AtomicBool,
    /// Claim nothing new; return once the calls in flight finish.
    pub stop: AtomicBool,
}

fn store<H: AsRef<Host>>(owner: &Arc<H>) -> &crate::state::Store {
    &AsRef::<Host>::as_ref(&**owner).store
}

/// Files claimed per datasource at a time, and outcomes recorded per transaction.
const BATCH: usize = 64;
/// Longest an outcome waits in memory before it is recorded.
const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// Work through the due files of `id` (every datasource when None) with up to `concurrency`
/// component calls in flight, each on its own task so extraction uses every core. Files are
/// claimed, and outcomes recorded, in batches: a crash loses at most one batch of results,
/// whose claims expire and which are fetched again. Returns when nothing is due and no more
/// is coming, or once stopped.
pub async fn drain_content<H: AsRef<Host> + Send + Sync + 'static>(
    owner: Arc<H>,
    id: Option<String>,
    concurrency: usize,
    control: Arc<DrainControl>,
) -> Result<ContentReport, HostError> {
    let started = Instant::now();
    let mut report = ContentReport::default();
    let concurrency = concurrency.max(1);
    let mut queue: std::collections::VecDeque<ContentJob> = Default::default();
    let mut finished: Vec<(ContentJob, Outcome, u64, u64)> = Vec::new();
    let mut last_flush = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    let flush = |owner: &Arc<H>, finished: &mut Vec<(ContentJob, Outcome, u64, u64)>, report: &mut ContentReport| {
        if finished.is_empty() {
            return Ok::<_, HostError>(());
        }
        let batch: Vec<(ContentJob, Outcome)> = finished.iter().map(|(j, o, _, _)| (j.clone(), o.clone())).collect();
        let recorded = store(owner).finish_content(&batch)?;
        for ((_, o, bytes, requests), rec) in finished.drain(..).zip(recorded) {
            report.add(&o, rec, bytes, requests);
        }
        Ok(())
    };
    let result = loop {
        let stopping = control.stop.load(Ordering::Acquire);
        if queue.is_empty() && !stopping {
            let ids = match &id {
                Some(id) => vec![id.clone()],
                None => match store(&owner).content_due() {
                    Ok(ids) => ids,
                    Err(e) => break Err(e.into()),
                },
            };
            // Several datasources share a batch, so a long backlog does not starve the rest.
            let each = (BATCH / ids.len().max(1)).max(4);
            for ds in ids {
                match store(&owner).claim_content(&ds, each, CLAIM_SECS) {
                    Ok(jobs) => queue.extend(jobs),
                    Err(e) => return Err(e.into()),
                }
                if queue.len() >= BATCH {
                    break;
                }
            }
        }
        while running.len() < concurrency && !stopping {
            let Some(job) = queue.pop_front() else { break };
            let owner = Arc::clone(&owner);
            running.spawn(async move {
                // A host-side failure for one file (its datasource just removed, a store read
                // failing) is that file's retry, not the end of the drain.
                let r = AsRef::<Host>::as_ref(&*owner).call_content(&job).await;
                let (o, bytes, requests) = r.unwrap_or_else(|e| {
                    tracing::warn!(doc = %job.doc_id, "content fetch failed on the host: {e}");
                    let o = Outcome::Retry { class: "host".into(), detail: e.to_string(), delay_secs: 60, free: false };
                    (o, 0, 0)
                });
                Ok::<_, HostError>((job, o, bytes, requests))
            });
        }
        if running.is_empty() {
            if let Err(e) = flush(&owner, &mut finished, &mut report) {
                break Err(e);
            }
            last_flush = Instant::now();
            if stopping || (queue.is_empty() && !control.more_coming.load(Ordering::Acquire)) {
                break Ok(());
            }
            if queue.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            continue;
        }
        match running.join_next().await {
            Some(Ok(Ok(done))) => finished.push(done),
            Some(Ok(Err(e))) => break Err(e),
            Some(Err(join)) => {
                break Err(HostError::Failing {
                    id: id.clone().unwrap_or_else(|| "*".into()),
                    detail: join.to_string(),
                })
            }
            None => {}
        }
        if finished.len() >= BATCH || last_flush.elapsed() >= FLUSH_EVERY {
            if let Err(e) = flush(&owner, &mut finished, &mut report) {
                break Err(e);
            }
            last_flush = Instant::now();
        }
    };
    // Whatever happened, record what finished and hand back what was never started.
    while let Some(Ok(Ok(done))) = running.join_next().await {
        finished.push(done);
    }
    let flushed = flush(&owner, &mut finished, &mut report);
    let released = store(&owner).release_content(&queue.drain(..).collect::<Vec<_>>());
    result?;
    flushed?;
    released?;
    report.elapsed = started.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(e: api::Error) -> Result<Result<api::Content, api::ContentFailure>, RuntimeError> {
        Ok(Err(api::ContentFailure { error: ContentError::Failed(e), tokens: None, requests: 1, refreshes: 0 }))
    }

    #[test]
    fn outcomes_by_error_class() {
        let (o, _, _) = outcome_of(failed(api::Error::RateLimited(2500)), 0);
        assert!(matches!(o, Outcome::Retry { delay_secs: 3, free: true, .. }), "{o:?}");
        let (o, _, _) = outcome_of(failed(api::Error::Transient("x".into())), 2);
        assert!(matches!(o, Outcome::Retry { delay_secs: 120, free: false, .. }), "{o:?}");
        let (o, _, _) = outcome_of(failed(api::Error::Api("files/download: 409 x".into())), 0);
        assert!(matches!(o, Outcome::Failed { .. }), "{o:?}");
        let (o, _, _) = outcome_of(Err(RuntimeError::Trap("out of memory".into())), 0);
        assert!(matches!(o, Outcome::Skipped { ref reason, .. } if reason == "crashed"), "{o:?}");
        let skipped = Ok(Err(api::ContentFailure {
            error: ContentError::Skipped(api::Skip::TooLarge((11, 10))),
            tokens: None,
            requests: 0,
            refreshes: 0,
        }));
        let (o, _, _) = outcome_of(skipped, 0);
        assert!(matches!(o, Outcome::Skipped { ref reason, .. } if reason == "too_large"), "{o:?}");
        assert_eq!(transient_delay(0), 30);
        assert_eq!(transient_delay(20), 3600);
    }
}
