//! The service's loops: admit due steps up to the global cap, run each step under the
//! datasource's lease, keep leases renewed, re-read the store, and keep longpolls on idle
//! datasources. Decisions are the schedule's; this file does the I/O around them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::schedule::{Known, Outcome};
use super::{locked, Service, Trigger};
use crate::clock::now_unix;
use crate::host::{error_class, HostError, Run, Step, SyncReport};
use crate::runtime::{WaitRequest, WitError};
use crate::state::{Status, StoreError};

/// Retry delay after a failure of the host itself (the store, the runtime) mid-run.
const HOST_ERROR_RETRY: Duration = Duration::from_secs(10);

/// The scheduler loop, the lease keeper and the reloader; returns after shutdown, once every
/// in-flight page has finished (or the grace period ran out) and leases are given back.
pub async fn run(svc: Arc<Service>) -> anyhow::Result<()> {
    reload(&svc)?;
    let keeper = tokio::spawn(keep_leases(svc.clone()));
    let mut next_reload = Instant::now() + svc.config.reload_every;
    let mut shutdown = svc.shutdown.subscribe();
    loop {
        if svc.is_shutting_down() {
            break;
        }
        let now = Instant::now();
        if now >= next_reload {
            if let Err(e) = reload(&svc) {
                tracing::warn!("re-reading the datasources failed: {e:#}");
            }
            next_reload = now + svc.config.reload_every;
        }
        while let Some(id) = locked(&svc.schedule).next(now) {
            svc.metrics.pages_in_flight.inc();
            tokio::spawn(step_task(svc.clone(), id));
        }
        let wake_at = locked(&svc.schedule).next_due().map_or(next_reload, |d| d.min(next_reload));
        tokio::select! {
            _ = svc.wake.notified() => {}
            _ = tokio::time::sleep_until(wake_at.max(now).into()) => {}
            _ = shutdown.changed() => {}
        }
    }
    // Shutdown: nothing new starts; longpolls hold no state and simply stop.
    for (_, w) in locked(&svc.watchers).drain() {
        w.abort();
    }
    let deadline = Instant::now() + svc.config.shutdown_grace;
    while locked(&svc.schedule).in_flight() > 0 && Instant::now() < deadline {
        tokio::select! {
            _ = svc.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    let left = locked(&svc.schedule).in_flight();
    if left > 0 {
        tracing::warn!(
            pages = left,
            "shutdown grace ran out; their pages were not committed and will be fetched again"
        );
    }
    keeper.abort();
    let leased: Vec<String> = locked(&svc.leased).drain().collect();
    for id in leased {
        let _ = svc.host.store.release_lease(&id, &svc.host.lease_holder);
    }
    Ok(())
}

/// Re-read the datasource list into the schedule (and the account → datasource map).
pub fn reload(svc: &Service) -> anyhow::Result<()> {
    let overview = svc.host.store.overview()?;
    let (now, now_unix) = (Instant::now(), crate::clock::now_unix_i64());
    let me = &svc.host.lease_holder;
    let known: Vec<Known> = overview
        .iter()
        .map(|o| Known {
            synced_at: o.last_synced_at,
            leased_until: o
                .lease
                .as_ref()
                .filter(|l| l.held_by_another(me, now_unix))
                .map(|l| now + Duration::from_secs((l.expires_at - now_unix).max(0) as u64)),
            ..Known::new(&o.id, o.schedule.interval_secs, o.schedule.paused, o.status == Status::ReauthRequired)
        })
        .collect();
    locked(&svc.schedule).reconcile(&known, now, now_unix);
    let mut by_account: std::collections::HashMap<String, Vec<(String, String)>> = Default::default();
    for o in &overview {
        by_account.entry(o.account_id.clone()).or_default().push((o.id.clone(), o.connector_id.clone()));
    }
    locked(&svc.notes).by_account = by_account;
    svc.wake.notify_one();
    Ok(())
}

/// Renew every lease this process holds, every third of the lease's length.
async fn keep_leases(svc: Arc<Service>) {
    let every = svc.config.lease_ttl / 3;
    loop {
        tokio::time::sleep(every).await;
        let ids: Vec<String> = locked(&svc.leased).iter().cloned().collect();
        for id in ids {
            match svc.host.store.renew_lease(&id, &svc.host.lease_holder, svc.config.lease_ttl) {
                Ok(true) => {}
                Ok(false) => {
                    // Released meanwhile (the run ended), removed, or lost after it ran out:
                    // either way no run of ours may go on without it.
                    if locked(&svc.leased).remove(&id) {
                        tracing::warn!(datasource = %id, "sync lease lost; the run stops here");
                        locked(&svc.runs).remove(&id);
                    }
                }
                Err(e) => tracing::warn!(datasource = %id, "lease renewal failed: {e}"),
            }
        }
    }
}

async fn step_task(svc: Arc<Service>, id: String) {
    let outcome = step_once(&svc, &id).await;
    svc.metrics.pages_in_flight.dec();
    let now = Instant::now();
    let idle = {
        let mut schedule = locked(&svc.schedule);
        schedule.finish(&id, &outcome, now, rand::random::<f64>());
        schedule.is_idle(&id)
    };
    if idle && !svc.is_shutting_down() {
        start_watch(&svc, &id);
    }
    svc.wake.notify_one();
    svc.deliver_wake.notify_waiters();
}

/// One page of `id`'s run, starting the run (and taking the lease) if none is under way.
async fn step_once(svc: &Arc<Service>, id: &str) -> Outcome {
    // A run goes on only under its lease (the keeper drops both when the lease is lost).
    let taken = locked(&svc.runs).remove(id).filter(|_| locked(&svc.leased).contains(id));
    let mut run = match taken {
        Some(run) => run,
        None => match svc.host.store.acquire_lease(id, &svc.host.lease_holder, svc.config.lease_ttl) {
            Ok(()) => {
                locked(&svc.leased).insert(id.to_string());
                if let Some(skip) = synced_elsewhere(svc, id) {
                    locked(&svc.leased).remove(id);
                    let _ = svc.host.store.release_lease(id, &svc.host.lease_holder);
                    return skip;
                }
                // The run reads the cursor itself: the longpoll has done its job.
                stop_watch(svc, id);
                Run::new()
            }
            Err(StoreError::Leased { .. }) => {
                svc.metrics.skipped_turns.with_label_values(&["leased"]).inc();
                return Outcome::Leased(svc.config.lease_ttl);
            }
            Err(StoreError::NoDatasource(_)) => return Outcome::Gone,
            Err(e) => {
                note_error(svc, id, "store", &e.to_string());
                return Outcome::Backoff(HOST_ERROR_RETRY);
            }
        },
    };
    let before = run.report.clone();
    let calls_before = run.calls;
    let result = svc.host.step(id, &mut run).await;
    record(svc, id, &before, &mut run);
    // The scheduler took one token for this step; a parallel listing's step makes more calls.
    let extra = (run.calls - calls_before).saturating_sub(1);
    locked(&svc.schedule).charge(id, extra, Instant::now());
    let outcome = match result {
        Ok(Step::More) | Ok(Step::Restarted { .. }) => Outcome::More,
        Ok(Step::Done) => {
            if let Ok(Some(at)) = svc.host.store.sync_state(id).map(|s| s.last_synced_at) {
                locked(&svc.schedule).note_synced(id, at);
            }
            svc.metrics.syncs.with_label_values(&["ok"]).inc();
            svc.metrics.sync_duration.observe(run.started.elapsed().as_secs_f64());
            if let Some((at, trigger)) = locked(&svc.notes).notices.remove(id) {
                svc.metrics.notice_to_index.with_label_values(&[trigger.as_str()]).observe(at.elapsed().as_secs_f64());
            }
            Outcome::Done
        }
        Ok(Step::Wait { delay, .. }) => Outcome::Wait(delay),
        Ok(Step::Backoff { delay, .. }) => Outcome::Backoff(delay),
        Err(HostError::ReauthRequired { detail, .. }) => {
            svc.metrics.syncs.with_label_values(&["reauth-required"]).inc();
            note_error(svc, id, "reauth_required", &detail);
            Outcome::Parked
        }
        Err(HostError::Failing { detail, .. }) => {
            svc.metrics.syncs.with_label_values(&["failing"]).inc();
            note_error(svc, id, "failing", &detail);
            Outcome::Failing
        }
        Err(HostError::Store(StoreError::NoDatasource(_))) => Outcome::Gone,
        // The folder changed (or another writer moved the cursor) while the page was fetched:
        // it was discarded; the next step reads the current cursor.
        Err(HostError::Store(StoreError::CursorConflict)) => Outcome::More,
        // Another replica took the lease over (ours expired while this page was fetched):
        // the page was discarded and the run is theirs now.
        Err(HostError::Store(StoreError::LeaseLost(_))) => Outcome::Leased(svc.config.lease_ttl),
        Err(e) => {
            note_error(svc, id, "host", &e.to_string());
            Outcome::Backoff(HOST_ERROR_RETRY)
        }
    };
    match outcome {
        Outcome::More | Outcome::Wait(_) | Outcome::Backoff(_) if !svc.is_shutting_down() => {
            locked(&svc.runs).insert(id.to_string(), run);
        }
        _ => {
            locked(&svc.leased).remove(id);
            // A finished run gave its lease back with its last page. A crash skips this; the
            // lease runs out or its dead holder is taken over.
            if !matches!(outcome, Outcome::Done) {
                let _ = svc.host.store.release_lease(id, &svc.host.lease_holder);
            }
        }
    }
    outcome
}

/// Before a new run, under its lease: if another replica completed a sync since this process
/// last looked, and the datasource is caught up and was not woken here, this turn is not due
/// after all (its next one is an interval after that sync). A listing in progress always goes on.
fn synced_elsewhere(svc: &Service, id: &str) -> Option<Outcome> {
    let (seen, woken) = locked(&svc.schedule).slot(id).map(|s| (s.seen_synced, s.woken))?;
    let state = svc.host.store.sync_state(id).ok()?;
    let at = state.last_synced_at?;
    if woken || state.listing || state.cursor.is_none() || seen >= Some(at) {
        return None;
    }
    svc.metrics.skipped_turns.with_label_values(&["synced"]).inc();
    let ago = Duration::from_secs(crate::clock::now_unix_i64().saturating_sub(at).max(0) as u64);
    Some(Outcome::SyncedElsewhere { at, ago })
}

/// Metrics from what the step added to the run's report.
fn record(svc: &Service, id: &str, before: &SyncReport, run: &mut Run) {
    let m = &svc.metrics;
    let r = &run.report;
    m.pages.inc_by(r.pages - before.pages);
    m.dropbox_requests.inc_by(r.requests - before.requests);
    m.token_refreshes.inc_by(r.refreshes - before.refreshes);
    m.upserted.inc_by(r.upserted - before.upserted);
    m.deleted.inc_by((r.deleted + r.swept) - (before.deleted + before.swept));
    m.rate_limit_waits.inc_by(r.rate_limited - before.rate_limited);
    m.rate_limit_wait_seconds.inc_by((r.rate_limit_wait - before.rate_limit_wait).as_secs_f64());
    for lag in run.change_lags.drain(..) {
        m.change_to_index.observe(lag);
    }
    if let Some((class, why)) = run.last_failure.take() {
        note_error(svc, id, class, &why);
    }
}

fn note_error(svc: &Service, id: &str, class: &str, why: &str) {
    svc.metrics.errors.with_label_values(&[class]).inc();
    locked(&svc.notes).last_error.insert(id.to_string(), (class.to_string(), why.to_string(), now_unix()));
}

/// Sync `id` as soon as possible because of `trigger`. False if it is unknown, paused or parked.
pub fn notice(svc: &Service, id: &str, trigger: Trigger) -> bool {
    let woken = locked(&svc.schedule).wake(id, Instant::now());
    if woken {
        locked(&svc.notes).notices.entry(id.to_string()).or_insert((Instant::now(), trigger));
        svc.wake.notify_one();
    }
    woken
}

fn start_watch(svc: &Arc<Service>, id: &str) {
    if !svc.config.longpoll {
        return;
    }
    let mut watchers = locked(&svc.watchers);
    watchers.retain(|_, w| !w.is_finished());
    if watchers.contains_key(id) || watchers.len() >= svc.config.max_longpolls {
        return;
    }
    let task = tokio::spawn(watch(svc.clone(), id.to_string()));
    watchers.insert(id.to_string(), task);
}

fn stop_watch(svc: &Service, id: &str) {
    if let Some(w) = locked(&svc.watchers).remove(id) {
        w.abort();
    }
}

/// Longpoll an idle datasource's cursor until Dropbox reports changes, then wake it. Ends when
/// the datasource is no longer idle (its next run restarts the watch with a new cursor).
async fn watch(svc: Arc<Service>, id: String) {
    let mut failures = 0u32;
    loop {
        let not_before = locked(&svc.notes).longpoll_not_before.remove(&id);
        if let Some(t) = not_before {
            tokio::time::sleep_until(t.into()).await;
        }
        if svc.is_shutting_down() || !locked(&svc.schedule).is_idle(&id) {
            return;
        }
        let Ok(ds) = svc.host.store.datasource_view(&id) else { return };
        let Ok(state) = svc.host.store.sync_state(&id) else { return };
        let Some(cursor) = state.cursor.filter(|_| !state.listing) else { return };
        let req =
            WaitRequest { cursor, timeout_secs: Some(svc.config.longpoll_timeout), notify: ds.endpoints.notify_url() };
        svc.metrics.longpolls_active.inc();
        let answer = svc.host.runtime.wait_for_changes(&req).await;
        svc.metrics.longpolls_active.dec();
        let backoff = |wait: Duration| {
            locked(&svc.notes).longpoll_not_before.insert(id.clone(), Instant::now() + wait);
        };
        let result = match answer {
            Ok(Ok(c)) => {
                failures = 0;
                if let Some(b) = c.backoff_secs {
                    backoff(Duration::from_secs(u64::from(b)));
                }
                if c.changes {
                    svc.metrics.longpolls.with_label_values(&["changes"]).inc();
                    notice(&svc, &id, Trigger::Longpoll);
                    return;
                }
                svc.metrics.longpolls.with_label_values(&["no-changes"]).inc();
                continue;
            }
            Ok(Err(WitError::CursorReset(_))) => {
                // The sync meets the same reset and starts the listing over.
                svc.metrics.longpolls.with_label_values(&["reset"]).inc();
                notice(&svc, &id, Trigger::Longpoll);
                return;
            }
            Ok(Err(WitError::RateLimited(ms))) => {
                svc.metrics.longpolls.with_label_values(&["rate-limited"]).inc();
                backoff(Duration::from_millis(ms).max(Duration::from_secs(1)));
                continue;
            }
            Ok(Err(e)) => (error_class(&e), crate::policy::describe(&e)),
            Err(e) => ("trap", e.to_string()),
        };
        // A failing longpoll costs nothing but latency: interval polling still runs. Back off,
        // and give up after a few in a row.
        svc.metrics.longpolls.with_label_values(&["error"]).inc();
        tracing::debug!(datasource = %id, class = result.0, "longpoll failed: {}", result.1);
        failures += 1;
        if failures >= 5 {
            return;
        }
        backoff(crate::policy::Backoff::WATCH.delay(failures - 1, rand::random::<f64>()));
    }
}
