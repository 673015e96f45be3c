//! WAL checkpoints copied ahead on their own connection and thread, so that the one inside a
//! commit finds little left to copy.
//!
//! SQLite's automatic checkpoint runs inside the `COMMIT` that crosses its threshold: the
//! listing's writer stops to copy the WAL into the database file (a tenth of a 1M-entry sync's
//! host CPU, measured in `bench/JOURNAL.md`), and in a parallel listing every other page waits
//! for it. Here the writer tells a thread what it committed; once [`AHEAD_ROWS`] rows are
//! waiting, the thread copies with `PRAGMA wal_checkpoint(PASSIVE)`, which never blocks a
//! writer and is as crash-safe as SQLite's own.
//!
//! The writer keeps its own checkpoint at [`WRITER_PAGES`], as before: it bounds the WAL
//! whatever the thread does, and it is what starts the WAL over (SQLite restarts the log only
//! when a transaction begins with every frame copied, which a thread racing a busy writer
//! rarely sees). By then the thread has copied all but the latest commit, so the part left
//! inside the commit is small.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags};

use super::{DbError, DbResult};

/// WAL pages (4 KiB) past which the writer checkpoints inside a commit: 64 MiB instead of
/// SQLite's 4 MiB. A listing's commits rewrite the same index pages, and a checkpoint copies a
/// page once however often it was written since.
pub const WRITER_PAGES: u32 = 16_384;

/// Rows written since the thread's last copy that make it copy again: a listing page's worth.
/// A listing copies after every commit (each holds thousands of rows); a server's small
/// commits (tokens, cursors, single changes) are copied together, not one fsync pair each.
pub const AHEAD_ROWS: u64 = 2_000;

/// Copy passes per nudge: each copies what was committed during the one before, so a few
/// passes catch up with a writer that keeps committing; the next nudge carries on.
const MAX_PASSES: usize = 8;

/// The checkpoint thread of one state file. The writer reports rows as it writes them
/// ([`Checkpointer::wrote`]) and each commit ([`Checkpointer::committed`]); dropping the
/// checkpointer lets the thread finish its pass and joins it.
pub struct Checkpointer {
    ahead_rows: u64,
    /// Rows written since the last nudge.
    pending: AtomicU64,
    nudge: Option<SyncSender<()>>,
    /// Nudges the thread has finished copying for.
    copies: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Start the thread for the database at `path` and set `writer`'s own checkpoint.
    /// Outside tests, `ahead_rows` is [`AHEAD_ROWS`] and `writer_pages` [`WRITER_PAGES`].
    pub fn start(path: &Path, writer: &Connection, ahead_rows: u64, writer_pages: u32) -> DbResult<Self> {
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        // A checkpoint syncs the WAL before copying and the database file after, at this level.
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA cache_size = -64;")?;
        writer.pragma_update(None, "wal_autocheckpoint", writer_pages)?;
        let (nudge, nudged) = sync_channel::<()>(1);
        let copies = Arc::new(AtomicU64::new(0));
        let done = copies.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(conn, nudged, &done))
            .map_err(|e| DbError::Thread(e.to_string()))?;
        Ok(Checkpointer { ahead_rows, pending: AtomicU64::new(0), nudge: Some(nudge), copies, thread: Some(thread) })
    }

    /// The writer changed `rows` rows (committed or not yet).
    pub fn wrote(&self, rows: u64) {
        self.pending.fetch_add(rows, Ordering::Relaxed);
    }

    /// How many times the thread has copied (caught up or given up) since it started.
    pub fn copies(&self) -> u64 {
        self.copies.load(Ordering::Acquire)
    }

    /// A transaction was committed (its frames are in the WAL): wake the thread if enough rows
    /// wait. Never blocks; a nudge already waiting is enough.
    pub fn committed(&self) {
        if self.pending.load(Ordering::Relaxed) < self.ahead_rows {
            return;
        }
        self.pending.store(0, Ordering::Relaxed);
        if let Some(nudge) = &self.nudge {
            // Full: a nudge already waits. Disconnected: the thread is gone (it panicked); the
            // writer's own checkpoint still bounds the WAL.
            let _ = nudge.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.nudge = None; // the thread's `recv` fails once it is done
        if let Some(thread) = self.thread.take() {
            // A panic on the thread was its own; the state file is still consistent.
            let _ = thread.join();
        }
    }
}

/// The thread: copy after each nudge, until caught up. Ends when the [`Checkpointer`] is dropped.
fn run(conn: Connection, nudged: Receiver<()>, copies: &AtomicU64) {
    while nudged.recv().is_ok() {
        for _ in 0..MAX_PASSES {
            match passive_checkpoint(&conn) {
                Ok(pass) if pass.caught_up() => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "WAL copy ahead failed; the writer's own checkpoint remains");
                    break;
                }
            }
        }
        copies.fetch_add(1, Ordering::Release);
    }
}

/// What one `PRAGMA wal_checkpoint(PASSIVE)` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pass {
    /// Another checkpoint (another process's, or the writer's) held the lock.
    busy: bool,
    /// Frames in the WAL.
    log: i64,
    /// Frames of those now in the database file.
    copied: i64,
}

impl Pass {
    /// Nothing left to copy (or nothing this pass can do now).
    fn caught_up(&self) -> bool {
        self.busy || self.log <= 0 || self.copied >= self.log
    }
}

fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<Pass> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok(Pass { busy: r.get::<_, i64>(0)? != 0, log: r.get(1)?, copied: r.get(2)? })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A fresh state file in WAL mode with one table, and its writer (the folder goes with it).
    fn fresh() -> (tempfile::TempDir, PathBuf, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.sqlite");
        let conn = Connection::open(&db).unwrap();
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)).unwrap();
        conn.execute_batch("PRAGMA synchronous = FULL; CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB);").unwrap();
        (dir, db, conn)
    }

    /// Commit `n` transactions of 100 rows (~400 KiB) each, reporting them to `cp` as the
    /// store does; with `wait`, let the thread finish copying before the next one.
    fn write(conn: &Connection, cp: Option<&Checkpointer>, n: i64, wait: bool) {
        for _ in 0..n {
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            for _ in 0..100 {
                conn.execute("INSERT INTO t (v) VALUES (zeroblob(4000))", []).unwrap();
            }
            conn.execute_batch("COMMIT").unwrap();
            if let Some(cp) = cp {
                let before = cp.copies();
                cp.wrote(100);
                cp.committed();
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
                while wait && cp.copies() == before && std::time::Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        }
    }

    fn len(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    fn wal(db: &Path) -> PathBuf {
        let mut name = db.as_os_str().to_owned();
        name.push("-wal");
        PathBuf::from(name)
    }

    fn rows(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn the_thread_copies_commits_into_the_database_file() {
        let (_dir, db, conn) = fresh();
        // No checkpoint in the writer's commits at all (0 turns SQLite's off): only the thread.
        let cp = Checkpointer::start(&db, &conn, 100, 0).unwrap();
        let mut largest_wal = 0;
        for round in 0..8 {
            write(&conn, Some(&cp), 5, true); // ~16 MiB in all
            largest_wal = largest_wal.max(len(&wal(&db)));
            assert_eq!(rows(&conn), (round + 1) * 500);
        }
        // Joins once the nudged copies are done. The writer is still open (closing it would
        // checkpoint): the rows reached the database file, and the WAL started over after each
        // copy instead of holding them all.
        drop(cp);
        assert!(len(&db) > 12 << 20, "database file is {} bytes", len(&db));
        assert!(largest_wal < 2 << 20, "WAL grew to {largest_wal} bytes");
        drop(conn);
        assert_eq!(rows(&Connection::open(&db).unwrap()), 4000);
    }

    #[test]
    fn without_a_checkpoint_the_same_commits_stay_in_the_wal() {
        // The control for the test above: the bound and the copies are the thread's doing.
        let (_dir, db, conn) = fresh();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        write(&conn, None, 40, false);
        assert!(len(&wal(&db)) > 12 << 20, "WAL is {} bytes", len(&wal(&db)));
        assert!(len(&db) < 1 << 20, "database file is {} bytes", len(&db));
    }

    #[test]
    fn small_commits_wait_until_enough_rows_are_written() {
        let (_dir, db, conn) = fresh();
        let cp = Checkpointer::start(&db, &conn, 4_100, 0).unwrap();
        write(&conn, Some(&cp), 40, false); // 4,000 rows: below the mark, nothing copied
        assert_eq!(cp.copies(), 0);
        assert!(len(&db) < 1 << 20, "database file is {} bytes", len(&db));
        write(&conn, Some(&cp), 1, true); // 4,100: one copy of everything
        assert_eq!(cp.copies(), 1);
        drop(cp);
        assert!(len(&db) > 12 << 20, "database file is {} bytes", len(&db));
    }

    #[test]
    fn the_writers_own_checkpoint_bounds_the_wal_without_the_thread() {
        let (_dir, db, conn) = fresh();
        // The thread is never nudged; the writer's checkpoint runs past 512 pages (2 MiB).
        let _cp = Checkpointer::start(&db, &conn, u64::MAX, 512).unwrap();
        write(&conn, None, 40, false);
        assert!(len(&wal(&db)) < 8 << 20, "WAL is {} bytes", len(&wal(&db)));
        assert!(len(&db) > 8 << 20, "database file is {} bytes", len(&db));
    }

    #[test]
    fn a_pass_reports_what_it_copied() {
        let (_dir, db, conn) = fresh();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        write(&conn, None, 2, false);
        let other = Connection::open(&db).unwrap();
        let pass = passive_checkpoint(&other).unwrap();
        assert!(!pass.busy && pass.log > 0 && pass.copied == pass.log, "{pass:?}");
        assert!(pass.caught_up());
        assert!(!Pass { busy: false, log: 10, copied: 3 }.caught_up());
    }
}
