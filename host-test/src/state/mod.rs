//! Durable host state: connectors (app credentials), datasources (tokens, profile, endpoints,
//! options, status), sync state (cursor, generation), the document index, leases, the outbox
//! and the content queue. SQLite (a state folder) is the default; PostgreSQL (`--state
//! postgres://…`) lets several host replicas share one state (see [`crate::db`]).
//!
//! A page is applied in ONE transaction together with its cursor and tokens, so a crash at any
//! point loses nothing and replaying the same page is idempotent. Secrets are sealed at rest.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;

use crate::db::{args, Conn, ConnExt, DbError, Sqlite};
use crate::keys::{KeyError, Keys, MASTER_KEY_ENV};
use crate::secret::Secret;

pub mod attached;
pub mod content;
pub mod datasources;
pub mod index;
pub mod leases;
pub mod outbox;
mod pg_schema;
pub mod shards;
mod sqlite_schema;

use sqlite_schema::{documents_table, enter_wal, migrate, DOCUMENT_INDEXES, OPEN_BUSY_TIMEOUT, SCHEMA};

pub use datasources::{
    ConnectorRecord, DatasourceRecord, DatasourceView, EndpointsRecord, Overview, ProfileRecord, RootRecord,
    ScheduleRecord, Status, SyncState, TokensRecord,
};
pub use index::{Applied, PageApply};

pub use leases::{hostname, new_lease_holder, LeaseEvent, LeaseRecord};
pub(crate) use leases::{lease_holder_alive, log_lease, require_lease};

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

pub struct Store {
    conn: Mutex<Box<dyn Conn + Send>>,
    keys: Keys,
    /// A sink is registered: pages also record their changes in the outbox.
    outbox_on: std::sync::atomic::AtomicBool,
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

/// SQLite's page cache per connection, in KiB: `COCO_SQLITE_CACHE_MIB` (default 8 MiB).
fn sqlite_cache_kib() -> u64 {
    std::env::var("COCO_SQLITE_CACHE_MIB").ok().and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(8).clamp(1, 4096)
        * 1024
}

fn corrupt(what: &'static str) -> impl Fn(serde_json::Error) -> StoreError {
    move |e| StoreError::Corrupt { what, why: e.to_string() }
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
        tx.execute_batch(crate::state::content::SCHEMA)?;
        tx.execute_batch(crate::state::shards::SCHEMA)?;
        migrate(&tx)?;
        tx.execute_batch(DOCUMENT_INDEXES)?;
        tx.execute_batch(crate::state::content::INDEXES)?;
        tx.commit()?;
        let checkpointer = crate::db::Checkpointer::start(path, &conn, crate::db::AHEAD_ROWS, crate::db::WRITER_PAGES)?;
        Self::with_conn(Box::new(Sqlite::with_checkpointer(conn, checkpointer)), keys)
    }

    /// Connect to a PostgreSQL state shared by replicas, applying missing migrations.
    pub fn open_postgres(url: &str, keys: Keys) -> Result<Self> {
        let conn = crate::db::Postgres::connect(url)?;
        crate::state::pg_schema::migrate(&conn)?;
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

    #[test]
    fn a_datasource_view_reads_no_secret_and_agrees_with_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_test_store(dir.path());
        store
            .upsert_connector(&ConnectorRecord {
                id: "dropbox".into(),
                client_id: "k".into(),
                client_secret: Secret::new("s"),
                redirect_uri: "http://127.0.0.1/cb".into(),
                endpoints: EndpointsRecord::single("http://127.0.0.1:9"),
            })
            .unwrap();
        store.save_connected(&datasource("dsv")).unwrap();
        let record = store.datasource("dsv").unwrap();
        let view = store.datasource_view("dsv").unwrap();
        assert_eq!(
            (&view.id, &view.name, &view.connector_id, &view.endpoints, &view.path, view.status),
            (&record.id, &record.name, &record.connector_id, &record.endpoints, &record.path, record.status)
        );
        assert!(matches!(store.datasource_view("nope"), Err(StoreError::NoDatasource(_))));
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
        use crate::state::shards::{Shard, ShardPage};
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
        use crate::state::shards::{Shard, ShardPage};
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
        use crate::state::content::{CONTENT_STATE_DECL, CONTENT_STATE_DECL_BEFORE};
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
