//! The SQLite state's tables, and the upgrades an older state file gets when it is opened.

use rusqlite::{Connection, OptionalExtension};

use super::{Result, StoreError};

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS connectors (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    client_secret_sealed TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    endpoints_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS datasources (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    connector_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    client_secret_sealed TEXT NOT NULL,
    access_token_sealed TEXT NOT NULL,
    refresh_token_sealed TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    profile_json TEXT NOT NULL,
    endpoints_json TEXT NOT NULL,
    path TEXT NOT NULL DEFAULT '',
    page_limit INTEGER NOT NULL DEFAULT 0,
    owner_id TEXT,
    status TEXT NOT NULL DEFAULT 'ok',
    status_detail TEXT,
    connected_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sync_state (
    datasource_id TEXT PRIMARY KEY REFERENCES datasources(id) ON DELETE CASCADE,
    cursor TEXT,
    generation INTEGER NOT NULL DEFAULT 1,
    listing INTEGER NOT NULL DEFAULT 1,
    pages INTEGER NOT NULL DEFAULT 0,
    last_synced_at INTEGER
);
CREATE TABLE IF NOT EXISTS datasource_keys (
    ds INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE REFERENCES datasources(id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS schedule (
    datasource_id TEXT PRIMARY KEY REFERENCES datasources(id) ON DELETE CASCADE,
    interval_secs INTEGER,
    paused INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    datasource_id TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('upsert', 'delete'))
);
CREATE INDEX IF NOT EXISTS outbox_by_datasource ON outbox(datasource_id, seq);
CREATE TABLE IF NOT EXISTS sinks (
    name TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sink_progress (
    sink TEXT NOT NULL REFERENCES sinks(name) ON DELETE CASCADE,
    datasource_id TEXT NOT NULL,
    delivered_seq INTEGER NOT NULL DEFAULT 0,
    delivered_total INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    PRIMARY KEY (sink, datasource_id)
);
CREATE TABLE IF NOT EXISTS sync_leases (
    datasource_id TEXT PRIMARY KEY REFERENCES datasources(id) ON DELETE CASCADE,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS lease_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    datasource_id TEXT NOT NULL,
    holder TEXT NOT NULL,
    event TEXT NOT NULL,
    previous TEXT,
    at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS lease_log_by_datasource ON lease_log(datasource_id, at_ms);
CREATE TABLE IF NOT EXISTS delivery_leases (
    sink TEXT NOT NULL,
    datasource_id TEXT NOT NULL,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (sink, datasource_id)
);
"#;

/// The index, keyed by the datasource's small integer `ds` (from `datasource_keys`) rather
/// than its 32-character id. Every index on the table begins with that column and a listing
/// inserts into them in random order, so each byte of it is paid for in index pages read and
/// written (-11 % host CPU for a 1M-entry full sync, `bench/JOURNAL.md`). `{table}`: the name
/// it is created under (an older file's table is rebuilt into a new one); `{content}`: the
/// content columns.
pub(crate) const DOCUMENTS: &str = "
CREATE TABLE IF NOT EXISTS {table} (
    ds INTEGER NOT NULL REFERENCES datasource_keys(ds) ON DELETE CASCADE,
    doc_id TEXT NOT NULL,
    path_lower TEXT NOT NULL,
    rev TEXT,
    generation INTEGER NOT NULL,
    json TEXT NOT NULL,
{content}    PRIMARY KEY (ds, doc_id)
);";

/// Created after [`migrate`]: an older file's `documents` has no `ds` column until then.
pub(crate) const DOCUMENT_INDEXES: &str = "CREATE INDEX IF NOT EXISTS documents_by_path ON documents(ds, path_lower);";

/// `CREATE TABLE` of the index under `table`.
pub(crate) fn documents_table(table: &str) -> String {
    DOCUMENTS.replace("{table}", table).replace("{content}", &crate::state::content::sqlite_column_defs())
}

/// How long opening a state file waits for another process's lock (SQLite's busy timeout).
pub(crate) const OPEN_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Put the file in WAL mode. Switching a fresh file needs an exclusive lock, and SQLite answers
/// `SQLITE_BUSY` at once, without its busy handler, while another process holds one: retried
/// here for as long as the busy timeout.
pub(crate) fn enter_wal(conn: &Connection) -> Result<()> {
    let deadline = std::time::Instant::now() + OPEN_BUSY_TIMEOUT;
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
            Ok(_) => return Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Rebuild a table of an older state file that was `WITHOUT ROWID` as an ordinary rowid table
/// (same columns, constraints and indexes). Rows of ~1 KB made every insert of a listing a
/// random write into a fat clustered tree; now rows append and only the small key index takes
/// random inserts.
pub(crate) fn rowid_table(conn: &Connection, table: &str) -> Result<()> {
    let sql: Option<String> = conn
        .query_row("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |r| r.get(0))
        .optional()?;
    let Some(sql) = sql.filter(|s| s.contains("WITHOUT ROWID")) else { return Ok(()) };
    let columns = sql
        .find('(')
        .map(|i| &sql[i..])
        .ok_or_else(|| StoreError::Corrupt { what: "table definition", why: format!("{table}: {sql}") })?;
    let rebuilt = format!("CREATE TABLE {table}_rowid {}", columns.replace("WITHOUT ROWID", ""));
    let mut stmt =
        conn.prepare("SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL")?;
    let indexes = stmt.query_map([table], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
    let mut batch = format!(
        "{rebuilt}; INSERT INTO {table}_rowid SELECT * FROM {table}; DROP TABLE {table};
         ALTER TABLE {table}_rowid RENAME TO {table};"
    );
    for index in indexes {
        batch.push_str(&index);
        batch.push(';');
    }
    conn.execute_batch(&batch)?;
    Ok(())
}

/// An older state file's `documents`, keyed by the datasource's id, rebuilt keyed by `ds`
/// (every datasource gets its key first). Same rows, same columns otherwise.
pub(crate) fn key_documents(conn: &Connection) -> Result<()> {
    let old: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info('documents') WHERE name = 'datasource_id')",
        [],
        |r| r.get(0),
    )?;
    if !old {
        return Ok(());
    }
    let columns: Vec<&str> = ["doc_id", "path_lower", "rev", "generation", "json"]
        .into_iter()
        .chain(crate::state::content::column_names())
        .collect();
    let (into, from) = (columns.join(", "), columns.iter().map(|c| format!("d.{c}")).collect::<Vec<_>>().join(", "));
    conn.execute_batch(&format!(
        "INSERT INTO datasource_keys (id) SELECT id FROM datasources WHERE id NOT IN (SELECT id FROM datasource_keys);
         {create};
         INSERT INTO documents_keyed (ds, {into})
             SELECT k.ds, {from} FROM documents d JOIN datasource_keys k ON k.id = d.datasource_id;
         DROP TABLE documents;
         ALTER TABLE documents_keyed RENAME TO documents;",
        create = documents_table("documents_keyed"),
    ))?;
    Ok(())
}

/// Columns added after a release, added to older state files at open (inside the open's write
/// transaction).
pub(crate) fn migrate(conn: &Connection) -> Result<()> {
    rowid_table(conn, "documents")?;
    crate::state::content::migrate_sqlite(conn)?;
    key_documents(conn)?;
    crate::state::content::migrate_sqlite_state_check(conn)?;
    let has_documents: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info('sync_state') WHERE name = 'documents')",
        [],
        |r| r.get(0),
    )?;
    if !has_documents {
        // NULL: not counted yet.
        conn.execute_batch("ALTER TABLE sync_state ADD COLUMN documents INTEGER")?;
    }
    Ok(())
}
