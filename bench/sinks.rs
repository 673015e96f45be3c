//! Section 8: the outbox and the sinks, in one child process against the emulator in another.
//!
//! - the outbox's cost: a full sync with no sink vs with one registered (its pages then also
//!   record every change), each on a fresh state;
//! - documents delivered per second to JSONL and an Elasticsearch `_bulk` stand-in (at several
//!   batch sizes) that does the least a receiver can: parse and acknowledge, so the figures are
//!   the host's delivery cost plus loopback HTTP;
//! - documents per second into the Coco Server stand-in (`dropbox_emulator::coco`), which
//!   answers as Coco does: one request per document, each answered on the index's next
//!   refresh (1 s, Elasticsearch's default `refresh_interval`). Both upsert routes, at two
//!   in-flight bounds, first as creates (a new Coco) and then as updates (the same documents
//!   again), since the routes differ only for documents Coco already has.

use std::path::Path;
use std::time::Instant;

use axum::body::Bytes;
use axum::routing::post;
use coco_host::deliver::{Deliverer, EsAuth, SinkConfig, Target};
use coco_host::host::Host;
use coco_host::secret::Secret;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Default, Clone)]
pub struct SinkFigures {
    pub entries: u64,
    pub sync_without_sink_secs: f64,
    pub sync_with_sink_secs: f64,
    pub documents: u64,
    pub jsonl_per_sec: f64,
    /// (batch size, documents per second).
    pub bulk_per_sec: Vec<(usize, f64)>,
    /// Coco rows: (route, in flight, documents, creates/s, updates/s, requests per update).
    pub coco: Vec<CocoRow>,
}

#[derive(Serialize, Deserialize, Debug, Default, Clone)]
pub struct CocoRow {
    pub route: String,
    pub in_flight: usize,
    pub documents: u64,
    pub creates_per_sec: f64,
    pub updates_per_sec: f64,
    pub requests_per_update: f64,
}

/// Coco's index refresh interval (Elasticsearch's default): every write waits for the next.
pub const COCO_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);
/// Outbox batches of 500 delivered per Coco row: 2,000 documents (about 8 s per pass at 256 in
/// flight, about a minute at 32).
const COCO_BATCHES: usize = 4;

async fn synced_host(
    dir: &Path,
    component: &Path,
    emulator: &str,
    sink: Option<&str>,
) -> anyhow::Result<(Host, String, f64)> {
    let (host, ids) = crate::service::connected_host(dir, component, emulator, 1).await?;
    if let Some(name) = sink {
        host.store.register_sink(name)?;
    }
    let t = Instant::now();
    host.sync(&ids[0], |_| {}).await?;
    Ok((host, ids[0].clone(), t.elapsed().as_secs_f64()))
}

/// A stand-in that acknowledges everything: `_bulk` (every item 200).
async fn stand_ins() -> anyhow::Result<String> {
    async fn bulk(body: Bytes) -> axum::Json<serde_json::Value> {
        let text = std::str::from_utf8(&body).unwrap_or("");
        let mut items = Vec::new();
        let mut lines = text.lines();
        while let Some(action) = lines.next() {
            let v: serde_json::Value = serde_json::from_str(action).unwrap_or_default();
            if let Some(meta) = v.get("index") {
                lines.next();
                items.push(serde_json::json!({ "index": { "_id": meta["_id"], "status": 200 } }));
            } else if let Some(meta) = v.get("delete") {
                items.push(serde_json::json!({ "delete": { "_id": meta["_id"], "status": 200 } }));
            }
        }
        axum::Json(serde_json::json!({ "errors": false, "items": items }))
    }
    let app = axum::Router::new().route("/_bulk", post(bulk));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// Deliver the whole backlog of `config` (a new sink: every document queued); documents/s.
fn deliver_all(host: &Host, id: &str, config: SinkConfig) -> anyhow::Result<(u64, f64)> {
    host.store.register_sink(&config.name())?;
    let mut d = Deliverer::new(config);
    let t = Instant::now();
    let drained = d.drain(&host.store, &Target { id, name: "bench", connector_id: "dropbox", removed: false })?;
    let n = drained.upserts + drained.deletes;
    Ok((n, n as f64 / t.elapsed().as_secs_f64().max(1e-9)))
}

/// The first [`COCO_BATCHES`] batches of the backlog into a fresh Coco stand-in (creates),
/// then the same documents again (updates).
async fn coco_row(host: &Host, id: &str, route: coco_api::UpsertRoute, in_flight: usize) -> anyhow::Result<CocoRow> {
    let (model, url) = dropbox_emulator::coco::serve("bench", COCO_REFRESH).await?;
    let config = SinkConfig::Coco { url, token: Secret::new("bench"), in_flight, route };
    let target = Target { id, name: "bench", connector_id: "dropbox", removed: false };
    let timed = |config: &SinkConfig| -> anyhow::Result<(u64, f64)> {
        host.store.register_sink(&config.name())?;
        let mut d = Deliverer::new(config.clone());
        let t = Instant::now();
        let (drained, _) = d.drain_some(&host.store, &target, COCO_BATCHES)?;
        let secs = t.elapsed().as_secs_f64().max(1e-9);
        host.store.unregister_sink(&config.name())?;
        Ok((drained.upserts, drained.upserts as f64 / secs))
    };
    let (documents, creates_per_sec) = tokio::task::block_in_place(|| timed(&config))?;
    let before: u64 = model.lock().unwrap().counters.by_route.values().sum();
    let (_, updates_per_sec) = tokio::task::block_in_place(|| timed(&config))?;
    let requests = model.lock().unwrap().counters.by_route.values().sum::<u64>() - before;
    let route = match route {
        coco_api::UpsertRoute::Save => "`PUT /document/:doc_id`",
        coco_api::UpsertRoute::CreateThenSave => "`POST …/_doc/:doc_id`, `PUT` on a conflict",
    };
    Ok(CocoRow {
        route: route.into(),
        in_flight,
        documents,
        creates_per_sec,
        updates_per_sec,
        requests_per_update: requests as f64 / documents.max(1) as f64,
    })
}

pub async fn sinks_child(component: &Path, emulator: &str, entries: u64) -> anyhow::Result<SinkFigures> {
    let plain = tempfile::tempdir()?;
    let (_, _, without) = synced_host(plain.path(), component, emulator, None).await?;
    let with_dir = tempfile::tempdir()?;
    let jsonl = with_dir.path().join("out.jsonl");
    let jsonl_sink = SinkConfig::Jsonl { path: jsonl.clone() };
    let (host, id, with) = synced_host(with_dir.path(), component, emulator, Some(&jsonl_sink.name())).await?;
    let url = stand_ins().await?;
    let mut f =
        SinkFigures { entries, sync_without_sink_secs: without, sync_with_sink_secs: with, ..Default::default() };
    tokio::task::block_in_place(|| -> anyhow::Result<()> {
        let (n, rate) = deliver_all(&host, &id, jsonl_sink)?;
        f.documents = n;
        f.jsonl_per_sec = rate;
        for batch in [100, 500, 2000] {
            let config = SinkConfig::Elasticsearch {
                url: url.clone(),
                index: format!("bench-{batch}"),
                auth: EsAuth::None,
                max_docs: batch,
                max_bytes: 64 << 20,
                identity: None,
            };
            f.bulk_per_sec.push((batch, deliver_all(&host, &id, config)?.1));
        }
        Ok(())
    })?;
    for (route, in_flight) in [
        (coco_api::UpsertRoute::Save, 32),
        (coco_api::UpsertRoute::Save, 256),
        (coco_api::UpsertRoute::CreateThenSave, 256),
    ] {
        f.coco.push(coco_row(&host, &id, route, in_flight).await?);
    }
    Ok(f)
}
