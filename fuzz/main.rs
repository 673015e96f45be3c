//! `coco-fuzz`: property-based fuzzing of everything that reads untrusted bytes. Each target
//! runs natively (the component's core called directly) and through the compiled component
//! under wasmtime. The property everywhere: a typed error or a success; never a panic, a trap
//! or a hang; never a secret in what comes out. Prints cases, cases/s and failures per target
//! and exits non-zero when any target failed.

mod gen;
mod native;
mod wasm;

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

#[derive(Parser)]
#[command(name = "coco-fuzz", about = "Fuzz the parsers and handlers that see untrusted bytes")]
struct Args {
    /// Cases per native target.
    #[arg(long, default_value_t = 1_000_000)]
    cases: u64,
    /// Cases per target through the compiled component (each is a real wasmtime call).
    #[arg(long, default_value_t = 20_000)]
    wasm_cases: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run only targets whose name contains this.
    #[arg(long)]
    only: Option<String>,
    /// A case slower than this counts as a hang.
    #[arg(long, default_value_t = 5)]
    hang_secs: u64,
    #[arg(long, env = "COCO_DROPBOX_WASM", default_value_os_t = coco_host::paths::connector_wasm())]
    component: PathBuf,
    #[arg(long, default_value_os_t = coco_host::paths::facade_wasm())]
    facade: PathBuf,
    /// wasmtime-cli for the facade target (skipped when missing).
    #[arg(long, env = "WASMTIME")]
    wasmtime: Option<PathBuf>,
}

struct Row {
    target: &'static str,
    through: &'static str,
    cases: u64,
    elapsed: Duration,
    failures: Vec<String>,
}

fn runner(seed: u64) -> TestRunner {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default()
}

fn record<V: std::fmt::Debug>(row: &mut Row, value: &V, outcome: Result<(), String>, took: Duration, hang: Duration) {
    let failure = match outcome {
        Err(why) => Some(why),
        Ok(()) if took > hang => Some(format!("took {took:?}")),
        Ok(()) => None,
    };
    if let Some(why) = failure {
        if row.failures.len() < 5 {
            let input: String = format!("{value:?}").chars().take(300).collect();
            row.failures.push(format!("{why}\n      input: {input}"));
        } else {
            row.failures.push(String::new());
        }
    }
}

fn run_native<S: Strategy>(
    target: &'static str,
    strategy: S,
    args: &Args,
    property: impl Fn(&S::Value) -> Result<(), String>,
) -> Row
where
    S::Value: std::fmt::Debug,
{
    let mut row = Row { target, through: "native", cases: 0, elapsed: Duration::ZERO, failures: Vec::new() };
    let mut runner = runner(args.seed);
    let hang = Duration::from_secs(args.hang_secs);
    let started = Instant::now();
    for _ in 0..args.cases {
        let value = match strategy.new_tree(&mut runner) {
            Ok(tree) => tree.current(),
            Err(_) => continue,
        };
        let t = Instant::now();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| property(&value)))
            .unwrap_or_else(|p| Err(format!("panicked: {}", panic_text(p))));
        record(&mut row, &value, outcome, t.elapsed(), hang);
        row.cases += 1;
    }
    row.elapsed = started.elapsed();
    row
}

async fn run_wasm<S: Strategy, F, Fut>(
    target: &'static str,
    strategy: S,
    args: &Args,
    rig: &wasm::Rig,
    property: F,
) -> Row
where
    S::Value: std::fmt::Debug,
    F: Fn(S::Value) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut row = Row { target, through: "wasm", cases: 0, elapsed: Duration::ZERO, failures: Vec::new() };
    let mut runner = runner(args.seed ^ 0x5eed);
    let hang = Duration::from_secs(args.hang_secs);
    let started = Instant::now();
    for _ in 0..args.wasm_cases {
        let value = match strategy.new_tree(&mut runner) {
            Ok(tree) => tree.current(),
            Err(_) => continue,
        };
        rig.emu.clear_faults();
        let shown = format!("{value:?}");
        let t = Instant::now();
        let outcome = property(value).await;
        record(&mut row, &shown, outcome, t.elapsed(), hang);
        row.cases += 1;
    }
    row.elapsed = started.elapsed();
    row
}

fn wanted(args: &Args, target: &str) -> bool {
    args.only.as_deref().is_none_or(|o| target.contains(o))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // Failures are reported in the table, not as panic noise on stderr.
    std::panic::set_hook(Box::new(|_| {}));
    let mut rows = Vec::new();
    macro_rules! native {
        ($name:literal, $strategy:expr, $property:path) => {
            if wanted(&args, $name) {
                eprintln!("native {}…", $name);
                rows.push(run_native($name, $strategy, &args, |v| $property(v)));
            }
        };
    }
    native!("list_folder page", gen::page_body(), native::page_body);
    native!("token answer", gen::token_answer(), native::token_answer);
    native!("error answer", gen::error_answer(), native::error_answer);
    native!("retry-after", gen::retry_after(), native::retry_after);
    native!("redirect query", gen::redirect_query(), native::redirect_query);
    native!("cursor", gen::cursor(), native::cursor);
    native!("facade request", gen::facade_request(), native::facade_request);
    native!("content file", gen::content_file(), native::content_file);

    if args.wasm_cases > 0 {
        let rig = match wasm::Rig::start(&args.component).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: cannot start the component rig: {e:#}");
                return std::process::ExitCode::FAILURE;
            }
        };
        macro_rules! through_wasm {
            ($name:literal, $strategy:expr, $property:path) => {
                if wanted(&args, $name) {
                    eprintln!("wasm {}…", $name);
                    let rig = &rig;
                    rows.push(
                        run_wasm($name, $strategy, &args, rig, |v| async move { $property(rig, &v).await }).await,
                    );
                }
            };
        }
        through_wasm!("list_folder page", gen::page_body(), wasm::page_body);
        through_wasm!("token answer", gen::token_answer(), wasm::token_answer);
        through_wasm!("error answer", gen::error_answer(), wasm::error_answer);
        through_wasm!("retry-after", gen::retry_after(), wasm::retry_after);
        through_wasm!("redirect query", gen::redirect_query(), wasm::redirect_query);
        through_wasm!("cursor", gen::cursor(), wasm::cursor);
        let wasmtime = args.wasmtime.clone().or_else(|| {
            let p = PathBuf::from(std::env::var_os("CARGO_HOME").unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo").into_os_string()
            }))
            .join("bin/wasmtime");
            p.exists().then_some(p)
        });
        match (wanted(&args, "facade request"), wasmtime) {
            (true, Some(wasmtime)) => match wasm::serve_facade(&wasmtime, &args.facade, &rig.emu.base_url()) {
                Ok(served) => {
                    eprintln!("wasm facade request (wasmtime serve)…");
                    let served = std::sync::Arc::new(served);
                    let row = run_wasm("facade request", gen::facade_request(), &args, &rig, |v| {
                        let served = served.clone();
                        async move {
                            tokio::task::spawn_blocking(move || wasm::facade_request(&served, &v))
                                .await
                                .unwrap_or_else(|e| Err(format!("join: {e}")))
                        }
                    })
                    .await;
                    rows.push(row);
                }
                Err(e) => eprintln!("skipping the facade under wasmtime serve: {e:#}"),
            },
            (true, None) => eprintln!("skipping the facade under wasmtime serve: wasmtime-cli not found"),
            _ => {}
        }
        rig.emu.stop().await;
    }

    println!("| target | through | cases | seconds | cases/s | failures |");
    println!("|---|---|---:|---:|---:|---:|");
    let mut failed = 0;
    for r in &rows {
        let secs = r.elapsed.as_secs_f64().max(1e-9);
        println!(
            "| {} | {} | {} | {:.1} | {:.0} | {} |",
            r.target,
            r.through,
            r.cases,
            secs,
            r.cases as f64 / secs,
            r.failures.len()
        );
        failed += r.failures.len();
    }
    for r in rows.iter().filter(|r| !r.failures.is_empty()) {
        eprintln!("\n{} ({}): {} failures, first ones:", r.target, r.through, r.failures.len());
        for f in r.failures.iter().filter(|f| !f.is_empty()) {
            eprintln!("  - {f}");
        }
    }
    let total: u64 = rows.iter().map(|r| r.cases).sum();
    println!("\nfuzz: {} passed, {failed} failed", total - failed as u64);
    if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
