//! The document index: each page's deletes and upserts applied with its cursor in one
//! transaction, the end-of-listing sweep, and the reads (counts, export, entries).

use super::{ds_key, ds_of, log_lease, require_lease, Result, Store, StoreError, TokensRecord};
use crate::clock::now_unix_i64 as now_unix;
use crate::db::{args, Conn, ConnExt, DbError, Tx};

/// One page, as the host applies it.
pub struct PageApply<'a> {
    /// The cursor and generation the page was fetched with: the page is applied only if both
    /// are still current (a NULL cursor alone does not tell two listings apart).
    pub expected_cursor: Option<&'a str>,
    pub expected_generation: i64,
    pub deletes: &'a [String],
    pub documents: &'a crate::documents::Documents,
    pub cursor: &'a str,
    pub has_more: bool,
    pub tokens: Option<&'a TokensRecord>,
    /// The lease holder applying the page: it must still hold the lease (a replica whose
    /// lease expired and was taken over cannot land a page), and the last page
    /// (`has_more = false`) gives the lease back in the same transaction, so an idle re-sync
    /// writes once after taking its lease.
    pub lease: Option<&'a str>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub upserted: u64,
    pub deleted: u64,
    /// Documents removed by the end-of-listing sweep.
    pub swept: u64,
    /// Files queued for content (new or changed).
    pub content_queued: u64,
}

/// The index changed: its document count is taken again, once, when the run ends
/// ([`Store::document_total`]).
pub(crate) fn forget_document_total(conn: &dyn Conn, id: &str) -> Result<()> {
    conn.execute("UPDATE sync_state SET documents = NULL WHERE datasource_id = ?1", &args![id])?;
    Ok(())
}

/// Documents at `path` or under it.
pub(crate) fn under_path(conn: &dyn Conn, id: &str, path: &str) -> Result<Vec<String>> {
    Ok(conn.column(
        concat!(
            "SELECT doc_id FROM documents WHERE ds = ",
            ds_of!(),
            " AND path_lower = ?2
             UNION ALL
             SELECT doc_id FROM documents WHERE ds = ",
            ds_of!(),
            " AND path_lower >= ?2 || '/' AND path_lower < ?2 || '0'"
        ),
        &args![id, path],
    )?)
}

/// Documents a page's deletes reach that the same page upserts again (a move keeps a file's
/// id): their rows are updated in place rather than deleted and inserted.
pub(crate) fn moved_within(
    conn: &dyn Conn,
    id: &str,
    deletes: &[String],
    documents: &crate::documents::Documents,
) -> Result<std::collections::HashSet<String>> {
    if deletes.is_empty() || documents.is_empty() {
        return Ok(Default::default());
    }
    let upserted: std::collections::HashSet<&str> = documents.iter().map(|d| d.id).collect();
    let mut moved = std::collections::HashSet::new();
    for p in deletes {
        moved.extend(under_path(conn, id, p)?.into_iter().filter(|doc| upserted.contains(doc.as_str())));
    }
    Ok(moved)
}

impl Store {
    /// Apply one page atomically: deletes, then upserts, then the cursor (and tokens). When a
    /// full listing finishes, documents it did not see are swept.
    pub fn apply_page(&self, id: &str, page: &PageApply<'_>) -> Result<Applied> {
        Ok(self.apply_pages(id, std::slice::from_ref(page))?.pop().unwrap_or_default())
    }

    /// Consecutive pages of one run in ONE transaction (a listing's group commit): the first
    /// page's expected cursor and generation are checked, each page's changes applied in
    /// order, and the cursor moves to the last page's. Fewer, larger commits write each index
    /// leaf a page's random ids touch once per group instead of once per page. One
    /// [`Applied`] per page, in order (a sweep counts on the last).
    pub fn apply_pages(&self, id: &str, pages: &[PageApply<'_>]) -> Result<Vec<Applied>> {
        let (Some(first), Some(last)) = (pages.first(), pages.last()) else { return Ok(Vec::new()) };
        let conn = self.conn();
        let tx = Tx::begin(&**conn)?;
        tx.lock_datasource(id)?;
        let row = tx
            .query_opt("SELECT cursor, generation, listing FROM sync_state WHERE datasource_id = ?1", &args![id])?
            .ok_or_else(|| StoreError::NoDatasource(id.to_string()))?;
        let (cursor, generation, listing): (Option<String>, i64, bool) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let leased = require_lease(&tx, id, first.lease)?;
        if cursor.as_deref() != first.expected_cursor || generation != first.expected_generation {
            return Err(StoreError::CursorConflict);
        }
        // The pages must chain: each continues from the one before, and only the last may end.
        let chained = pages.windows(2).all(|w| {
            w[0].has_more && w[1].expected_cursor == Some(w[0].cursor) && w[1].expected_generation == generation
        });
        if !chained {
            return Err(StoreError::CursorConflict);
        }
        let mut applied = Vec::with_capacity(pages.len());
        for page in pages {
            applied.push(self.apply_changes(&tx, id, generation, page.deletes, page.documents)?);
        }
        let finished_listing = listing && !last.has_more;
        let mut swept = 0;
        if finished_listing {
            if self.outbox_on() {
                crate::state::outbox::record_sweep(&tx, id, generation)?;
            }
            swept = tx.execute(
                concat!("DELETE FROM documents WHERE ds = ", ds_of!(), " AND generation < ?2"),
                &args![id, generation],
            )?;
            if let Some(a) = applied.last_mut() {
                a.swept = swept;
            }
        }
        tx.execute(
            "UPDATE sync_state SET cursor = ?2, listing = ?3, pages = pages + ?6,
                 last_synced_at = CASE WHEN ?4 = 1 THEN ?5 ELSE last_synced_at END
             WHERE datasource_id = ?1",
            &args![id, last.cursor, listing && last.has_more, !last.has_more, now_unix(), pages.len() as i64],
        )?;
        // The newest tokens any of the pages refreshed.
        if let Some(t) = pages.iter().rev().find_map(|p| p.tokens) {
            self.write_tokens(&tx, id, t)?;
        }
        if swept > 0 {
            forget_document_total(&tx, id)?;
        }
        if let Some(holder) = leased {
            log_lease(&tx, id, holder, if last.has_more { "page" } else { "released" }, None)?;
            if !last.has_more {
                tx.execute("DELETE FROM sync_leases WHERE datasource_id = ?1 AND holder = ?2", &args![id, holder])?;
            }
        }
        tx.commit()?;
        Ok(applied)
    }

    /// Documents in the datasource's index: the count kept since the last change, or counted
    /// (and kept) now. An idle re-sync reads one row instead of counting a large index.
    pub fn document_total(&self, id: &str) -> Result<u64> {
        let kept: Option<Option<i64>> =
            self.conn().value_opt("SELECT documents FROM sync_state WHERE datasource_id = ?1", &args![id])?;
        if let Some(Some(n)) = kept {
            return Ok(n as u64);
        }
        let conn = self.conn();
        let tx = Tx::begin(&**conn)?;
        tx.lock_datasource(id)?;
        let n: i64 = tx.value(concat!("SELECT COUNT(*) FROM documents WHERE ds = ", ds_of!()), &args![id])?;
        tx.execute("UPDATE sync_state SET documents = ?2 WHERE datasource_id = ?1", &args![id, n])?;
        tx.commit()?;
        Ok(n as u64)
    }

    /// A page's deletes, then its upserts stamped with `generation`, with their outbox records
    /// and content decisions, inside the caller's transaction.
    pub(crate) fn apply_changes(
        &self,
        tx: &dyn Conn,
        id: &str,
        generation: i64,
        deletes: &[String],
        documents: &crate::documents::Documents,
    ) -> Result<Applied> {
        let mut applied = Applied::default();
        let outbox = self.outbox_on();
        // A file moved within the page (deleted at its old path, upserted again under its id)
        // keeps its row, and with it what was extracted: it is not deleted, only updated.
        let moved = moved_within(tx, id, deletes, documents)?;
        for p in deletes {
            if outbox {
                crate::state::outbox::record_subtree(tx, id, p, crate::state::outbox::Op::Delete)?;
            }
            if moved.is_empty() {
                // Two statements, each served by the (ds, path_lower) index: an `OR`
                // of the two would make SQLite scan the whole datasource for every delete.
                applied.deleted += tx.execute(
                    concat!("DELETE FROM documents WHERE ds = ", ds_of!(), " AND path_lower = ?2"),
                    &args![id, p],
                )?;
                applied.deleted += tx.execute(
                    concat!(
                        "DELETE FROM documents WHERE ds = ",
                        ds_of!(),
                        " AND path_lower >= ?2 || '/' AND path_lower < ?2 || '0'"
                    ),
                    &args![id, p],
                )?;
            } else {
                let ds = ds_key(tx, id)?;
                let gone: Vec<Vec<crate::db::Value>> = under_path(tx, id, p)?
                    .into_iter()
                    .filter(|doc| !moved.contains(doc))
                    .map(|doc| args![ds, doc].to_vec())
                    .collect();
                applied.deleted += tx.execute_many("DELETE FROM documents WHERE ds = ?1 AND doc_id = ?2", gone)?;
            }
        }
        // Counted as the delete and the upsert the page made of them.
        applied.deleted += moved.len() as u64;
        let settings = match documents.iter().any(|d| d.file.is_some()) {
            true => Some(crate::state::content::settings_in(tx, id)?).filter(|s| s.enabled),
            false => None,
        };
        let ds = match documents.is_empty() {
            true => 0,
            false => ds_key(tx, id)?,
        };
        let plain: Vec<Vec<crate::db::Value>> = documents
            .iter()
            .filter(|d| d.file.is_none() || settings.is_none())
            .map(|d| args![ds, d.id, d.path_lower, d.rev, generation, d.json].to_vec())
            .collect();
        applied.upserted = tx.execute_many(
            "INSERT INTO documents (ds, doc_id, path_lower, rev, generation, json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(ds, doc_id) DO UPDATE SET
                 path_lower = excluded.path_lower, rev = excluded.rev,
                 generation = excluded.generation, json = excluded.json",
            plain,
        )?;
        if let Some(settings) = &settings {
            let (upserted, queued) =
                crate::state::content::upsert_files(tx, ds, generation, documents.iter(), settings)?;
            applied.upserted += upserted;
            applied.content_queued = queued;
        }
        if outbox {
            crate::state::outbox::record_many(
                tx,
                id,
                documents.iter().map(|d| d.id),
                crate::state::outbox::Op::Upsert,
            )?;
        }
        if applied.upserted + applied.deleted > 0 {
            forget_document_total(tx, id)?;
        }
        Ok(applied)
    }

    pub fn document_count(&self, id: &str) -> Result<u64> {
        let count = concat!("SELECT COUNT(*) FROM documents WHERE ds = ", ds_of!());
        Ok(self.conn().value::<i64>(count, &args![id])?.max(0) as u64)
    }

    /// Stream every indexed document's JSON (with its extracted content), in path order,
    /// without loading them all.
    pub fn for_each_document(&self, id: &str, mut f: impl FnMut(&str, &str) -> std::io::Result<()>) -> Result<u64> {
        use crate::state::attached::{merge, Attached, ATTACHED_COLUMNS};
        let conn = self.conn();
        let mut n = 0;
        let mut failed: Option<StoreError> = None;
        let sql = format!(
            "SELECT d.doc_id, d.json, {ATTACHED_COLUMNS} FROM documents d
             WHERE d.ds = {ds} ORDER BY d.path_lower",
            ds = ds_of!()
        );
        let walked = conn.for_each(&sql, &args![id], &mut |r| {
            let doc_id: String = r.get(0)?;
            let json: String = r.get(1)?;
            let json = merge(&json, &Attached::from_row(r, 2)?);
            if let Err(e) = f(&doc_id, &json) {
                failed = Some(StoreError::Corrupt { what: "output", why: e.to_string() });
                return Err(DbError::NoRow);
            }
            n += 1;
            Ok(())
        });
        if let Some(e) = failed {
            return Err(e);
        }
        walked?;
        Ok(n)
    }

    /// Documents per datasource, in one pass over the index.
    pub fn document_counts(&self) -> Result<std::collections::HashMap<String, u64>> {
        let rows = self.conn().query(
            "SELECT k.id, COUNT(*) FROM documents d JOIN datasource_keys k ON k.ds = d.ds GROUP BY k.ds, k.id",
            &[],
        )?;
        rows.iter().map(|r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?.max(0) as u64))).collect()
    }

    /// (doc id, path_lower) of every indexed document.
    pub fn index_entries(&self, id: &str) -> Result<Vec<(String, String)>> {
        let rows =
            self.conn().query(concat!("SELECT doc_id, path_lower FROM documents WHERE ds = ", ds_of!()), &args![id])?;
        rows.iter().map(|r| Ok((r.get(0)?, r.get(1)?))).collect()
    }
}
