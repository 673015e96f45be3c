//! The PostgreSQL schema, as numbered migrations applied at open. Every replica runs them;
//! an advisory lock makes one apply each migration while the others wait, and
//! `schema_migrations` records what is applied. Never edit a released migration: add one.
//!
//! Paths and ids compare byte-wise (`COLLATE "C"`), as in SQLite: a folder's subtree is the
//! range `path/` .. `path0`, which a locale's collation would not keep together.

use crate::db::{args, Conn, ConnExt, DbResult, Tx};

pub const MIGRATIONS: &[(i64, &str)] = &[(1, V1), (2, V2), (3, V3)];

const V1: &str = r#"
CREATE TABLE connectors (
    id TEXT COLLATE "C" PRIMARY KEY,
    client_id TEXT NOT NULL,
    client_secret_sealed TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    endpoints_json TEXT NOT NULL
);
CREATE TABLE datasources (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT NOT NULL,
    connector_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    client_secret_sealed TEXT NOT NULL,
    access_token_sealed TEXT NOT NULL,
    refresh_token_sealed TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    profile_json TEXT NOT NULL,
    endpoints_json TEXT NOT NULL,
    path TEXT NOT NULL DEFAULT '',
    page_limit BIGINT NOT NULL DEFAULT 0,
    owner_id TEXT,
    status TEXT NOT NULL DEFAULT 'ok',
    status_detail TEXT,
    connected_at BIGINT NOT NULL
);
CREATE TABLE sync_state (
    datasource_id TEXT COLLATE "C" PRIMARY KEY REFERENCES datasources(id) ON DELETE CASCADE,
    cursor TEXT,
    generation BIGINT NOT NULL DEFAULT 1,
    listing BIGINT NOT NULL DEFAULT 1,
    pages BIGINT NOT NULL DEFAULT 0,
    last_synced_at BIGINT,
    documents BIGINT
);
CREATE TABLE documents (
    datasource_id TEXT COLLATE "C" NOT NULL REFERENCES datasources(id) ON DELETE CASCADE,
    doc_id TEXT COLLATE "C" NOT NULL,
    path_lower TEXT COLLATE "C" NOT NULL,
    rev TEXT,
    generation BIGINT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (datasource_id, doc_id)
);
CREATE INDEX documents_by_path ON documents(datasource_id, path_lower);
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE schedule (
    datasource_id TEXT COLLATE "C" PRIMARY KEY REFERENCES datasources(id) ON DELETE CASCADE,
    interval_secs BIGINT,
    paused BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE outbox (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    datasource_id TEXT COLLATE "C" NOT NULL,
    doc_id TEXT COLLATE "C" NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('upsert', 'delete'))
);
CREATE INDEX outbox_by_datasource ON outbox(datasource_id, seq);
CREATE TABLE sinks (
    name TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);
CREATE TABLE sink_progress (
    sink TEXT NOT NULL REFERENCES sinks(name) ON DELETE CASCADE,
    datasource_id TEXT COLLATE "C" NOT NULL,
    delivered_seq BIGINT NOT NULL DEFAULT 0,
    delivered_total BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    PRIMARY KEY (sink, datasource_id)
);
CREATE TABLE sync_leases (
    datasource_id TEXT COLLATE "C" PRIMARY KEY REFERENCES datasources(id) ON DELETE CASCADE,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE lease_log (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    datasource_id TEXT COLLATE "C" NOT NULL,
    holder TEXT NOT NULL,
    event TEXT NOT NULL,
    previous TEXT,
    at_ms BIGINT NOT NULL
);
CREATE INDEX lease_log_by_datasource ON lease_log(datasource_id, at_ms);
CREATE TABLE delivery_leases (
    sink TEXT NOT NULL,
    datasource_id TEXT COLLATE "C" NOT NULL,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (sink, datasource_id)
);
CREATE TABLE content (
    datasource_id TEXT COLLATE "C" NOT NULL,
    doc_id TEXT COLLATE "C" NOT NULL,
    file_id TEXT NOT NULL,
    name TEXT NOT NULL,
    rev TEXT,
    content_hash TEXT,
    size BIGINT NOT NULL,
    downloadable BIGINT NOT NULL,
    export_json TEXT,
    kind TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'skipped', 'failed')),
    reason TEXT,
    detail TEXT,
    text TEXT,
    format TEXT,
    truncated BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0,
    attempts BIGINT NOT NULL DEFAULT 0,
    not_before BIGINT NOT NULL DEFAULT 0,
    claimed_until BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (datasource_id, doc_id),
    FOREIGN KEY (datasource_id) REFERENCES datasources(id) ON DELETE CASCADE
);
CREATE INDEX content_queue ON content(datasource_id, not_before) WHERE state = 'pending';
CREATE TABLE content_settings (
    datasource_id TEXT COLLATE "C" PRIMARY KEY REFERENCES datasources(id) ON DELETE CASCADE,
    enabled BIGINT NOT NULL DEFAULT 1,
    max_download_bytes BIGINT,
    max_text_bytes BIGINT,
    formats TEXT
);
CREATE TABLE listing_plans (
    datasource_id TEXT COLLATE "C" PRIMARY KEY REFERENCES datasources(id) ON DELETE CASCADE,
    generation BIGINT NOT NULL,
    base_cursor TEXT NOT NULL
);
CREATE TABLE listing_shards (
    datasource_id TEXT COLLATE "C" NOT NULL REFERENCES listing_plans(datasource_id) ON DELETE CASCADE,
    path TEXT COLLATE "C" NOT NULL,
    recursive BIGINT NOT NULL,
    depth BIGINT NOT NULL,
    cursor TEXT,
    done BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (datasource_id, path, recursive)
);
"#;

/// A file's content state moves onto its `documents` row (see `content::SCHEMA`): one random-keyed
/// row per listed file instead of two. The old table's rows are copied, then it goes.
const V2: &str = r#"
ALTER TABLE documents
    ADD COLUMN content_state TEXT CHECK (content_state IN ('pending', 'done', 'skipped', 'failed')),
    ADD COLUMN content_file_id TEXT,
    ADD COLUMN content_name TEXT,
    ADD COLUMN content_hash TEXT,
    ADD COLUMN content_size BIGINT,
    ADD COLUMN content_downloadable BIGINT,
    ADD COLUMN content_export_json TEXT,
    ADD COLUMN content_kind TEXT,
    ADD COLUMN content_reason TEXT,
    ADD COLUMN content_detail TEXT,
    ADD COLUMN content_format TEXT,
    ADD COLUMN content_truncated BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN content_bytes BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN content_attempts BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN content_not_before BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN content_claimed_until BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN content_updated_at BIGINT,
    ADD COLUMN content_text TEXT;
{COPY}
DROP TABLE content;
CREATE INDEX documents_content_queue ON documents(datasource_id, content_not_before)
    WHERE content_state = 'pending';
CREATE INDEX documents_content_counts
    ON documents(datasource_id, content_state, content_reason, content_bytes) WHERE content_state IS NOT NULL;
"#;

/// Documents are keyed by a small integer per datasource (`datasource_keys.ds`) instead of its
/// 32-character id, which began every index on the table (see `store::DOCUMENTS`). Dropping
/// the old column drops the key and the indexes built on it; they are made again on `ds`.
const V3: &str = r#"
CREATE TABLE datasource_keys (
    ds BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    id TEXT COLLATE "C" NOT NULL UNIQUE REFERENCES datasources(id) ON DELETE CASCADE
);
INSERT INTO datasource_keys (id) SELECT id FROM datasources ORDER BY id;
ALTER TABLE documents ADD COLUMN ds BIGINT;
UPDATE documents d SET ds = k.ds FROM datasource_keys k WHERE k.id = d.datasource_id;
ALTER TABLE documents DROP COLUMN datasource_id;
ALTER TABLE documents ALTER COLUMN ds SET NOT NULL;
ALTER TABLE documents ADD PRIMARY KEY (ds, doc_id);
ALTER TABLE documents ADD FOREIGN KEY (ds) REFERENCES datasource_keys(ds) ON DELETE CASCADE;
CREATE INDEX documents_by_path ON documents(ds, path_lower);
CREATE INDEX documents_content_queue ON documents(ds, content_not_before) WHERE content_state = 'pending';
CREATE INDEX documents_content_counts
    ON documents(ds, content_state, content_reason, content_bytes) WHERE content_state IS NOT NULL;
"#;

/// Apply the migrations this database lacks, one transaction each, under a lock every
/// replica takes first. A database newer than this build is refused rather than written to.
pub fn migrate(conn: &dyn Conn) -> DbResult<()> {
    // Even the bookkeeping table is created under the lock: PostgreSQL's `CREATE TABLE IF NOT
    // EXISTS` fails (duplicate type) when replicas starting together race on a fresh database.
    let tx = locked(conn)?;
    tx.batch("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")?;
    let newest = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    let applied: Vec<i64> = tx.column("SELECT version FROM schema_migrations ORDER BY version", &[])?;
    if let Some(v) = applied.iter().find(|v| **v > newest) {
        return Err(crate::db::DbError::Postgres(format!(
            "the database's schema is at version {v}, newer than this build knows ({newest}): upgrade coco-host"
        )));
    }
    tx.commit()?;
    for (version, sql) in MIGRATIONS {
        let tx = locked(conn)?;
        // Read again under this lock: another replica may have applied it meanwhile.
        if tx.value_opt::<i64>("SELECT version FROM schema_migrations WHERE version = ?1", &args![*version])?.is_none()
        {
            // `{COPY}`: the copy of old content rows, one text for both stores.
            tx.batch(&sql.replace("{COPY}", &format!("{};", super::content::COPY_OLD_TABLE)))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                &args![*version, crate::clock::now_unix_i64()],
            )?;
        }
        tx.commit()?;
    }
    Ok(())
}

/// A transaction holding the migration lock (released at its end).
fn locked(conn: &dyn Conn) -> DbResult<Tx<'_>> {
    let tx = Tx::begin(conn)?;
    tx.query("SELECT 1 FROM (SELECT pg_advisory_xact_lock(77330001)) l", &[])?;
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Postgres;

    /// A database a release with the separate `content` table left behind (schema 1): its
    /// content rows move onto their documents (2), which are then keyed by datasource key (3).
    #[test]
    fn schema_1_content_rows_move_onto_their_documents_keyed_by_datasource() {
        let Ok(admin) = std::env::var("COCO_TEST_POSTGRES") else {
            eprintln!("skipped: COCO_TEST_POSTGRES is not set (./dev test sets it)");
            return;
        };
        let conn = Postgres::connect(&crate::db::scratch_database(&admin, "migrate").unwrap()).unwrap();
        let tx = Tx::begin(&conn).unwrap();
        tx.batch("CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)").unwrap();
        tx.batch(V1).unwrap();
        tx.batch(
            "INSERT INTO schema_migrations VALUES (1, 0);
             INSERT INTO datasources (id, name, connector_id, client_id, client_secret_sealed, access_token_sealed,
                 refresh_token_sealed, expires_at, profile_json, endpoints_json, connected_at)
                 VALUES ('ds', 'n', 'dropbox', 'k', 'x', 'x', 'x', 0, '{}', '{}', 0),
                        ('ds-2', 'n', 'dropbox', 'k', 'x', 'x', 'x', 0, '{}', '{}', 0);
             INSERT INTO documents VALUES ('ds-2', 'd3', '/c.txt', 'r3', 1, '{\"id\":\"d3\"}');
             INSERT INTO documents VALUES ('ds', 'd1', '/a.txt', 'r1', 1, '{\"id\":\"d1\"}');
             INSERT INTO documents VALUES ('ds', 'd2', '/b.txt', 'r2', 1, '{\"id\":\"d2\"}');
             INSERT INTO content (datasource_id, doc_id, file_id, name, rev, content_hash, size, downloadable,
                 kind, state, text, format, bytes, updated_at)
                 VALUES ('ds', 'd1', 'id:1', 'a.txt', 'r1', 'h1', 5, 1, 'text', 'done', 'hello', 'text', 5, 1);",
        )
        .unwrap();
        tx.commit().unwrap();

        migrate(&conn).unwrap();
        let rows = conn
            .query(
                "SELECT k.id, d.doc_id, d.content_state, d.content_text, d.content_bytes
                 FROM documents d JOIN datasource_keys k ON k.ds = d.ds ORDER BY d.doc_id",
                &[],
            )
            .unwrap();
        type Got = (String, String, Option<String>, Option<String>, i64);
        let got: Vec<Got> = rows
            .iter()
            .map(|r| (r.get(0).unwrap(), r.get(1).unwrap(), r.get(2).unwrap(), r.get(3).unwrap(), r.get(4).unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("ds".into(), "d1".into(), Some("done".into()), Some("hello".into()), 5),
                ("ds".into(), "d2".into(), None, None, 0),
                ("ds-2".into(), "d3".into(), None, None, 0),
            ],
            "each document stays with its datasource, under that datasource's key"
        );
        // Removing a datasource still takes its documents with it (through its key).
        conn.execute("DELETE FROM datasources WHERE id = 'ds'", &[]).unwrap();
        let left: Vec<String> = conn.column("SELECT doc_id FROM documents ORDER BY doc_id", &[]).unwrap();
        assert_eq!(left, vec!["d3".to_string()]);
        let gone: bool = conn.value("SELECT to_regclass('content') IS NULL", &[]).unwrap();
        assert!(gone, "the old table goes");
        let versions: Vec<i64> = conn.column("SELECT version FROM schema_migrations ORDER BY version", &[]).unwrap();
        assert_eq!(versions, vec![1, 2, 3]);
    }
}
