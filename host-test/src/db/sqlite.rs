//! SQLite: the embedded default. One file, one writer at a time (`BEGIN IMMEDIATE`).

use std::sync::Arc;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params_from_iter, Connection};

use super::{Checkpointer, Conn, DbResult, Dialect, Row, Value};

pub struct Sqlite {
    conn: Connection,
    checkpointer: Checkpointer,
}

impl Sqlite {
    /// The writer of a state file, with its WAL checkpoints copied ahead on their own thread.
    pub fn with_checkpointer(conn: Connection, checkpointer: Checkpointer) -> Self {
        Sqlite { conn, checkpointer }
    }

    /// After a write of `rows` rows: if it is committed (an explicit `COMMIT`, or a statement
    /// outside a transaction), the checkpoint thread may have frames to copy.
    fn wrote(&self, rows: u64) {
        self.checkpointer.wrote(rows);
        if self.conn.is_autocommit() {
            self.checkpointer.committed();
        }
    }

    /// The connection itself, for what only SQLite has (pragmas, rebuilding old tables).
    pub fn raw(&self) -> &Connection {
        &self.conn
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

fn value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

impl Conn for Sqlite {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&self, sql: &str, args: &[Value]) -> DbResult<u64> {
        let changed = self.conn.prepare_cached(sql)?.execute(params_from_iter(args))? as u64;
        self.wrote(changed);
        Ok(changed)
    }

    /// One prepared statement for every row: a page's upserts do not hash the statement's
    /// text into the statement cache once per row.
    fn execute_many(&self, sql: &str, rows: Vec<Vec<Value>>) -> DbResult<u64> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut changed = 0;
        for args in &rows {
            changed += stmt.execute(params_from_iter(args))? as u64;
        }
        drop(stmt);
        self.wrote(changed);
        Ok(changed)
    }

    fn query(&self, sql: &str, args: &[Value]) -> DbResult<Vec<Row>> {
        let mut out = Vec::new();
        self.for_each(sql, args, &mut |r| {
            out.push(r.clone());
            Ok(())
        })?;
        Ok(out)
    }

    fn for_each(&self, sql: &str, args: &[Value], f: &mut dyn FnMut(&Row) -> DbResult<()>) -> DbResult<()> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let columns: Arc<[String]> = stmt.column_names().iter().map(|c| c.to_string()).collect();
        let width = columns.len();
        let mut rows = stmt.query(params_from_iter(args))?;
        let mut row = Row { columns, values: Vec::with_capacity(width) };
        while let Some(r) = rows.next()? {
            row.values.clear();
            for i in 0..width {
                row.values.push(value(r.get_ref(i)?));
            }
            f(&row)?;
        }
        Ok(())
    }

    fn batch(&self, sql: &str) -> DbResult<()> {
        self.conn.execute_batch(sql)?;
        self.wrote(self.conn.changes());
        Ok(())
    }

    fn begin(&self) -> DbResult<()> {
        Ok(self.conn.execute_batch("BEGIN IMMEDIATE")?)
    }

    fn commit(&self) -> DbResult<()> {
        self.conn.execute_batch("COMMIT")?;
        self.wrote(0);
        Ok(())
    }

    fn rollback(&self) -> DbResult<()> {
        Ok(self.conn.execute_batch("ROLLBACK")?)
    }
}
