//! Sync leases: one holder per datasource at a time (a process, or a replica sharing the
//! state), taken over when it ran out or its process died, with a log of every change.

use std::path::Path;

use super::{Result, Store, StoreError};
use crate::clock::{now_unix_i64 as now_unix, rfc3339};
use crate::db::{args, Conn, ConnExt, Tx};

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

impl Store {
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
    let now_ms = crate::clock::now_unix_ms();
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
