//! Connectors (app credentials) and datasources (tokens, profile, endpoints, options,
//! status, schedule): their records, sealed at rest, and the operations on them.

use serde::{Deserialize, Serialize};

use super::{corrupt, require_datasource, LeaseRecord, Result, Store, StoreError};
use crate::clock::now_unix_i64 as now_unix;
use crate::db::{args, Conn, ConnExt, Tx};
use crate::secret::Secret;

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

/// A datasource without its secrets: what delivery, the watcher and status need. Reading it
/// unseals no token (only the endpoints' integrity is checked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasourceView {
    pub id: String,
    pub name: String,
    pub connector_id: String,
    pub endpoints: EndpointsRecord,
    pub path: String,
    pub status: Status,
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

impl Store {
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

    pub(crate) fn row_to_datasource(&self, r: &crate::db::Row) -> Result<DatasourceRecord> {
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

    /// The datasource without its secrets ([`DatasourceView`]).
    pub fn datasource_view(&self, id: &str) -> Result<DatasourceView> {
        let row = self.conn().query_opt(
            "SELECT id, name, connector_id, endpoints_json, path, status FROM datasources WHERE id = ?1",
            &args![id],
        )?;
        let Some(r) = row else { return Err(StoreError::NoDatasource(id.to_string())) };
        let endpoints: String = r.get("endpoints_json")?;
        Ok(DatasourceView {
            endpoints: self.open_endpoints("datasource", id, &endpoints)?,
            name: r.get("name")?,
            connector_id: r.get("connector_id")?,
            path: r.get("path")?,
            status: Status::parse(&r.get::<String>("status")?),
            id: r.get("id")?,
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

    pub(crate) fn restart_listing_in(conn: &dyn Conn, id: &str) -> Result<()> {
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
            crate::state::outbox::record_all(&tx, id, crate::state::outbox::Op::Delete)?;
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
}
