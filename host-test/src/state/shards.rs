//! Parallel initial listing: the account's cursor first (`get_latest_cursor`), then subtrees
//! listed as independent shards, each with its own cursor, then the sync continues from that
//! first cursor so every change made during the listing is replayed in order.
//!
//! A shard is a folder listed either `recursive` (a whole subtree: a walk) or not (its direct
//! children: an expansion, whose child folders become shards in the same transaction as the
//! page that listed them). Expanding the root, and its children while there are too few
//! shards, splits an account whose data sits under one or two top-level folders. Everything
//! lives in the store, so a crash resumes each shard from its last committed page.
//!
//! Accounts are skewed: one folder often holds half the files, and a walk cannot be split once
//! it has a cursor. So a walk whose first page says `has_more` (a big subtree) is split: its
//! page is applied, and the walk is replaced by an expansion of the same folder, whose child
//! folders become walks of their own. Entries of that first page are listed again by the new
//! shards (upserts, so idempotent), and anything that changed in between is replayed from the
//! base cursor like every other change made during the listing.

use crate::db::{args, Conn, ConnExt, Tx, Value};

use super::{Applied, Result, Store, StoreError, TokensRecord};

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS listing_plans (
    datasource_id TEXT PRIMARY KEY REFERENCES datasources(id) ON DELETE CASCADE,
    generation INTEGER NOT NULL,
    base_cursor TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS listing_shards (
    datasource_id TEXT NOT NULL REFERENCES listing_plans(datasource_id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    recursive INTEGER NOT NULL,
    depth INTEGER NOT NULL,
    cursor TEXT,
    done INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (datasource_id, path, recursive)
);
"#;

/// Expansions go this deep at most (0 = the configured folder, 1 = its children).
const MAX_EXPAND_DEPTH: u32 = 2;
/// Keep expanding while there are fewer than this many shards per listing in flight.
const SHARDS_PER_SLOT: usize = 4;
/// Big walks are split down to this depth at most (the root's children are at depth 1).
const MAX_SPLIT_DEPTH: u32 = 4;
/// Split big walks while there are fewer than this many shards per listing in flight: each
/// split costs an extra request or two, and a few dozen shards per slot keep every slot busy.
const SPLIT_SHARDS_PER_SLOT: usize = 16;

/// One shard still to list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    /// The folder, as list_folder takes it ("" = the account root).
    pub path: String,
    /// A walk (the whole subtree) or an expansion (direct children).
    pub recursive: bool,
    pub depth: u32,
    /// None: the shard's listing has not started.
    pub cursor: Option<String>,
}

impl Shard {
    /// A walk's first page: the only page whose outcome may replace the shard (a walk that
    /// says `has_more` may be split into an expansion of its folder).
    pub fn may_split(&self) -> bool {
        self.recursive && self.cursor.is_none()
    }
}

/// A parallel listing in progress: its base cursor and the shards not finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub base_cursor: String,
    pub pending: Vec<Shard>,
}

/// One shard page to apply.
pub struct ShardPage<'a> {
    pub generation: i64,
    pub shard: &'a Shard,
    pub deletes: &'a [String],
    pub documents: &'a crate::documents::Documents,
    pub cursor: &'a str,
    pub has_more: bool,
    pub tokens: Option<&'a TokensRecord>,
    /// Listings in flight at once: how many shards are worth having.
    pub parallelism: usize,
}

/// What applying a shard page did.
#[derive(Debug, Default)]
pub struct ShardApplied {
    pub applied: Applied,
    /// New shards found (child folders of an expansion).
    pub new_shards: u64,
    /// The last shard finished: the sync continues from the base cursor.
    pub finished: bool,
    /// The page was a big walk's first: the walk ended and this expansion of the same
    /// folder replaces it (the caller lists it next instead of continuing the walk).
    pub split_into: Option<Shard>,
}

/// The folder `path_lower` sits in ("" for a top-level entry).
fn parent_of(path_lower: &str) -> &str {
    path_lower.rsplit_once('/').map_or("", |(parent, _)| parent)
}

/// Whether the children of an expansion at `depth` are expanded too (pure).
pub fn expand_children(depth: u32, known_shards: usize, children: usize, parallelism: usize) -> bool {
    depth + 1 < MAX_EXPAND_DEPTH && known_shards + children < parallelism * SHARDS_PER_SLOT
}

/// Whether a walk at `depth` whose first page had more to come is split into an expansion of
/// its folder (pure). Sequential listings never split: there is nothing to overlap.
pub fn split_walk(depth: u32, known_shards: usize, parallelism: usize) -> bool {
    parallelism > 1 && depth < MAX_SPLIT_DEPTH && known_shards < parallelism * SPLIT_SHARDS_PER_SLOT
}

impl Store {
    /// The parallel listing of this generation, if one is in progress. A plan left from an
    /// older generation is ignored (and replaced when a new one starts).
    pub fn listing_plan(&self, id: &str, generation: i64) -> Result<Option<Plan>> {
        let conn = self.conn();
        let base: Option<String> = conn.value_opt(
            "SELECT base_cursor FROM listing_plans WHERE datasource_id = ?1 AND generation = ?2",
            &args![id, generation],
        )?;
        let Some(base_cursor) = base else { return Ok(None) };
        let rows = conn.query(
            "SELECT path, recursive, depth, cursor FROM listing_shards
             WHERE datasource_id = ?1 AND done = 0 ORDER BY depth, recursive, path",
            &args![id],
        )?;
        let pending = rows
            .iter()
            .map(|r| Ok(Shard { path: r.get(0)?, recursive: r.get(1)?, depth: r.get(2)?, cursor: r.get(3)? }))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Plan { base_cursor, pending }))
    }

    /// Start a parallel listing of `root` at `base_cursor`, unless the initial listing of
    /// `generation` has moved on meanwhile ([`StoreError::CursorConflict`]).
    pub fn start_listing_plan(
        &self,
        id: &str,
        generation: i64,
        base_cursor: &str,
        root: &str,
        tokens: Option<&TokensRecord>,
    ) -> Result<()> {
        let conn = self.conn();
        let tx = Tx::begin(&**conn)?;
        tx.lock_datasource(id)?;
        let fresh: bool = tx
            .value_opt(
                "SELECT CASE WHEN cursor IS NULL AND listing = 1 AND generation = ?2 THEN 1 ELSE 0 END
                 FROM sync_state WHERE datasource_id = ?1",
                &args![id, generation],
            )?
            .ok_or_else(|| StoreError::NoDatasource(id.to_string()))?;
        if !fresh {
            return Err(StoreError::CursorConflict);
        }
        tx.execute("DELETE FROM listing_plans WHERE datasource_id = ?1", &args![id])?;
        tx.execute(
            "INSERT INTO listing_plans (datasource_id, generation, base_cursor) VALUES (?1, ?2, ?3)",
            &args![id, generation, base_cursor],
        )?;
        tx.execute(
            "INSERT INTO listing_shards (datasource_id, path, recursive, depth) VALUES (?1, ?2, 0, 0)",
            &args![id, root],
        )?;
        if let Some(t) = tokens {
            self.write_tokens(&tx, id, t)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Apply one shard page atomically: its changes, its new child shards, its cursor, and,
    /// when it was the last shard, the hand-over to the base cursor.
    pub fn apply_shard_page(&self, id: &str, page: &ShardPage<'_>) -> Result<ShardApplied> {
        let mut applied = self.apply_shard_pages(id, std::slice::from_ref(page), None)?;
        Ok(applied.pop().unwrap_or_default())
    }

    /// Apply pages of different shards in one transaction, each as [`Store::apply_shard_page`]
    /// would: one commit for the pages that returned while the last group was applied, so a
    /// busy listing writes each index page once per group instead of once per page. All land or
    /// none does: a page whose shard moved on (the listing restarted) fails the group with
    /// [`StoreError::CursorConflict`]. With `lease`, the group lands only while that holder has
    /// the datasource's lease (if any lease is held), and is written to the lease log.
    pub fn apply_shard_pages(
        &self,
        id: &str,
        pages: &[ShardPage<'_>],
        lease: Option<&str>,
    ) -> Result<Vec<ShardApplied>> {
        if pages.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.conn();
        let tx = Tx::begin(&**conn)?;
        tx.lock_datasource(id)?;
        let leased = super::require_lease(&tx, id, lease)?;
        let mut out = Vec::with_capacity(pages.len());
        for page in pages {
            out.push(self.apply_one_shard_page(&tx, id, page)?);
        }
        tx.execute(
            "UPDATE sync_state SET pages = pages + ?2 WHERE datasource_id = ?1",
            &args![id, pages.len() as i64],
        )?;
        // The newest tokens any of the pages refreshed.
        if let Some(t) = pages.iter().rev().find_map(|p| p.tokens) {
            self.write_tokens(&tx, id, t)?;
        }
        if let Some(holder) = leased {
            super::log_lease(&tx, id, holder, "page", None)?;
        }
        tx.commit()?;
        Ok(out)
    }

    /// One shard page inside the caller's transaction.
    fn apply_one_shard_page(&self, tx: &dyn Conn, id: &str, page: &ShardPage<'_>) -> Result<ShardApplied> {
        let shard = page.shard;
        let current: Option<(Option<String>, bool)> = tx
            .query_opt(
                "SELECT s.cursor, s.done FROM listing_shards s
                   JOIN listing_plans p ON p.datasource_id = s.datasource_id
                   JOIN sync_state st ON st.datasource_id = s.datasource_id
                 WHERE s.datasource_id = ?1 AND s.path = ?2 AND s.recursive = ?3
                   AND p.generation = ?4 AND st.generation = ?4 AND st.cursor IS NULL",
                &args![id, shard.path, shard.recursive, page.generation],
            )?
            .map(|r| Ok::<_, StoreError>((r.get(0)?, r.get(1)?)))
            .transpose()?;
        if current != Some((shard.cursor.clone(), false)) {
            return Err(StoreError::CursorConflict);
        }
        let mut out = ShardApplied {
            applied: self.apply_changes(tx, id, page.generation, page.deletes, page.documents)?,
            ..Default::default()
        };
        if !shard.recursive {
            let folder = shard.path.to_lowercase();
            let children: Vec<&str> = page
                .documents
                .iter()
                .filter(|d| d.file.is_none() && d.path_lower != folder && parent_of(d.path_lower) == folder)
                .map(|d| d.path_lower)
                .collect();
            if !children.is_empty() {
                let known: i64 =
                    tx.value("SELECT COUNT(*) FROM listing_shards WHERE datasource_id = ?1", &args![id])?;
                let expand = expand_children(shard.depth, known as usize, children.len(), page.parallelism);
                let rows: Vec<Vec<Value>> =
                    children.iter().map(|child| args![id, child, !expand, shard.depth + 1].to_vec()).collect();
                out.new_shards += tx.execute_many(
                    "INSERT INTO listing_shards (datasource_id, path, recursive, depth) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT DO NOTHING",
                    rows,
                )?;
            }
        }
        let split = shard.may_split() && page.has_more && {
            let known: i64 = tx.value("SELECT COUNT(*) FROM listing_shards WHERE datasource_id = ?1", &args![id])?;
            split_walk(shard.depth, known as usize, page.parallelism)
        };
        if split {
            let expansion = Shard { recursive: false, cursor: None, ..shard.clone() };
            out.new_shards += tx.execute(
                "INSERT INTO listing_shards (datasource_id, path, recursive, depth) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING",
                &args![id, expansion.path, false, expansion.depth],
            )?;
            tx.execute(
                "UPDATE listing_shards SET done = 1 WHERE datasource_id = ?1 AND path = ?2 AND recursive = ?3",
                &args![id, shard.path, true],
            )?;
            out.split_into = Some(expansion);
        } else {
            tx.execute(
                "UPDATE listing_shards SET cursor = ?4, done = ?5 WHERE datasource_id = ?1 AND path = ?2 AND recursive = ?3",
                &args![id, shard.path, shard.recursive, page.cursor, !page.has_more],
            )?;
        }
        out.finished = hand_over_if_done(tx, id)?;
        Ok(out)
    }

    /// A shard whose folder is gone (its deletion arrives with the replay) is finished;
    /// one whose cursor was reset starts over. Either way nothing else changes.
    pub fn settle_shard(&self, id: &str, generation: i64, shard: &Shard, gone: bool) -> Result<()> {
        let conn = self.conn();
        let tx = Tx::begin(&**conn)?;
        tx.lock_datasource(id)?;
        let plan: Option<i64> =
            tx.value_opt("SELECT generation FROM listing_plans WHERE datasource_id = ?1", &args![id])?;
        if plan != Some(generation) {
            return Err(StoreError::CursorConflict);
        }
        let sql = if gone {
            "UPDATE listing_shards SET done = 1 WHERE datasource_id = ?1 AND path = ?2 AND recursive = ?3"
        } else {
            "UPDATE listing_shards SET cursor = NULL WHERE datasource_id = ?1 AND path = ?2 AND recursive = ?3"
        };
        tx.execute(sql, &args![id, shard.path, shard.recursive])?;
        hand_over_if_done(&tx, id)?;
        tx.commit()?;
        Ok(())
    }
}

/// When no shard is left, every subtree is listed: the sync continues from the base cursor,
/// which replays what changed since it was taken; the listing (and its sweep) ends with that
/// replay. True when this handed over.
fn hand_over_if_done(tx: &dyn Conn, id: &str) -> Result<bool> {
    let pending: i64 =
        tx.value("SELECT COUNT(*) FROM listing_shards WHERE datasource_id = ?1 AND done = 0", &args![id])?;
    if pending > 0 {
        return Ok(false);
    }
    tx.execute(
        "UPDATE sync_state SET cursor = (SELECT base_cursor FROM listing_plans WHERE datasource_id = ?1)
         WHERE datasource_id = ?1",
        &args![id],
    )?;
    tx.execute("DELETE FROM listing_plans WHERE datasource_id = ?1", &args![id])?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents() {
        assert_eq!(parent_of("/a"), "");
        assert_eq!(parent_of("/a/b"), "/a");
        assert_eq!(parent_of("/a/b c/d"), "/a/b c");
    }

    #[test]
    fn expansion_stops_at_depth_or_enough_shards() {
        assert!(expand_children(0, 1, 10, 8), "the root's children, too few shards");
        assert!(!expand_children(1, 1, 10, 8), "depth 2 is always walked");
        assert!(!expand_children(0, 1, 40, 8), "40 top-level folders are enough for 8 in flight");
        assert!(!expand_children(0, 1, 3, 1), "sequential: walk at once");
    }

    #[test]
    fn big_walks_split_until_deep_or_enough_shards() {
        assert!(split_walk(2, 40, 8), "a depth-2 walk with room for more shards");
        assert!(!split_walk(MAX_SPLIT_DEPTH, 40, 8), "too deep");
        assert!(!split_walk(2, 8 * SPLIT_SHARDS_PER_SLOT, 8), "enough shards");
        assert!(!split_walk(1, 1, 1), "sequential listings never split");
    }
}
