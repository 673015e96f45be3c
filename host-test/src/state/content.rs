//! File content, host side: which files to fetch (decided when a page is applied, in the same
//! transaction), the queue in the store, each outcome's bookkeeping, and how a document's
//! extracted text joins its JSON. The component does the fetching and parsing.
//!
//! A file is fetched when it is new or its bytes changed (`content_hash`, else `rev`) or its
//! type did; a rename or move keeps what was extracted. A skipped or failed file waits for its
//! next change. Transient failures back off and give up after [`MAX_ATTEMPTS`].

use crate::db::{args, Conn, ConnExt, Tx, Value};
use serde::{Deserialize, Serialize};

use super::{ds_of, Result, Store, StoreError};

/// Transient failures before a file is marked failed (until it changes).
pub const MAX_ATTEMPTS: i64 = 5;
/// Defaults, as the component's.
pub const DEFAULT_MAX_DOWNLOAD_BYTES: u64 = 10 << 20;
pub const DEFAULT_MAX_TEXT_BYTES: u32 = 1 << 20;

/// A file's content state lives on its `documents` row (columns `content_*`, NULL state: no
/// decision yet): a listed file writes one row under one random key instead of two, and the
/// row's removal (a delete, the sweep) takes its content with it.
pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS content_settings (
    datasource_id TEXT PRIMARY KEY REFERENCES datasources(id) ON DELETE CASCADE,
    enabled INTEGER NOT NULL DEFAULT 1,
    max_download_bytes INTEGER,
    max_text_bytes INTEGER,
    formats TEXT
);
"#;

/// `content_state`'s declaration. Comparisons joined by OR, not `IN (…)`: SQLite checks an
/// `IN` list of more than two values through a temporary b-tree that it builds and drops on
/// every row written, which cost 8 % of a 1M-entry listing's host CPU (`bench/JOURNAL.md`).
/// Same meaning, NULL included (NULL passes either form).
pub(crate) const CONTENT_STATE_DECL: &str = "TEXT CHECK (content_state = 'pending' OR content_state = 'done' \
     OR content_state = 'skipped' OR content_state = 'failed')";

/// What [`CONTENT_STATE_DECL`] replaces in state files written before it.
pub(crate) const CONTENT_STATE_DECL_BEFORE: &str =
    "TEXT CHECK (content_state IN ('pending', 'done', 'skipped', 'failed'))";

/// The content columns of `documents` in SQLite, in order; the text comes last so reading the
/// others does not walk its overflow pages.
const SQLITE_COLUMNS: &[(&str, &str)] = &[
    ("content_state", CONTENT_STATE_DECL),
    ("content_file_id", "TEXT"),
    ("content_name", "TEXT"),
    ("content_hash", "TEXT"),
    ("content_size", "INTEGER"),
    ("content_downloadable", "INTEGER"),
    ("content_export_json", "TEXT"),
    ("content_kind", "TEXT"),
    ("content_reason", "TEXT"),
    ("content_detail", "TEXT"),
    ("content_format", "TEXT"),
    ("content_truncated", "INTEGER NOT NULL DEFAULT 0"),
    ("content_bytes", "INTEGER NOT NULL DEFAULT 0"),
    ("content_attempts", "INTEGER NOT NULL DEFAULT 0"),
    ("content_not_before", "INTEGER NOT NULL DEFAULT 0"),
    ("content_claimed_until", "INTEGER NOT NULL DEFAULT 0"),
    ("content_updated_at", "INTEGER"),
    ("content_text", "TEXT"),
];

/// The queue (pending files by due time) and the per-state counts, both read from indexes.
/// New rows land at the end of a few `(state, reason)` runs, so a listing's inserts stay local.
pub const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS documents_content_queue ON documents(ds, content_not_before)
    WHERE content_state = 'pending';
CREATE INDEX IF NOT EXISTS documents_content_counts
    ON documents(ds, content_state, content_reason, content_bytes) WHERE content_state IS NOT NULL;
";

/// Bring an older SQLite state file's `documents` up to the content columns, and move the rows
/// of the separate `content` table older releases kept into them (within the open's write
/// transaction; the old table goes). A fresh file has them already ([`sqlite_column_defs`]).
pub(crate) fn migrate_sqlite(conn: &rusqlite::Connection) -> Result<()> {
    let Some((missing, old_table)) = sqlite_migration_due(conn)? else { return Ok(()) };
    for (name, decl) in missing {
        conn.execute_batch(&format!("ALTER TABLE documents ADD COLUMN {name} {decl};"))?;
    }
    if old_table {
        conn.execute_batch(&format!("{COPY_OLD_TABLE}; DROP TABLE content;"))?;
    }
    Ok(())
}

/// A state file written before [`CONTENT_STATE_DECL`] gets its `content_state` check in the
/// new form. The two accept the same values, so no row is read or rewritten: only the table's
/// declaration changes, by SQLite's documented procedure for changing a CHECK constraint
/// (`writable_schema`, then a new `schema_version`), inside the caller's transaction.
pub(crate) fn migrate_sqlite_state_check(conn: &rusqlite::Connection) -> Result<()> {
    use rusqlite::OptionalExtension;
    let sql: Option<String> = conn
        .query_row("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'documents'", [], |r| r.get(0))
        .optional()?;
    let Some(sql) = sql.filter(|s| s.contains(CONTENT_STATE_DECL_BEFORE)) else { return Ok(()) };
    let version: i64 = conn.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA writable_schema = ON;")?;
    let rewritten = conn.execute(
        "UPDATE sqlite_master SET sql = ?1 WHERE type = 'table' AND name = 'documents'",
        [sql.replace(CONTENT_STATE_DECL_BEFORE, CONTENT_STATE_DECL)],
    );
    let bumped = conn.execute_batch(&format!("PRAGMA schema_version = {};", version + 1));
    conn.execute_batch("PRAGMA writable_schema = OFF;")?;
    rewritten?;
    bumped?;
    Ok(())
}

/// The content columns `documents` lacks and whether the old `content` table is there; None
/// when there is nothing to do.
type MigrationDue = Option<(Vec<&'static (&'static str, &'static str)>, bool)>;

fn sqlite_migration_due(conn: &rusqlite::Connection) -> Result<MigrationDue> {
    let have: std::collections::HashSet<String> = conn
        .prepare("SELECT name FROM pragma_table_info('documents')")?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<_>>()?;
    let old_table: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'content')",
        [],
        |r| r.get(0),
    )?;
    let missing: Vec<_> = SQLITE_COLUMNS.iter().filter(|(name, _)| !have.contains(*name)).collect();
    Ok((!missing.is_empty() || old_table).then_some((missing, old_table)))
}

/// The content columns' names, in order.
pub(crate) fn column_names() -> impl Iterator<Item = &'static str> {
    SQLITE_COLUMNS.iter().map(|(name, _)| *name)
}

/// The content columns as a fresh `CREATE TABLE documents` declares them.
pub(crate) fn sqlite_column_defs() -> String {
    SQLITE_COLUMNS.iter().map(|(name, decl)| format!("    {name} {decl},\n")).collect()
}

/// Old `content` rows onto their documents (both stores' migrations). A row whose document
/// is gone had nothing to attach to and goes with the table.
pub(crate) const COPY_OLD_TABLE: &str = "UPDATE documents SET
    content_state = c.state, content_file_id = c.file_id, content_name = c.name,
    content_hash = c.content_hash, content_size = c.size, content_downloadable = c.downloadable,
    content_export_json = c.export_json, content_kind = c.kind, content_reason = c.reason,
    content_detail = c.detail, content_format = c.format, content_truncated = c.truncated,
    content_bytes = c.bytes, content_attempts = c.attempts, content_not_before = c.not_before,
    content_claimed_until = c.claimed_until, content_updated_at = c.updated_at, content_text = c.text
    FROM content c WHERE c.datasource_id = documents.datasource_id AND c.doc_id = documents.doc_id";

/// Forget a datasource's decisions and texts.
fn clear(tx: &dyn Conn, id: &str) -> Result<()> {
    tx.execute(
        concat!(
            "UPDATE documents SET content_state = NULL, content_file_id = NULL, content_name = NULL,
                 content_hash = NULL, content_size = NULL, content_downloadable = NULL, content_export_json = NULL,
                 content_kind = NULL, content_reason = NULL, content_detail = NULL, content_format = NULL,
                 content_truncated = 0, content_bytes = 0, content_attempts = 0, content_not_before = 0,
                 content_claimed_until = 0, content_updated_at = NULL, content_text = NULL
             WHERE ds = ",
            ds_of!(),
            " AND content_state IS NOT NULL"
        ),
        &args![id],
    )?;
    Ok(())
}

/// A datasource's content settings (absent row: the defaults, content on).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentSettings {
    pub enabled: bool,
    pub max_download_bytes: u64,
    pub max_text_bytes: u32,
    /// Format names to extract (`content_formats` in connector-info.json); None: all.
    pub formats: Option<Vec<String>>,
}

impl Default for ContentSettings {
    fn default() -> Self {
        ContentSettings {
            enabled: true,
            max_download_bytes: DEFAULT_MAX_DOWNLOAD_BYTES,
            max_text_bytes: DEFAULT_MAX_TEXT_BYTES,
            formats: None,
        }
    }
}

impl ContentSettings {
    /// Refuse what the component would refuse, before it is stored.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.max_download_bytes == 0 || self.max_download_bytes > 1 << 30 {
            return Err("max_download_bytes must be within 1..=1 GiB".into());
        }
        if self.max_text_bytes == 0 || self.max_text_bytes > 64 << 20 {
            return Err("max_text_bytes must be within 1..=64 MiB".into());
        }
        let known = &crate::info::connector_info().content_formats;
        if let Some(bad) = self.formats.iter().flatten().find(|f| !known.contains_key(f.as_str())) {
            return Err(format!(
                "unknown format {bad:?} (known: {})",
                known.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(())
    }
}

/// What to do with a listed file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Queue it; `kind` is the format it will be read as ("export" for Paper/Google files).
    Fetch { kind: String },
    /// Decided without a download.
    Skip { kind: String, reason: &'static str, detail: String },
}

/// The decision the listing alone allows (the component checks the same again).
pub fn decide(path_lower: &str, file: &crate::documents::FileFacts<'_>, s: &ContentSettings) -> Decision {
    if !file.downloadable {
        return Decision::Fetch { kind: "export".into() };
    }
    let Some(format) = crate::info::connector_info().content_format(path_lower) else {
        let ext = path_lower.rsplit('/').next().and_then(|b| b.rsplit_once('.')).map(|(_, e)| e).unwrap_or("");
        return Decision::Skip {
            kind: "unsupported".into(),
            reason: "unsupported",
            detail: if ext.is_empty() {
                "a file without an extension is not a format we extract".into()
            } else {
                format!(".{ext} files are not a format we extract")
            },
        };
    };
    if let Some(allowed) = &s.formats {
        if !allowed.iter().any(|f| f == format) {
            return Decision::Skip {
                kind: format.into(),
                reason: "unsupported",
                detail: format!("{format} is not on this datasource's content allow-list"),
            };
        }
    }
    if file.size > s.max_download_bytes {
        return Decision::Skip {
            kind: format.into(),
            reason: "too_large",
            detail: format!("{} bytes is over the {}-byte download cap", file.size, s.max_download_bytes),
        };
    }
    Decision::Fetch { kind: format.into() }
}

use crate::clock::now_unix_i64 as now_unix;

pub(crate) fn settings_in(conn: &dyn Conn, id: &str) -> Result<ContentSettings> {
    let row = conn.query_opt(
        "SELECT enabled, max_download_bytes, max_text_bytes, formats FROM content_settings WHERE datasource_id = ?1",
        &args![id],
    )?;
    let Some(row) = row else { return Ok(ContentSettings::default()) };
    let (enabled, download, text, formats): (bool, Option<i64>, Option<i64>, Option<String>) =
        (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
    let d = ContentSettings::default();
    Ok(ContentSettings {
        enabled,
        max_download_bytes: download.map_or(d.max_download_bytes, |v| v.max(1) as u64),
        max_text_bytes: text.map_or(d.max_text_bytes, |v| v.clamp(1, i64::from(u32::MAX)) as u32),
        formats: formats
            .map(|f| serde_json::from_str(&f))
            .transpose()
            .map_err(|e| StoreError::Corrupt { what: "content formats", why: e.to_string() })?,
    })
}

/// The documents upsert for the files of `docs` while content is on: each row's content
/// decision is written with it, in the page's transaction. Same bytes (by hash, else by
/// revision) read the same way keep their outcome and text; anything else starts over.
/// `ds`: the datasource's key ([`super::ds_key`]). Returns (upserted, queued).
pub(crate) fn upsert_files<'a>(
    tx: &dyn Conn,
    ds: i64,
    generation: i64,
    docs: impl Iterator<Item = crate::documents::DocRef<'a>>,
    s: &ContentSettings,
) -> Result<(u64, u64)> {
    let now = now_unix();
    let mut queued = 0;
    let mut rows: Vec<Vec<Value>> = Vec::new();
    for d in docs {
        let Some(f) = &d.file else { continue };
        let name = d.path_lower.rsplit('/').next().unwrap_or(d.path_lower);
        let (kind, state, reason, detail) = match decide(d.path_lower, f, s) {
            Decision::Fetch { kind } => {
                queued += 1;
                (kind, "pending", None, None)
            }
            Decision::Skip { kind, reason, detail } => (kind, "skipped", Some(reason), Some(detail)),
        };
        let export = (!f.downloadable)
            .then(|| serde_json::json!({ "as": f.export_as, "options": f.export_options }).to_string());
        rows.push(
            args![
                ds,
                d.id,
                d.path_lower,
                d.rev,
                generation,
                d.json,
                f.file_id,
                name,
                f.content_hash,
                f.size as i64,
                f.downloadable,
                export,
                kind,
                state,
                reason,
                detail,
                now
            ]
            .to_vec(),
        );
    }
    let upserted = tx.execute_many(&UPSERT_FILES, rows)?;
    Ok((upserted, queued))
}

/// See [`upsert_files`].
static UPSERT_FILES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    // In SET, bare and `documents.` columns are the row before the update.
    let same = "(documents.content_state IS NOT NULL AND documents.content_kind = excluded.content_kind
               AND documents.content_hash IS NOT DISTINCT FROM excluded.content_hash
               AND (excluded.content_hash IS NOT NULL OR documents.rev IS NOT DISTINCT FROM excluded.rev))";
    let keep = |col: &str, fresh: &str| format!("{col} = CASE WHEN {same} THEN documents.{col} ELSE {fresh} END");
    format!(
        "INSERT INTO documents (ds, doc_id, path_lower, rev, generation, json,
                content_file_id, content_name, content_hash, content_size, content_downloadable,
                content_export_json, content_kind, content_state, content_reason, content_detail, content_updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
         ON CONFLICT(ds, doc_id) DO UPDATE SET
             {}, path_lower = excluded.path_lower, rev = excluded.rev, generation = excluded.generation,
             json = excluded.json, content_file_id = excluded.content_file_id,
             content_name = excluded.content_name, content_size = excluded.content_size,
             content_downloadable = excluded.content_downloadable,
             content_export_json = excluded.content_export_json,
             content_hash = excluded.content_hash, content_kind = excluded.content_kind",
        [
            keep("content_state", "excluded.content_state"),
            keep("content_reason", "excluded.content_reason"),
            keep("content_detail", "excluded.content_detail"),
            keep("content_text", "NULL"),
            keep("content_format", "NULL"),
            keep("content_truncated", "0"),
            keep("content_bytes", "0"),
            keep("content_attempts", "0"),
            keep("content_not_before", "0"),
            keep("content_claimed_until", "0"),
            keep("content_updated_at", "excluded.content_updated_at"),
        ]
        .join(", ")
    )
});

/// What [`finish_in`] did.
struct Applied {
    /// The row still described the fetched bytes and took the outcome.
    recorded: bool,
    /// The file left the queue (done, skipped or failed): its document changed.
    finished: bool,
}

/// Apply one outcome if the row still describes the fetched bytes.
fn finish_in(tx: &dyn Conn, job: &ContentJob, outcome: &Outcome, now: i64) -> Result<Applied> {
    let guard = concat!(
        "ds = ",
        ds_of!(),
        " AND doc_id = ?2 AND content_state = 'pending' AND content_kind = ?3
          AND content_hash IS NOT DISTINCT FROM ?4 AND rev IS NOT DISTINCT FROM ?5"
    );
    let (ds, doc, kind, hash, rev) = (&job.datasource_id, &job.doc_id, &job.kind, &job.content_hash, &job.rev);
    let changed = match outcome {
        Outcome::Done { text, format, truncated, bytes } => tx.execute(
            &format!(
                "UPDATE documents SET content_state = 'done', content_reason = NULL, content_detail = NULL,
                     content_text = ?6, content_format = ?7, content_truncated = ?8, content_bytes = ?9,
                     content_claimed_until = 0, content_updated_at = ?10 WHERE {guard}"
            ),
            &args![ds, doc, kind, hash, rev, text, format, truncated, *bytes as i64, now],
        )?,
        Outcome::Skipped { reason, detail } | Outcome::Failed { class: reason, detail } => {
            let state = if matches!(outcome, Outcome::Skipped { .. }) { "skipped" } else { "failed" };
            tx.execute(
                &format!(
                    "UPDATE documents SET content_state = ?6, content_reason = ?7, content_detail = ?8,
                         content_text = NULL, content_claimed_until = 0, content_updated_at = ?9 WHERE {guard}"
                ),
                &args![ds, doc, kind, hash, rev, state, reason, detail, now],
            )?
        }
        Outcome::Retry { class, detail, delay_secs, free } => {
            let attempts = job.attempts + i64::from(!*free);
            if attempts >= MAX_ATTEMPTS {
                tx.execute(
                    &format!(
                        "UPDATE documents SET content_state = 'failed', content_reason = ?6, content_detail = ?7,
                             content_attempts = ?8, content_claimed_until = 0, content_updated_at = ?9
                         WHERE {guard}"
                    ),
                    &args![ds, doc, kind, hash, rev, class, detail, attempts, now],
                )?
            } else {
                // Still pending: nothing for the sinks yet.
                let n = tx.execute(
                    &format!(
                        "UPDATE documents SET content_attempts = ?6, content_not_before = ?7, content_detail = ?8,
                             content_claimed_until = 0
                         WHERE {guard}"
                    ),
                    &args![ds, doc, kind, hash, rev, attempts, now + *delay_secs as i64, format!("{class}: {detail}")],
                )?;
                return Ok(Applied { recorded: n > 0, finished: false });
            }
        }
    };
    Ok(Applied { recorded: changed > 0, finished: changed > 0 })
}

/// One file to fetch, as claimed from the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentJob {
    pub datasource_id: String,
    pub doc_id: String,
    pub file_id: String,
    pub name: String,
    pub rev: Option<String>,
    pub content_hash: Option<String>,
    pub size: u64,
    pub downloadable: bool,
    pub export_as: Option<String>,
    pub export_options: Vec<String>,
    pub kind: String,
    pub attempts: i64,
}

/// How a fetch ended, for the store.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Done {
        text: String,
        format: String,
        truncated: bool,
        bytes: u64,
    },
    /// The file itself: wait for its next change.
    Skipped {
        reason: String,
        detail: String,
    },
    /// Try again after `delay_secs` (counts as an attempt unless `free`).
    Retry {
        class: String,
        detail: String,
        delay_secs: u64,
        free: bool,
    },
    /// Give up until the file changes.
    Failed {
        class: String,
        detail: String,
    },
}

/// Counts for `status`: files with content, pending, skipped and failed by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ContentCounts {
    pub enabled: bool,
    pub done: u64,
    pub pending: u64,
    pub skipped: std::collections::BTreeMap<String, u64>,
    pub failed: std::collections::BTreeMap<String, u64>,
    pub bytes_downloaded: u64,
}

impl Store {
    pub fn content_settings(&self, id: &str) -> Result<ContentSettings> {
        settings_in(&**self.conn(), id)
    }

    /// Change a datasource's content settings. Turning content off forgets what was
    /// extracted (a registered sink gets the documents again without it); any other change
    /// restarts the listing so every file is decided and fetched again under the new settings.
    pub fn set_content_settings(&self, id: &str, s: &ContentSettings) -> Result<()> {
        s.validate().map_err(|why| StoreError::Corrupt { what: "content settings", why })?;
        let before = self.content_settings(id)?;
        let conn = self.conn();
        let tx = Tx::begin(&**conn)?;
        tx.lock_datasource(id)?;
        super::require_datasource(&tx, id)?;
        tx.execute(
            "INSERT INTO content_settings (datasource_id, enabled, max_download_bytes, max_text_bytes, formats)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(datasource_id) DO UPDATE SET enabled = excluded.enabled,
                 max_download_bytes = excluded.max_download_bytes, max_text_bytes = excluded.max_text_bytes,
                 formats = excluded.formats",
            &args![
                id,
                s.enabled,
                s.max_download_bytes as i64,
                i64::from(s.max_text_bytes),
                s.formats.as_ref().map(|f| serde_json::to_string(f).unwrap_or_default())
            ],
        )?;
        if !s.enabled {
            if self.outbox_on() {
                tx.execute(
                    concat!(
                        "INSERT INTO outbox (datasource_id, doc_id, op)
                         SELECT ?1, doc_id, 'upsert' FROM documents
                         WHERE ds = ",
                        ds_of!(),
                        " AND content_state <> 'pending'"
                    ),
                    &args![id],
                )?;
            }
            clear(&tx, id)?;
        } else if *s != before {
            // Every decision and every text depends on the settings (a narrower allow-list, a
            // larger text cap): decide again from a fresh listing. Documents stay; their text
            // comes back as files are fetched again.
            clear(&tx, id)?;
            tx.execute(
                "UPDATE sync_state SET cursor = NULL, listing = 1, generation = generation + 1 WHERE datasource_id = ?1",
                &args![id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Datasources with a file due for fetching now, oldest due first.
    pub fn content_due(&self) -> Result<Vec<String>> {
        Ok(self.conn().column(
            "SELECT k.id, MIN(d.content_not_before) AS due FROM documents d JOIN datasource_keys k ON k.ds = d.ds
             WHERE d.content_state = 'pending' AND d.content_not_before <= ?1 AND d.content_claimed_until <= ?1
             GROUP BY k.ds, k.id ORDER BY due",
            &args![now_unix()],
        )?)
    }

    /// Claim up to `limit` due files of a datasource for `lease_secs`: another worker (or
    /// process) skips them until the lease ends.
    pub fn claim_content(&self, id: &str, limit: usize, lease_secs: u64) -> Result<Vec<ContentJob>> {
        let now = now_unix();
        let conn = self.conn();
        let tx = Tx::begin(&**conn)?;
        let jobs: Vec<ContentJob> = {
            // Replicas claiming the same datasource's queue skip each other's rows.
            let rows = tx.query(
                &format!(
                    "SELECT doc_id, content_file_id, content_name, rev, content_hash, content_size,
                            content_downloadable, content_export_json, content_kind, content_attempts
                     FROM documents WHERE ds = {} AND content_state = 'pending'
                       AND content_not_before <= ?2 AND content_claimed_until <= ?2
                     ORDER BY content_not_before LIMIT ?3{}",
                    ds_of!(),
                    tx.skip_locked()
                ),
                &args![id, now, limit as i64],
            )?;
            rows.iter()
                .map(|r| {
                    let export: Option<String> = r.get(7)?;
                    let export: serde_json::Value =
                        export.and_then(|e| serde_json::from_str(&e).ok()).unwrap_or_default();
                    Ok(ContentJob {
                        datasource_id: id.to_string(),
                        doc_id: r.get(0)?,
                        file_id: r.get(1)?,
                        name: r.get(2)?,
                        rev: r.get(3)?,
                        content_hash: r.get(4)?,
                        size: r.get::<i64>(5)?.max(0) as u64,
                        downloadable: r.get(6)?,
                        export_as: export["as"].as_str().map(str::to_string),
                        export_options: export["options"]
                            .as_array()
                            .map(|a| a.iter().filter_map(|o| o.as_str().map(str::to_string)).collect())
                            .unwrap_or_default(),
                        kind: r.get(8)?,
                        attempts: r.get(9)?,
                    })
                })
                .collect::<Result<_>>()?
        };
        let claims: Vec<Vec<Value>> =
            jobs.iter().map(|j| args![id, j.doc_id, now + lease_secs as i64].to_vec()).collect();
        tx.execute_many(
            concat!("UPDATE documents SET content_claimed_until = ?3 WHERE ds = ", ds_of!(), " AND doc_id = ?2"),
            claims,
        )?;
        tx.commit()?;
        Ok(jobs)
    }

    /// Record how fetches ended, in one transaction, for files that are still the ones that
    /// were fetched (same bytes, same kind, still pending); a finished outcome queues the
    /// document for the sinks. Returns, per outcome, whether it was recorded (false: the file
    /// changed meanwhile and the result was dropped).
    pub fn finish_content(&self, results: &[(ContentJob, Outcome)]) -> Result<Vec<bool>> {
        let now = now_unix();
        let conn = self.conn();
        let tx = Tx::begin(&**conn)?;
        let mut recorded = Vec::with_capacity(results.len());
        let mut locked = std::collections::BTreeSet::new();
        for (job, _) in results {
            // In a stable order: two replicas finishing jobs of the same datasources never
            // wait on each other's locks in a cycle.
            locked.insert(job.datasource_id.as_str());
        }
        for id in locked {
            tx.lock_datasource(id)?;
        }
        for (job, outcome) in results {
            let applied = finish_in(&tx, job, outcome, now)?;
            if applied.finished && self.outbox_on() {
                super::outbox::record(&tx, &job.datasource_id, &job.doc_id, super::outbox::Op::Upsert)?;
            }
            recorded.push(applied.recorded);
        }
        tx.commit()?;
        Ok(recorded)
    }

    /// Give claimed files back unfetched (a worker that stops early).
    pub fn release_content(&self, jobs: &[ContentJob]) -> Result<()> {
        let conn = self.conn();
        let tx = Tx::begin(&**conn)?;
        let rows: Vec<Vec<Value>> = jobs.iter().map(|j| args![j.datasource_id, j.doc_id].to_vec()).collect();
        tx.execute_many(
            concat!("UPDATE documents SET content_claimed_until = 0 WHERE ds = ", ds_of!(), " AND doc_id = ?2"),
            rows,
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Files with content, pending, and skipped/failed by reason.
    pub fn content_counts(&self, id: &str) -> Result<ContentCounts> {
        Ok(self
            .all_content_counts(Some(id))?
            .remove(id)
            .unwrap_or_else(|| ContentCounts { enabled: true, ..Default::default() }))
    }

    /// [`Store::content_counts`] of one datasource or all, in one pass.
    pub fn all_content_counts(&self, only: Option<&str>) -> Result<std::collections::HashMap<String, ContentCounts>> {
        let conn = self.conn();
        let mut out: std::collections::HashMap<String, ContentCounts> = Default::default();
        let ids: Vec<String> =
            conn.column("SELECT id FROM datasources WHERE CAST(?1 AS TEXT) IS NULL OR id = ?1", &args![only])?;
        for id in ids {
            let enabled = settings_in(&**conn, &id)?.enabled;
            out.insert(id, ContentCounts { enabled, ..Default::default() });
        }
        let rows = conn.query(
            "SELECT k.id, d.content_state, COALESCE(d.content_reason, ''), COUNT(*),
                    CAST(COALESCE(SUM(d.content_bytes), 0) AS BIGINT)
             FROM documents d JOIN datasource_keys k ON k.ds = d.ds
             WHERE d.content_state IS NOT NULL AND (CAST(?1 AS TEXT) IS NULL OR k.id = ?1)
             GROUP BY k.ds, k.id, d.content_state, d.content_reason",
            &args![only],
        )?;
        for r in &rows {
            let (id, state, reason, n, bytes): (String, String, String, i64, i64) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
            let Some(counts) = out.get_mut(&id) else { continue };
            let n = n.max(0) as u64;
            counts.bytes_downloaded += bytes.max(0) as u64;
            match state.as_str() {
                "done" => counts.done += n,
                "pending" => counts.pending += n,
                "skipped" => *counts.skipped.entry(reason).or_default() += n,
                _ => *counts.failed.entry(reason).or_default() += n,
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::FileFacts;

    fn facts(size: u64, downloadable: bool) -> FileFacts<'static> {
        FileFacts {
            file_id: "id:x",
            size,
            content_hash: Some("h"),
            downloadable,
            export_as: None,
            export_options: vec![],
        }
    }

    #[test]
    fn decisions_from_the_listing() {
        let s = ContentSettings::default();
        assert_eq!(decide("/a/r.pdf", &facts(10, true), &s), Decision::Fetch { kind: "pdf".into() });
        assert!(matches!(decide("/a/photo.jpg", &facts(10, true), &s), Decision::Skip { reason: "unsupported", .. }));
        assert!(matches!(decide("/a/big.pdf", &facts(11 << 20, true), &s), Decision::Skip { reason: "too_large", .. }));
        assert_eq!(decide("/a/plan.paper", &facts(0, false), &s), Decision::Fetch { kind: "export".into() });
        let only_docx = ContentSettings { formats: Some(vec!["docx".into()]), ..s };
        assert!(matches!(
            decide("/a/r.pdf", &facts(1, true), &only_docx),
            Decision::Skip { reason: "unsupported", .. }
        ));
        assert!(ContentSettings { formats: Some(vec!["exe".into()]), ..Default::default() }.validate().is_err());
        assert!(ContentSettings { max_download_bytes: 0, ..Default::default() }.validate().is_err());
    }
}
