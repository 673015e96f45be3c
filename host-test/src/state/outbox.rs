//! The outbox: every change the index takes, recorded in the same transaction as the page that
//! caused it, for sinks (a search engine, Coco Server, a file) to deliver at least once, in
//! order per datasource, idempotent by document id.
//!
//! Rows name a document and an operation only. An upsert is delivered with the document's
//! JSON as it is when delivered (an upsert whose document was deleted since is skipped: its
//! delete row follows), so a backlog delivers each document's latest version once. Each sink
//! keeps, per datasource, the highest sequence number it delivered; rows every sink has
//! delivered are pruned. Nothing is written while no sink is registered.

use crate::db::{args, Conn, ConnExt, Tx, Value};

use super::{ds_of, Result, Store};

/// What happened to a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Upsert,
    Delete,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Upsert => "upsert",
            Op::Delete => "delete",
        }
    }
}

/// One outbox row as a sink reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub seq: i64,
    pub doc_id: String,
    pub op: Op,
    /// The document's current JSON (upserts whose document still exists).
    pub json: Option<String>,
}

/// A change to deliver, after coalescing a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Upsert { doc_id: String, json: String },
    Delete { doc_id: String },
}

/// Keep, per document, only its last operation in the batch (in the order of those last
/// operations), and drop upserts of documents that no longer exist.
pub fn coalesce(batch: &[Pending]) -> Vec<Change> {
    let mut last: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, p) in batch.iter().enumerate() {
        last.insert(p.doc_id.as_str(), i);
    }
    batch
        .iter()
        .enumerate()
        .filter(|(i, p)| last.get(p.doc_id.as_str()) == Some(i))
        .filter_map(|(_, p)| match (p.op, &p.json) {
            (Op::Delete, _) => Some(Change::Delete { doc_id: p.doc_id.clone() }),
            (Op::Upsert, Some(json)) => Some(Change::Upsert { doc_id: p.doc_id.clone(), json: json.clone() }),
            (Op::Upsert, None) => None,
        })
        .collect()
}

/// A sink's delivery state for one datasource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backlog {
    pub sink: String,
    pub datasource_id: String,
    pub pending: u64,
    pub delivered: u64,
    pub last_error: Option<String>,
}

/// Record `op` for every document of `id` whose path is `path_lower` or below it (a delete's
/// subtree), before the page removes them.
pub(crate) fn record_subtree(conn: &dyn Conn, id: &str, path_lower: &str, op: Op) -> Result<()> {
    conn.execute(
        concat!(
            "INSERT INTO outbox (datasource_id, doc_id, op) SELECT ?1, doc_id, ?3 FROM documents WHERE ds = ",
            ds_of!(),
            " AND path_lower = ?2"
        ),
        &args![id, path_lower, op.as_str()],
    )?;
    conn.execute(
        concat!(
            "INSERT INTO outbox (datasource_id, doc_id, op) SELECT ?1, doc_id, ?3 FROM documents WHERE ds = ",
            ds_of!(),
            " AND path_lower >= ?2 || '/' AND path_lower < ?2 || '0'"
        ),
        &args![id, path_lower, op.as_str()],
    )?;
    Ok(())
}

pub(crate) fn record(conn: &dyn Conn, id: &str, doc_id: &str, op: Op) -> Result<()> {
    conn.execute(
        "INSERT INTO outbox (datasource_id, doc_id, op) VALUES (?1, ?2, ?3)",
        &args![id, doc_id, op.as_str()],
    )?;
    Ok(())
}

/// One row per document, in order (a page's upserts).
pub(crate) fn record_many<'a>(conn: &dyn Conn, id: &str, doc_ids: impl Iterator<Item = &'a str>, op: Op) -> Result<()> {
    let rows: Vec<Vec<Value>> = doc_ids.map(|d| args![id, d, op.as_str()].to_vec()).collect();
    conn.execute_many("INSERT INTO outbox (datasource_id, doc_id, op) VALUES (?1, ?2, ?3)", rows)?;
    Ok(())
}

/// Deletes for documents the end-of-listing sweep is about to remove.
pub(crate) fn record_sweep(conn: &dyn Conn, id: &str, generation: i64) -> Result<()> {
    conn.execute(
        concat!(
            "INSERT INTO outbox (datasource_id, doc_id, op) SELECT ?1, doc_id, 'delete' FROM documents WHERE ds = ",
            ds_of!(),
            " AND generation < ?2"
        ),
        &args![id, generation],
    )?;
    Ok(())
}

/// Deletes for every document of a datasource that is being removed.
pub(crate) fn record_all(conn: &dyn Conn, id: &str, op: Op) -> Result<()> {
    conn.execute(
        concat!(
            "INSERT INTO outbox (datasource_id, doc_id, op) SELECT ?1, doc_id, ?2 FROM documents WHERE ds = ",
            ds_of!()
        ),
        &args![id, op.as_str()],
    )?;
    Ok(())
}

impl Store {
    /// Register a sink by name. A new sink starts with every indexed document queued as an
    /// upsert (other sinks get them again too, harmlessly: delivery is idempotent by id).
    /// Returns true if it was new.
    pub fn register_sink(&self, name: &str) -> Result<bool> {
        let conn = self.conn();
        let tx = Tx::begin(&**conn)?;
        let added = tx.execute(
            "INSERT INTO sinks (name, created_at) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
            &args![name, crate::clock::now_unix_i64()],
        )? == 1;
        if added {
            tx.execute(
                "INSERT INTO outbox (datasource_id, doc_id, op)
                 SELECT k.id, d.doc_id, 'upsert' FROM documents d JOIN datasource_keys k ON k.ds = d.ds",
                &[],
            )?;
        }
        tx.commit()?;
        self.set_outbox_on(true);
        Ok(added)
    }

    /// Forget a sink and its progress; with no sink left, the outbox is emptied and turned off.
    pub fn unregister_sink(&self, name: &str) -> Result<()> {
        let conn = self.conn();
        let tx = Tx::begin(&**conn)?;
        tx.execute("DELETE FROM sinks WHERE name = ?1", &args![name])?;
        let any: bool = tx.value("SELECT EXISTS (SELECT 1 FROM sinks)", &[])?;
        if !any {
            tx.execute("DELETE FROM outbox", &[])?;
        }
        tx.commit()?;
        self.set_outbox_on(any);
        Ok(())
    }

    /// Up to `limit` rows of `datasource_id` that `sink` has not delivered, oldest first.
    pub fn outbox_pending(&self, sink: &str, datasource_id: &str, limit: usize) -> Result<Vec<Pending>> {
        let conn = self.conn();
        let after = delivered_seq(&**conn, sink, datasource_id)?;
        use super::attached::{merge, Attached, ATTACHED_COLUMNS};
        let rows = conn.query(
            &format!(
                "SELECT o.seq, o.doc_id, o.op, d.json, {ATTACHED_COLUMNS} FROM outbox o
                 LEFT JOIN documents d ON d.ds = {ds} AND d.doc_id = o.doc_id
                 WHERE o.datasource_id = ?1 AND o.seq > ?2 ORDER BY o.seq LIMIT ?3",
                ds = ds_of!()
            ),
            &args![datasource_id, after, limit as i64],
        )?;
        rows.iter()
            .map(|r| {
                let op: String = r.get(2)?;
                let json: Option<String> = r.get(3)?;
                let attached = Attached::from_row(r, 4)?;
                Ok(Pending {
                    seq: r.get(0)?,
                    doc_id: r.get(1)?,
                    op: if op == "delete" { Op::Delete } else { Op::Upsert },
                    json: json.map(|j| merge(&j, &attached)),
                })
            })
            .collect()
    }

    /// `sink` delivered `datasource_id`'s rows up to `seq` (`count` changes): record it, clear
    /// its last error, and prune what every sink has delivered.
    pub fn mark_delivered(&self, sink: &str, datasource_id: &str, seq: i64, count: u64) -> Result<()> {
        let conn = self.conn();
        let tx = Tx::begin(&**conn)?;
        tx.execute(
            "INSERT INTO sink_progress (sink, datasource_id, delivered_seq, delivered_total)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(sink, datasource_id) DO UPDATE SET
                 delivered_seq = CASE WHEN sink_progress.delivered_seq > excluded.delivered_seq
                     THEN sink_progress.delivered_seq ELSE excluded.delivered_seq END,
                 delivered_total = sink_progress.delivered_total + excluded.delivered_total, last_error = NULL",
            &args![sink, datasource_id, seq, count as i64],
        )?;
        // Rows below every sink's progress (a sink with no progress row has delivered none).
        tx.execute(
            "DELETE FROM outbox WHERE datasource_id = ?1 AND seq <= (
                 SELECT MIN(COALESCE(p.delivered_seq, 0)) FROM sinks s
                 LEFT JOIN sink_progress p ON p.sink = s.name AND p.datasource_id = ?1)",
            &args![datasource_id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Why `sink`'s last delivery for `datasource_id` failed (kept until one succeeds).
    pub fn record_sink_error(&self, sink: &str, datasource_id: &str, error: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO sink_progress (sink, datasource_id, delivered_seq, last_error) VALUES (?1, ?2, 0, ?3)
             ON CONFLICT(sink, datasource_id) DO UPDATE SET last_error = ?3",
            &args![sink, datasource_id, error],
        )?;
        Ok(())
    }

    /// Datasources with changes `sink` has not delivered (removed ones included).
    pub fn outbox_datasources(&self, sink: &str) -> Result<Vec<String>> {
        Ok(self.conn().column(
            "SELECT DISTINCT o.datasource_id FROM outbox o
             LEFT JOIN sink_progress p ON p.sink = ?1 AND p.datasource_id = o.datasource_id
             WHERE o.seq > COALESCE(p.delivered_seq, 0)",
            &args![sink],
        )?)
    }

    /// Take the right to deliver `datasource_id`'s changes to `sink` for `ttl`: replicas sharing
    /// a state deliver each datasource's changes from one place at a time, so they reach the
    /// sink in order. False while another live holder has it (a holder that is a finished
    /// process of this machine, or whose lease ran out, is taken over).
    pub fn acquire_delivery(
        &self,
        sink: &str,
        datasource_id: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool> {
        let now = crate::clock::now_unix_i64();
        let conn = self.conn();
        let tx = Tx::begin(&**conn)?;
        tx.lock_datasource(&format!("deliver:{sink}:{datasource_id}"))?;
        let current = tx.query_opt(
            "SELECT holder, expires_at FROM delivery_leases WHERE sink = ?1 AND datasource_id = ?2",
            &args![sink, datasource_id],
        )?;
        if let Some(row) = current {
            let (other, until): (String, i64) = (row.get(0)?, row.get(1)?);
            if other != holder && until > now && super::lease_holder_alive(&other) {
                return Ok(false);
            }
        }
        tx.execute(
            "INSERT INTO delivery_leases (sink, datasource_id, holder, expires_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(sink, datasource_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at",
            &args![sink, datasource_id, holder, now + ttl.as_secs() as i64],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Give the delivery lease back (only if still ours).
    pub fn release_delivery(&self, sink: &str, datasource_id: &str, holder: &str) -> Result<()> {
        self.conn().execute(
            "DELETE FROM delivery_leases WHERE sink = ?1 AND datasource_id = ?2 AND holder = ?3",
            &args![sink, datasource_id, holder],
        )?;
        Ok(())
    }

    /// Every registered sink's backlog per datasource that has one or had an error.
    pub fn sink_backlogs(&self) -> Result<Vec<Backlog>> {
        let rows = self.conn().query(
            "SELECT s.name, d.id,
                    (SELECT COUNT(*) FROM outbox o WHERE o.datasource_id = d.id
                        AND o.seq > COALESCE(p.delivered_seq, 0)),
                    COALESCE(p.delivered_total, 0), p.last_error
             FROM sinks s CROSS JOIN datasources d
             LEFT JOIN sink_progress p ON p.sink = s.name AND p.datasource_id = d.id
             ORDER BY s.name, d.id",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                Ok(Backlog {
                    sink: r.get(0)?,
                    datasource_id: r.get(1)?,
                    pending: r.get::<i64>(2)?.max(0) as u64,
                    delivered: r.get::<i64>(3)?.max(0) as u64,
                    last_error: r.get(4)?,
                })
            })
            .collect()
    }
}

fn delivered_seq(conn: &dyn Conn, sink: &str, datasource_id: &str) -> Result<i64> {
    Ok(conn
        .value_opt(
            "SELECT delivered_seq FROM sink_progress WHERE sink = ?1 AND datasource_id = ?2",
            &args![sink, datasource_id],
        )?
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::{Document, Documents};
    use crate::state::tests::datasource;
    use crate::state::PageApply;

    fn doc(id: &str, path: &str) -> Document {
        Document {
            id: id.into(),
            path_lower: path.into(),
            rev: None,
            json: format!(r#"{{"id":"{id}","p":"{path}"}}"#),
            file: None,
        }
    }

    /// Apply one page at the datasource's current cursor.
    fn page(store: &Store, deletes: &[&str], docs: &[Document], has_more: bool) {
        let st = store.sync_state("ds").unwrap();
        let deletes: Vec<String> = deletes.iter().map(|d| d.to_string()).collect();
        let next = format!("C{}", st.pages + 1);
        store
            .apply_page(
                "ds",
                &PageApply {
                    expected_cursor: st.cursor.as_deref(),
                    expected_generation: st.generation,
                    deletes: &deletes,
                    documents: &Documents::from_docs(docs),
                    cursor: &next,
                    has_more,
                    tokens: None,
                    lease: None,
                },
            )
            .unwrap();
    }

    fn ops(store: &Store, sink: &str) -> Vec<(String, Op)> {
        store.outbox_pending(sink, "ds", 1000).unwrap().into_iter().map(|p| (p.doc_id, p.op)).collect()
    }

    #[test]
    fn pages_record_changes_only_with_a_sink_and_sinks_drain_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::state::tests::open_test_store(dir.path());
        store.save_connected(&datasource("ds")).unwrap();
        page(&store, &[], &[doc("f", "/f"), doc("x", "/f/x"), doc("y", "/f/y"), doc("fx", "/fx")], true);
        let outbox_rows = |s: &Store| -> i64 { s.conn().value("SELECT COUNT(*) FROM outbox", &[]).unwrap() };
        assert_eq!(outbox_rows(&store), 0, "no sink, no outbox");
        // A new sink starts from a backfill of what is indexed.
        assert!(store.register_sink("es").unwrap());
        assert!(!store.register_sink("es").unwrap());
        assert_eq!(ops(&store, "es").len(), 4);
        // A subtree delete is recorded per document id; a sibling with a shared prefix stays.
        page(&store, &["/f"], &[doc("z", "/z")], false);
        let after: Vec<(String, Op)> = ops(&store, "es").into_iter().skip(4).collect();
        let mut deleted: Vec<&str> = after.iter().filter(|(_, o)| *o == Op::Delete).map(|(d, _)| d.as_str()).collect();
        deleted.sort();
        assert_eq!(deleted, ["f", "x", "y"]);
        assert!(after.contains(&("z".to_string(), Op::Upsert)));
        // Coalesced, a backfilled upsert of a deleted document is not sent.
        let changes = coalesce(&store.outbox_pending("es", "ds", 1000).unwrap());
        assert!(changes.contains(&Change::Upsert { doc_id: "fx".into(), json: r#"{"id":"fx","p":"/fx"}"#.into() }));
        assert!(!changes.iter().any(|c| matches!(c, Change::Upsert { doc_id, .. } if doc_id == "x")));
        // Two sinks: rows go only when both delivered them.
        store.register_sink("coco").unwrap();
        let last = store.outbox_pending("es", "ds", 1000).unwrap().last().unwrap().seq;
        store.mark_delivered("es", "ds", last, 9).unwrap();
        assert!(ops(&store, "es").is_empty());
        assert!(!ops(&store, "coco").is_empty(), "coco has delivered nothing yet");
        let last = store.outbox_pending("coco", "ds", 10_000).unwrap().last().unwrap().seq;
        store.record_sink_error("coco", "ds", "coco answered 500").unwrap();
        let backlog = store.sink_backlogs().unwrap();
        let coco = backlog.iter().find(|b| b.sink == "coco").unwrap();
        assert_eq!(coco.last_error.as_deref(), Some("coco answered 500"));
        assert!(coco.pending > 0);
        store.mark_delivered("coco", "ds", last, 1).unwrap();
        assert_eq!(outbox_rows(&store), 0, "pruned once every sink delivered");
        assert_eq!(store.sink_backlogs().unwrap().iter().map(|b| b.pending).sum::<u64>(), 0);
        // Removing the datasource queues deletes of all its documents.
        store.remove_datasource("ds").unwrap();
        let mut gone: Vec<String> = ops(&store, "es").into_iter().map(|(d, _)| d).collect();
        gone.sort();
        assert_eq!(gone, ["fx", "z"]);
    }

    fn pending(seq: i64, doc: &str, op: Op, json: Option<&str>) -> Pending {
        Pending { seq, doc_id: doc.into(), op, json: json.map(str::to_string) }
    }

    #[test]
    fn a_batch_keeps_each_documents_last_operation_in_order() {
        let batch = [
            pending(1, "a", Op::Upsert, Some("A2")),
            pending(2, "b", Op::Upsert, Some("B")),
            pending(3, "a", Op::Delete, None),
            pending(4, "c", Op::Upsert, None),
            pending(5, "a", Op::Upsert, Some("A2")),
            pending(6, "d", Op::Delete, None),
        ];
        assert_eq!(
            coalesce(&batch),
            [
                Change::Upsert { doc_id: "b".into(), json: "B".into() },
                Change::Upsert { doc_id: "a".into(), json: "A2".into() },
                Change::Delete { doc_id: "d".into() },
            ],
            "a moved document is upserted once; c no longer exists (its delete follows later)"
        );
    }
}
