//! The facade with its own state (`--features keyvalue`): the runtime's key-value store keeps
//! datasources, cursors and sealed tokens, so a scheduler that only calls `POST /sync/{id}`
//! (Spin's cron trigger, a Kubernetes CronJob, `curl` in a loop) runs a complete connector.
//!
//! Each `POST /sync/{id}` holds the datasource's lease, runs one `sync-page` step, hands the
//! page to Coco Server, and only then stores the new cursor: at-least-once, idempotent by
//! document id. Path deletes become id deletes through the path index ([`index`]).

pub mod index;
pub mod kv;
pub mod lease;
pub mod record;
pub mod seal;
pub mod sink;

use coco_web::envelope::Kind;
use serde::Serialize;

use super::{error_response, App, FacadeConfig, Outgoing, Randomness, RootJson};
use crate::error::Error;
use crate::http::Transport;
use crate::types::{AppCredentials, Datasource, PageRequest, RevokeRequest, SyncOptions};
use crate::{connect, page};
use index::PathIndex;
use kv::{KvError, KvStore};
use lease::Claim;
use record::Record;
use seal::SealKey;
use sink::{CocoSink, SinkFailure, Target};

fn store_failed(e: &KvError) -> Outgoing {
    Outgoing::error(Kind::StoreFailed, &e.to_string())
}

fn busy(retry_after_secs: u64) -> Outgoing {
    let mut extra = serde_json::Map::new();
    extra.insert("retry_after_secs".into(), retry_after_secs.into());
    let kind = Kind::Busy;
    let body = coco_web::envelope::body(kind, "another call is working on this datasource", extra);
    let mut out = Outgoing::json(kind.status(), &body);
    out.headers.push(("retry-after", retry_after_secs.max(1).to_string()));
    out
}

fn not_found(id: &str) -> Outgoing {
    Outgoing::error(Kind::NotFound, &format!("no datasource {id}"))
}

fn holder(random: &Randomness) -> String {
    random.holder.iter().map(|b| format!("{b:02x}")).collect()
}

/// What every stateful route works with besides the store: settings, the app, the time, and
/// this call's randomness.
#[derive(Clone, Copy)]
pub struct Call<'a> {
    pub config: &'a FacadeConfig,
    pub app: &'a App,
    pub seal: &'a SealKey,
    pub now: u64,
    pub random: &'a Randomness,
}

/// A caught-up datasource has nothing more now: the wait suggested before the next call
/// (upstream's default sync interval).
pub const IDLE_WAIT_SECS: u64 = 30;

/// Run `work` under the datasource's lease; the lease is given back whatever `work` answers.
fn leased(
    kv: &mut dyn KvStore,
    id: &str,
    now: u64,
    random: &Randomness,
    work: impl FnOnce(&mut dyn KvStore) -> Outgoing,
) -> Outgoing {
    let lease = match lease::claim(kv, id, now, &holder(random)) {
        Ok(Claim::Held(lease)) => lease,
        Ok(Claim::Busy { retry_after_secs }) => return busy(retry_after_secs),
        Err(e) => return store_failed(&e),
    };
    let out = work(kv);
    match lease::release(kv, lease) {
        // The work is done; a lease left behind only expires later.
        Ok(()) | Err(_) => out,
    }
}

/// After `/oauth_redirect`: keep the datasource (a reconnect of the same account keeps its
/// listing and takes the new tokens).
pub fn store_connected(
    kv: &mut dyn KvStore,
    seal: &SealKey,
    ds: &Datasource,
    now: u64,
    random: &Randomness,
) -> Result<(), Outgoing> {
    let out = leased(kv, &ds.id, now, random, |kv| {
        let existing = match record::load(kv, &ds.id) {
            Ok(r) => r,
            Err(e) => return store_failed(&e),
        };
        let root = RootJson::from(ds.config.profile.root_info.clone());
        let mut r = existing.unwrap_or_else(|| Record {
            id: ds.id.clone(),
            name: ds.name.clone(),
            connector_id: ds.connector_id.clone(),
            tokens: String::new(),
            root_info: Some(root.clone()),
            cursor: None,
            generation: 1,
            listing: true,
            coco_created: false,
            documents: 0,
            pages: 0,
            connected_at: now,
            last_sync_at: None,
            last_error: None,
            reauth_required: false,
            revoked: false,
        });
        r.name = ds.name.clone();
        r.reauth_required = false;
        r.revoked = false;
        if r.root_info.as_ref().map(|x| &x.root_namespace_id) != Some(&root.root_namespace_id) {
            start_relisting(&mut r);
        }
        r.root_info = Some(root);
        r.seal_tokens(seal, &ds.tokens, &random.seal_nonce);
        match record::save(kv, &r) {
            Ok(()) => Outgoing { status: 204, headers: vec![], body: vec![] },
            Err(e) => store_failed(&e),
        }
    });
    if out.status == 204 {
        Ok(())
    } else {
        Err(out)
    }
}

fn start_relisting(r: &mut Record) {
    r.cursor = None;
    r.generation += 1;
    r.listing = true;
}

/// What `GET /datasources` shows: no tokens, no cursor.
#[derive(Serialize)]
struct View<'a> {
    id: &'a str,
    name: &'a str,
    connector_id: &'a str,
    status: &'static str,
    documents: u64,
    pages: u64,
    listing: bool,
    connected_at: u64,
    last_sync_at: Option<u64>,
    last_error: Option<&'a str>,
}

fn view(r: &Record) -> View<'_> {
    View {
        id: &r.id,
        name: &r.name,
        connector_id: &r.connector_id,
        status: r.status(),
        documents: r.documents,
        pages: r.pages,
        listing: r.listing,
        connected_at: r.connected_at,
        last_sync_at: r.last_sync_at,
        last_error: r.last_error.as_deref(),
    }
}

/// A connect link's single use: bind link `nonce` to the browser `/connect` is about to give
/// the cookie `issued`. The first browser to open the link wins (an atomic increment decides
/// a race); the same browser (it presents the cookie it was given) may open it again and is
/// bound to its new cookie; any other is refused (`false`). Cookies are kept as digests.
pub fn bind_link(
    kv: &mut dyn KvStore,
    nonce: &str,
    until: u64,
    presented: Option<&str>,
    issued: &str,
) -> Result<bool, KvError> {
    use sha2::{Digest, Sha256};
    let digest =
        |cookie: &str| -> String { Sha256::digest(cookie.as_bytes()).iter().map(|b| format!("{b:02x}")).collect() };
    let key = format!("link:{nonce}");
    let bound = |browser: String| {
        serde_json::to_vec(&serde_json::json!({ "browser": browser, "until": until })).unwrap_or_default()
    };
    if kv.increment(&format!("link-claim:{nonce}"), 1)? == 1 {
        kv.set(&key, &bound(digest(issued)))?;
        return Ok(true);
    }
    let holder = kv
        .get(&key)?
        .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
        .and_then(|v| v["browser"].as_str().map(str::to_string));
    match (holder, presented) {
        (Some(h), Some(p)) if h == digest(p) => {
            kv.set(&key, &bound(digest(issued)))?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// `GET /datasources`.
pub fn list(kv: &mut dyn KvStore) -> Outgoing {
    match record::all(kv) {
        Ok(records) => {
            Outgoing::json(200, &serde_json::json!({ "datasources": records.iter().map(view).collect::<Vec<_>>() }))
        }
        Err(e) => store_failed(&e),
    }
}

/// `GET /datasources/{id}`.
pub fn show(kv: &mut dyn KvStore, id: &str) -> Outgoing {
    match record::load(kv, id) {
        Ok(Some(r)) => Outgoing::json(200, &view(&r)),
        Ok(None) => not_found(id),
        Err(e) => store_failed(&e),
    }
}

/// `DELETE /datasources/{id}`: revoke the tokens at Dropbox, remove the datasource and its
/// documents from Coco Server (`DELETE /datasource/:id`), then forget it. Tokens Dropbox
/// already refuses need no revoking. A failure keeps the record, so the call can be made again:
/// a revoke that went through is remembered, so the next call goes straight to Coco. With
/// `force`, a Coco Server that refuses (one that is gone for good, a token without the
/// permission) does not keep the record.
pub fn remove<T: Transport>(
    call: Call<'_>,
    kv: &mut dyn KvStore,
    id: &str,
    force: bool,
    transport: &mut T,
) -> Outgoing {
    let Call { config, app, seal, now, random } = call;
    leased(kv, id, now, random, |kv| {
        let mut r = match record::load(kv, id) {
            Ok(Some(r)) => r,
            Ok(None) => return not_found(id),
            Err(e) => return store_failed(&e),
        };
        if !r.revoked {
            let revoked = match r.open_tokens(seal) {
                Ok(tokens) => {
                    let req = RevokeRequest {
                        app: AppCredentials {
                            client_id: app.client_id.clone(),
                            client_secret: app.client_secret.clone(),
                        },
                        tokens,
                        now,
                        endpoints: app.endpoints.clone(),
                    };
                    match connect::revoke(&req, transport) {
                        Ok(()) => true,
                        Err(Error::ReauthRequired(_)) => false,
                        Err(e) => return error_response(&e, None),
                    }
                }
                // Unreadable tokens cannot be revoked, and nobody can use them either.
                Err(_) => false,
            };
            // From here on the datasource cannot sync; remember that it was revoked.
            r.revoked = revoked;
            r.reauth_required = true;
            r.tokens = String::new();
            if let Err(e) = record::save(kv, &r) {
                return store_failed(&e);
            }
        }
        // Without a sink nothing was ever handed to Coco (`/sync` needs one).
        if let Ok(sink) = &config.sink {
            // An unreadable index only costs the fallback's deletes by id.
            let ids = || index::all_ids(kv, id).unwrap_or_default();
            if let Err(f) = sink.remove(transport, id, ids) {
                if !force {
                    r.last_error = Some(f.message.clone());
                    let _ = record::save(kv, &r);
                    return sink_failed(&f);
                }
            }
        }
        if let Err(e) = forget(kv, id) {
            return store_failed(&e);
        }
        // The lease goes as `leased` gives it back.
        Outgoing::json(200, &serde_json::json!({ "id": id, "removed": true, "revoked": r.revoked }))
    })
}

fn sink_failed(f: &SinkFailure) -> Outgoing {
    let mut extra = serde_json::Map::new();
    extra.insert("retry_after_secs".into(), f.retry_after_secs.into());
    extra.insert("needs_operator".into(), f.needs_operator.into());
    let kind = Kind::SinkFailed;
    let mut out = Outgoing::json(kind.status(), &coco_web::envelope::body(kind, &f.message, extra));
    if let Some(s) = f.retry_after_secs {
        out.headers.push(("retry-after", s.max(1).to_string()));
    }
    out
}

/// The record first (the datasource is gone from the API at once), then its index.
fn forget(kv: &mut dyn KvStore, id: &str) -> Result<(), KvError> {
    kv.delete(&record::record_key(id))?;
    for key in kv.keys_with_prefix(&index::node_prefix(id))? {
        kv.delete(&key)?;
    }
    // Its lease too: the caller holds it, and a datasource that is gone needs none.
    lease::forget(kv, id)
}

/// `POST /sync/{id}`'s answer.
#[derive(Serialize, Debug, Default)]
struct Step {
    id: String,
    has_more: bool,
    /// Documents handed to Coco Server in this call.
    upserted: usize,
    deleted: usize,
    /// Always 0: a document Coco refuses fails the call and keeps the cursor (kept for
    /// clients of earlier versions, which counted refusals here and moved on).
    rejected: usize,
    /// The account's listing started over (cursor reset or a new root); call again.
    reset: bool,
    listing: bool,
    documents: u64,
    /// Wait at least this long before the next call (0: go on).
    wait_secs: u64,
}

/// `POST /sync/{id}`: one page, handed on, then the cursor.
pub fn sync<T: Transport>(
    call: Call<'_>,
    kv: &mut dyn KvStore,
    sink: &CocoSink,
    id: &str,
    transport: &mut T,
) -> Outgoing {
    leased(kv, id, call.now, call.random, |kv| {
        let mut r = match record::load(kv, id) {
            Ok(Some(r)) => r,
            Ok(None) => return not_found(id),
            Err(e) => return store_failed(&e),
        };
        let out = step(call, kv, sink, &mut r, transport);
        // Failed steps still keep what they learnt (refreshed tokens, the error, a reset).
        if let Err(e) = record::save(kv, &r) {
            return store_failed(&e);
        }
        out
    })
    .no_store()
}

fn step<T: Transport>(
    call: Call<'_>,
    kv: &mut dyn KvStore,
    sink: &CocoSink,
    r: &mut Record,
    transport: &mut T,
) -> Outgoing {
    let Call { config, app, seal, now, random } = call;
    let tokens = match r.open_tokens(seal) {
        Ok(t) => t,
        Err(e) => {
            r.reauth_required = true;
            return error_response(&Error::ReauthRequired(e.message()), None);
        }
    };
    let req = PageRequest {
        datasource_id: r.id.clone(),
        datasource_name: r.name.clone(),
        owner_id: None,
        app: AppCredentials { client_id: app.client_id.clone(), client_secret: app.client_secret.clone() },
        tokens,
        cursor: r.cursor.clone(),
        options: SyncOptions {
            path: String::new(),
            page_limit: config.page_limit,
            refresh_margin_secs: None,
            root_info: r.root_info.clone().map(Into::into),
            max_page_bytes: None,
            recursive: true,
        },
        batch_number: r.pages.to_string(),
        now,
        endpoints: app.endpoints.clone(),
    };
    let page = match page::sync_page(&req, transport) {
        Ok(page) => page,
        Err(f) => {
            if let Some(t) = &f.tokens {
                r.seal_tokens(seal, t, &random.seal_nonce);
            }
            return failed_step(r, f.error);
        }
    };
    if let Some(t) = &page.tokens {
        r.seal_tokens(seal, t, &random.seal_nonce);
    }
    let mut gone = Vec::new();
    let mut ix = PathIndex::new(kv, &r.id);
    let indexed = (|| {
        for path in &page.deletes {
            ix.delete_path(path, &mut gone)?;
        }
        for doc in page.documents.iter() {
            ix.upsert(doc.path_lower, doc.id, doc.file.is_none(), r.generation, &mut gone)?;
        }
        if r.listing && !page.has_more {
            ix.sweep(r.generation, &mut gone)?;
        }
        Ok::<_, KvError>(())
    })();
    if let Err(e) = indexed {
        r.last_error = Some(e.to_string());
        return store_failed(&e);
    }
    // A document moved within the page is upserted, not deleted.
    let upserted: std::collections::HashSet<&str> = page.documents.iter().map(|d| d.id).collect();
    gone.retain(|id| !upserted.contains(id.as_str()));
    gone.sort_unstable();
    gone.dedup();
    let target = Target { id: &r.id, name: &r.name, connector_id: &r.connector_id };
    let upserts: Vec<(&str, &str)> = page.documents.iter().map(|d| (d.id, d.json)).collect();
    // A refusal keeps the cursor where it is: the next call sends the same page again.
    if let Err(f) = sink.push(transport, &target, !r.coco_created, &gone, &upserts) {
        r.last_error = Some(f.message.clone());
        return sink_failed(&f);
    }
    let (added, removed) = (ix.added, ix.removed);
    if let Err(e) = ix.commit() {
        r.last_error = Some(e.to_string());
        return store_failed(&e);
    }
    if !page.documents.is_empty() {
        r.coco_created = true;
    }
    r.documents = (r.documents + added).saturating_sub(removed);
    r.cursor = Some(page.cursor.clone());
    r.pages += 1;
    r.last_sync_at = Some(now);
    r.reauth_required = false;
    r.last_error = None;
    if !page.has_more {
        r.listing = false;
    }
    Outgoing::json(
        200,
        &Step {
            id: r.id.clone(),
            has_more: page.has_more,
            upserted: page.documents.len(),
            deleted: gone.len(),
            rejected: 0,
            reset: false,
            listing: r.listing,
            documents: r.documents,
            wait_secs: if page.has_more { 0 } else { IDLE_WAIT_SECS },
        },
    )
}

/// A step that fetched no page: resets restart the listing (and answer 200, call again);
/// everything else is reported with the facade's usual status for that error.
fn failed_step(r: &mut Record, error: Error) -> Outgoing {
    match error {
        Error::CursorReset(_) | Error::RootChanged(_) => {
            if let Error::RootChanged(root) = &error {
                r.root_info = Some(RootJson::from(root.clone()));
            }
            start_relisting(r);
            r.last_error = None;
            Outgoing::json(
                200,
                &Step {
                    id: r.id.clone(),
                    has_more: true,
                    reset: true,
                    listing: true,
                    documents: r.documents,
                    ..Step::default()
                },
            )
        }
        e => {
            if matches!(e, Error::ReauthRequired(_)) {
                r.reauth_required = true;
            }
            r.last_error = Some(format!("{}: {}", e.kind(), e.message()));
            error_response(&e, None)
        }
    }
}

/// One scheduled tick (Spin's cron trigger): one `POST /sync/{id}` step for every datasource,
/// each with fresh randomness. The answers, by datasource id (status and body).
pub fn tick<T: Transport>(
    config: &FacadeConfig,
    kv: &mut dyn KvStore,
    transport: &mut T,
    now: u64,
    mut fresh: impl FnMut() -> Result<Randomness, String>,
) -> Result<Vec<(String, Outgoing)>, String> {
    // Each step loads its own record under the lease; the keys are enough here.
    let ids = record::ids(kv).map_err(|e| e.to_string())?;
    let (app, seal, sink) = match (&config.app, &config.seal, &config.sink) {
        (Ok(app), Ok(seal), Ok(sink)) => (app, seal, sink),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Err(format!("not configured: {}", e.message())),
    };
    let mut steps = Vec::with_capacity(ids.len());
    for id in ids {
        let random = fresh()?;
        let call = Call { config, app, seal, now, random: &random };
        steps.push((id.clone(), sync(call, kv, sink, &id, transport)));
    }
    Ok(steps)
}

#[cfg(test)]
mod tests;
