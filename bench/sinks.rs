//! Section 8: the outbox and the sinks, in one child process against the emulator in another.
//!
//! - the outbox's cost: a full sync with no sink vs with one registered (its pages then also
//!   record every change), each on a fresh state;
//! - documents delivered per second to JSONL, an Elasticsearch `_bulk` stand-in (at several
//!   batch sizes) and a Coco Server stand-in (one request per document, as Coco's API has no
//!   bulk route). The stand-ins run in this process and do the least a receiver can: parse and
//!   acknowledge, so the figures are the host's delivery cost plus loopback HTTP.

use std::path::Path;
use std::time::Instant;

use axum::body::Bytes;
use axum::routing::{delete, post};
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
    pub coco_per_sec: f64,
}

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

/// Stand-ins that acknowledge everything: `_bulk` (every item 200) and Coco's routes.
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
    let app = axum::Router::new()
        .route("/_bulk", post(bulk))
        .route("/datasource/", post(|| async { "{}" }))
        .route("/datasource/{ds}/_doc/{doc}", post(|_b: Bytes| async { "{}" }))
        .route("/document/", delete(|_b: Bytes| async { "{}" }));
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
    let drained = d.drain(&host.store, &Target { id, name: "bench", connector_id: "dropbox" })?;
    let n = drained.upserts + drained.deletes;
    Ok((n, n as f64 / t.elapsed().as_secs_f64().max(1e-9)))
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
            };
            f.bulk_per_sec.push((batch, deliver_all(&host, &id, config)?.1));
        }
        f.coco_per_sec = deliver_all(&host, &id, SinkConfig::Coco { url: url.clone(), token: Secret::new("bench") })?.1;
        Ok(())
    })?;
    Ok(f)
}
