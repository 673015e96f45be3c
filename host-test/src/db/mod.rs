//! The SQL the store speaks, over two engines: SQLite (the embedded default, one process per
//! state file) and PostgreSQL (shared by several host replicas).
//!
//! The store's logic is written once against [`Conn`]; each engine translates what differs
//! (placeholders, value types, locking) and owns its schema. Statements are written in the
//! dialect both accept: `?N` placeholders, `ON CONFLICT … DO …`, `COALESCE`, `CASE`, `CAST`.

mod checkpoint;
pub mod pg_tls;
mod postgres;
mod sqlite;
mod value;

pub use self::checkpoint::{Checkpointer, AHEAD_ROWS, WRITER_PAGES};
pub use self::postgres::{redacted as postgres_redacted, Postgres};
pub use self::sqlite::Sqlite;
pub use self::value::{FromValue, Row, ToValue, Value};

/// Values for a statement's `?N` placeholders, in order.
#[macro_export]
macro_rules! args {
    () => { [] as [$crate::db::Value; 0] };
    ($($e:expr),+ $(,)?) => { [$($crate::db::ToValue::to_value(&$e)),+] };
}
pub use args;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    #[error("column {column}: expected {expected}, found {found}")]
    Type { column: String, expected: &'static str, found: &'static str },
    #[error("the statement returned no row")]
    NoRow,
    #[error("cannot start a thread: {0}")]
    Thread(String),
    #[error("cannot reach PostgreSQL at {0}")]
    Connect(String),
}

pub type DbResult<T> = std::result::Result<T, DbError>;

/// Which engine, where a statement or a lock must differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// One connection to the state database. Methods take `&self`: a connection is used by one
/// caller at a time (the store holds it behind a mutex), and transactions span calls.
pub trait Conn {
    fn dialect(&self) -> Dialect;
    /// Run one statement; the number of rows it changed.
    fn execute(&self, sql: &str, args: &[Value]) -> DbResult<u64>;
    /// Run one statement per row of `rows` (a page's upserts). PostgreSQL pipelines them;
    /// the rows are moved, not copied, to its worker thread.
    fn execute_many(&self, sql: &str, rows: Vec<Vec<Value>>) -> DbResult<u64> {
        let mut n = 0;
        for args in &rows {
            n += self.execute(sql, args)?;
        }
        Ok(n)
    }
    /// Every row of a query.
    fn query(&self, sql: &str, args: &[Value]) -> DbResult<Vec<Row>>;
    /// Rows one at a time, without holding them all (exports of a large index).
    fn for_each(&self, sql: &str, args: &[Value], f: &mut dyn FnMut(&Row) -> DbResult<()>) -> DbResult<()>;
    /// Several statements without arguments (schema).
    fn batch(&self, sql: &str) -> DbResult<()>;
    /// Start a write transaction. SQLite takes its write lock now (`BEGIN IMMEDIATE`), so a
    /// read-then-write inside it cannot interleave with another process's.
    fn begin(&self) -> DbResult<()>;
    fn commit(&self) -> DbResult<()>;
    fn rollback(&self) -> DbResult<()>;
}

/// Shorthands every connection (and transaction) has.
pub trait ConnExt: Conn {
    /// The first row, if any.
    fn query_opt(&self, sql: &str, args: &[Value]) -> DbResult<Option<Row>> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// The first column of the first row; `NoRow` if there is none.
    fn value<T: FromValue>(&self, sql: &str, args: &[Value]) -> DbResult<T> {
        self.query_opt(sql, args)?.ok_or(DbError::NoRow)?.get(0)
    }

    /// The first column of the first row, if there is one.
    fn value_opt<T: FromValue>(&self, sql: &str, args: &[Value]) -> DbResult<Option<T>> {
        self.query_opt(sql, args)?.map(|r| r.get(0)).transpose()
    }

    /// The first column of every row.
    fn column<T: FromValue>(&self, sql: &str, args: &[Value]) -> DbResult<Vec<T>> {
        self.query(sql, args)?.iter().map(|r| r.get(0)).collect()
    }

    /// Serialise writers of one datasource until this transaction ends. SQLite's write lock
    /// already does; PostgreSQL takes a transaction-scoped advisory lock, so that outbox
    /// sequence numbers of one datasource commit in order and a read-then-write (cursor check,
    /// lease) is not raced by another replica.
    fn lock_datasource(&self, id: &str) -> DbResult<()> {
        match self.dialect() {
            Dialect::Sqlite => Ok(()),
            Dialect::Postgres => {
                self.query("SELECT 1 FROM (SELECT pg_advisory_xact_lock(hashtextextended(?1, 7))) l", &args![id])?;
                Ok(())
            }
        }
    }

    /// Appended to a `SELECT` that claims queued rows: replicas skip rows another one is
    /// claiming instead of waiting for it (SQLite has one writer and needs nothing).
    fn skip_locked(&self) -> &'static str {
        match self.dialect() {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }
}

impl<C: Conn + ?Sized> ConnExt for C {}

/// A write transaction; rolled back unless committed.
pub struct Tx<'c> {
    conn: &'c dyn Conn,
    open: bool,
}

impl<'c> Tx<'c> {
    pub fn begin(conn: &'c dyn Conn) -> DbResult<Self> {
        conn.begin()?;
        Ok(Tx { conn, open: true })
    }

    pub fn commit(mut self) -> DbResult<()> {
        self.open = false;
        self.conn.commit()
    }
}

impl Conn for Tx<'_> {
    fn dialect(&self) -> Dialect {
        self.conn.dialect()
    }
    fn execute(&self, sql: &str, args: &[Value]) -> DbResult<u64> {
        self.conn.execute(sql, args)
    }
    fn execute_many(&self, sql: &str, rows: Vec<Vec<Value>>) -> DbResult<u64> {
        self.conn.execute_many(sql, rows)
    }
    fn query(&self, sql: &str, args: &[Value]) -> DbResult<Vec<Row>> {
        self.conn.query(sql, args)
    }
    fn for_each(&self, sql: &str, args: &[Value], f: &mut dyn FnMut(&Row) -> DbResult<()>) -> DbResult<()> {
        self.conn.for_each(sql, args, f)
    }
    fn batch(&self, sql: &str) -> DbResult<()> {
        self.conn.batch(sql)
    }
    fn begin(&self) -> DbResult<()> {
        self.conn.begin()
    }
    fn commit(&self) -> DbResult<()> {
        self.conn.commit()
    }
    fn rollback(&self) -> DbResult<()> {
        self.conn.rollback()
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.rollback();
        }
    }
}

/// `?N` (and bare `?`) placeholders as PostgreSQL's `$N`, outside string literals and quoted
/// names.
pub fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    let mut next = 1;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                out.push(c);
            }
            (Some(_), c) => out.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            (None, '?') => {
                out.push('$');
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if digits.is_empty() {
                    out.push_str(&next.to_string());
                    next += 1;
                } else {
                    out.push_str(&digits);
                }
            }
            (None, c) => out.push(c),
        }
    }
    out
}

/// Create an empty database beside the one `admin_url` names and return its URL: each test
/// (or benchmark run) gets its own on one throwaway server.
pub fn scratch_database(admin_url: &str, prefix: &str) -> DbResult<String> {
    let name = format!("{prefix}_{}_{:08x}", std::process::id(), rand::random::<u32>());
    let admin = Postgres::connect(admin_url)?;
    admin.batch(&format!("CREATE DATABASE {name}"))?;
    let mut url =
        url::Url::parse(admin_url).map_err(|e| DbError::Connect(format!("{}: {e}", postgres_redacted(admin_url))))?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_outside_literals() {
        assert_eq!(
            numbered_placeholders("SELECT ?1, ?12 || '?3' FROM t WHERE a = ?2 AND \"x?\" = ? AND b = ?"),
            "SELECT $1, $12 || '?3' FROM t WHERE a = $2 AND \"x?\" = $1 AND b = $2"
        );
        assert_eq!(numbered_placeholders("it''s ?1"), "it''s $1");
    }
}
