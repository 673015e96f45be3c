//! Section 12: state in PostgreSQL. The cost of a page applied to PostgreSQL vs SQLite (the same
//! full sync in a child process each), and pages per second with 1, 2 and 4 `coco-host serve`
//! replicas sharing one PostgreSQL state against an emulator answering each request after
//! 200 ms: I/O-bound, so throughput grows with the pages in flight across replicas.
//!
//! Needs a PostgreSQL server: `COCO_BENCH_POSTGRES` (or `COCO_TEST_POSTGRES`, which `./dev
//! bench` sets after starting a throwaway one) naming a database to create scratch ones from.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use coco_host::keys::Keys;
use coco_host::state::{StateLocation, Store};

const MASTER: &str = "bench-replicas-master-key-0123456789abcdef";
// Small pages, so a page costs little CPU next to its 200 ms request and the figure is about
// pages in flight, not about two cores.
const ACCOUNTS: usize = 32;
const ENTRIES: usize = 1_000;
const PAGE_LIMIT: &str = "50";
const IN_FLIGHT_PER_REPLICA: &str = "4";
const API_TOKEN: &str = "bench-replicas-admin-token-0123456789";

pub fn admin_url() -> Option<String> {
    std::env::var("COCO_BENCH_POSTGRES").or_else(|_| std::env::var("COCO_TEST_POSTGRES")).ok()
}

pub fn keys() -> Keys {
    Keys::from_master(MASTER.as_bytes()).expect("a long enough key")
}

struct Replica(Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn coco_host_binary() -> std::path::PathBuf {
    std::env::current_exe().expect("own path").with_file_name("coco-host")
}

/// What one replicas run measured.
struct RunFigures {
    pages: u64,
    /// From the replicas' start until every datasource finished its first sync.
    secs: f64,
    /// From the replicas' start until the first page was committed (process start, component
    /// load, first claims).
    first_page_secs: f64,
    /// Summed over the replicas' `/metrics`.
    dropbox_requests: f64,
    skipped_leased: f64,
    skipped_synced: f64,
}

/// Sum of one metric (all label sets matching `labels`) over Prometheus text.
fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(k, _)| k.split('{').next() == Some(name) && k.contains(labels))
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

/// Start one `coco-host serve` on `state` listening on `port`.
fn spawn_replica(component: &Path, state: &str, cache: &Path, port: u16) -> anyhow::Result<Replica> {
    let child = Command::new(coco_host_binary())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--state", state])
        .args(["--cache-dir", &cache.to_string_lossy()])
        .args(["--no-longpoll", "--interval", "3600", "--content-concurrency", "0", "--pages-per-minute", "0"])
        .args(["--page-limit", PAGE_LIMIT, "--max-in-flight", IN_FLIGHT_PER_REPLICA])
        .env("COCO_DROPBOX_WASM", component)
        .env("COCO_MASTER_KEY", MASTER)
        .env("COCO_API_TOKEN", API_TOKEN)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start coco-host serve (build it: cargo build --profile bench -p coco-host)")?;
    Ok(Replica(child))
}

/// Fill `cache` with the components compiled the way `serve` keys them: start one replica on
/// an empty database and wait until it is ready. Replicas of one machine share the cache, so
/// the runs then measure listing, not compilations racing on two cores.
async fn warm_cache(component: &Path, admin: &str, cache: &Path) -> anyhow::Result<()> {
    let url = coco_host::db::scratch_database(admin, "bench")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let _replica = spawn_replica(component, &url, cache, port)?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let ready = tokio::task::spawn_blocking(move || {
            ureq::get(&format!("http://127.0.0.1:{port}/readyz")).call().is_ok_and(|r| r.status() == 200)
        })
        .await?;
        if ready {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "a replica did not get ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pages per second of `replicas` serve processes listing every account of `emulator` from a
/// fresh PostgreSQL database (accounts connected in this process first).
async fn replicas_run(
    component: &Path,
    emulator: &str,
    admin: &str,
    cache: &Path,
    replicas: usize,
) -> anyhow::Result<RunFigures> {
    let url = coco_host::db::scratch_database(admin, "bench")?;
    let tmp = tempfile::tempdir()?;
    let (host, ids) = crate::service::connected_host_at(
        &StateLocation::Postgres(url.clone()),
        tmp.path(),
        component,
        emulator,
        ACCOUNTS,
        keys(),
    )
    .await?;
    let store = &host.store;
    let mut children = Vec::new();
    let mut ports = Vec::new();
    let t = Instant::now();
    for _ in 0..replicas {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        ports.push(port);
        children.push(spawn_replica(component, &url, cache, port)?);
    }
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut first_page = None;
    loop {
        let states = ids.iter().map(|id| store.sync_state(id)).collect::<Result<Vec<_>, _>>()?;
        if first_page.is_none() && states.iter().any(|s| s.pages > 0) {
            first_page = Some(t.elapsed().as_secs_f64());
        }
        if states.iter().all(|s| s.last_synced_at.is_some()) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the replicas did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    let pages = ids.iter().map(|id| store.sync_state(id).map(|s| s.pages.max(0) as u64)).sum::<Result<u64, _>>()?;
    let mut scraped = String::new();
    for port in ports {
        let text = tokio::task::spawn_blocking(move || {
            ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
                .header("x-api-token", API_TOKEN)
                .call()
                .and_then(|mut r| r.body_mut().read_to_string())
        })
        .await??;
        scraped.push_str(&text);
        scraped.push('\n');
    }
    drop(children);
    Ok(RunFigures {
        pages,
        secs,
        first_page_secs: first_page.unwrap_or(secs),
        // + 0.0: an empty f64 sum is -0.0.
        dropbox_requests: metric(&scraped, "coco_dropbox_requests_total", "") + 0.0,
        skipped_leased: metric(&scraped, "coco_skipped_turns_total", "leased") + 0.0,
        skipped_synced: metric(&scraped, "coco_skipped_turns_total", "synced") + 0.0,
    })
}

/// The whole section's lines.
pub async fn section(component: &Path, line: &mut impl FnMut(String)) -> anyhow::Result<()> {
    line("## 12. State in PostgreSQL: cost per page, and replicas".into());
    line(String::new());
    let Some(admin) = admin_url() else {
        line("Not measured: no PostgreSQL server (set `COCO_BENCH_POSTGRES`; `./dev bench` starts one).".into());
        line(String::new());
        return Ok(());
    };
    // Cost per page: the same full sync (100 pages of 2,000 entries, emulator in its own
    // process with no added latency), state in SQLite vs PostgreSQL.
    let emu = crate::start_emulator(200_000)?;
    let sqlite = crate::run_child_state(component, &emu, None)?;
    let pg_url = coco_host::db::scratch_database(&admin, "bench")?;
    let pg = crate::run_child_state(component, &emu, Some(&pg_url))?;
    drop(emu);
    anyhow::ensure!(sqlite.digest == pg.digest, "the two states hold different indexes");
    let per_page = |f: &crate::SyncFigures| f.full_secs * 1e3 / f.full_pages.max(1) as f64;
    let cpu_per_page = |f: &crate::SyncFigures| f.host_cpu_secs * 1e3 / f.full_pages.max(1) as f64;
    line(format!(
        "Full sync of {} documents in {} pages of 2,000 (one host process, emulator in another, no added latency; the same index digest both ways):",
        sqlite.documents, sqlite.full_pages
    ));
    line(String::new());
    line("| state | wall ms per page | host CPU ms per page | entries/s |".into());
    line("|---|---|---|---|".into());
    for (name, f) in
        [("SQLite (file, WAL, synchronous=FULL)", &sqlite), ("PostgreSQL 15 (loopback, pipelined upserts)", &pg)]
    {
        line(format!(
            "| {name} | {:.1} | {:.1} | {:.0} |",
            per_page(f),
            cpu_per_page(f),
            f.documents as f64 / f.full_secs
        ));
    }
    line(String::new());
    line(format!("PostgreSQL / SQLite wall time per page: **{:.2}×**.", per_page(&pg) / per_page(&sqlite)));
    line(String::new());

    // Replicas: I/O-bound listing, 200 ms per request.
    let emu = crate::start_emulator_with(ENTRIES, &["--accounts", &ACCOUNTS.to_string(), "--latency-ms", "200"])?;
    line(format!(
        "{ACCOUNTS} accounts of {ENTRIES} entries, emulator answering every request after 200 ms, page limit {PAGE_LIMIT}, {IN_FLIGHT_PER_REPLICA} pages in flight per replica, every replica a `coco-host serve` process on one PostgreSQL database, the compiled components cached beforehand (seconds from the replicas' start until every datasource finished its first sync; \"from the first page\" leaves out process start):"
    ));
    line(String::new());
    line("| replicas | pages | seconds | pages/s | vs 1 replica | first page after (s) | pages/s from the first page | vs 1 replica | Dropbox requests per page | turns skipped: leased / synced |".into());
    line("|---|---|---|---|---|---|---|---|---|---|".into());
    let cache = tempfile::tempdir()?;
    warm_cache(component, &admin, cache.path()).await?;
    let mut one = None;
    for replicas in [1, 2, 4] {
        eprintln!("  {replicas} replica(s)…");
        let f = replicas_run(component, &emu.base, &admin, cache.path(), replicas).await?;
        let rate = f.pages as f64 / f.secs;
        let steady = f.pages as f64 / (f.secs - f.first_page_secs).max(1e-3);
        let (base, base_steady) = *one.get_or_insert((rate, steady));
        line(format!(
            "| {replicas} | {} | {:.1} | {rate:.1} | {:.2}× | {:.1} | {steady:.1} | {:.2}× | {:.2} | {} / {} |",
            f.pages,
            f.secs,
            rate / base,
            f.first_page_secs,
            steady / base_steady,
            f.dropbox_requests / f.pages.max(1) as f64,
            f.skipped_leased,
            f.skipped_synced,
        ));
    }
    line(String::new());
    drop(emu);
    Ok(())
}

/// Open the state for a sync child: SQLite in `dir`, or the PostgreSQL database `url`.
pub fn child_store(dir: &Path, url: Option<&str>, keys: Keys) -> anyhow::Result<Store> {
    Ok(match url {
        Some(url) => Store::open_postgres(url, keys)?,
        None => Store::open(&dir.join("coco.sqlite"), keys)?,
    })
}
