//! PostgreSQL: state shared by several host replicas.
//!
//! The store is synchronous and is called from async tasks, so the client lives on a worker
//! thread with its own single-threaded runtime; each call is a job sent to it (a blocking
//! round trip, as a SQLite call blocks on the disk). Prepared statements are cached per SQL
//! text. A connection that dropped is opened again at the next call outside a transaction.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Statement};

use super::pg_tls;
use super::{numbered_placeholders, Conn, DbError, DbResult, Dialect, Row, Value};

type Job = Box<dyn FnOnce(&mut Worker) + Send>;

pub struct Postgres {
    jobs: mpsc::Sender<Job>,
    in_tx: AtomicBool,
}

struct Worker {
    rt: tokio::runtime::Runtime,
    url: String,
    client: Client,
    statements: HashMap<String, (Statement, Arc<[String]>)>,
}

/// The URL without its password, for messages.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(an unparsable PostgreSQL URL)".to_string(),
    }
}

fn pg_err(e: tokio_postgres::Error) -> DbError {
    match e.as_db_error() {
        Some(db) => DbError::Postgres(format!("{} ({})", db.message(), db.code().code())),
        None => DbError::Postgres(e.to_string()),
    }
}

async fn open(rt: &tokio::runtime::Runtime, url: &str) -> DbResult<Client> {
    let failed = |why: String| DbError::Connect(format!("{}: {why}", redacted(url)));
    let tls = pg_tls::split(url).map_err(failed)?;
    // A certificate problem in one line naming the server; anything else with its causes.
    let target = url::Url::parse(url)
        .map(|u| format!("{}:{}", u.host_str().unwrap_or("?"), u.port().unwrap_or(5432)))
        .unwrap_or_default();
    let why = |e: tokio_postgres::Error| {
        let f = crate::net::NetFailure::classify(&e, target.clone(), None);
        match f.kind {
            crate::net::failure::NetFailureKind::Certificate(_)
            | crate::net::failure::NetFailureKind::Hostname
            | crate::net::failure::NetFailureKind::Handshake(_) => f.to_string(),
            _ => crate::net::failure::reasons(&e),
        }
    };
    let client = match pg_tls::connector(&tls).map_err(failed)? {
        None => {
            let (client, connection) = tokio_postgres::connect(&tls.url, NoTls).await.map_err(|e| failed(why(e)))?;
            rt.spawn(async move {
                let _ = connection.await;
            });
            client
        }
        Some(connector) => {
            let (client, connection) =
                tokio_postgres::connect(&tls.url, connector).await.map_err(|e| failed(why(e)))?;
            rt.spawn(async move {
                let _ = connection.await;
            });
            client
        }
    };
    Ok(client)
}

/// Say once, at start, what `sslmode` protects against (libpq's meanings).
fn log_tls_mode(url: &str) {
    match pg_tls::split(url).map(|t| t.mode) {
        Ok(mode @ (pg_tls::SslMode::Prefer | pg_tls::SslMode::Require)) => tracing::warn!(
            "PostgreSQL: sslmode={} encrypts when it can but does not verify the server's certificate (libpq's meaning); use sslmode=verify-full",
            if mode == pg_tls::SslMode::Prefer { "prefer (the default)" } else { "require" }
        ),
        Ok(pg_tls::SslMode::Disable) => tracing::warn!("PostgreSQL: sslmode=disable, the connection is not encrypted"),
        Ok(mode) => tracing::info!(?mode, "PostgreSQL: TLS with the server's certificate verified"),
        Err(_) => {}
    }
}

impl Postgres {
    /// Connect to `url` (`postgres://user:password@host:port/db`).
    pub fn connect(url: &str) -> DbResult<Self> {
        log_tls_mode(url);
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready, started) = mpsc::sync_channel::<DbResult<()>>(1);
        let url = url.to_string();
        std::thread::Builder::new()
            .name("coco-postgres".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready.send(Err(DbError::Postgres(format!("cannot start its runtime: {e}"))));
                        return;
                    }
                };
                let client = match rt.block_on(open(&rt, &url)) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                let mut worker = Worker { rt, url, client, statements: HashMap::new() };
                while let Ok(job) = inbox.recv() {
                    job(&mut worker);
                }
            })
            .map_err(|e| DbError::Postgres(format!("cannot start its worker thread: {e}")))?;
        started.recv().map_err(|_| DbError::Postgres("its worker thread stopped".into()))??;
        Ok(Postgres { jobs, in_tx: AtomicBool::new(false) })
    }

    fn call<R: Send + 'static>(&self, f: impl FnOnce(&mut Worker) -> DbResult<R> + Send + 'static) -> DbResult<R> {
        let (reply, answer) = mpsc::sync_channel(1);
        let reconnect = !self.in_tx.load(Ordering::SeqCst);
        self.jobs
            .send(Box::new(move |w: &mut Worker| {
                let result = if reconnect && w.client.is_closed() { w.reconnect() } else { Ok(()) };
                let _ = reply.send(result.and_then(|()| f(w)));
            }))
            .map_err(|_| DbError::Postgres("its worker thread stopped".into()))?;
        answer.recv().map_err(|_| DbError::Postgres("its worker thread stopped".into()))?
    }
}

impl Worker {
    fn reconnect(&mut self) -> DbResult<()> {
        self.statements.clear();
        self.client = self.rt.block_on(open(&self.rt, &self.url))?;
        Ok(())
    }

    fn prepare(&mut self, sql: &str) -> DbResult<(Statement, Arc<[String]>)> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let st = self.rt.block_on(self.client.prepare(&numbered_placeholders(sql))).map_err(pg_err)?;
        let columns: Arc<[String]> = st.columns().iter().map(|c| c.name().to_string()).collect();
        self.statements.insert(sql.to_string(), (st.clone(), columns.clone()));
        Ok((st, columns))
    }

    fn execute(&mut self, sql: &str, args: &[Value]) -> DbResult<u64> {
        let (st, _) = self.prepare(sql)?;
        let bound = bind(&st, args)?;
        self.rt.block_on(self.client.execute(&st, &refs(&bound))).map_err(pg_err)
    }

    fn query(&mut self, sql: &str, args: &[Value]) -> DbResult<Vec<Row>> {
        let (st, columns) = self.prepare(sql)?;
        let bound = bind(&st, args)?;
        let rows = self.rt.block_on(self.client.query(&st, &refs(&bound))).map_err(pg_err)?;
        rows.iter().map(|r| Ok(Row { columns: columns.clone(), values: values(r)? })).collect()
    }
}

type Bound = Box<dyn ToSql + Sync + Send>;

fn refs(bound: &[Bound]) -> Vec<&(dyn ToSql + Sync)> {
    bound.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync)).collect()
}

/// Each argument as the Rust type PostgreSQL expects at its placeholder.
fn bind(st: &Statement, args: &[Value]) -> DbResult<Vec<Bound>> {
    if st.params().len() != args.len() {
        return Err(DbError::Postgres(format!(
            "the statement takes {} arguments, {} given",
            st.params().len(),
            args.len()
        )));
    }
    st.params().iter().zip(args).enumerate().map(|(i, (ty, v))| bind_one(i + 1, ty, v)).collect()
}

fn bind_one(at: usize, ty: &Type, v: &Value) -> DbResult<Bound> {
    let wrong =
        || DbError::Type { column: format!("${at}"), expected: "a value of the parameter's type", found: v.kind() };
    let int = |v: &Value| match v {
        Value::Null => Ok(None),
        Value::Int(i) => Ok(Some(*i)),
        _ => Err(wrong()),
    };
    Ok(match *ty {
        Type::INT8 => Box::new(int(v)?),
        Type::INT4 => Box::new(int(v)?.map(i32::try_from).transpose().map_err(|_| wrong())?),
        Type::INT2 => Box::new(int(v)?.map(i16::try_from).transpose().map_err(|_| wrong())?),
        Type::BOOL => Box::new(int(v)?.map(|i| i != 0)),
        Type::FLOAT8 => Box::new(match v {
            Value::Null => None,
            Value::Real(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => return Err(wrong()),
        }),
        Type::BYTEA => Box::new(match v {
            Value::Null => None,
            Value::Blob(b) => Some(b.clone()),
            _ => return Err(wrong()),
        }),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => Box::new(match v {
            Value::Null => None,
            Value::Text(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            _ => return Err(wrong()),
        }),
        _ => {
            return Err(DbError::Type {
                column: format!("${at}"),
                expected: "a parameter of type bigint, integer, boolean, text or bytea",
                found: "another type",
            })
        }
    })
}

fn values(row: &tokio_postgres::Row) -> DbResult<Vec<Value>> {
    let mut out = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let get_err = |e: tokio_postgres::Error| DbError::Postgres(format!("column {}: {e}", col.name()));
        let v = match *col.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(i).map_err(get_err)?.map(Value::Int),
            Type::INT4 => row.try_get::<_, Option<i32>>(i).map_err(get_err)?.map(|v| Value::Int(v.into())),
            Type::INT2 => row.try_get::<_, Option<i16>>(i).map_err(get_err)?.map(|v| Value::Int(v.into())),
            Type::BOOL => row.try_get::<_, Option<bool>>(i).map_err(get_err)?.map(|v| Value::Int(v.into())),
            Type::FLOAT8 => row.try_get::<_, Option<f64>>(i).map_err(get_err)?.map(Value::Real),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                row.try_get::<_, Option<String>>(i).map_err(get_err)?.map(Value::Text)
            }
            Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i).map_err(get_err)?.map(Value::Blob),
            _ => {
                return Err(DbError::Type {
                    column: col.name().to_string(),
                    expected: "bigint, integer, boolean, text or bytea (CAST it)",
                    found: "another type",
                })
            }
        };
        out.push(v.unwrap_or(Value::Null));
    }
    Ok(out)
}

impl Conn for Postgres {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&self, sql: &str, args: &[Value]) -> DbResult<u64> {
        let (sql, args) = (sql.to_string(), args.to_vec());
        self.call(move |w| w.execute(&sql, &args))
    }

    fn execute_many(&self, sql: &str, rows: Vec<Vec<Value>>) -> DbResult<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        let sql = sql.to_string();
        self.call(move |w| {
            let (st, _) = w.prepare(&sql)?;
            let bound = rows.iter().map(|r| bind(&st, r)).collect::<DbResult<Vec<_>>>()?;
            let refs: Vec<_> = bound.iter().map(|b| refs(b)).collect();
            // Sent together, answered in order: one round trip's wait instead of one per row.
            let client = &w.client;
            let all = futures_util::future::try_join_all(refs.iter().map(|r| client.execute(&st, r)));
            Ok(w.rt.block_on(all).map_err(pg_err)?.into_iter().sum())
        })
    }

    fn query(&self, sql: &str, args: &[Value]) -> DbResult<Vec<Row>> {
        let (sql, args) = (sql.to_string(), args.to_vec());
        self.call(move |w| w.query(&sql, &args))
    }

    /// A server-side cursor read 512 rows at a time: memory stays flat however many rows.
    fn for_each(&self, sql: &str, args: &[Value], f: &mut dyn FnMut(&Row) -> DbResult<()>) -> DbResult<()> {
        let own = !self.in_tx.load(Ordering::SeqCst);
        if own {
            self.begin()?;
        }
        let result = (|| {
            self.execute(&format!("DECLARE coco_rows NO SCROLL CURSOR FOR {sql}"), args)?;
            loop {
                let rows = self.query("FETCH 512 FROM coco_rows", &[])?;
                if rows.is_empty() {
                    break;
                }
                for r in &rows {
                    f(r)?;
                }
            }
            self.execute("CLOSE coco_rows", &[])?;
            Ok(())
        })();
        if own {
            match &result {
                Ok(()) => self.commit()?,
                Err(_) => {
                    let _ = self.rollback();
                }
            }
        }
        result
    }

    fn batch(&self, sql: &str) -> DbResult<()> {
        let sql = sql.to_string();
        self.call(move |w| w.rt.block_on(w.client.batch_execute(&sql)).map_err(pg_err))
    }

    fn begin(&self) -> DbResult<()> {
        self.batch("BEGIN")?;
        self.in_tx.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn commit(&self) -> DbResult<()> {
        self.in_tx.store(false, Ordering::SeqCst);
        self.batch("COMMIT")
    }

    fn rollback(&self) -> DbResult<()> {
        self.in_tx.store(false, Ordering::SeqCst);
        self.batch("ROLLBACK")
    }
}
