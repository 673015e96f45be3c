//! Durable host state: connectors (app credentials), datasources (tokens, profile, endpoints,
//! options, status), sync state (cursor, generation), the document index, leases, the outbox
//! and the content queue. SQLite (a state folder) is the default; PostgreSQL (`--state
//! postgres://…`) lets several host replicas share one state (see [`crate::db`]).
//!
//! A page is applied in ONE transaction together with its cursor and tokens, so a crash at any
//! point loses nothing and replaying the same page is idempotent. Secrets are sealed at rest.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::db::{args, Conn, ConnExt, DbError, Sqlite, Tx};
use crate::keys::{KeyError, Keys, MASTER_KEY_ENV};
use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database: {0}")]
    Sql(#[from] DbError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("state database holds unreadable {what}: {why}")]
    Corrupt { what: &'static str, why: String },
    #[error("no datasource {0}")]
    NoDatasource(String),
    /// A row's endpoints were written outside coco-host: its tokens go nowhere.
    #[error("{what} {id}: its endpoints {why}; refusing to send its credentials anywhere (connect it again with coco-host to trust new endpoints)")]
    UntrustedEndpoints { what: &'static str, id: String, why: String },
    #[error("the datasource's cursor or listing generation moved while this page was fetched (another host applied it, or the folder changed); page discarded")]
    CursorConflict,
    #[error("cannot prepare the state folder: {0}")]
    Io(#[from] std::io::Error),
    #[error("{MASTER_KEY_ENV} is not the key this state was created with: nothing was changed (use the original key, or another --state folder)")]
    WrongKey,
    #[error("datasource {id} is being synced by another process ({holder}) until {until}; not syncing it twice")]
    Leased { id: String, holder: String, until: String },
    #[error("this process no longer holds datasource {0}'s lease (it expired and another replica took it over); page discarded")]
    LeaseLost(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sql(DbError::Sqlite(e))
    }
}

/// Where the state lives: `--state` is a folder (SQLite) or a `postgres://` URL.
#[derive(Clone, PartialEq, Eq)]
pub enum StateLocation {
    Folder(PathBuf),
    Postgres(String),
}

/// The URL's password never shows.
impl std::fmt::Debug for StateLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateLocation::Folder(dir) => f.debug_tuple("Folder").field(dir).finish(),
            StateLocation::Postgres(url) => {
                f.debug_tuple("Postgres").field(&crate::db::postgres_redacted(url)).finish()
            }
        }
    }
}

impl StateLocation {
    pub fn parse(s: &str) -> Self {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            StateLocation::Postgres(s.to_string())
        } else {
            StateLocation::Folder(PathBuf::from(s))
        }
    }

    /// Where compiled components are cached: inside the state folder, or `.coco-cache` beside
    /// a process whose state is in PostgreSQL (each replica compiles for its own machine).
    pub fn cache_dir(&self) -> PathBuf {
        match self {
            StateLocation::Folder(dir) => dir.join("cache"),
            StateLocation::Postgres(_) => PathBuf::from(".coco-cache"),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Where a datasource's Dropbox lives (real or emulated). Older rows may lack `notify` and
/// `content` ([`EndpointsRecord::notify_url`] and [`EndpointsRecord::content_url`] derive them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointsRecord {
    pub authorize: String,
    pub api: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

impl EndpointsRecord {
    /// Real Dropbox, from `wit/connector-info.json`.
    pub fn dropbox() -> Self {
        let e = &crate::info::connector_info().dropbox_endpoints;
        EndpointsRecord {
            authorize: e.authorize.clone(),
            api: e.api.clone(),
            notify: Some(e.notify.clone()),
            content: Some(e.content.clone()),
        }
    }

    /// Every service at one base URL (the emulator).
    pub fn single(base: &str) -> Self {
        let base = base.trim_end_matches('/');
        EndpointsRecord {
            authorize: base.to_string(),
            api: base.to_string(),
            notify: Some(base.to_string()),
            content: Some(base.to_string()),
        }
    }

    /// The longpoll service: as recorded, else real Dropbox's beside its API, else the API's host.
    pub fn notify_url(&self) -> String {
        if let Some(n) = &self.notify {
            return n.clone();
        }
        let real = &crate::info::connector_info().dropbox_endpoints;
        if self.api == real.api {
            real.notify.clone()
        } else {
            self.api.clone()
        }
    }

    /// The download/export service: as recorded, else real Dropbox's beside its API, else the
    /// API's host.
    pub fn content_url(&self) -> String {
        if let Some(c) = &self.content {
            return c.clone();
        }
        let real = &crate::info::connector_info().dropbox_endpoints;
        if self.api == real.api {
            real.content.clone()
        } else {
            self.api.clone()
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootRecord {
    pub is_team: bool,
    pub root_namespace_id: String,
    pub home_namespace_id: String,
    pub home_path: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileRecord {
    pub account_id: String,
    pub email: String,
    pub name: String,
    pub picture: Option<String>,
    pub root_info: RootRecord,
}

/// A registered Dropbox app (Coco's connector object).
#[derive(Clone, Debug)]
pub struct ConnectorRecord {
    pub id: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub redirect_uri: String,
    pub endpoints: EndpointsRecord,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Ok,
    /// The refresh token stopped working: not scheduled until connected again.
    ReauthRequired,
    /// Retries ran out or the configuration is wrong; see the detail.
    Failing,
    /// Waiting out Dropbox's rate limit; the detail says until when.
    RateLimited,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::ReauthRequired => "reauth-required",
            Status::Failing => "failing",
            Status::RateLimited => "rate-limited",
        }
    }

    fn parse(s: &str) -> Status {
        match s {
            "reauth-required" => Status::ReauthRequired,
            "failing" => Status::Failing,
            "rate-limited" => Status::RateLimited,
            _ => Status::Ok,
        }
    }
}

#[derive(Clone, Debug)]
pub struct TokensRecord {
    pub access_token: Secret,
    pub expires_at: u64,
    pub refresh_token: Secret,
}

#[derive(Clone, Debug)]
pub struct DatasourceRecord {
    pub id: String,
    pub name: String,
    pub connector_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub tokens: TokensRecord,
    pub profile: ProfileRecord,
    pub endpoints: EndpointsRecord,
    /// Folder to index ("" = whole account).
    pub path: String,
    /// list_folder limit (0 = the component's default, 2000).
    pub page_limit: u32,
    pub owner_id: Option<String>,
    pub status: Status,
    pub status_detail: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncState {
    /// None: the next page starts a full listing.
    pub cursor: Option<String>,
    /// Bumped at each full listing; documents not seen by a finished listing are swept.
    pub generation: i64,
    /// A full listing (and its catch-up) is in progress.
    pub listing: bool,
    pub pages: i64,
    pub last_synced_at: Option<i64>,
}

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

pub struct Store {
    conn: Mutex<Box<dyn Conn + Send>>,
    keys: Keys,
    /// A sink is registered: pages also record their changes in the outbox.
    outbox_on: std::sync::atomic::AtomicBool,
}

const SCHEMA: &str = r#"
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
/// written (-11 % host CPU for a 1M-entry full sync, `bench/RESULTS.md`). `{table}`: the name
/// it is created under (an older file's table is rebuilt into a new one); `{content}`: the
/// content columns.
const DOCUMENTS: &str = "
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
const DOCUMENT_INDEXES: &str = "CREATE INDEX IF NOT EXISTS documents_by_path ON documents(ds, path_lower);";

/// `CREATE TABLE` of the index under `table`.
fn documents_table(table: &str) -> String {
    DOCUMENTS.replace("{table}", table).replace("{content}", &crate::content::sqlite_column_defs())
}

/// `documents.ds` of the datasource whose id is `?1`, inside a statement: one lookup in a
/// table of one row per datasource, made once per statement.
macro_rules! ds_of {
    () => {
        "(SELECT ds FROM datasource_keys WHERE id = ?1)"
    };
}
pub(crate) use ds_of;

/// The datasource's key in `documents` (given when it is first needed), for statements that
/// run once per document and bind it instead of looking it up.
pub(crate) fn ds_key(conn: &dyn Conn, id: &str) -> Result<i64> {
    let found = |conn: &dyn Conn| conn.value_opt::<i64>("SELECT ds FROM datasource_keys WHERE id = ?1", &args![id]);
    if let Some(ds) = found(conn)? {
        return Ok(ds);
    }
    conn.execute("INSERT INTO datasource_keys (id) VALUES (?1) ON CONFLICT DO NOTHING", &args![id])?;
    found(conn)?.ok_or_else(|| StoreError::NoDatasource(id.to_string()))
}

/// How a long-running host schedules a datasource (absent row: the defaults).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScheduleRecord {
    /// Re-sync interval; None: the host's default.
    pub interval_secs: Option<u32>,
    pub paused: bool,
}

/// What a scheduler or a status page needs of every datasource, without unsealing secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overview {
    pub id: String,
    pub name: String,
    pub connector_id: String,
    pub account_id: String,
    pub email: String,
    pub status: Status,
    pub status_detail: Option<String>,
    pub path: String,
    pub page_limit: u32,
    pub schedule: ScheduleRecord,
    pub connected_at: i64,
    pub cursor: bool,
    pub listing: bool,
    pub pages: i64,
    pub last_synced_at: Option<i64>,
    /// Its sync lease, if one is recorded (it may have run out).
    pub lease: Option<LeaseRecord>,
}

/// A datasource's sync lease as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    pub holder: String,
    /// Unix seconds.
    pub expires_at: i64,
}

impl LeaseRecord {
    /// Held by someone other than `me` who can still use it: not run out, and not a process of
    /// this machine that has died (that one is taken over at once).
    pub fn held_by_another(&self, me: &str, now_unix: i64) -> bool {
        self.holder != me && self.expires_at > now_unix && lease_holder_alive(&self.holder)
    }
}

/// This machine's name, as lease holders record it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

/// SQLite's page cache per connection, in KiB: `COCO_SQLITE_CACHE_MIB` (default 8 MiB).
fn sqlite_cache_kib() -> u64 {
    std::env::var("COCO_SQLITE_CACHE_MIB").ok().and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(8).clamp(1, 4096)
        * 1024
}

/// A lease holder id: `host:pid:nonce`.
pub fn new_lease_holder() -> String {
    format!("{}:{}:{:08x}", hostname(), std::process::id(), rand::random::<u32>())
}

/// False only when the holder is a process of this machine that no longer runs.
pub(crate) fn lease_holder_alive(holder: &str) -> bool {
    let mut parts = holder.split(':');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else { return true };
    if host != hostname() {
        return true;
    }
    match pid.parse::<u32>() {
        Ok(pid) => Path::new(&format!("/proc/{pid}")).exists(),
        Err(_) => true,
    }
}

/// Unix seconds as RFC 3339 UTC, for status texts.
pub fn rfc3339(unix: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix as i64).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| unix.to_string())
}

pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn corrupt(what: &'static str) -> impl Fn(serde_json::Error) -> StoreError {
    move |e| StoreError::Corrupt { what, why: e.to_string() }
}

/// The index changed: its document count is taken again, once, when the run ends
/// ([`Store::document_total`]).
fn forget_document_total(conn: &dyn Conn, id: &str) -> Result<()> {
    conn.execute("UPDATE sync_state SET documents = NULL WHERE datasource_id = ?1", &args![id])?;
    Ok(())
}

/// Documents at `path` or under it.
fn under_path(conn: &dyn Conn, id: &str, path: &str) -> Result<Vec<String>> {
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
fn moved_within(
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

/// How long opening a state file waits for another process's lock (SQLite's busy timeout).
const OPEN_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Put the file in WAL mode. Switching a fresh file needs an exclusive lock, and SQLite answers
/// `SQLITE_BUSY` at once, without its busy handler, while another process holds one: retried
/// here for as long as the busy timeout.
fn enter_wal(conn: &Connection) -> Result<()> {
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
fn rowid_table(conn: &Connection, table: &str) -> Result<()> {
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
fn key_documents(conn: &Connection) -> Result<()> {
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
        .chain(crate::content::column_names())
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
fn migrate(conn: &Connection) -> Result<()> {
    rowid_table(conn, "documents")?;
    crate::content::migrate_sqlite(conn)?;
    key_documents(conn)?;
    crate::content::migrate_sqlite_state_check(conn)?;
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

impl Store {
    /// Open (creating if needed) the state database at `path`.
    pub fn open(path: &Path, keys: Keys) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::paths::private_dir(dir)?;
        }
        // Owner-only before SQLite opens it: its WAL and shared-memory files take the same mode.
        crate::paths::private_file(path)?;
        let conn = Connection::open(path)?;
        conn.busy_timeout(OPEN_BUSY_TIMEOUT)?;
        enter_wal(&conn)?;
        // Per connection, outside any transaction (`foreign_keys` is a no-op inside one).
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
        // Interior pages of the index trees stay cached across a listing's pages; a bounded
        // cache keeps the host's memory flat whatever the account's size.
        conn.execute_batch(&format!("PRAGMA cache_size = -{};", sqlite_cache_kib()))?;
        // The WAL file is cut back to 64 MiB when it starts over (its checkpoints, one inside
        // the commits past 64 MiB and one copying ahead on a thread: `db::checkpoint`).
        conn.execute_batch("PRAGMA journal_size_limit = 67108864;")?;
        // Creating and migrating the schema is one write transaction, taken up front: processes
        // opening the same file at once do it one after the other instead of racing (a `CREATE`
        // or `ALTER` another one just ran).
        let tx = rusqlite::Transaction::new_unchecked(&conn, rusqlite::TransactionBehavior::Immediate)?;
        // A fresh file's documents table has the content columns and `ds` from the start; an
        // older one gets them in `migrate`.
        tx.execute_batch(SCHEMA)?;
        tx.execute_batch(&documents_table("documents"))?;
        tx.execute_batch(crate::content::SCHEMA)?;
        tx.execute_batch(crate::shards::SCHEMA)?;
        migrate(&tx)?;
        tx.execute_batch(DOCUMENT_INDEXES)?;
        tx.execute_batch(crate::content::INDEXES)?;
        tx.commit()?;
        let checkpointer = crate::db::Checkpointer::start(path, &conn, crate::db::AHEAD_ROWS, crate::db::WRITER_PAGES)?;
        Self::with_conn(Box::new(Sqlite::with_checkpointer(conn, checkpointer)), keys)
    }

    /// Connect to a PostgreSQL state shared by replicas, applying missing migrations.
    pub fn open_postgres(url: &str, keys: Keys) -> Result<Self> {
        let conn = crate::db::Postgres::connect(url)?;
        crate::pg_schema::migrate(&conn)?;
        Self::with_conn(Box::new(conn), keys)
    }

    /// Open the state `--state` names: `<folder>/coco.sqlite`, or a PostgreSQL database.
    pub fn open_at(location: &StateLocation, keys: Keys) -> Result<Self> {
        match location {
            StateLocation::Folder(dir) => Self::open(&dir.join("coco.sqlite"), keys),
            StateLocation::Postgres(url) => Self::open_postgres(url, keys),
        }
    }

    fn with_conn(conn: Box<dyn Conn + Send>, keys: Keys) -> Result<Self> {
        let sinks: bool = conn.value("SELECT EXISTS (SELECT 1 FROM sinks)", &[])?;
        let store = Store { conn: Mutex::new(conn), keys, outbox_on: std::sync::atomic::AtomicBool::new(sinks) };
        store.check_key()?;
        Ok(store)
    }

    /// The first open seals a known value; every later open must unseal it, so a wrong
    /// master key fails here, before anything is written with it.
    fn check_key(&self) -> Result<()> {
        const CHECK: &str = "coco-dropbox key check v1";
        let read = |conn: &dyn Conn| -> Result<Option<String>> {
            Ok(conn.value_opt("SELECT value FROM meta WHERE key = 'key_check'", &[])?)
        };
        let conn = self.conn();
        if read(&**conn)?.is_none() {
            // A state written before key checks existed: the key must open what is there.
            let existing = conn.query_opt("SELECT id, client_secret_sealed FROM connectors LIMIT 1", &[])?;
            if let Some(row) = existing {
                let (id, sealed): (String, String) = (row.get(0)?, row.get(1)?);
                if self.keys.open(&format!("client_secret:{id}"), &sealed).is_err() {
                    return Err(StoreError::WrongKey);
                }
            }
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('key_check', ?1) ON CONFLICT (key) DO NOTHING",
                &args![self.keys.seal("meta:key_check", CHECK)],
            )?;
        }
        // Whatever stuck (another process may have won the race with its own key) must open.
        match read(&**conn)?.map(|sealed| self.keys.open("meta:key_check", &sealed)) {
            Some(Ok(v)) if v == CHECK => Ok(()),
            _ => Err(StoreError::WrongKey),
        }
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Box<dyn Conn + Send>> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn outbox_on(&self) -> bool {
        self.outbox_on.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn set_outbox_on(&self, on: bool) {
        self.outbox_on.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    fn seal(&self, what: &str, id: &str, s: &Secret) -> String {
        self.keys.seal(&format!("{what}:{id}"), s.expose())
    }

    fn open_secret(&self, what: &str, id: &str, sealed: &str) -> Result<Secret> {
        Ok(Secret::new(self.keys.open(&format!("{what}:{id}"), sealed)?))
    }

    /// Endpoints are where a row's tokens and client secret are sent, so they are sealed under
    /// the master key and bound to their row, like the secrets: whoever can write the database
    /// (a shared PostgreSQL) cannot point a connector at their own host.
    fn seal_endpoints(&self, what: &str, id: &str, e: &EndpointsRecord) -> Result<String> {
        let json = serde_json::to_string(e).map_err(corrupt("endpoints"))?;
        Ok(self.keys.seal(&format!("endpoints:{what}:{id}"), &json))
    }

    /// The row's endpoints, if this state sealed them. A row from before sealing (plain JSON)
    /// is trusted only where it names Dropbox's own hosts, where the credentials belong anyway.
    fn open_endpoints(&self, what: &'static str, id: &str, stored: &str) -> Result<EndpointsRecord> {
        let untrusted = |why: String| StoreError::UntrustedEndpoints { what, id: id.to_string(), why };
        if stored.trim_start().starts_with('{') {
            let e: EndpointsRecord = serde_json::from_str(stored).map_err(corrupt("endpoints"))?;
            let dropbox = EndpointsRecord::dropbox();
            let theirs = [Some(&e.authorize), Some(&e.api), e.notify.as_ref(), e.content.as_ref()];
            let ours = [
                &dropbox.authorize,
                &dropbox.api,
                dropbox.notify.as_ref().unwrap_or(&dropbox.api),
                dropbox.content.as_ref().unwrap_or(&dropbox.api),
            ];
            let origin = |u: &str| url::Url::parse(u).ok().map(|u| u.origin().ascii_serialization());
            let ours: Vec<_> = ours.iter().filter_map(|u| origin(u)).collect();
            if let Some(stranger) = theirs.into_iter().flatten().find(|u| origin(u).is_none_or(|o| !ours.contains(&o)))
            {
                return Err(untrusted(format!(
                    "are stored unsealed and name {}, not Dropbox",
                    crate::redact::urls(stranger)
                )));
            }
            return Ok(e);
        }
        let json = self
            .keys
            .open(&format!("endpoints:{what}:{id}"), stored)
            .map_err(|_| untrusted("do not open under this state's key (changed outside coco-host)".into()))?;
        serde_json::from_str(&json).map_err(corrupt("endpoints"))
    }

    pub fn upsert_connector(&self, c: &ConnectorRecord) -> Result<()> {
        let endpoints = self.seal_endpoints("connector", &c.id, &c.endpoints)?;
        self.conn().execute(
            "INSERT INTO connectors (id, client_id, client_secret_sealed, redirect_uri, endpoints_json)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(id) DO UPDATE SET client_id = ?2, client_secret_sealed = ?3, redirect_uri = ?4, endpoints_json = ?5",
            &args![c.id, c.client_id, self.seal("client_secret", &c.id, &c.client_secret), c.redirect_uri, endpoints],
        )?;
        Ok(())
    }

    pub fn connector(&self, id: &str) -> Result<Option<ConnectorRecord>> {
        let row = self.conn().query_opt(
            "SELECT client_id, client_secret_sealed, redirect_uri, endpoints_json FROM connectors WHERE id = ?1",
            &args![id],
        )?;
        let Some(row) = row else { return Ok(None) };
        let (client_id, secret, redirect_uri, endpoints): (String, String, String, String) =
            (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
        Ok(Some(ConnectorRecord {
            id: id.to_string(),
            client_id,
            client_secret: self.open_secret("client_secret", id, &secret)?,
            redirect_uri,
            endpoints: self.open_endpoints("connector", id, &endpoints)?,
        }))
    }

    /// Record a connected account. Reconnecting the same account (same id) replaces its
    /// credentials and profile and clears a reauth-required status, but keeps its cursor,
    /// index and options: sync resumes where it stopped.
    pub fn save_connected(&self, ds: &DatasourceRecord) -> Result<()> {
        let profile = serde_json::to_string(&ds.profile).map_err(corrupt("profile"))?;
        let endpoints = self.seal_endpoints("datasource", &ds.id, &ds.endpoints)?;
        let conn = self.conn();
        let tx = Tx::begin(&**conn)?;
        tx.execute(
            "INSERT INTO datasources (id, name, connector_id, client_id, client_secret_sealed, access_token_sealed,
                 refresh_token_sealed, expires_at, profile_json, endpoints_json, path, page_limit, owner_id, status,
                 status_detail, connected_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 'ok', NULL, ?14)
             ON CONFLICT(id) DO UPDATE SET name = ?2, client_id = ?4, client_secret_sealed = ?5,
                 access_token_sealed = ?6, refresh_token_sealed = ?7, expires_at = ?8, profile_json = ?9,
                 endpoints_json = ?10, status = 'ok', status_detail = NULL, connected_at = ?14",
            &args![
                ds.id,
                ds.name,
                ds.connector_id,
                ds.client_id,
                self.seal("client_secret", &ds.id, &ds.client_secret),
                self.seal("access_token", &ds.id, &ds.tokens.access_token),
                self.seal("refresh_token", &ds.id, &ds.tokens.refresh_token),
                ds.tokens.expires_at as i64,
                profile,
                endpoints,
                ds.path,
                ds.page_limit,
                ds.owner_id,
                now_unix(),
            ],
        )?;
        tx.execute("INSERT INTO sync_state (datasource_id) VALUES (?1) ON CONFLICT DO NOTHING", &args![ds.id])?;
        tx.commit()?;
        Ok(())
    }

    fn row_to_datasource(&self, r: &crate::db::Row) -> Result<DatasourceRecord> {
        let id: String = r.get("id")?;
        let profile: String = r.get("profile_json")?;
        let endpoints: String = r.get("endpoints_json")?;
        Ok(DatasourceRecord {
            name: r.get("name")?,
            connector_id: r.get("connector_id")?,
            client_id: r.get("client_id")?,
            client_secret: self.open_secret("client_secret", &id, &r.get::<String>("client_secret_sealed")?)?,
            tokens: TokensRecord {
                access_token: self.open_secret("access_token", &id, &r.get::<String>("access_token_sealed")?)?,
                expires_at: r.get::<i64>("expires_at")?.max(0) as u64,
                refresh_token: self.open_secret("refresh_token", &id, &r.get::<String>("refresh_token_sealed")?)?,
            },
            profile: serde_json::from_str(&profile).map_err(corrupt("profile"))?,
            endpoints: self.open_endpoints("datasource", &id, &endpoints)?,
            path: r.get("path")?,
            page_limit: r.get("page_limit")?,
            owner_id: r.get("owner_id")?,
            status: Status::parse(&r.get::<String>("status")?),
            status_detail: r.get("status_detail")?,
            id,
        })
    }

    pub fn datasource(&self, id: &str) -> Result<DatasourceRecord> {
        match self.conn().query_opt("SELECT * FROM datasources WHERE id = ?1", &args![id])? {
            Some(r) => self.row_to_datasource(&r),
            None => Err(StoreError::NoDatasource(id.to_string())),
        }
    }

    /// Every datasource but those whose endpoints cannot be trusted: one tampered row stops
    /// that datasource (reported each time the list is read), not every tenant.
    pub fn datasources(&self) -> Result<Vec<DatasourceRecord>> {
        let rows = self.conn().query("SELECT * FROM datasources ORDER BY connected_at, id", &[])?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            match self.row_to_datasource(r) {
                Ok(ds) => out.push(ds),
                Err(e @ StoreError::UntrustedEndpoints { .. }) => tracing::error!("{e}"),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Set the folder to index and the page size; a changed folder restarts the listing.
    /// One transaction: a page fetched before the change cannot land after it.
    pub fn set_options(&self, id: &str, path: &str, page_limit: u32) -> Result<()> {
        let conn = self.conn();
        let tx = Tx::begin(&**conn)?;
        tx.lock_datasource(id)?;
        let old: String = tx
            .value_opt("SELECT path FROM datasources WHERE id = ?1", &args![id])?
            .ok_or_else(|| StoreError::NoDatasource(id.to_string()))?;
        tx.execute("UPDATE datasources SET path = ?2, page_limit = ?3 WHERE id = ?1", &args![id, path, page_limit])?;
        if old != path {
            Self::restart_listing_in(&tx, id)?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn sync_state(&self, id: &str) -> Result<SyncState> {
        let row = self
            .conn()
            .query_opt(
                "SELECT cursor, generation, listing, pages, last_synced_at FROM sync_state WHERE datasource_id = ?1",
                &args![id],
            )?
            .ok_or_else(|| StoreError::NoDatasource(id.to_string()))?;
        Ok(SyncState {
            cursor: row.get(0)?,
            generation: row.get(1)?,
            listing: row.get(2)?,
            pages: row.get(3)?,
            last_synced_at: row.get(4)?,
        })
    }

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
                crate::outbox::record_sweep(&tx, id, generation)?;
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
                crate::outbox::record_subtree(tx, id, p, crate::outbox::Op::Delete)?;
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
            true => Some(crate::content::settings_in(tx, id)?).filter(|s| s.enabled),
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
            let (upserted, queued) = crate::content::upsert_files(tx, ds, generation, documents.iter(), settings)?;
            applied.upserted += upserted;
            applied.content_queued = queued;
        }
        if outbox {
            crate::outbox::record_many(tx, id, documents.iter().map(|d| d.id), crate::outbox::Op::Upsert)?;
        }
        if applied.upserted + applied.deleted > 0 {
            forget_document_total(tx, id)?;
        }
        Ok(applied)
    }

    /// Take the datasource's sync lease for `ttl`, unless another live holder has it: two
    /// processes (or replicas) never sync one datasource at once. A lease whose holder process
    /// is gone (same machine, pid no longer running) is taken over at once; any other only
    /// once it expired. Every change of holder is written to the lease log.
    pub fn acquire_lease(&self, id: &str, holder: &str, ttl: std::time::Duration) -> Result<()> {
        let conn = self.conn();
        let tx = Tx::begin(&**conn)?;
        tx.lock_datasource(id)?;
        let now = now_unix();
        let current =
            tx.query_opt("SELECT holder, expires_at FROM sync_leases WHERE datasource_id = ?1", &args![id])?;
        let current: Option<(String, i64)> =
            current.map(|r| Ok::<_, StoreError>((r.get(0)?, r.get(1)?))).transpose()?;
        let mut event = "acquired";
        let mut previous = None;
        if let Some((other, until)) = &current {
            if other != holder {
                let alive = lease_holder_alive(other);
                if *until > now && alive {
                    return Err(StoreError::Leased {
                        id: id.into(),
                        holder: other.clone(),
                        until: rfc3339(*until as u64),
                    });
                }
                event = if alive { "took-over-expired" } else { "took-over-dead" };
                previous = Some(other.as_str());
            } else {
                event = "renewed";
            }
        }
        let expires = now + ttl.as_secs() as i64;
        let n = tx.execute(
            "INSERT INTO sync_leases (datasource_id, holder, expires_at) SELECT ?1, ?2, ?3
                 WHERE EXISTS (SELECT 1 FROM datasources WHERE id = ?1)
             ON CONFLICT(datasource_id) DO UPDATE SET holder = ?2, expires_at = ?3",
            &args![id, holder, expires],
        )?;
        if n == 0 {
            return Err(StoreError::NoDatasource(id.to_string()));
        }
        if event != "renewed" {
            log_lease(&tx, id, holder, event, previous)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Extend a lease this holder still has; false if it is gone or another holder's (never
    /// takes one, so a renewal racing a release cannot resurrect it).
    pub fn renew_lease(&self, id: &str, holder: &str, ttl: std::time::Duration) -> Result<bool> {
        let expires = now_unix() + ttl.as_secs() as i64;
        let n = self.conn().execute(
            "UPDATE sync_leases SET expires_at = ?3 WHERE datasource_id = ?1 AND holder = ?2",
            &args![id, holder, expires],
        )?;
        Ok(n == 1)
    }

    /// Give the lease back (only if still ours).
    pub fn release_lease(&self, id: &str, holder: &str) -> Result<()> {
        let conn = self.conn();
        let tx = Tx::begin(&**conn)?;
        tx.lock_datasource(id)?;
        if tx.execute("DELETE FROM sync_leases WHERE datasource_id = ?1 AND holder = ?2", &args![id, holder])? > 0 {
            log_lease(&tx, id, holder, "released", None)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Who holds the datasource's lease now, if anyone (for status and tests).
    pub fn lease_holder(&self, id: &str) -> Result<Option<String>> {
        Ok(self.conn().value_opt(
            "SELECT holder FROM sync_leases WHERE datasource_id = ?1 AND expires_at > ?2",
            &args![id, now_unix()],
        )?)
    }

    /// The lease log of one datasource, oldest first: (holder, event, previous holder).
    pub fn lease_log(&self, id: &str) -> Result<Vec<LeaseEvent>> {
        let rows = self.conn().query(
            "SELECT holder, event, previous, at_ms FROM lease_log WHERE datasource_id = ?1 ORDER BY seq",
            &args![id],
        )?;
        rows.iter()
            .map(|r| Ok(LeaseEvent { holder: r.get(0)?, event: r.get(1)?, previous: r.get(2)?, at_ms: r.get(3)? }))
            .collect()
    }

    pub(crate) fn write_tokens(&self, conn: &dyn Conn, id: &str, t: &TokensRecord) -> Result<()> {
        conn.execute(
            "UPDATE datasources SET access_token_sealed = ?2, refresh_token_sealed = ?3, expires_at = ?4 WHERE id = ?1",
            &args![
                id,
                self.seal("access_token", id, &t.access_token),
                self.seal("refresh_token", id, &t.refresh_token),
                t.expires_at as i64
            ],
        )?;
        Ok(())
    }

    /// Keep tokens a failed call refreshed.
    pub fn save_tokens(&self, id: &str, t: &TokensRecord) -> Result<()> {
        self.write_tokens(&**self.conn(), id, t)
    }

    /// Start a full listing under a new generation; the index is kept until the listing
    /// finishes and sweeps what it did not see.
    pub fn restart_listing(&self, id: &str) -> Result<()> {
        let conn = self.conn();
        let tx = Tx::begin(&**conn)?;
        tx.lock_datasource(id)?;
        Self::restart_listing_in(&tx, id)?;
        tx.commit()?;
        Ok(())
    }

    fn restart_listing_in(conn: &dyn Conn, id: &str) -> Result<()> {
        conn.execute(
            "UPDATE sync_state SET cursor = NULL, listing = 1, generation = generation + 1 WHERE datasource_id = ?1",
            &args![id],
        )?;
        // A parallel listing in progress belongs to the old generation.
        conn.execute("DELETE FROM listing_plans WHERE datasource_id = ?1", &args![id])?;
        Ok(())
    }

    /// The account's root namespace changed: store it and restart the listing, atomically.
    pub fn set_root_and_restart(&self, id: &str, root: &RootRecord) -> Result<()> {
        let conn = self.conn();
        let tx = Tx::begin(&**conn)?;
        tx.lock_datasource(id)?;
        let profile: String = tx
            .value_opt("SELECT profile_json FROM datasources WHERE id = ?1", &args![id])?
            .ok_or_else(|| StoreError::NoDatasource(id.to_string()))?;
        let mut profile: ProfileRecord = serde_json::from_str(&profile).map_err(corrupt("profile"))?;
        profile.root_info = root.clone();
        let profile = serde_json::to_string(&profile).map_err(corrupt("profile"))?;
        tx.execute("UPDATE datasources SET profile_json = ?2 WHERE id = ?1", &args![id, profile])?;
        Self::restart_listing_in(&tx, id)?;
        tx.commit()?;
        Ok(())
    }

    pub fn set_status(&self, id: &str, status: Status, detail: Option<&str>) -> Result<()> {
        self.conn().execute(
            "UPDATE datasources SET status = ?2, status_detail = ?3 WHERE id = ?1",
            &args![id, status.as_str(), detail],
        )?;
        Ok(())
    }

    /// Forget a datasource and everything indexed for it.
    /// With a sink registered, its documents are queued as deletes first, in the same
    /// transaction: the search engine forgets them too.
    pub fn remove_datasource(&self, id: &str) -> Result<bool> {
        let conn = self.conn();
        let tx = Tx::begin(&**conn)?;
        tx.lock_datasource(id)?;
        if self.outbox_on() {
            crate::outbox::record_all(&tx, id, crate::outbox::Op::Delete)?;
        }
        let removed = tx.execute("DELETE FROM datasources WHERE id = ?1", &args![id])? > 0;
        tx.commit()?;
        Ok(removed)
    }

    /// Bind one-use connect link `nonce` (valid until `expires_at`) to a browser, by the
    /// digest of the cookie `/connect` is about to give it. The first caller wins (an insert
    /// that only one can make); a later one holding the bound cookie (`presented`) is the same
    /// browser and is bound to its new cookie; anyone else gets `false`. Expired links are
    /// forgotten here (their keys sort by expiry).
    pub fn bind_connect_link(
        &self,
        nonce: &str,
        expires_at: u64,
        presented: Option<&str>,
        issued: &str,
    ) -> Result<bool> {
        let key = format!("connect-link:{expires_at:012}:{nonce}");
        let conn = self.conn();
        let tx = Tx::begin(&**conn)?;
        let expired = format!("connect-link:{:012}:", now_unix().max(0));
        tx.execute("DELETE FROM meta WHERE key >= 'connect-link:' AND key < ?1", &args![expired])?;
        let first = tx.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
            &args![key, issued],
        )? == 1;
        let bound = first || {
            let holder: Option<String> = tx.value_opt("SELECT value FROM meta WHERE key = ?1", &args![key])?;
            let same = holder.is_some() && holder.as_deref() == presented;
            if same {
                tx.execute("UPDATE meta SET value = ?2 WHERE key = ?1", &args![key, issued])?;
            }
            same
        };
        tx.commit()?;
        Ok(bound)
    }

    pub fn document_count(&self, id: &str) -> Result<u64> {
        let count = concat!("SELECT COUNT(*) FROM documents WHERE ds = ", ds_of!());
        Ok(self.conn().value::<i64>(count, &args![id])?.max(0) as u64)
    }

    /// Stream every indexed document's JSON (with its extracted content), in path order,
    /// without loading them all.
    pub fn for_each_document(&self, id: &str, mut f: impl FnMut(&str, &str) -> std::io::Result<()>) -> Result<u64> {
        use crate::content::{merge, Attached, ATTACHED_COLUMNS};
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

    /// Every datasource's schedule and progress, in one query.
    pub fn overview(&self) -> Result<Vec<Overview>> {
        let rows = self.conn().query(
            "SELECT d.id, d.name, d.connector_id, d.profile_json, d.status, d.status_detail, d.path, d.page_limit,
                    s.interval_secs, COALESCE(s.paused, 0), d.connected_at,
                    CASE WHEN st.cursor IS NULL THEN 0 ELSE 1 END, COALESCE(st.listing, 1), COALESCE(st.pages, 0),
                    st.last_synced_at, l.holder, l.expires_at
             FROM datasources d
             LEFT JOIN schedule s ON s.datasource_id = d.id
             LEFT JOIN sync_state st ON st.datasource_id = d.id
             LEFT JOIN sync_leases l ON l.datasource_id = d.id
             ORDER BY d.connected_at, d.id",
            &[],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let profile: ProfileRecord = serde_json::from_str(&r.get::<String>(3)?).map_err(corrupt("profile"))?;
            out.push(Overview {
                id: r.get(0)?,
                name: r.get(1)?,
                connector_id: r.get(2)?,
                account_id: profile.account_id,
                email: profile.email,
                status: Status::parse(&r.get::<String>(4)?),
                status_detail: r.get(5)?,
                path: r.get(6)?,
                page_limit: r.get(7)?,
                schedule: ScheduleRecord {
                    interval_secs: r.get::<Option<i64>>(8)?.map(|v| v.clamp(0, i64::from(u32::MAX)) as u32),
                    paused: r.get(9)?,
                },
                connected_at: r.get(10)?,
                cursor: r.get(11)?,
                listing: r.get(12)?,
                pages: r.get(13)?,
                last_synced_at: r.get(14)?,
                lease: match (r.get::<Option<String>>(15)?, r.get::<Option<i64>>(16)?) {
                    (Some(holder), Some(expires_at)) => Some(LeaseRecord { holder, expires_at }),
                    _ => None,
                },
            });
        }
        Ok(out)
    }

    /// Documents per datasource, in one pass over the index.
    pub fn document_counts(&self) -> Result<std::collections::HashMap<String, u64>> {
        let rows = self.conn().query(
            "SELECT k.id, COUNT(*) FROM documents d JOIN datasource_keys k ON k.ds = d.ds GROUP BY k.ds, k.id",
            &[],
        )?;
        rows.iter().map(|r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?.max(0) as u64))).collect()
    }

    /// Set the interval (None: the host default) and/or pause flag of a datasource.
    pub fn set_schedule(&self, id: &str, interval_secs: Option<Option<u32>>, paused: Option<bool>) -> Result<()> {
        let conn = self.conn();
        let tx = Tx::begin(&**conn)?;
        require_datasource(&tx, id)?;
        tx.execute("INSERT INTO schedule (datasource_id) VALUES (?1) ON CONFLICT DO NOTHING", &args![id])?;
        if let Some(interval) = interval_secs {
            tx.execute("UPDATE schedule SET interval_secs = ?2 WHERE datasource_id = ?1", &args![id, interval])?;
        }
        if let Some(p) = paused {
            tx.execute("UPDATE schedule SET paused = ?2 WHERE datasource_id = ?1", &args![id, p])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every registered connector (app), secrets unsealed: webhooks are signed with them.
    pub fn connectors(&self) -> Result<Vec<ConnectorRecord>> {
        let ids: Vec<String> = self.conn().column("SELECT id FROM connectors ORDER BY id", &[])?;
        let mut out = Vec::new();
        for id in ids {
            out.extend(self.connector(&id)?);
        }
        Ok(out)
    }

    /// (doc id, path_lower) of every indexed document.
    pub fn index_entries(&self, id: &str) -> Result<Vec<(String, String)>> {
        let rows =
            self.conn().query(concat!("SELECT doc_id, path_lower FROM documents WHERE ds = ", ds_of!()), &args![id])?;
        rows.iter().map(|r| Ok((r.get(0)?, r.get(1)?))).collect()
    }
}

/// One entry of a datasource's lease log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseEvent {
    pub holder: String,
    /// `acquired`, `took-over-expired`, `took-over-dead`, `page` (a page applied under the
    /// lease), `released`.
    pub event: String,
    /// The holder a takeover replaced.
    pub previous: Option<String>,
    pub at_ms: i64,
}

/// How long lease log entries are kept.
const LEASE_LOG_KEEP_MS: i64 = 7 * 24 * 3600 * 1000;

pub(crate) fn log_lease(tx: &dyn Conn, id: &str, holder: &str, event: &str, previous: Option<&str>) -> Result<()> {
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    if event == "acquired" {
        tx.execute(
            "DELETE FROM lease_log WHERE datasource_id = ?1 AND at_ms < ?2",
            &args![id, now_ms - LEASE_LOG_KEEP_MS],
        )?;
    }
    tx.execute(
        "INSERT INTO lease_log (datasource_id, holder, event, previous, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        &args![id, holder, event, previous, now_ms],
    )?;
    Ok(())
}

/// `LeaseLost` if another holder has the datasource's lease now (checked inside the caller's
/// transaction, under its datasource lock). No lease at all is no conflict: a caller stepping
/// without one (an embedding that schedules by itself) is still guarded by the cursor, and a
/// holder that released moved the cursor with its last page.
/// `Some(holder)` if the caller's `lease` holder has the lease (its pages go to the lease log).
pub(crate) fn require_lease<'h>(tx: &dyn Conn, id: &str, lease: Option<&'h str>) -> Result<Option<&'h str>> {
    let Some(holder) = lease else { return Ok(None) };
    let current: Option<String> =
        tx.value_opt("SELECT holder FROM sync_leases WHERE datasource_id = ?1", &args![id])?;
    match current {
        Some(other) if other != holder => Err(StoreError::LeaseLost(id.to_string())),
        Some(_) => Ok(Some(holder)),
        None => Ok(None),
    }
}

/// `NoDatasource` unless `id` exists: checked inside the caller's transaction, so the row
/// cannot disappear before its writes.
pub(crate) fn require_datasource(tx: &dyn Conn, id: &str) -> Result<()> {
    let exists: bool = tx.value("SELECT EXISTS (SELECT 1 FROM datasources WHERE id = ?1)", &args![id])?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::NoDatasource(id.to_string()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const KEY: &[u8] = b"store-test-master-key-0123456789abcdef";

    pub(crate) fn keys(master: &[u8]) -> Keys {
        Keys::from_master(master).unwrap()
    }

    /// A fresh store: SQLite in `dir`, or with `COCO_TEST_STORE=postgres` a fresh database on
    /// the `COCO_TEST_POSTGRES` server (`./dev test` runs these tests both ways).
    pub(crate) fn open_test_store(dir: &Path) -> Store {
        Store::open_at(&test_location(dir), keys(KEY)).unwrap()
    }

    pub(crate) fn test_location(dir: &Path) -> StateLocation {
        if on_postgres() {
            let admin = std::env::var("COCO_TEST_POSTGRES")
                .expect("COCO_TEST_STORE=postgres needs COCO_TEST_POSTGRES=postgres://… (./dev test sets both)");
            return StateLocation::Postgres(crate::db::scratch_database(&admin, "unit").unwrap());
        }
        StateLocation::Folder(dir.to_path_buf())
    }

    pub(crate) fn on_postgres() -> bool {
        std::env::var("COCO_TEST_STORE").as_deref() == Ok("postgres")
    }

    #[test]
    fn endpoints_changed_outside_coco_host_are_refused_for_that_row_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_test_store(dir.path());
        store.save_connected(&datasource("good")).unwrap();
        store.save_connected(&datasource("bad")).unwrap();
        let connector = ConnectorRecord {
            id: "dropbox".into(),
            client_id: "k".into(),
            client_secret: Secret::new("s"),
            redirect_uri: "http://127.0.0.1:9/connector/dropbox/dropbox/oauth_redirect".into(),
            endpoints: EndpointsRecord::single("http://127.0.0.1:9"),
        };
        store.upsert_connector(&connector).unwrap();
        assert_eq!(store.datasource("good").unwrap().endpoints, EndpointsRecord::single("http://127.0.0.1:9"));
        // Someone with write access to the database points them at their own host.
        let evil = serde_json::to_string(&EndpointsRecord::single("https://collector.example")).unwrap();
        store.conn().execute("UPDATE datasources SET endpoints_json = ?1 WHERE id = 'bad'", &args![evil]).unwrap();
        store.conn().execute("UPDATE connectors SET endpoints_json = ?1", &args![evil]).unwrap();
        let e = store.datasource("bad").unwrap_err().to_string();
        assert!(e.contains("datasource bad") && e.contains("collector.example") && e.contains("refusing"), "{e}");
        assert!(store.connector("dropbox").unwrap_err().to_string().contains("connector dropbox"));
        // A sealed value moved from another row does not open either.
        let sealed: String =
            store.conn().value("SELECT endpoints_json FROM datasources WHERE id = 'good'", &[]).unwrap();
        store.conn().execute("UPDATE datasources SET endpoints_json = ?1 WHERE id = 'bad'", &args![sealed]).unwrap();
        assert!(matches!(store.datasource("bad"), Err(StoreError::UntrustedEndpoints { .. })));
        // The other tenants go on.
        let ids: Vec<String> = store.datasources().unwrap().into_iter().map(|d| d.id).collect();
        assert_eq!(ids, ["good"]);
        // Rows from before sealing that name Dropbox itself stay readable.
        let plain = serde_json::to_string(&EndpointsRecord::dropbox()).unwrap();
        store.conn().execute("UPDATE datasources SET endpoints_json = ?1 WHERE id = 'bad'", &args![plain]).unwrap();
        assert_eq!(store.datasource("bad").unwrap().endpoints, EndpointsRecord::dropbox());
        assert!(!store
            .conn()
            .value::<String>("SELECT endpoints_json FROM datasources WHERE id = 'good'", &[])
            .unwrap()
            .contains("127.0.0.1"));
    }

    pub(crate) fn datasource(id: &str) -> DatasourceRecord {
        DatasourceRecord {
            id: id.into(),
            name: "n".into(),
            connector_id: "dropbox".into(),
            client_id: "k".into(),
            client_secret: Secret::new("s"),
            tokens: TokensRecord { access_token: Secret::new("a"), expires_at: 1, refresh_token: Secret::new("r") },
            profile: ProfileRecord::default(),
            endpoints: EndpointsRecord::single("http://127.0.0.1:9"),
            path: String::new(),
            page_limit: 0,
            owner_id: None,
            status: Status::Ok,
            status_detail: None,
        }
    }

    fn page<'a>(cursor: Option<&'a str>, generation: i64) -> PageApply<'a> {
        PageApply {
            expected_cursor: cursor,
            expected_generation: generation,
            deletes: &[],
            documents: &crate::documents::NO_DOCUMENTS,
            cursor: "C1",
            has_more: true,
            tokens: None,
            lease: None,
        }
    }

    /// A first page fetched for the old folder (cursor NULL) must not land after the folder
    /// changed, although the new listing's cursor is NULL too.
    #[test]
    fn a_postgres_state_never_shows_its_password() {
        let loc = StateLocation::parse("postgres://coco:s3cret-pw@127.0.0.1:5432/coco");
        assert!(matches!(loc, StateLocation::Postgres(_)));
        let shown = format!("{loc:?}");
        assert!(!shown.contains("s3cret-pw") && shown.contains("127.0.0.1:5432"), "{shown}");
        let err = crate::db::Postgres::connect("postgres://coco:s3cret-pw@127.0.0.1:9/coco").err().unwrap().to_string();
        assert!(!err.contains("s3cret-pw") && err.contains("127.0.0.1:9"), "{err}");
        assert_eq!(StateLocation::parse(".coco-state"), StateLocation::Folder(".coco-state".into()));
    }

    #[test]
    fn a_stale_first_page_is_refused_after_the_folder_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_test_store(dir.path());
        store.save_connected(&datasource("ds")).unwrap();
        let before = store.sync_state("ds").unwrap();
        assert_eq!(before.cursor, None);
        store.set_options("ds", "/Other", 0).unwrap();
        let after = store.sync_state("ds").unwrap();
        assert_eq!((after.cursor.as_deref(), after.generation), (None, before.generation + 1));
        let stale = store.apply_page("ds", &page(None, before.generation));
        assert!(matches!(stale, Err(StoreError::CursorConflict)), "{stale:?}");
        store.apply_page("ds", &page(None, after.generation)).unwrap();
        assert_eq!(store.sync_state("ds").unwrap().cursor.as_deref(), Some("C1"));
    }

    /// A group commit lands all its pages or none, refuses a group that starts stale or does
    /// not chain, and keeps the newest tokens any page refreshed.
    #[test]
    fn a_group_of_pages_lands_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_test_store(dir.path());
        store.save_connected(&datasource("ds")).unwrap();
        let st = store.sync_state("ds").unwrap();
        let doc = |n: u32| crate::documents::Document {
            id: format!("id{n}"),
            path_lower: format!("/f{n}"),
            json: format!("{{\"id\":\"id{n}\"}}"),
            ..Default::default()
        };
        let batches: Vec<crate::documents::Documents> = (0..3)
            .map(|p| crate::documents::Documents::from_docs(&(p * 10..p * 10 + 10).map(doc).collect::<Vec<_>>()))
            .collect();
        let cursors = ["C1", "C2", "C3"];
        let older = TokensRecord { access_token: Secret::new("a1"), expires_at: 10, refresh_token: Secret::new("r") };
        let newer = TokensRecord { access_token: Secret::new("a2"), expires_at: 20, refresh_token: Secret::new("r") };
        let group = |start: Option<&'static str>| -> Vec<PageApply<'_>> {
            let mut expected = start;
            (0..3)
                .map(|i| {
                    let p = PageApply {
                        expected_cursor: expected,
                        expected_generation: st.generation,
                        deletes: &[],
                        documents: &batches[i],
                        cursor: cursors[i],
                        has_more: i < 2,
                        tokens: [Some(&older), None, Some(&newer)][i],
                        lease: None,
                    };
                    expected = Some(cursors[i]);
                    p
                })
                .collect()
        };
        // Stale first cursor: nothing lands.
        assert!(matches!(store.apply_pages("ds", &group(Some("elsewhere"))), Err(StoreError::CursorConflict)));
        // A gap in the chain: nothing lands either.
        let mut gapped = group(None);
        gapped[2].expected_cursor = Some("C9");
        assert!(matches!(store.apply_pages("ds", &gapped), Err(StoreError::CursorConflict)));
        assert_eq!(store.document_count("ds").unwrap(), 0);
        assert_eq!(store.sync_state("ds").unwrap().cursor, None);

        let applied = store.apply_pages("ds", &group(None)).unwrap();
        assert_eq!(applied.iter().map(|a| a.upserted).collect::<Vec<_>>(), vec![10, 10, 10]);
        assert_eq!(store.document_count("ds").unwrap(), 30);
        let after = store.sync_state("ds").unwrap();
        assert_eq!((after.cursor.as_deref(), after.pages), (Some("C3"), st.pages + 3));
        let tokens = store.datasource("ds").unwrap().tokens;
        assert_eq!((tokens.access_token.expose(), tokens.expires_at), ("a2", 20));
        // Applying the same group again is refused (its first cursor is no longer current).
        assert!(matches!(store.apply_pages("ds", &group(None)), Err(StoreError::CursorConflict)));
    }

    /// A store with datasource "ds" whose parallel listing of the root has started at base
    /// cursor "BASE", and its generation.
    fn parallel_listing_started(dir: &std::path::Path) -> (Store, i64) {
        let store = open_test_store(dir);
        store.save_connected(&datasource("ds")).unwrap();
        let generation = store.sync_state("ds").unwrap().generation;
        store.start_listing_plan("ds", generation, "BASE", "", None).unwrap();
        (store, generation)
    }

    fn folder(path: &str) -> crate::documents::Document {
        crate::documents::Document {
            id: format!("id{path}"),
            path_lower: path.into(),
            json: "{}".into(),
            ..Default::default()
        }
    }

    fn file(path: &str) -> crate::documents::Document {
        crate::documents::Document { file: Some(Default::default()), ..folder(path) }
    }

    /// A big walk (its first page has more) is split into an expansion of its folder; the
    /// listing hands over to the base cursor only when that expansion is done too.
    #[test]
    fn a_big_walk_is_split_into_an_expansion_of_its_folder() {
        use crate::shards::{Shard, ShardPage};
        let dir = tempfile::tempdir().unwrap();
        let (store, generation) = parallel_listing_started(dir.path());
        let apply = |shard: &Shard, docs: Vec<crate::documents::Document>, has_more: bool| {
            let documents = crate::documents::Documents::from_docs(&docs);
            store
                .apply_shard_page(
                    "ds",
                    &ShardPage {
                        generation,
                        shard,
                        deletes: &[],
                        documents: &documents,
                        cursor: "next",
                        has_more,
                        tokens: None,
                        parallelism: 8,
                    },
                )
                .unwrap()
        };
        let pending = || store.listing_plan("ds", generation).unwrap().map(|p| p.pending).unwrap_or_default();
        let shard =
            |path: &str, recursive: bool, depth: u32| Shard { path: path.into(), recursive, depth, cursor: None };

        apply(&shard("", false, 0), vec![folder("/big")], false);
        assert_eq!(pending(), vec![shard("/big", false, 1)], "the root's child is expanded");
        apply(&shard("/big", false, 1), vec![folder("/big"), folder("/big/sub")], false);
        assert_eq!(pending(), vec![shard("/big/sub", true, 2)], "its children are walked");

        let first = apply(&shard("/big/sub", true, 2), vec![folder("/big/sub"), file("/big/sub/a.txt")], true);
        assert_eq!(first.split_into, Some(shard("/big/sub", false, 2)));
        assert!(!first.finished);
        assert_eq!(pending(), vec![shard("/big/sub", false, 2)], "the walk is gone, its expansion waits");
        assert_eq!(store.document_count("ds").unwrap(), 3, "the split page's documents are kept");

        let last = apply(&shard("/big/sub", false, 2), vec![file("/big/sub/a.txt")], false);
        assert!(last.split_into.is_none() && last.finished);
        assert_eq!(store.sync_state("ds").unwrap().cursor.as_deref(), Some("BASE"));
    }

    /// Shard pages that returned together land in one transaction, all or none: a stale page
    /// (its shard moved on) or a lease held elsewhere keeps the whole group out.
    #[test]
    fn a_group_of_shard_pages_lands_whole_or_not_at_all() {
        use crate::shards::{Shard, ShardPage};
        let dir = tempfile::tempdir().unwrap();
        let (store, generation) = parallel_listing_started(dir.path());
        let shard = |path: &str, cursor: Option<&str>| Shard {
            path: path.into(),
            recursive: true,
            depth: 1,
            cursor: cursor.map(str::to_string),
        };
        let root = Shard { path: String::new(), recursive: false, depth: 0, cursor: None };
        // Parallelism 0: the root's children are walks, and walks are never split.
        let page = |shard, documents, cursor, has_more| ShardPage {
            generation,
            shard,
            deletes: &[],
            documents,
            cursor,
            has_more,
            tokens: None,
            parallelism: 0,
        };
        let root_docs = crate::documents::Documents::from_docs(&[folder("/a"), folder("/b")]);
        store.apply_shard_pages("ds", &[page(&root, &root_docs, "r", false)], None).unwrap();
        let pending = || store.listing_plan("ds", generation).unwrap().map(|p| p.pending).unwrap_or_default();
        assert_eq!(pending(), vec![shard("/a", None), shard("/b", None)]);

        let a1 = crate::documents::Documents::from_docs(&[file("/a/1.txt")]);
        let b1 = crate::documents::Documents::from_docs(&[file("/b/1.txt")]);
        let (a, b) = (shard("/a", None), shard("/b", None));
        let applied =
            store.apply_shard_pages("ds", &[page(&a, &a1, "a-1", true), page(&b, &b1, "b-1", true)], None).unwrap();
        assert_eq!(applied.len(), 2);
        assert!(applied.iter().all(|x| x.applied.upserted == 1 && !x.finished));
        assert_eq!(pending(), vec![shard("/a", Some("a-1")), shard("/b", Some("b-1"))]);
        assert_eq!(store.document_count("ds").unwrap(), 4);

        // /b's page is fetched from a cursor /b has moved past: neither page lands.
        let a2 = crate::documents::Documents::from_docs(&[file("/a/2.txt")]);
        let (a_now, b_stale) = (shard("/a", Some("a-1")), shard("/b", None));
        let stale =
            store.apply_shard_pages("ds", &[page(&a_now, &a2, "a-2", false), page(&b_stale, &b1, "b-x", false)], None);
        assert!(matches!(stale, Err(StoreError::CursorConflict)), "{stale:?}");
        assert_eq!(pending(), vec![shard("/a", Some("a-1")), shard("/b", Some("b-1"))], "nothing moved");
        assert_eq!(store.document_count("ds").unwrap(), 4, "nothing of the group landed");

        // Another holder's lease keeps the group out too.
        store.acquire_lease("ds", "other-replica", std::time::Duration::from_secs(60)).unwrap();
        let b_now = shard("/b", Some("b-1"));
        let group = [page(&a_now, &a2, "a-2", false), page(&b_now, &b1, "b-2", false)];
        let lost = store.apply_shard_pages("ds", &group, Some("this-replica"));
        assert!(matches!(lost, Err(StoreError::LeaseLost(_))), "{lost:?}");
        assert_eq!(store.document_count("ds").unwrap(), 4);

        // Its holder lands it: both walks end and the listing hands over to the base cursor.
        let applied = store.apply_shard_pages("ds", &group, Some("other-replica")).unwrap();
        assert!(!applied[0].finished && applied[1].finished, "the last page of the group hands over");
        assert_eq!(store.document_count("ds").unwrap(), 5);
        assert_eq!(store.sync_state("ds").unwrap().cursor.as_deref(), Some("BASE"));
    }

    #[test]
    fn a_wrong_master_key_fails_at_open_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = test_location(dir.path());
        let store = Store::open_at(&path, keys(KEY)).unwrap();
        store.save_connected(&datasource("ds")).unwrap();
        drop(store);
        let other = Store::open_at(&path, keys(b"another-master-key-of-enough-length!!"));
        assert!(matches!(other, Err(StoreError::WrongKey)), "{:?}", other.err());
        let msg = StoreError::WrongKey.to_string();
        assert!(msg.contains(MASTER_KEY_ENV) && !msg.contains('\n'));
        // The right key still opens everything.
        let store = Store::open_at(&path, keys(KEY)).unwrap();
        assert_eq!(store.datasource("ds").unwrap().tokens.refresh_token.expose(), "r");
    }

    #[test]
    fn a_state_from_before_key_checks_must_open_with_the_key_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = test_location(dir.path());
        let store = Store::open_at(&path, keys(KEY)).unwrap();
        store
            .upsert_connector(&ConnectorRecord {
                id: "dropbox".into(),
                client_id: "k".into(),
                client_secret: Secret::new("s"),
                redirect_uri: "http://x/cb".into(),
                endpoints: EndpointsRecord::dropbox(),
            })
            .unwrap();
        store.conn().execute("DELETE FROM meta", &[]).unwrap();
        drop(store);
        assert!(matches!(
            Store::open_at(&path, keys(b"another-master-key-of-enough-length!!")),
            Err(StoreError::WrongKey)
        ));
        Store::open_at(&path, keys(KEY)).unwrap();
    }

    #[test]
    fn one_live_lease_holder_at_a_time_and_dead_holders_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_test_store(dir.path());
        store.save_connected(&datasource("ds")).unwrap();
        let ttl = std::time::Duration::from_secs(60);
        let me = new_lease_holder();
        let twin = new_lease_holder();
        store.acquire_lease("ds", &me, ttl).unwrap();
        store.acquire_lease("ds", &me, ttl).unwrap(); // renewal
        let refused = store.acquire_lease("ds", &twin, ttl);
        assert!(matches!(&refused, Err(StoreError::Leased { holder, .. }) if *holder == me), "{refused:?}");
        store.release_lease("ds", &twin).unwrap(); // not theirs to release
        assert_eq!(store.lease_holder("ds").unwrap().as_deref(), Some(me.as_str()));
        assert!(store.renew_lease("ds", &me, ttl).unwrap());
        assert!(!store.renew_lease("ds", &twin, ttl).unwrap(), "a renewal never takes another's lease");
        store.release_lease("ds", &me).unwrap();
        assert!(!store.renew_lease("ds", &me, ttl).unwrap(), "nor resurrects a released one");
        assert_eq!(store.lease_holder("ds").unwrap(), None);
        store.acquire_lease("ds", &twin, ttl).unwrap();
        // A holder that is a finished process of this machine is taken over at once.
        let dead = format!("{}:{}:00000000", hostname(), u32::MAX - 1);
        store.conn().execute("UPDATE sync_leases SET holder = ?1", &args![dead]).unwrap();
        store.acquire_lease("ds", &me, ttl).unwrap();
        assert!(matches!(store.acquire_lease("nope", &me, ttl), Err(StoreError::NoDatasource(_))));
    }

    /// A replica paused past its lease cannot land a page once another took the lease over;
    /// the lease log records the hand-over.
    #[test]
    fn a_page_from_a_holder_that_lost_its_lease_is_refused_and_the_log_shows_the_takeover() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_test_store(dir.path());
        store.save_connected(&datasource("ds")).unwrap();
        let ttl = std::time::Duration::from_secs(60);
        let (a, b) = (new_lease_holder(), new_lease_holder());
        store.acquire_lease("ds", &a, ttl).unwrap();
        store.conn().execute("UPDATE sync_leases SET expires_at = 0", &[]).unwrap(); // a's lease ran out
        store.acquire_lease("ds", &b, ttl).unwrap();
        let st = store.sync_state("ds").unwrap();
        let mut p = page(st.cursor.as_deref(), st.generation);
        p.lease = Some(&a);
        assert!(matches!(store.apply_page("ds", &p), Err(StoreError::LeaseLost(_))));
        p.lease = Some(&b);
        p.has_more = false;
        store.apply_page("ds", &p).unwrap();
        let log: Vec<(String, String, Option<String>)> =
            store.lease_log("ds").unwrap().into_iter().map(|e| (e.event, e.holder, e.previous)).collect();
        assert_eq!(
            log,
            vec![
                ("acquired".to_string(), a.clone(), None),
                ("took-over-expired".to_string(), b.clone(), Some(a.clone())),
                ("released".to_string(), b.clone(), None),
            ]
        );
        assert_eq!(store.lease_holder("ds").unwrap(), None, "the last page gave the lease back");
        // Delivery leases: one holder per (sink, datasource) until released.
        assert!(store.acquire_delivery("coco", "ds", &a, ttl).unwrap());
        assert!(!store.acquire_delivery("coco", "ds", &b, ttl).unwrap());
        assert!(store.acquire_delivery("es", "ds", &b, ttl).unwrap(), "another sink is another lease");
        store.release_delivery("coco", "ds", &b).unwrap(); // not b's to release
        assert!(!store.acquire_delivery("coco", "ds", &b, ttl).unwrap());
        store.release_delivery("coco", "ds", &a).unwrap();
        assert!(store.acquire_delivery("coco", "ds", &b, ttl).unwrap());
    }

    /// A state file with the datasources `ids`, then changed by `sql` into what an older
    /// release left behind: its `documents` (which `sql` creates again) and datasource keys
    /// are gone.
    fn older_state_file(dir: &Path, ids: &[&str], sql: &str) -> std::path::PathBuf {
        let path = dir.join("s.sqlite");
        let store = Store::open(&path, keys(KEY)).unwrap();
        for id in ids {
            store.save_connected(&datasource(id)).unwrap();
        }
        drop(store);
        let old = Connection::open(&path).unwrap();
        old.execute_batch("DROP TABLE documents; DROP TABLE datasource_keys;").unwrap();
        old.execute_batch(sql).unwrap();
        path
    }

    /// Documents as releases before datasource keys created them (content columns included).
    const TEXT_KEYED_DOCUMENTS: &str = "CREATE TABLE documents (
             datasource_id TEXT NOT NULL REFERENCES datasources(id) ON DELETE CASCADE,
             doc_id TEXT NOT NULL, path_lower TEXT NOT NULL, rev TEXT,
             generation INTEGER NOT NULL, json TEXT NOT NULL,
             content_state TEXT, content_text TEXT,
             PRIMARY KEY (datasource_id, doc_id));
         CREATE INDEX documents_by_path ON documents(datasource_id, path_lower);
         CREATE INDEX documents_content_queue ON documents(datasource_id) WHERE content_state = 'pending';";

    #[test]
    fn an_older_state_file_keyed_by_datasource_id_is_rebuilt_keyed_by_datasource_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = older_state_file(
            dir.path(),
            &["ds", "ds-2"],
            &format!(
                "{TEXT_KEYED_DOCUMENTS}
                 INSERT INTO documents (datasource_id, doc_id, path_lower, rev, generation, json, content_state,
                     content_text)
                     VALUES ('ds-2', 'd3', '/c', 'r3', 1, '{{}}', NULL, NULL),
                            ('ds', 'd1', '/a', 'r1', 1, '{{}}', 'done', 'hello'),
                            ('ds', 'd2', '/a/b', 'r2', 1, '{{}}', NULL, NULL);"
            ),
        );

        let store = Store::open(&path, keys(KEY)).unwrap();
        let columns: Vec<String> =
            store.conn().column("SELECT name FROM pragma_table_info('documents') ORDER BY cid", &[]).unwrap();
        assert_eq!(&columns[..2], ["ds", "doc_id"], "{columns:?}");
        assert!(!columns.contains(&"datasource_id".to_string()));
        let by_path: String =
            store.conn().value("SELECT sql FROM sqlite_master WHERE name = 'documents_by_path'", &[]).unwrap();
        assert!(by_path.contains("(ds, path_lower)"), "{by_path}");
        let entries = |id: &str| {
            let mut e = store.index_entries(id).unwrap();
            e.sort();
            e
        };
        assert_eq!(entries("ds"), [("d1".to_string(), "/a".to_string()), ("d2".into(), "/a/b".into())]);
        assert_eq!(entries("ds-2"), [("d3".to_string(), "/c".to_string())]);
        assert_eq!(store.content_counts("ds").unwrap().done, 1, "content columns come along");
        // The key stays unique, and removing a datasource still takes its documents.
        let dup = store.conn().execute(
            "INSERT INTO documents (ds, doc_id, path_lower, generation, json)
             VALUES ((SELECT ds FROM datasource_keys WHERE id = 'ds'), 'd1', '/b', 1, '{}')",
            &[],
        );
        assert!(dup.is_err(), "the key stays unique");
        assert!(store.remove_datasource("ds").unwrap());
        assert_eq!(store.document_count("ds").unwrap(), 0);
        assert_eq!(store.document_count("ds-2").unwrap(), 1);
        // Opening it again finds nothing left to do.
        drop(store);
        assert_eq!(Store::open(&path, keys(KEY)).unwrap().document_count("ds-2").unwrap(), 1);
    }

    #[test]
    fn an_older_state_file_with_clustered_tables_is_rebuilt_keeping_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        // As releases before 0.4 created it.
        let path = older_state_file(
            dir.path(),
            &["ds"],
            "CREATE TABLE documents (
                     datasource_id TEXT NOT NULL REFERENCES datasources(id) ON DELETE CASCADE,
                     doc_id TEXT NOT NULL, path_lower TEXT NOT NULL, rev TEXT,
                     generation INTEGER NOT NULL, json TEXT NOT NULL,
                     PRIMARY KEY (datasource_id, doc_id)) WITHOUT ROWID;
                 CREATE INDEX documents_by_path ON documents(datasource_id, path_lower);
                 INSERT INTO documents VALUES ('ds', 'd1', '/a', 'r', 1, '{\"id\":\"d1\"}');",
        );
        let store = Store::open(&path, keys(KEY)).unwrap();
        let sql: String = store.conn().value("SELECT sql FROM sqlite_master WHERE name = 'documents'", &[]).unwrap();
        assert!(!sql.contains("WITHOUT ROWID"), "{sql}");
        let indexes: i64 = store
            .conn()
            .value("SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'documents_by_path'", &[])
            .unwrap();
        assert_eq!(indexes, 1);
        assert_eq!(store.document_count("ds").unwrap(), 1);
        // Upserts still find the row by its key.
        let err = store.conn().execute(
            "INSERT INTO documents (ds, doc_id, path_lower, generation, json)
             VALUES ((SELECT ds FROM datasource_keys WHERE id = 'ds'), 'd1', '/b', 1, '{}')",
            &[],
        );
        assert!(err.is_err(), "the key stays unique");
    }

    #[test]
    fn an_older_state_file_with_a_content_table_moves_it_onto_the_documents() {
        let dir = tempfile::tempdir().unwrap();
        // As releases before the content columns created it: documents without them, the
        // content state in a table of its own (one row's document is gone).
        let path = older_state_file(
            dir.path(),
            &["ds"],
            "CREATE TABLE documents (
                     datasource_id TEXT NOT NULL REFERENCES datasources(id) ON DELETE CASCADE,
                     doc_id TEXT NOT NULL, path_lower TEXT NOT NULL, rev TEXT,
                     generation INTEGER NOT NULL, json TEXT NOT NULL,
                     PRIMARY KEY (datasource_id, doc_id));
                 CREATE INDEX documents_by_path ON documents(datasource_id, path_lower);
                 CREATE TABLE content (
                     datasource_id TEXT NOT NULL, doc_id TEXT NOT NULL, file_id TEXT NOT NULL,
                     name TEXT NOT NULL, rev TEXT, content_hash TEXT, size INTEGER NOT NULL,
                     downloadable INTEGER NOT NULL, export_json TEXT, kind TEXT NOT NULL,
                     state TEXT NOT NULL, reason TEXT, detail TEXT, text TEXT, format TEXT,
                     truncated INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0,
                     attempts INTEGER NOT NULL DEFAULT 0, not_before INTEGER NOT NULL DEFAULT 0,
                     claimed_until INTEGER NOT NULL DEFAULT 0, updated_at INTEGER NOT NULL,
                     PRIMARY KEY (datasource_id, doc_id));
                 INSERT INTO documents VALUES ('ds', 'd1', '/a.txt', 'r1', 1, '{\"id\":\"d1\"}');
                 INSERT INTO documents VALUES ('ds', 'd2', '/b.txt', 'r2', 1, '{\"id\":\"d2\"}');
                 INSERT INTO content (datasource_id, doc_id, file_id, name, rev, content_hash, size,
                     downloadable, kind, state, text, format, bytes, updated_at)
                     VALUES ('ds', 'd1', 'id:1', 'a.txt', 'r1', 'h1', 5, 1, 'text', 'done', 'hello', 'text', 5, 1);
                 INSERT INTO content (datasource_id, doc_id, file_id, name, rev, size, downloadable, kind,
                     state, updated_at)
                     VALUES ('ds', 'd2', 'id:2', 'b.txt', 'r2', 5, 1, 'text', 'pending', 1);
                 INSERT INTO content (datasource_id, doc_id, file_id, name, rev, size, downloadable, kind,
                     state, updated_at)
                     VALUES ('ds', 'gone', 'id:3', 'c.txt', 'r3', 5, 1, 'text', 'pending', 1);",
        );
        let store = Store::open(&path, keys(KEY)).unwrap();
        let old: i64 = store
            .conn()
            .value("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'content'", &[])
            .unwrap();
        assert_eq!(old, 0, "the old table goes");
        let mut docs = Vec::new();
        store
            .for_each_document("ds", |_, json| {
                docs.push(json.to_string());
                Ok(())
            })
            .unwrap();
        assert!(docs[0].contains(r#""content":"hello""#), "the extracted text is kept: {}", docs[0]);
        let counts = store.content_counts("ds").unwrap();
        assert_eq!((counts.done, counts.pending, counts.bytes_downloaded), (1, 1, 5));
        let jobs = store.claim_content("ds", 10, 60).unwrap();
        assert_eq!(jobs.len(), 1, "the pending file is still queued");
        assert_eq!((jobs[0].doc_id.as_str(), jobs[0].file_id.as_str()), ("d2", "id:2"));
        // Opening it again finds nothing left to do.
        drop(store);
        Store::open(&path, keys(KEY)).unwrap();
    }

    /// The opcodes SQLite compiles a file's insert into `documents` to.
    fn insert_opcodes(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare(
                "EXPLAIN INSERT INTO documents (ds, doc_id, path_lower, generation, json, content_state)
                 VALUES (1, 'x', '/x', 1, '{}', 'done')",
            )
            .unwrap();
        stmt.query_map([], |r| r.get::<_, String>(1)).unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn an_older_state_file_gets_the_content_state_check_without_a_temporary_table() {
        use crate::content::{CONTENT_STATE_DECL, CONTENT_STATE_DECL_BEFORE};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let store = Store::open(&path, keys(KEY)).unwrap();
        store.save_connected(&datasource("ds")).unwrap();
        drop(store);
        // As the previous release created it: the same table with the check written `IN (…)`.
        let old = Connection::open(&path).unwrap();
        let before = documents_table("documents").replace(CONTENT_STATE_DECL, CONTENT_STATE_DECL_BEFORE);
        assert!(before.contains(CONTENT_STATE_DECL_BEFORE));
        old.execute_batch(&format!(
            "DROP TABLE documents; {before};
             INSERT INTO datasource_keys (id) VALUES ('ds');
             INSERT INTO documents (ds, doc_id, path_lower, generation, json, content_state)
                 VALUES ((SELECT ds FROM datasource_keys WHERE id = 'ds'), 'd1', '/a.txt', 1, '{{}}', 'pending');"
        ))
        .unwrap();
        assert!(insert_opcodes(&old).iter().any(|op| op == "OpenEphemeral"), "the old check builds a temporary table");
        drop(old);

        let store = Store::open(&path, keys(KEY)).unwrap();
        let sql: String = store.conn().value("SELECT sql FROM sqlite_master WHERE name = 'documents'", &[]).unwrap();
        assert!(sql.contains(CONTENT_STATE_DECL) && !sql.contains(CONTENT_STATE_DECL_BEFORE), "{sql}");
        assert_eq!(store.document_count("ds").unwrap(), 1, "rows are kept");
        let bogus = store.conn().execute("UPDATE documents SET content_state = 'bogus' WHERE doc_id = 'd1'", &[]);
        assert!(format!("{:?}", bogus.unwrap_err()).contains("CHECK"), "the check still holds");
        drop(store);
        let reopened = Connection::open(&path).unwrap();
        assert!(!insert_opcodes(&reopened).iter().any(|op| op == "OpenEphemeral"));
        let quick: String = reopened.query_row("PRAGMA quick_check", [], |r| r.get(0)).unwrap();
        assert_eq!(quick, "ok");
        drop(reopened);
        // Opening it again finds nothing left to do.
        Store::open(&path, keys(KEY)).unwrap();
    }

    #[test]
    fn a_fresh_state_checks_the_content_state_without_a_temporary_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        drop(Store::open(&path, keys(KEY)).unwrap());
        let ops = insert_opcodes(&Connection::open(&path).unwrap());
        assert!(!ops.iter().any(|op| op == "OpenEphemeral"), "{ops:?}");
    }

    #[test]
    fn replicas_starting_together_on_a_fresh_state_all_open_it() {
        let dir = tempfile::tempdir().unwrap();
        let location = test_location(dir.path());
        let opened: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> =
                (0..4).map(|_| scope.spawn(|| Store::open_at(&location, keys(KEY)).map(|_| ()))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for result in opened {
            result.expect("every replica opens the state its peers are creating");
        }
        let store = Store::open_at(&location, keys(KEY)).unwrap();
        store.save_connected(&datasource("ds-1")).unwrap();
        assert_eq!(store.overview().unwrap().len(), 1, "one schema, usable");
    }
}
