//! The host's side of a parallel initial listing ([`crate::shards`]): one step takes the base
//! cursor, or keeps up to `listing_parallelism` shard pages in flight, each one component call
//! applied as soon as it returns, in one transaction with any others that returned meanwhile
//! (a big walk's first page may replace the walk with an expansion of its folder, listed next
//! in the same slot). A shard's next page is requested before its last one is applied whenever
//! that page cannot change what comes next, so the store's work overlaps the round trips. A
//! rate limit on any shard pauses them all (one shared backoff: the step lets the calls in
//! flight finish and returns the wait).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use tokio::task::JoinSet;

use super::{tokens_record, Host, HostError, Run, Step};
use crate::clock::now_unix;
use crate::runtime::WitError;
use crate::state::shards::{Shard, ShardPage};
use crate::state::{DatasourceRecord, Status, StoreError, SyncState};

/// Pages one step may start per listing in flight: long enough that calls rarely wait for
/// each other, short enough that a scheduler interleaves other datasources between steps.
const PAGES_PER_SLOT: usize = 4;

/// The configured folder as a shard path: "" for the root, else `/a/b` (no trailing slash).
/// None for `id:`/`ns:` paths, whose children cannot be matched by path: those list
/// sequentially.
pub fn root_shard_path(configured: &str) -> Option<String> {
    let trimmed = configured.trim_end_matches('/');
    if trimmed.starts_with("id:") || trimmed.starts_with("ns:") {
        return None;
    }
    Some(if trimmed.is_empty() || trimmed.starts_with('/') { trimmed.to_string() } else { format!("/{trimmed}") })
}

/// Whether this datasource's initial listing runs in parallel.
pub fn applies(host: &Host, ds: &DatasourceRecord, state: &SyncState) -> bool {
    host.listing_parallelism > 1 && state.listing && state.cursor.is_none() && root_shard_path(&ds.path).is_some()
}

impl Host {
    /// One step of a parallel initial listing (the caller checked [`applies`]): up to
    /// `listing_parallelism` shard pages in flight, each applied as soon as it returns and
    /// followed at once by its shard's next page (or the next shard), until the step's budget
    /// of pages is spent. No call waits for a slower one.
    pub(crate) async fn parallel_step(
        &self,
        id: &str,
        ds: &DatasourceRecord,
        state: &SyncState,
        run: &mut Run,
    ) -> Result<Step, HostError> {
        let Some(plan) = self.store.listing_plan(id, state.generation)? else {
            return self.take_base_cursor(id, ds, state, run).await;
        };
        let margin = u64::from(self.refresh_margin_secs.unwrap_or(300));
        // A token due for refresh is refreshed by one call, not by every shard at once.
        let due = ds.tokens.expires_at <= now_unix() + margin;
        let slots = if due { 1 } else { self.listing_parallelism };
        let mut budget = if due { 1 } else { slots * PAGES_PER_SLOT };
        let mut queue: VecDeque<Shard> = plan.pending.into();
        let mut claimed: HashSet<(String, bool)> = HashSet::new();
        let mut calls = JoinSet::new();
        let batch = run.batch.clone();
        let start = |shard: Shard, calls: &mut JoinSet<_>, budget: &mut usize, made: &mut u64| {
            let mut req = self.page_request(ds, shard.cursor.clone(), &batch);
            req.options.path = shard.path.clone();
            req.options.recursive = shard.recursive;
            let runtime = Arc::clone(&self.runtime);
            *budget -= 1;
            *made += 1;
            calls.spawn(async move {
                let outcome = runtime.sync_page(&req).await;
                (shard, outcome)
            });
        };
        while calls.len() < slots && budget > 0 {
            let Some(shard) = queue.pop_front() else { break };
            claimed.insert((shard.path.clone(), shard.recursive));
            start(shard, &mut calls, &mut budget, &mut run.calls);
        }
        let mut failure: Option<Result<WitError, String>> = None;
        let mut rate_limit_ms = 0u64;
        let mut progressed = false;
        // Whether pages applied in this step added shards the queue has not seen.
        let mut plan_grew = false;
        while let Some(joined) = calls.join_next().await {
            // Every call that has returned meanwhile is applied with this one, in one
            // transaction: while the store is busy, pages pile up and commit as a group.
            let mut returned = vec![joined];
            while let Some(more) = calls.try_join_next() {
                returned.push(more);
            }
            // What each shard does next: continue from a cursor, start over, or nothing.
            let mut next: Vec<Shard> = Vec::new();
            let mut pages = Vec::with_capacity(returned.len());
            for joined in returned {
                let (shard, outcome) = match joined {
                    Ok(done) => done,
                    Err(e) => {
                        failure.get_or_insert(Err(format!("a shard call failed: {e}")));
                        continue;
                    }
                };
                match outcome {
                    Ok(Ok(page)) => pages.push((shard, page)),
                    Ok(Err(f)) => {
                        self.count_failed_call(id, run, &f)?;
                        match f.error {
                            // A subfolder deleted since it was found: its deletion is replayed
                            // from the base cursor.
                            WitError::PathNotFound(_) if shard.depth > 0 => {
                                self.settle(id, state.generation, &shard, true)?;
                                progressed = true;
                            }
                            WitError::CursorReset(_) => {
                                self.settle(id, state.generation, &shard, false)?;
                                progressed = true;
                                next.push(Shard { cursor: None, ..shard });
                            }
                            WitError::RateLimited(ms) => rate_limit_ms = rate_limit_ms.max(ms),
                            e => {
                                failure.get_or_insert(Ok(e));
                            }
                        }
                    }
                    Err(e) => {
                        failure.get_or_insert(Err(e.to_string()));
                    }
                }
            }
            // A shard whose next page cannot depend on this one's outcome (any page but a
            // walk's first, see `Shard::may_split`) continues at once, before the group is applied:
            // its call overlaps the store's work. Should the group fail to apply, the step ends
            // and the early calls are dropped unapplied.
            let mut continued = vec![false; pages.len()];
            if failure.is_none() && rate_limit_ms == 0 {
                for ((shard, page), continued) in pages.iter().zip(&mut continued) {
                    if budget > 0 && page.has_more && !shard.may_split() {
                        *continued = true;
                        let shard = Shard { cursor: Some(page.cursor.clone()), ..shard.clone() };
                        start(shard, &mut calls, &mut budget, &mut run.calls);
                    }
                }
            }
            if !pages.is_empty() {
                let tokens: Vec<_> = pages.iter().map(|(_, page)| page.tokens.as_ref().map(tokens_record)).collect();
                let group: Vec<ShardPage<'_>> = pages
                    .iter()
                    .zip(&tokens)
                    .map(|((shard, page), tokens)| ShardPage {
                        generation: state.generation,
                        shard,
                        deletes: &page.deletes,
                        documents: &page.documents,
                        cursor: &page.cursor,
                        has_more: page.has_more,
                        tokens: tokens.as_ref(),
                        parallelism: self.listing_parallelism,
                    })
                    .collect();
                let applied = match self.store.apply_shard_pages(id, &group, Some(&self.lease_holder)) {
                    Ok(a) => a,
                    // The listing restarted meanwhile (another process, a reset): the
                    // pages still in flight belong to the old one.
                    Err(StoreError::CursorConflict) => return Ok(Step::More),
                    Err(e) => return Err(e.into()),
                };
                drop(group);
                for (((shard, page), applied), continued) in pages.into_iter().zip(applied).zip(continued) {
                    run.report.count_page(&page.stats, &applied.applied);
                    run.report.shards += applied.new_shards;
                    plan_grew |= applied.new_shards > 0;
                    progressed = true;
                    if let Some(expansion) = applied.split_into {
                        // A big walk became an expansion of its folder: list that at once.
                        next.push(expansion);
                    } else if page.has_more && !continued {
                        next.push(Shard { cursor: Some(page.cursor), ..shard });
                    }
                }
            }
            // After a failure or a rate limit, only let the calls in flight finish.
            if failure.is_some() || rate_limit_ms > 0 {
                continue;
            }
            // Each returned call freed its slot for its shard's next page. One the budget has
            // no room for stays in the store and is listed by the next step.
            for shard in next {
                if budget == 0 {
                    break;
                }
                claimed.insert((shard.path.clone(), shard.recursive));
                start(shard, &mut calls, &mut budget, &mut run.calls);
            }
            // Fill every free slot, not just these: an expansion or a split adds shards, and
            // waiting for calls to end before starting them would keep the listing narrow.
            while calls.len() < slots && budget > 0 {
                if queue.is_empty() && plan_grew {
                    plan_grew = false;
                    if let Some(plan) = self.store.listing_plan(id, state.generation)? {
                        queue.extend(
                            plan.pending.into_iter().filter(|s| !claimed.contains(&(s.path.clone(), s.recursive))),
                        );
                    }
                }
                let Some(shard) = queue.pop_front() else { break };
                claimed.insert((shard.path.clone(), shard.recursive));
                start(shard, &mut calls, &mut budget, &mut run.calls);
            }
        }
        if rate_limit_ms > 0 {
            return self.after_failure(id, run, Some(Ok(WitError::RateLimited(rate_limit_ms))));
        }
        if let Some(f) = failure {
            return self.after_failure(id, run, Some(f));
        }
        if progressed {
            run.counters.progressed();
            if ds.status != Status::Ok {
                self.store.set_status(id, Status::Ok, None)?;
            }
        }
        Ok(Step::More)
    }

    /// The first step: the cursor of "now" for the whole folder, and the first shard.
    async fn take_base_cursor(
        &self,
        id: &str,
        ds: &DatasourceRecord,
        state: &SyncState,
        run: &mut Run,
    ) -> Result<Step, HostError> {
        let root = root_shard_path(&ds.path).expect("checked by applies");
        let req = self.page_request(ds, None, &run.batch);
        run.calls += 1;
        let failure = match self.runtime.latest_cursor(&req).await {
            Ok(Ok(page)) => {
                run.report.requests += u64::from(page.stats.requests);
                run.report.refreshes += u64::from(page.stats.refreshes);
                let tokens = page.tokens.as_ref().map(tokens_record);
                match self.store.start_listing_plan(id, state.generation, &page.cursor, &root, tokens.as_ref()) {
                    Ok(()) | Err(StoreError::CursorConflict) => {}
                    Err(e) => return Err(e.into()),
                }
                run.counters.progressed();
                return Ok(Step::More);
            }
            Ok(Err(f)) => {
                self.count_failed_call(id, run, &f)?;
                Ok(f.error)
            }
            Err(e) => Err(e.to_string()),
        };
        self.after_failure(id, run, Some(failure))
    }

    fn settle(&self, id: &str, generation: i64, shard: &Shard, gone: bool) -> Result<(), HostError> {
        match self.store.settle_shard(id, generation, shard, gone) {
            Ok(()) | Err(StoreError::CursorConflict) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_roots() {
        assert_eq!(root_shard_path("").as_deref(), Some(""));
        assert_eq!(root_shard_path("/").as_deref(), Some(""));
        assert_eq!(root_shard_path("/Docs/").as_deref(), Some("/Docs"));
        assert_eq!(root_shard_path("Docs").as_deref(), Some("/Docs"));
        assert_eq!(root_shard_path("id:abc"), None);
        assert_eq!(root_shard_path("ns:123/x"), None);
    }
}
