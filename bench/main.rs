//! `coco-bench`: where the time goes, side by side in one run on one machine.
//!
//! 1. Page cost: a 2,000-entry list_folder page parsed and mapped natively vs inside the
//!    component through the real WIT call, with a bare serde_json parse as the floor.
//! 2. Per-invocation overhead: instantiate from `InstancePre`, and a sync-page call that gets
//!    an empty page, with the on-demand and the pooling allocator.
//! 3. Full sync of an emulated account at limit 2000 and at upstream's 100.
//! 4. Incremental sync of 10 changes vs a full re-list (what upstream does every 30 s).
//! 5. Host peak RSS vs account size (each measured in a fresh child process).
//! 6. The release .wasm sizes.
//! 8. The outbox's cost on a full sync, and documents per second into each sink.
//! 7. `serve`: idle re-syncs per second across 1,000 datasources, RSS idle and with 10
//!    listings in flight, change-to-index latency for interval polling, longpoll and webhooks.
//! 9. Content: extraction MB/s per format, native vs in the component; peak component memory
//!    per format; a content sync of ~10,000 mixed files.
//!
//! The emulator runs in its own process so host memory is the host's alone.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use coco_dropbox::mapping::{map_listing, ListFolderResult, MapContext};
use coco_host::clock::now_unix;
use coco_host::host::Host;
use coco_host::keys::Keys;
use coco_host::runtime::{AppCredentials, Endpoints, Limits, PageRequest, Runtime, SyncOptions, Tokens};
use coco_host::secret::Secret;
use coco_host::state::{ConnectorRecord, EndpointsRecord};
use dropbox_emulator::model::{generate, Generate, Namespace};
use serde::{Deserialize, Serialize};

mod content;
mod listing;
mod replicas;
mod service;
mod sinks;

const APP: (&str, &str) = ("bench-app", "bench-secret");

#[derive(Parser)]
#[command(name = "coco-bench", about = "Benchmarks for the coco-dropbox component and host")]
struct Args {
    #[arg(long, env = "COCO_DROPBOX_WASM", default_value_os_t = coco_host::paths::connector_wasm())]
    component: PathBuf,
    /// Account size for the full/incremental sync benchmarks.
    #[arg(long, default_value_t = 100_000)]
    entries: usize,
    /// Account sizes for the memory benchmark.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    memory_sizes: Vec<usize>,
    /// Sections to run (1-12).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,5,6,7,8,9,10,11,12")]
    sections: Vec<u8>,
    /// Account size for the parallel-listing benchmark (section 10).
    #[arg(long, default_value_t = 1_000_000)]
    parallel_entries: usize,
    /// Emulated round trip per request for the parallel-listing benchmark.
    #[arg(long, default_value_t = 400)]
    latency_ms: u64,
    /// Iterations for the overhead benchmark.
    #[arg(long, default_value_t = 2000)]
    calls: usize,
    /// Where to write the results table.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/RESULTS.md"))]
    out: PathBuf,
    #[command(subcommand)]
    child: Option<ChildCmd>,
}

/// The children this binary runs of itself; each name is its subcommand (`sync-child`, …).
#[derive(Subcommand)]
#[allow(clippy::enum_variant_names)]
enum ChildCmd {
    /// (internal) Connect and sync against an emulator; print one JSON line of figures.
    SyncChild {
        #[arg(long)]
        emulator: String,
        #[arg(long)]
        limit: u32,
        #[arg(long)]
        incremental: bool,
        /// List pages in flight during the initial listing.
        #[arg(long, default_value_t = 1)]
        parallel: usize,
        /// The emulator's pid, to measure its CPU apart from the host's.
        #[arg(long)]
        emulator_pid: Option<u32>,
        /// Documents a listing's pages wait for before they are applied together (0: every
        /// page in its own transaction).
        #[arg(long, default_value_t = coco_host::host::DEFAULT_LISTING_COMMIT_DOCS)]
        commit_docs: usize,
        /// A PostgreSQL database for the state (default: SQLite in a temporary folder).
        #[arg(long)]
        state: Option<String>,
        /// wasmtime's pooling allocator, as the host's `--pooling` (default: on demand).
        #[arg(long)]
        pooling: bool,
    },
    /// (internal) Only the wasm page call, `iterations` times: a clean `perf record` target
    /// (`COCO_DROPBOX_PERFMAP=1` names the component's functions).
    PageChild {
        #[arg(long, default_value_t = 200)]
        iterations: usize,
    },
    /// (internal) Index an account, then time re-syncs that find nothing; one JSON line.
    IdleChild {
        #[arg(long)]
        emulator: String,
        #[arg(long)]
        syncs: usize,
    },
    /// (internal) The outbox and sink measurements; one JSON line.
    SinksChild {
        #[arg(long)]
        emulator: String,
        #[arg(long)]
        entries: u64,
    },
    /// (internal) List an emulated account, then fetch every file's content; one JSON line.
    ContentChild {
        #[arg(long)]
        emulator: String,
        #[arg(long)]
        concurrency: usize,
    },
    /// (internal) One `serve` measurement (idle | listings | latency-MODE); one JSON line.
    ServeChild {
        #[arg(long)]
        emulator: String,
        #[arg(long)]
        kind: String,
        #[arg(long)]
        count: usize,
    },
}

#[derive(Serialize, Deserialize, Debug, Default, Clone)]
struct SyncFigures {
    full_secs: f64,
    full_pages: u64,
    full_requests: u64,
    documents: u64,
    rss_after_full_kb: u64,
    peak_linear_bytes: usize,
    incr_secs: f64,
    incr_requests: u64,
    incr_entries: u64,
    relist_secs: f64,
    relist_requests: u64,
    rss_peak_kb: u64,
    /// CPU seconds of the full sync: this process, and the emulator's when its pid was given.
    host_cpu_secs: f64,
    emulator_cpu_secs: f64,
    /// [`listing::index_digest`] after the full sync.
    digest: String,
    /// Subtrees listed on their own (parallel listing).
    shards: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match &args.child {
        Some(ChildCmd::SyncChild {
            emulator,
            limit,
            incremental,
            parallel,
            emulator_pid,
            commit_docs,
            state,
            pooling,
        }) => {
            let run = SyncRun {
                limit: *limit,
                incremental: *incremental,
                parallel: *parallel,
                emulator_pid: *emulator_pid,
                commit_docs: *commit_docs,
                state: state.clone(),
                pooling: *pooling,
            };
            let figures = rt.block_on(sync_child(&args.component, emulator, &run))?;
            println!("{}", serde_json::to_string(&figures)?);
            Ok(())
        }
        Some(ChildCmd::PageChild { iterations }) => rt.block_on(async {
            let runtime = Runtime::load(&args.component, None, Limits::default())?;
            let base = static_dropbox(page_bytes(2000)).await?;
            let req = page_request(&base, None);
            let t = Instant::now();
            for _ in 0..*iterations {
                runtime.sync_page(&req).await?.map_err(|f| anyhow::anyhow!("{:?}", f.error))?;
            }
            println!("{:.2} ms per call", t.elapsed().as_secs_f64() * 1e3 / *iterations as f64);
            Ok(())
        }),
        Some(ChildCmd::IdleChild { emulator, syncs }) => {
            let figures = rt.block_on(listing::idle_child(&args.component, emulator, *syncs))?;
            println!("{}", serde_json::to_string(&figures)?);
            Ok(())
        }
        Some(ChildCmd::SinksChild { emulator, entries }) => {
            let figures = rt.block_on(sinks::sinks_child(&args.component, emulator, *entries))?;
            println!("{}", serde_json::to_string(&figures)?);
            Ok(())
        }
        Some(ChildCmd::ContentChild { emulator, concurrency }) => {
            let figures = rt.block_on(content::content_sync_child(&args.component, emulator, *concurrency))?;
            println!("{}", serde_json::to_string(&figures)?);
            Ok(())
        }
        Some(ChildCmd::ServeChild { emulator, kind, count }) => {
            let figures = rt.block_on(async {
                match kind.as_str() {
                    "idle" => service::idle_child(&args.component, emulator, *count).await,
                    "listings" => service::listings_child(&args.component, emulator, *count).await,
                    mode => {
                        service::latency_child(&args.component, emulator, mode.trim_start_matches("latency-")).await
                    }
                }
            })?;
            println!("{}", serde_json::to_string(&figures)?);
            Ok(())
        }
        None => rt.block_on(run_all(&args)),
    }
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok())))
        .unwrap_or(0);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!(
        "{cores} cores, {cpu}, {:.0} GiB RAM, {} {}",
        mem_kb as f64 / 1048576.0,
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// A realistic 2,000-entry page, as the emulator renders it.
fn page_bytes(entries: usize) -> Vec<u8> {
    let mut ns = Namespace::new("bench");
    generate(&mut ns, &Generate { seed: 9, entries, under: String::new() });
    let (keys, _) = ns.list_page("", true, None, entries);
    let items: Vec<_> = keys.iter().map(|k| ns.get(k).unwrap().json(k)).collect();
    serde_json::to_vec(
        &serde_json::json!({ "entries": items, "cursor": "AAE".to_string() + &"x".repeat(200), "has_more": false }),
    )
    .unwrap()
}

/// Serves a fixed page for list_folder and an empty page for continue.
async fn static_dropbox(page: Vec<u8>) -> anyhow::Result<String> {
    use axum::routing::post;
    let page = axum::body::Bytes::from(page);
    let empty = axum::body::Bytes::from_static(br#"{"entries":[],"cursor":"AAEempty","has_more":false}"#);
    let app = axum::Router::new()
        // Handlers read the request body, as Dropbox does, before answering.
        .route(
            "/2/files/list_folder",
            post(move |_body: axum::body::Bytes| {
                let p = page.clone();
                async move { ([("content-type", "application/json")], p) }
            }),
        )
        .route(
            "/2/files/list_folder/continue",
            post(move |_body: axum::body::Bytes| {
                let e = empty.clone();
                async move { ([("content-type", "application/json")], e) }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(base)
}

fn page_request(base: &str, cursor: Option<&str>) -> PageRequest {
    PageRequest {
        datasource_id: "0335b4e59c687f2666f7d7e5d5d17686".into(),
        datasource_name: "Bench's Dropbox".into(),
        owner_id: None,
        app: AppCredentials { client_id: APP.0.into(), client_secret: APP.1.into() },
        tokens: Tokens {
            access_token: "sl.bench".into(),
            expires_at: now_unix() + 86_400,
            refresh_token: "rt.bench".into(),
        },
        cursor: cursor.map(str::to_string),
        options: SyncOptions {
            path: String::new(),
            page_limit: Some(2000),
            refresh_margin_secs: None,
            root_info: None,
            max_page_bytes: None,
            recursive: true,
        },
        batch_number: "benchbatch0000000000".into(),
        now: now_unix(),
        endpoints: Endpoints { authorize: base.into(), api: base.into() },
    }
}

/// What every benchmarked document shares (the same values the component is given).
fn bench_context() -> MapContext<'static> {
    MapContext {
        datasource_id: "0335b4e59c687f2666f7d7e5d5d17686",
        datasource_name: "Bench's Dropbox",
        owner_id: None,
        batch_number: "benchbatch0000000000",
        web_base: "https://www.dropbox.com",
    }
}

struct PageCost {
    entries: usize,
    bytes: usize,
    native_ms: f64,
    native_http_ms: f64,
    parse_typed_ms: f64,
    parse_value_ms: f64,
    wasm_call_ms: f64,
    wasm_empty_ms: f64,
    /// The same calls with the pooling allocator keeping linear memory resident.
    pooled_call_ms: f64,
    pooled_empty_ms: f64,
    peak_linear: usize,
}

/// Median whole-call and empty-page-call times of the component (after 5 warm-up calls).
async fn wasm_page_calls(runtime: &Runtime, base: &str, iterations: usize) -> anyhow::Result<(f64, f64)> {
    let full = page_request(base, None);
    let empty = page_request(base, Some("AAEstart"));
    let (mut call, mut empty_call) = (Vec::new(), Vec::new());
    for i in 0..iterations + 5 {
        let t = Instant::now();
        let r = runtime.sync_page(&full).await?.map_err(|f| anyhow::anyhow!("{:?}", f.error))?;
        let full_ms = t.elapsed().as_secs_f64() * 1e3;
        anyhow::ensure!(r.documents.len() + r.stats.skipped as usize == 2000, "page mapped {} docs", r.documents.len());
        let t = Instant::now();
        runtime.sync_page(&empty).await?.map_err(|f| anyhow::anyhow!("{:?}", f.error))?;
        let empty_ms = t.elapsed().as_secs_f64() * 1e3;
        if i >= 5 {
            call.push(full_ms);
            empty_call.push(empty_ms);
        }
    }
    Ok((median(&mut call), median(&mut empty_call)))
}

async fn page_cost(runtime: &Runtime, pooled: &Runtime) -> anyhow::Result<PageCost> {
    let bytes = page_bytes(2000);
    let ctx = bench_context();
    let iterations = 60;
    let (mut native, mut typed, mut value) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..iterations {
        // Both as the component does it: one UTF-8 check, then serde_json over the `&str`.
        let t = Instant::now();
        black_box(map_listing(&ctx, std::str::from_utf8(&bytes)?)?);
        native.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        black_box(serde_json::from_str::<ListFolderResult>(std::str::from_utf8(&bytes)?)?);
        typed.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        black_box(serde_json::from_slice::<serde_json::Value>(&bytes)?);
        value.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let base = static_dropbox(bytes.clone()).await?;
    // Native with the same loopback fetch the component makes, for a like-for-like ratio.
    let url = format!("{base}/2/files/list_folder");
    let mut native_http = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<f64>> {
        let ctx = bench_context();
        let agent = ureq::Agent::new_with_defaults();
        let mut out = Vec::new();
        for _ in 0..60 {
            let t = Instant::now();
            let body = agent
                .post(&url)
                .header("content-type", "application/json")
                .send(r#"{"path":"","recursive":true,"limit":2000}"#)?
                .into_body()
                .with_config()
                .limit(64 << 20)
                .read_to_vec()?;
            black_box(map_listing(&ctx, std::str::from_utf8(&body)?)?);
            out.push(t.elapsed().as_secs_f64() * 1e3);
        }
        Ok(out)
    })
    .await??;
    let (wasm_call_ms, wasm_empty_ms) = wasm_page_calls(runtime, &base, iterations).await?;
    let (pooled_call_ms, pooled_empty_ms) = wasm_page_calls(pooled, &base, iterations).await?;
    Ok(PageCost {
        entries: 2000,
        bytes: bytes.len(),
        native_ms: median(&mut native),
        native_http_ms: median(&mut native_http),
        parse_typed_ms: median(&mut typed),
        parse_value_ms: median(&mut value),
        wasm_call_ms,
        wasm_empty_ms,
        pooled_call_ms,
        pooled_empty_ms,
        peak_linear: runtime.peak_linear_memory(),
    })
}

struct Overhead {
    pooling: bool,
    instantiate_med_us: f64,
    instantiate_p99_us: f64,
    call_med_us: f64,
    call_p99_us: f64,
}

async fn overhead(runtime: &Runtime, pooling: bool, calls: usize) -> anyhow::Result<Overhead> {
    let base = static_dropbox(page_bytes(10)).await?;
    let empty = page_request(&base, Some("AAEstart"));
    for _ in 0..50 {
        runtime.instantiate_only().await?;
        runtime.sync_page(&empty).await?.map_err(|f| anyhow::anyhow!("{:?}", f.error))?;
    }
    let mut inst = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        runtime.instantiate_only().await?;
        inst.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let mut call = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        runtime.sync_page(&empty).await?.map_err(|f| anyhow::anyhow!("{:?}", f.error))?;
        call.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(Overhead {
        pooling,
        instantiate_med_us: median(&mut inst),
        instantiate_p99_us: percentile(&mut inst, 0.99),
        call_med_us: median(&mut call),
        call_p99_us: percentile(&mut call, 0.99),
    })
}

/// The emulator in a child process (so its memory is not the host's).
struct EmulatorProcess {
    child: Child,
    base: String,
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The standalone emulator, built beside this binary (`./dev bench` builds both).
fn emulator_binary() -> PathBuf {
    let me = std::env::current_exe().expect("own path");
    me.with_file_name("dropbox-emulator")
}

fn start_emulator(entries: usize) -> anyhow::Result<EmulatorProcess> {
    start_emulator_with(entries, &[])
}

fn start_emulator_with(entries: usize, extra: &[&str]) -> anyhow::Result<EmulatorProcess> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new(emulator_binary())
        .args(["--listen", &format!("127.0.0.1:{port}"), "--entries", &entries.to_string()])
        .args(extra)
        .args(["--client-id", APP.0, "--client-secret", APP.1])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start the emulator (build it first: cargo build --profile bench -p dropbox-emulator)")?;
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(600);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("the emulator did not start");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(EmulatorProcess { child, base })
}

fn emulator_requests(base: &str) -> anyhow::Result<u64> {
    let text = ureq::get(&format!("{base}/__admin/stats")).call()?.into_body().read_to_string()?;
    let stats: serde_json::Value = serde_json::from_str(&text)?;
    Ok(stats["by_route"].as_object().map(|m| m.values().filter_map(|v| v.as_u64()).sum()).unwrap_or(0))
}

/// How a sync child runs.
struct SyncRun {
    limit: u32,
    incremental: bool,
    parallel: usize,
    emulator_pid: Option<u32>,
    /// Documents a listing's pages wait for before one commit (0: a commit per page).
    commit_docs: usize,
    /// PostgreSQL state (None: SQLite).
    state: Option<String>,
    /// wasmtime's pooling allocator (the host's `--pooling`).
    pooling: bool,
}

fn run_child(component: &Path, emu: &EmulatorProcess, limit: u32, incremental: bool) -> anyhow::Result<SyncFigures> {
    run_child_commits(component, emu, limit, incremental, coco_host::host::DEFAULT_LISTING_COMMIT_DOCS)
}

/// A sync child whose listing commits once `commit_docs` documents wait (0: every page).
fn run_child_commits(
    component: &Path,
    emu: &EmulatorProcess,
    limit: u32,
    incremental: bool,
    commit_docs: usize,
) -> anyhow::Result<SyncFigures> {
    let run = SyncRun {
        limit,
        incremental,
        parallel: 1,
        emulator_pid: Some(emu.child.id()),
        commit_docs,
        state: None,
        pooling: false,
    };
    run_child_with(component, emu, &run)
}

/// A full sync (limit 2,000) with the state in SQLite, or in the PostgreSQL database `state`.
fn run_child_state(component: &Path, emu: &EmulatorProcess, state: Option<&str>) -> anyhow::Result<SyncFigures> {
    let run = SyncRun {
        limit: 2000,
        incremental: false,
        parallel: 1,
        emulator_pid: Some(emu.child.id()),
        commit_docs: coco_host::host::DEFAULT_LISTING_COMMIT_DOCS,
        state: state.map(str::to_string),
        pooling: false,
    };
    run_child_with(component, emu, &run)
}

fn run_child_with(component: &Path, emu: &EmulatorProcess, run: &SyncRun) -> anyhow::Result<SyncFigures> {
    let (limit, parallel, commits) = (run.limit.to_string(), run.parallel.to_string(), run.commit_docs.to_string());
    let mut args = vec!["sync-child", "--emulator", &emu.base, "--limit", &limit, "--parallel", &parallel];
    args.extend(["--commit-docs", &commits]);
    let pid = run.emulator_pid.map(|p| p.to_string());
    if let Some(pid) = &pid {
        args.extend(["--emulator-pid", pid]);
    }
    if run.incremental {
        args.push("--incremental");
    }
    if let Some(state) = &run.state {
        args.extend(["--state", state]);
    }
    if run.pooling {
        args.push("--pooling");
    }
    child_json(component, &args)
}

/// Run this binary as a child with `args` and read the one JSON line it prints.
fn child_json<T: serde::de::DeserializeOwned>(component: &Path, args: &[&str]) -> anyhow::Result<T> {
    let out = Command::new(std::env::current_exe()?)
        .arg("--component")
        .arg(component)
        .args(args)
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("child {} failed", args.first().unwrap_or(&""));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The benchmarks' compile cache, under a fixed key (it guards only benchmark runs).
fn bench_cache(dir: &Path) -> coco_host::runtime::CompileCache<'_> {
    coco_host::runtime::CompileCache { dir, key: *b"coco-bench-compile-cache-key-001" }
}

/// Child: connect, full sync; optionally 10 changes + incremental sync + a full re-list.
async fn sync_child(component: &Path, emulator: &str, run: &SyncRun) -> anyhow::Result<SyncFigures> {
    let (limit, incremental) = (run.limit, run.incremental);
    let tmp = tempfile::tempdir()?;
    let limits = Limits { pooling: run.pooling, ..Limits::default() };
    let runtime = Arc::new(Runtime::load(component, Some(bench_cache(&tmp.path().join("cache"))), limits)?);
    let store = replicas::child_store(tmp.path(), run.state.as_deref(), Keys::ephemeral())?;
    let mut host = Host::new(runtime.clone(), store);
    host.default_page_limit = limit;
    host.listing_parallelism = run.parallel;
    host.listing_commit_docs = run.commit_docs;
    let connector = ConnectorRecord {
        id: "dropbox".into(),
        client_id: APP.0.into(),
        client_secret: Secret::new(APP.1),
        redirect_uri: "http://localhost:9000/cb".into(),
        endpoints: EndpointsRecord::single(emulator),
    };
    let url = host.authorize_url(&connector, None).await?;
    let ds = host.finish_connect(&connector, &dropbox_emulator::approve(&url).await?, None).await?;
    let mut f = SyncFigures::default();
    let before = emulator_requests(emulator)?;
    let (host_cpu, emulator_cpu) = (listing::cpu_secs(None), run.emulator_pid.map(|p| listing::cpu_secs(Some(p))));
    let t = Instant::now();
    let r = host.sync(&ds.id, |_| {}).await?;
    f.full_secs = t.elapsed().as_secs_f64();
    f.host_cpu_secs = listing::cpu_secs(None) - host_cpu;
    f.emulator_cpu_secs = emulator_cpu.map_or(0.0, |c| listing::cpu_secs(run.emulator_pid) - c);
    f.full_pages = r.pages;
    f.full_requests = emulator_requests(emulator)? - before;
    f.documents = r.documents_now;
    // Before the digest: the sync's own peak.
    f.rss_after_full_kb = peak_rss_kb();
    f.digest = listing::index_digest(&host.store, &ds.id)?;
    f.shards = r.shards;
    if incremental {
        let changes = serde_json::json!([
            {"op": "add_folder", "path": "/bench new"},
            {"op": "add_file", "path": "/bench new/a.pdf", "size": 10},
            {"op": "add_file", "path": "/bench new/b.docx", "size": 20},
            {"op": "add_file", "path": "/bench top.xlsx", "size": 30},
            {"op": "modify", "path": "/bench top.xlsx", "size": 31},
            {"op": "move", "from": "/bench new/a.pdf", "to": "/bench new/a renamed.pdf"},
            {"op": "add_file", "path": "/bench new/c.txt", "size": 5},
            {"op": "delete", "path": "/bench new/c.txt"},
            {"op": "add_folder", "path": "/bench other"},
            {"op": "move", "from": "/bench new/b.docx", "to": "/bench other/b.docx"},
        ]);
        let resp = ureq::post(&format!("{emulator}/__admin/mutate"))
            .header("content-type", "application/json")
            .send(changes.to_string())?;
        anyhow::ensure!(resp.status().is_success(), "mutations refused");
        let before = emulator_requests(emulator)?;
        let t = Instant::now();
        let r = host.sync(&ds.id, |_| {}).await?;
        f.incr_secs = t.elapsed().as_secs_f64();
        f.incr_requests = emulator_requests(emulator)? - before;
        f.incr_entries = r.entries;
        // Upstream's approach: list everything again.
        host.store.restart_listing(&ds.id)?;
        let before = emulator_requests(emulator)?;
        let t = Instant::now();
        host.sync(&ds.id, |_| {}).await?;
        f.relist_secs = t.elapsed().as_secs_f64();
        f.relist_requests = emulator_requests(emulator)? - before;
    }
    f.peak_linear_bytes = runtime.peak_linear_memory();
    f.rss_peak_kb = peak_rss_kb();
    Ok(f)
}

fn serve_child(component: &Path, emulator: &str, kind: &str, count: usize) -> anyhow::Result<service::ServiceFigures> {
    child_json(component, &["serve-child", "--emulator", emulator, "--kind", kind, "--count", &count.to_string()])
}

fn service_section(component: &Path, line: &mut impl FnMut(String)) -> anyhow::Result<()> {
    line("## 7. `serve`: many tenants, memory, change-to-index latency".into());
    line(String::new());
    let emu = start_emulator_with(10, &["--accounts", "1000"])?;
    let idle = serve_child(component, &emu.base, "idle", 1000)?;
    drop(emu);
    line(format!(
        "- **Idle re-syncs**: {:.0}/s across {} datasources with no changes ({:.2} Dropbox requests each: one component call, one `continue`, and two small write transactions: take the lease, then apply the page with its cursor and give the lease back). Target ≥ 1,000/s.",
        idle.idle_resyncs_per_sec, idle.datasources, idle.idle_requests_per_resync
    ));
    line(format!(
        "- **RSS, {} datasources idle**, each with a longpoll waiting in its own component call ({} active): {:.0} MiB.",
        idle.datasources, idle.idle_longpolls, idle.idle_rss_mib
    ));
    let emu = start_emulator_with(100_000, &["--accounts", "10"])?;
    let listings = serve_child(component, &emu.base, "listings", 10)?;
    drop(emu);
    line(format!(
        "- **RSS, {} full listings in flight** (10 × 100k entries, one page each in flight): peak {:.0} MiB; {} documents in {:.1} s ({:.0} entries/s).",
        listings.listings,
        listings.listing_rss_peak_mib,
        listings.listing_entries,
        listings.listing_secs,
        listings.listing_entries as f64 / listings.listing_secs.max(1e-9)
    ));
    line(String::new());
    line("Change-to-index latency, 40 changes over 20 accounts, from the emulator accepting the change to the document committed in the index (emulator in its own process, no added network latency):".into());
    line(String::new());
    line("| trigger | p50 ms | p99 ms | samples |".into());
    line("|---|---:|---:|---:|".into());
    let emu = start_emulator_with(100, &["--accounts", "20"])?;
    for (mode, label) in [
        ("interval", "interval polling (every 5 s; upstream's default is 30 s)"),
        ("longpoll", "longpoll"),
        ("webhook", "webhook"),
    ] {
        let f = serve_child(component, &emu.base, &format!("latency-{mode}"), 0)?;
        line(format!("| {label} | {:.0} | {:.0} | {} |", f.latency_p50_ms, f.latency_p99_ms, f.latency_samples));
    }
    drop(emu);
    line(String::new());
    Ok(())
}

fn file_size(p: &std::path::Path) -> String {
    std::fs::metadata(p).map(|m| format!("{} KiB", m.len() / 1024)).unwrap_or_else(|_| "not built".into())
}

/// Section 10: sequential vs sharded initial listing against emulated round trips.
fn listing_section(args: &Args, line: &mut impl FnMut(String)) -> anyhow::Result<()> {
    let latency = args.latency_ms.to_string();
    let emu = start_emulator_with(args.parallel_entries, &["--latency-ms", &latency])?;
    let mut rows = Vec::new();
    for parallel in [1usize, 2, 4, 8] {
        let run = SyncRun {
            limit: 2000,
            incremental: false,
            parallel,
            emulator_pid: Some(emu.child.id()),
            commit_docs: coco_host::host::DEFAULT_LISTING_COMMIT_DOCS,
            state: None,
            pooling: false,
        };
        rows.push((parallel, run_child_with(&args.component, &emu, &run)?));
    }
    drop(emu);
    line(format!(
        "## 10. Initial listing of {} entries with {} ms per request: sequential vs parallel",
        args.parallel_entries, args.latency_ms
    ));
    line(String::new());
    line("Each run is a fresh host and store against the same emulated account (its own process, every API call delayed by the round trip). Parallel: `get_latest_cursor` first, the folder's subtrees listed side by side (each its own cursor, one page per component call), then the replay from the first cursor. *Index digest*: the documents' ids, paths and revs, hashed in id order.".into());
    line(String::new());
    line("| listings in flight | wall s | speed-up | requests | pages | subtrees | documents | host CPU s | index digest |".into());
    line("|---:|---:|---:|---:|---:|---:|---:|---:|---|".into());
    let sequential = rows[0].1.full_secs;
    for (parallel, f) in &rows {
        line(format!(
            "| {parallel} | {:.1} | {:.2}× | {} | {} | {} | {} | {:.1} | `{}` |",
            f.full_secs,
            sequential / f.full_secs.max(1e-9),
            f.full_requests,
            f.full_pages,
            f.shards,
            f.documents,
            f.host_cpu_secs,
            f.digest
        ));
    }
    let same = rows.iter().all(|(_, f)| f.digest == rows[0].1.digest && f.documents == rows[0].1.documents);
    line(String::new());
    line(format!(
        "Identical index in every run: **{}**. 8 in flight vs sequential: **{:.2}×** (target ≥ 4×).",
        if same { "yes" } else { "NO" },
        sequential / rows[3].1.full_secs.max(1e-9)
    ));
    line(String::new());
    Ok(())
}

async fn run_all(args: &Args) -> anyhow::Result<()> {
    let mut report = String::new();
    let mut line = |s: String| {
        println!("{s}");
        report.push_str(&s);
        report.push('\n');
    };
    line("# coco-dropbox benchmark results".into());
    line(String::new());
    line(format!("Machine: {}. Run: {} (unix {}).", machine(), env!("CARGO_PKG_VERSION"), now_unix()));
    line("Host and native code: `cargo run --profile bench -p coco-bench` (opt-level 3, thin LTO). Component: the release .wasm (opt-level 3, fat LTO). Times are medians unless noted.".into());
    line(String::new());

    let cache = std::env::temp_dir().join("coco-bench-cache");
    let runtime = Runtime::load(&args.component, Some(bench_cache(&cache)), Limits::default())?;
    if args.sections.contains(&1) {
        eprintln!("[1/6] page cost…");
        let pooled =
            Runtime::load(&args.component, Some(bench_cache(&cache)), Limits { pooling: true, ..Limits::default() })?;
        let pc = page_cost(&runtime, &pooled).await?;
        drop(pooled);
        let wasm_map = (pc.wasm_call_ms - pc.wasm_empty_ms).max(0.0);
        let pooled_map = (pc.pooled_call_ms - pc.pooled_empty_ms).max(0.0);
        line("## 1. Page cost (2,000 entries)".into());
        line(String::new());
        line(format!("Page: {} entries, {:.0} KiB of JSON.", pc.entries, pc.bytes as f64 / 1024.0));
        line(String::new());
        line("| measure | ms / page | entries/s | vs native |".into());
        line("|---|---:|---:|---:|".into());
        let eps = |ms: f64| if ms > 0.0 { format!("{:.0}", pc.entries as f64 / (ms / 1e3)) } else { "-".into() };
        line(format!(
            "| bare serde_json parse to `Value` | {:.2} | {} | {:.2}× |",
            pc.parse_value_ms,
            eps(pc.parse_value_ms),
            pc.parse_value_ms / pc.native_ms
        ));
        line(format!(
            "| bare typed parse (floor: no mapping) | {:.2} | {} | {:.2}× |",
            pc.parse_typed_ms,
            eps(pc.parse_typed_ms),
            pc.parse_typed_ms / pc.native_ms
        ));
        line(format!("| native parse + map | {:.2} | {} | 1.00× |", pc.native_ms, eps(pc.native_ms)));
        line(format!(
            "| native loopback fetch + parse + map | {:.2} | {} | {:.2}× |",
            pc.native_http_ms,
            eps(pc.native_http_ms),
            pc.native_http_ms / pc.native_ms
        ));
        line(format!(
            "| wasm sync-page call, whole (instantiate, HTTP, parse, map, WIT) | {:.2} | {} | {:.2}× |",
            pc.wasm_call_ms,
            eps(pc.wasm_call_ms),
            pc.wasm_call_ms / pc.native_ms
        ));
        line(format!(
            "| wasm page cost (whole call − empty-page call) | {:.2} | {} | {:.2}× |",
            wasm_map,
            eps(wasm_map),
            wasm_map / pc.native_ms
        ));
        line(format!(
            "| wasm page cost, pooling allocator ({} MiB of linear memory kept resident per slot) | {:.2} | {} | {:.2}× |",
            coco_host::runtime::KEEP_RESIDENT_BYTES >> 20,
            pooled_map,
            eps(pooled_map),
            pooled_map / pc.native_ms
        ));
        line(String::new());
        line(format!(
            "Ratios: wasm call / native fetch+parse+map (like for like) = **{:.2}×**; wasm page / native parse+map = **{:.2}×** (target ≤ 1.5×; pooled {:.2}×); wasm page / bare typed parse = **{:.2}×** (target ≤ 3×; pooled {:.2}×); native parse+map / bare typed parse = **{:.2}×** (target ≤ 2×). Component peak linear memory: {:.1} MiB.",
            pc.wasm_call_ms / pc.native_http_ms,
            wasm_map / pc.native_ms,
            pooled_map / pc.native_ms,
            wasm_map / pc.parse_typed_ms,
            pooled_map / pc.parse_typed_ms,
            pc.native_ms / pc.parse_typed_ms,
            pc.peak_linear as f64 / 1048576.0
        ));
        line(String::new());
    }
    if args.sections.contains(&2) {
        eprintln!("[2/6] per-invocation overhead…");
        let mut rows = vec![overhead(&runtime, false, args.calls).await?];
        drop(runtime);
        let pooled =
            Runtime::load(&args.component, Some(bench_cache(&cache)), Limits { pooling: true, ..Limits::default() })?;
        rows.push(overhead(&pooled, true, args.calls).await?);
        drop(pooled);
        line(format!("## 2. Per-invocation overhead ({} calls each)", args.calls));
        line(String::new());
        line("| allocator | instantiate median µs | p99 µs | empty-page sync call median µs | p99 µs |".into());
        line("|---|---:|---:|---:|---:|".into());
        for o in &rows {
            line(format!(
                "| {} | {:.1} | {:.1} | {:.0} | {:.0} |",
                if o.pooling { "pooling" } else { "on-demand" },
                o.instantiate_med_us,
                o.instantiate_p99_us,
                o.call_med_us,
                o.call_p99_us
            ));
        }
        line(String::new());
    }
    if args.sections.contains(&3) {
        eprintln!("[3/6 + 4/6] full and incremental sync of {} entries…", args.entries);
        let emu = start_emulator(args.entries)?;
        let at_2000 = run_child(&args.component, &emu, 2000, true)?;
        let at_100 = run_child(&args.component, &emu, 100, false)?;
        let per_page = run_child_commits(&args.component, &emu, 2000, false, 0)?;
        let per_page_100 = run_child_commits(&args.component, &emu, 100, false, 0)?;
        drop(emu);
        line(format!("## 3. Full sync of a {}-entry account", args.entries));
        line(String::new());
        line("The emulator runs in its own process; *host CPU* is the host process's user + system time during the full sync, and *host-side entries/s* divides the entries by it (the emulator's CPU is reported apart).".into());
        line(String::new());
        line(format!("*Commits*: a listing's pages applied together once {} documents wait (the default), or each page in its own transaction (before).", coco_host::host::DEFAULT_LISTING_COMMIT_DOCS));
        line(String::new());
        line(
            "| limit | commits | wall s | pages | requests | entries/s (wall) | host CPU s | host-side entries/s | emulator CPU s | host peak RSS MiB | component peak linear memory MiB |"
                .into(),
        );
        line("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|".into());
        let rows = [
            (2000, "grouped", &at_2000),
            (2000, "per page", &per_page),
            (100, "grouped", &at_100),
            (100, "per page", &per_page_100),
        ];
        for (limit, commits, f) in rows {
            line(format!(
                "| {limit} | {commits} | {:.2} | {} | {} | {:.0} | {:.2} | {:.0} | {:.2} | {:.1} | {:.1} |",
                f.full_secs,
                f.full_pages,
                f.full_requests,
                args.entries as f64 / f.full_secs,
                f.host_cpu_secs,
                args.entries as f64 / f.host_cpu_secs.max(1e-9),
                f.emulator_cpu_secs,
                f.rss_after_full_kb as f64 / 1024.0,
                f.peak_linear_bytes as f64 / 1048576.0
            ));
        }
        line(String::new());
        line(format!(
            "Limit 2000 vs upstream's 100: {:.1}× fewer requests, {:.2}× the speed. Grouped commits vs a commit per page: host CPU {:.2}× less at limit 2000, {:.2}× less at limit 100.",
            at_100.full_requests as f64 / at_2000.full_requests.max(1) as f64,
            at_100.full_secs / at_2000.full_secs,
            per_page.host_cpu_secs / at_2000.host_cpu_secs.max(1e-9),
            per_page_100.host_cpu_secs / at_100.host_cpu_secs.max(1e-9)
        ));
        line(String::new());
        line(format!("## 4. Incremental sync of 10 changes vs a full re-list ({} entries, limit 2000)", args.entries));
        line(String::new());
        line("| run | requests | wall s | entries listed |".into());
        line("|---|---:|---:|---:|".into());
        line(format!(
            "| incremental (`list_folder/continue` from the saved cursor) | {} | {:.3} | {} |",
            at_2000.incr_requests, at_2000.incr_secs, at_2000.incr_entries
        ));
        line(format!(
            "| full re-list (upstream, every 30 s) | {} | {:.2} | {} |",
            at_2000.relist_requests, at_2000.relist_secs, args.entries
        ));
        line(format!(
            "| full re-list at upstream's limit 100 | {} | {:.2} | {} |",
            at_100.full_requests, at_100.full_secs, args.entries
        ));
        line(String::new());
        line(format!(
            "Incremental vs re-list: {:.0}× fewer requests, {:.0}× less time (vs upstream's limit-100 re-list: {:.0}× / {:.0}×).",
            at_2000.relist_requests as f64 / at_2000.incr_requests.max(1) as f64,
            at_2000.relist_secs / at_2000.incr_secs.max(1e-9),
            at_100.full_requests as f64 / at_2000.incr_requests.max(1) as f64,
            at_100.full_secs / at_2000.incr_secs.max(1e-9)
        ));
        line(String::new());
    }
    if args.sections.contains(&5) {
        eprintln!("[5/6] memory vs account size…");
        line("## 5. Host peak RSS vs account size (limit 2000, fresh process each)".into());
        line(String::new());
        line("| entries | commits | host peak RSS MiB | vs smallest | wall s | entries/s (wall) | host CPU s | host-side entries/s | emulator CPU s |".into());
        line("|---:|---|---:|---:|---:|---:|---:|---:|---:|".into());
        let mut first = None;
        for &n in &args.memory_sizes {
            let emu = start_emulator(n)?;
            let grouped = run_child(&args.component, &emu, 2000, false)?;
            let per_page = run_child_commits(&args.component, &emu, 2000, false, 0)?;
            drop(emu);
            for (commits, f) in [("grouped", &grouped), ("per page", &per_page)] {
                // The peak during the sync, read before the index digest.
                let base = *first.get_or_insert(f.rss_after_full_kb as f64);
                line(format!(
                    "| {n} | {commits} | {:.1} | {:+.0}% | {:.1} | {:.0} | {:.1} | {:.0} | {:.1} |",
                    f.rss_after_full_kb as f64 / 1024.0,
                    (f.rss_after_full_kb as f64 / base - 1.0) * 100.0,
                    f.full_secs,
                    n as f64 / f.full_secs.max(1e-9),
                    f.host_cpu_secs,
                    n as f64 / f.host_cpu_secs.max(1e-9),
                    f.emulator_cpu_secs
                ));
            }
        }
        line(String::new());
    }
    if args.sections.contains(&7) {
        eprintln!("[7/7] serve: idle re-syncs, memory, change-to-index latency…");
        service_section(&args.component, &mut line)?;
    }
    if args.sections.contains(&8) {
        eprintln!("[8] outbox and sinks…");
        let emu = start_emulator(args.entries)?;
        let n = args.entries.to_string();
        let f: sinks::SinkFigures =
            child_json(&args.component, &["sinks-child", "--emulator", &emu.base, "--entries", &n])?;
        drop(emu);
        line(format!("## 8. Outbox and sinks ({} entries)", f.entries));
        line(String::new());
        line(format!(
            "- **Outbox cost**: full sync {:.2} s with no sink, {:.2} s with a sink registered (every change also recorded in the page's transaction): {:.2}×.",
            f.sync_without_sink_secs,
            f.sync_with_sink_secs,
            f.sync_with_sink_secs / f.sync_without_sink_secs.max(1e-9)
        ));
        line(String::new());
        line(format!(
            "Delivering the {} documents from the outbox (stand-in receivers in the same process, loopback HTTP):",
            f.documents
        ));
        line(String::new());
        line("| sink | batch | documents/s |".into());
        line("|---|---:|---:|".into());
        line(format!("| JSONL file (fsync per batch) | 500 | {:.0} |", f.jsonl_per_sec));
        for (batch, rate) in &f.bulk_per_sec {
            line(format!("| Elasticsearch `_bulk` | {batch} | {rate:.0} |"));
        }
        line(String::new());
        line(format!(
            "Into the Coco Server stand-in, which answers as Coco does: one request per document, each answered on the index's next refresh ({} s, Elasticsearch's default). Creates: a new Coco; updates: the same documents again (the target is ≥ 200 documents/s per datasource).",
            sinks::COCO_REFRESH.as_secs_f64()
        ));
        line(String::new());
        line("| upsert route | in flight | documents | creates/s | updates/s | requests per update |".into());
        line("|---|---:|---:|---:|---:|---:|".into());
        for r in &f.coco {
            line(format!(
                "| {} | {} | {} | {:.0} | {:.0} | {:.2} |",
                r.route, r.in_flight, r.documents, r.creates_per_sec, r.updates_per_sec, r.requests_per_update
            ));
        }
        line(String::new());
    }
    if args.sections.contains(&9) {
        eprintln!("[9] content: extraction per format, content sync…");
        let (rows, empty_ms) = content::extraction(&args.component, &cache).await?;
        line("## 9. Content extraction".into());
        line(String::new());
        line(format!(
            "Same bytes, same loopback server. *native extract*: `coco_dropbox::content::extract` on bytes in memory. *native fetch + extract*: a native HTTP client downloads them, then extracts (like for like with the component). *wasm call*: the component's whole `fetch-content` (instantiate, download over wasi:http, extract, WIT); *wasm extract* subtracts the {empty_ms:.2} ms of a call that fetches an empty file. Peak memory: the component's linear memory, a fresh runtime per row."
        ));
        line(String::new());
        line("| input | format | KiB | native extract ms | native MB/s | native fetch + extract ms | wasm call ms | wasm extract ms | wasm MB/s | wasm call / native fetch + extract | wasm / native extract | peak linear MiB |".into());
        line("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|".into());
        for r in &rows {
            let mbs = |ms: f64| if ms > 0.0 { r.bytes as f64 / 1e6 / (ms / 1e3) } else { f64::NAN };
            line(format!(
                "| {} | {} | {} | {:.2} | {:.1} | {:.2} | {:.2} | {:.2} | {:.1} | {:.2}× | {:.2}× | {:.1} |",
                r.name,
                r.format,
                r.bytes / 1024,
                r.native_ms,
                mbs(r.native_ms),
                r.native_fetch_ms,
                r.wasm_call_ms,
                r.wasm_ms,
                mbs(r.wasm_ms),
                r.wasm_call_ms / r.native_fetch_ms.max(1e-9),
                r.wasm_ms / r.native_ms.max(1e-9),
                r.peak_linear_mib
            ));
        }
        line(String::new());
        let entries = 17_000usize;
        let emu = start_emulator(entries)?;
        let mut sync_rows = Vec::new();
        for c in [2usize, 4] {
            let c_s = c.to_string();
            let r: content::SyncRow =
                child_json(&args.component, &["content-child", "--emulator", &emu.base, "--concurrency", &c_s])?;
            sync_rows.push(r);
        }
        drop(emu);
        line(format!(
            "Content sync of a generated {entries}-entry account (emulator in its own process; small real documents of every generated type: text, Markdown, PDF, DOCX, XLSX, PPTX, Paper and Google exports):"
        ));
        line(String::new());
        line("| calls in flight | files fetched | s | files/s | MB/s | listing alone s |".into());
        line("|---:|---:|---:|---:|---:|---:|".into());
        for r in &sync_rows {
            line(format!(
                "| {} | {} | {:.2} | {:.0} | {:.2} | {:.2} |",
                r.concurrency,
                r.files,
                r.secs,
                r.files as f64 / r.secs.max(1e-9),
                r.bytes as f64 / 1e6 / r.secs.max(1e-9),
                r.listing_secs
            ));
        }
        line(String::new());
    }
    if args.sections.contains(&10) {
        eprintln!("[10] parallel initial listing…");
        listing_section(args, &mut line)?;
    }
    if args.sections.contains(&11) {
        eprintln!("[11] idle re-sync on a large index…");
        let emu = start_emulator(args.entries)?;
        let f: listing::IdleFigures =
            child_json(&args.component, &["idle-child", "--emulator", &emu.base, "--syncs", "300"])?;
        drop(emu);
        line(format!("## 11. Idle re-sync on a {}-document index (in-process)", f.documents));
        line(String::new());
        line(format!(
            "`Host::sync` of a datasource with nothing new, {} times after warm-up (emulator in its own process, no added latency): **median {:.2} ms**, p99 {:.2} ms, {:.2} Dropbox requests each. The component call alone (instantiate, one `list_folder/continue`, WIT) is {:.2} ms of it; the rest is the host (lease, one apply transaction that also gives the lease back, status). Target ≤ 5 ms.",
            f.syncs, f.median_ms, f.p99_ms, f.requests_per_sync, f.component_median_ms
        ));
        line(String::new());
    }
    if args.sections.contains(&12) {
        eprintln!("[12] state in PostgreSQL: cost per page, replicas…");
        replicas::section(&args.component, &mut line).await?;
    }
    if args.sections.contains(&6) {
        eprintln!("[6/6] sizes…");
        line("## 6. Release .wasm sizes".into());
        line(String::new());
        line(format!("- connector component: {}", file_size(&coco_host::paths::connector_wasm())));
        line(format!("- extractor component (file content): {}", file_size(&coco_host::paths::extractor_wasm())));
        line(format!(
            "- HTTP facade build (`--features http-handler`): {}",
            file_size(&coco_host::paths::facade_wasm())
        ));
    }
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, report)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
