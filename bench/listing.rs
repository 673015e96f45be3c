//! Listing benchmarks of #14: CPU split between the host and the emulator, parallel initial
//! listing against emulated round trips, and the cost of an idle re-sync on a large index.

use std::time::Instant;

use anyhow::Context as _;

use serde::{Deserialize, Serialize};

/// Clock ticks per second of `/proc/*/stat` times (USER_HZ: 100 on every Linux we run on).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU seconds (user + system) a process has used so far; `None` for this process.
pub fn cpu_secs(pid: Option<u32>) -> f64 {
    let path = pid.map_or("/proc/self/stat".to_string(), |p| format!("/proc/{p}/stat"));
    let Ok(stat) = std::fs::read_to_string(path) else { return 0.0 };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / TICKS_PER_SEC
}

/// An order-independent digest of an index: each document's id, path and rev (the batch
/// number differs between runs by design), hashed one by one and summed, so it takes no memory
/// whatever the index's size (the RSS figures are read after it).
pub fn index_digest(store: &coco_host::state::Store, id: &str) -> anyhow::Result<String> {
    use std::hash::{Hash, Hasher};
    #[derive(serde::Deserialize)]
    struct Doc<'a> {
        #[serde(borrow)]
        metadata: Meta<'a>,
    }
    #[derive(serde::Deserialize)]
    struct Meta<'a> {
        #[serde(borrow)]
        path_lower: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        rev: std::borrow::Cow<'a, str>,
    }
    let mut sum = 0u64;
    store.for_each_document(id, |doc, json| {
        let d: Doc<'_> = serde_json::from_str(json).map_err(std::io::Error::other)?;
        // SipHash with fixed keys: the same rows give the same digest in every process.
        let mut h = std::hash::DefaultHasher::new();
        (doc, d.metadata.path_lower.as_ref(), d.metadata.rev.as_ref()).hash(&mut h);
        sum = sum.wrapping_add(h.finish());
        Ok(())
    })?;
    Ok(format!("{sum:016x}"))
}

/// An idle re-sync's cost, measured in-process.
#[derive(Serialize, Deserialize, Debug, Default)]
pub struct IdleFigures {
    pub documents: u64,
    pub syncs: usize,
    pub median_ms: f64,
    pub p99_ms: f64,
    pub requests_per_sync: f64,
    pub component_median_ms: f64,
}

/// Child: index `emulator`'s account, then time `syncs` re-syncs that find nothing.
pub async fn idle_child(component: &std::path::Path, emulator: &str, syncs: usize) -> anyhow::Result<IdleFigures> {
    let tmp = tempfile::tempdir()?;
    let (host, ids) = crate::service::connected_host(tmp.path(), component, emulator, 1).await?;
    let ds = ids.into_iter().next().context("no datasource connected")?;
    host.sync(&ds, |_| {}).await?;
    for _ in 0..5 {
        host.sync(&ds, |_| {}).await?;
    }
    let before = crate::emulator_requests(emulator)?;
    let mut times = Vec::with_capacity(syncs);
    for _ in 0..syncs {
        let t = Instant::now();
        let r = host.sync(&ds, |_| {}).await?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(r.entries == 0, "the account changed during the idle measurement");
    }
    let requests = crate::emulator_requests(emulator)? - before;
    // The component's share: the same continue call alone, without the host around it.
    let state = host.store.sync_state(&ds)?;
    let record = host.store.datasource(&ds)?;
    let req = host.page_request(&record, state.cursor, "idlebench00000000000");
    let mut component = Vec::with_capacity(syncs);
    for _ in 0..syncs {
        let t = Instant::now();
        host.runtime.sync_page(&req).await?.map_err(|f| anyhow::anyhow!("{:?}", f.error))?;
        component.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(IdleFigures {
        documents: host.store.document_count(&ds)?,
        syncs,
        median_ms: crate::median(&mut times),
        p99_ms: crate::percentile(&mut times, 0.99),
        requests_per_sync: requests as f64 / syncs as f64,
        component_median_ms: crate::median(&mut component),
    })
}
