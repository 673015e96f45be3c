//! Section 7: `serve` as a service, each figure in a fresh child process (so RSS is its own)
//! against the emulator in another process.
//!
//! - idle re-syncs per second across 1,000 datasources with no changes;
//! - host RSS with those 1,000 idle (each with a longpoll waiting) and with 10 full listings;
//! - change-to-index latency p50/p99 for interval polling, longpoll and webhooks.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coco_host::host::Host;
use coco_host::keys::Keys;
use coco_host::runtime::{Limits, Runtime};
use coco_host::secret::Secret;
use coco_host::serve::{self, ServeConfig, Service};
use coco_host::state::{ConnectorRecord, EndpointsRecord, StateLocation, Store};
use serde::{Deserialize, Serialize};

use crate::APP;

#[derive(Serialize, Deserialize, Debug, Default, Clone)]
pub struct ServiceFigures {
    pub datasources: usize,
    pub idle_resyncs_per_sec: f64,
    pub idle_requests_per_resync: f64,
    pub idle_rss_mib: f64,
    pub idle_longpolls: i64,
    pub listings: usize,
    pub listing_entries: u64,
    pub listing_secs: f64,
    pub listing_rss_peak_mib: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_samples: usize,
}

fn rss_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        .unwrap_or(0.0)
        / 1024.0
}

fn metric(svc: &Service, name: &str) -> f64 {
    svc.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim().parse::<f64>().ok()))
        .unwrap_or(0.0)
}

fn post_json(url: &str, body: serde_json::Value) -> anyhow::Result<()> {
    let resp = ureq::post(url).header("content-type", "application/json").send(body.to_string())?;
    anyhow::ensure!(resp.status().is_success(), "{url} answered {}", resp.status());
    Ok(())
}

/// A host on a fresh state in `dir` with `accounts` emulator accounts connected (in-process
/// OAuth round trips, signing the emulated browser in as each account in turn).
pub(crate) async fn connected_host(
    dir: &Path,
    component: &Path,
    emulator: &str,
    accounts: usize,
) -> anyhow::Result<(Host, Vec<String>)> {
    connected_host_at(&StateLocation::Folder(dir.to_path_buf()), dir, component, emulator, accounts, bench_keys()).await
}

/// [`connected_host`] on any state (`dir` holds the compile cache).
pub(crate) async fn connected_host_at(
    state: &StateLocation,
    dir: &Path,
    component: &Path,
    emulator: &str,
    accounts: usize,
    keys: Keys,
) -> anyhow::Result<(Host, Vec<String>)> {
    let runtime = Arc::new(Runtime::load(component, Some(crate::bench_cache(&dir.join("cache"))), Limits::default())?);
    let store = Store::open_at(state, keys)?;
    let host = Host::new(runtime, store);
    let connector = ConnectorRecord {
        id: "dropbox".into(),
        client_id: APP.0.into(),
        client_secret: Secret::new(APP.1),
        redirect_uri: "http://127.0.0.1:9/cb".into(),
        endpoints: EndpointsRecord::single(emulator),
    };
    host.store.upsert_connector(&connector)?;
    let mut ids = Vec::new();
    for account in 0..accounts {
        post_json(&format!("{emulator}/__admin/login"), serde_json::json!({ "account": account }))?;
        let url = host.authorize_url(&connector, None).await?;
        let ds = host.finish_connect(&connector, &dropbox_emulator::approve(&url).await?, None).await?;
        ids.push(ds.id);
    }
    Ok((host, ids))
}

/// Start `serve` in this process; the returned sender stops it.
fn start(service: Arc<Service>) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve::run(service, async move {
        let _ = rx.await;
    }));
    (tx, task)
}

fn config(listen_port: u16) -> ServeConfig {
    let mut c = ServeConfig::new(
        format!("127.0.0.1:{listen_port}").parse().expect("loopback address"),
        Secret::new("bench-admin-token-0123456789"),
    );
    c.schedule.pages_per_minute = 0;
    c
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !done() {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Child: 1,000 small datasources. Idle re-sync throughput (interval 0: every datasource is
/// due again as soon as it is in sync), then the resident set with a longpoll on each.
pub async fn idle_child(component: &Path, emulator: &str, datasources: usize) -> anyhow::Result<ServiceFigures> {
    let tmp = tempfile::tempdir()?;
    let (host, _) = connected_host(tmp.path(), component, emulator, datasources).await?;
    let mut c = config(free_port()?);
    c.schedule.default_interval = Duration::ZERO;
    c.schedule.jitter = 0.0;
    c.schedule.max_in_flight = 16;
    c.longpoll = false;
    let svc = Service::new(host, c);
    let (stop, task) = start(svc.clone());
    let ok = "coco_syncs_total{result=\"ok\"}";
    wait_for("first syncs", Duration::from_secs(300), || metric(&svc, ok) >= (2 * datasources) as f64).await?;
    let (s0, r0, t0) = (metric(&svc, ok), crate::emulator_requests(emulator)?, Instant::now());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (s1, r1, secs) = (metric(&svc, ok), crate::emulator_requests(emulator)?, t0.elapsed().as_secs_f64());
    let mut f = ServiceFigures {
        datasources,
        idle_resyncs_per_sec: (s1 - s0) / secs,
        idle_requests_per_resync: (r1 - r0) as f64 / (s1 - s0).max(1.0),
        ..Default::default()
    };
    let _ = stop.send(());
    task.await??;
    // The same state, as a service would really run: interval 30 s, a longpoll on each.
    let (host, _) = reopen(tmp.path(), component)?;
    let mut c = config(free_port()?);
    c.longpoll_timeout = 480;
    let svc = Service::new(host, c);
    let (stop, task) = start(svc.clone());
    let _ = wait_for("a longpoll per datasource", Duration::from_secs(120), || {
        metric(&svc, "coco_longpolls_active") >= datasources as f64
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    f.idle_longpolls = metric(&svc, "coco_longpolls_active") as i64;
    f.idle_rss_mib = rss_mib("VmRSS:");
    let _ = stop.send(());
    task.await??;
    Ok(f)
}

fn reopen(dir: &Path, component: &Path) -> anyhow::Result<(Host, ())> {
    let runtime = Arc::new(Runtime::load(component, Some(crate::bench_cache(&dir.join("cache"))), Limits::default())?);
    Ok((Host::new(runtime, Store::open(&dir.join("coco.sqlite"), bench_keys())?), ()))
}

/// Child: `listings` large accounts listed at once; peak RSS while they run.
pub async fn listings_child(component: &Path, emulator: &str, listings: usize) -> anyhow::Result<ServiceFigures> {
    let tmp = tempfile::tempdir()?;
    let (host, ids) = connected_host(tmp.path(), component, emulator, listings).await?;
    let mut c = config(free_port()?);
    c.schedule.default_interval = Duration::from_secs(3600);
    c.schedule.max_in_flight = listings;
    c.longpoll = false;
    let svc = Service::new(host, c);
    let started = Instant::now();
    let (stop, task) = start(svc.clone());
    wait_for("the listings", Duration::from_secs(1200), || {
        metric(&svc, "coco_syncs_total{result=\"ok\"}") >= ids.len() as f64
    })
    .await?;
    let f = ServiceFigures {
        listings,
        listing_secs: started.elapsed().as_secs_f64(),
        listing_entries: metric(&svc, "coco_documents_upserted_total") as u64,
        listing_rss_peak_mib: rss_mib("VmHWM:"),
        ..Default::default()
    };
    let _ = stop.send(());
    task.await??;
    Ok(f)
}

/// Child: change-to-index latency with one trigger: `interval` (polling every 5 s), `longpoll`
/// or `webhook`. 40 changes spread over 20 accounts, 250 ms apart; each is timed from the
/// emulator accepting it to the document being in the index.
pub async fn latency_child(component: &Path, emulator: &str, mode: &str) -> anyhow::Result<ServiceFigures> {
    const ACCOUNTS: usize = 20;
    const CHANGES: usize = 40;
    let tmp = tempfile::tempdir()?;
    let (host, ids) = connected_host(tmp.path(), component, emulator, ACCOUNTS).await?;
    let port = free_port()?;
    let mut c = config(port);
    c.schedule.default_interval = Duration::from_secs(3600);
    c.longpoll = mode == "longpoll";
    c.longpoll_timeout = 60;
    if mode == "interval" {
        c.schedule.default_interval = Duration::from_secs(5);
    }
    let webhook = if mode == "webhook" { Some(format!("http://127.0.0.1:{port}/dropbox/webhook")) } else { None };
    post_json(&format!("{emulator}/__admin/webhook"), serde_json::json!({ "url": webhook }))?;
    let svc = Service::new(host, c);
    let (stop, task) = start(svc.clone());
    wait_for("first syncs", Duration::from_secs(120), || {
        metric(&svc, "coco_syncs_total{result=\"ok\"}") >= ACCOUNTS as f64
    })
    .await?;
    if mode == "longpoll" {
        wait_for("longpolls", Duration::from_secs(30), || metric(&svc, "coco_longpolls_active") >= ACCOUNTS as f64)
            .await?;
    }
    // Let the interval mode's schedule spread out, as in a service that has been running.
    tokio::time::sleep(Duration::from_secs(if mode == "interval" { 6 } else { 1 })).await;
    let tag = format!("{mode}-{}", coco_host::clock::now_unix());
    let mut pending: Vec<(usize, String, Instant)> = Vec::new();
    let mut samples = Vec::new();
    let mut next_change = Instant::now();
    let mut made = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while (made < CHANGES || !pending.is_empty()) && Instant::now() < deadline {
        if made < CHANGES && Instant::now() >= next_change {
            let account = made % ACCOUNTS;
            let path = format!("/latency {tag} {made}.txt");
            post_json(
                &format!("{emulator}/__admin/mutate?account={account}"),
                serde_json::json!([{ "op": "add_file", "path": path, "size": 1 }]),
            )?;
            pending.push((account, path.to_lowercase(), Instant::now()));
            made += 1;
            next_change += Duration::from_millis(250);
        }
        let store = &svc.host.store;
        pending.retain(|(account, path, at)| {
            let found = store.index_entries(&ids[*account]).map(|e| e.iter().any(|(_, p)| p == path)).unwrap_or(false);
            if found {
                samples.push(at.elapsed().as_secs_f64() * 1000.0);
            }
            !found
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    anyhow::ensure!(pending.is_empty(), "{} changes were never indexed ({mode})", pending.len());
    post_json(&format!("{emulator}/__admin/webhook"), serde_json::json!({ "url": null }))?;
    let _ = stop.send(());
    task.await??;
    Ok(ServiceFigures {
        latency_samples: samples.len(),
        latency_p50_ms: crate::percentile(&mut samples.clone(), 0.5),
        latency_p99_ms: crate::percentile(&mut samples, 0.99),
        ..Default::default()
    })
}

/// One key for a child's state, so it can be opened twice.
fn bench_keys() -> Keys {
    Keys::from_master(b"coco-bench-master-key-0123456789abcdef").expect("a long enough key")
}
