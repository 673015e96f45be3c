//! Section 9: content. Extraction speed per format, natively and inside the component side by
//! side (same bytes, one run), the component's peak memory per format, and a content sync of
//! ~10,000 mixed files against the emulator in its own process.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coco_dropbox::content::format::Format;
use coco_host::clock::now_unix;
use coco_host::extract::{drain_content, DrainControl};
use coco_host::runtime::content_api::{AppCredentials, ContentLimits, ContentRequest, Endpoints, Tokens};
use coco_host::runtime::{Limits, Runtime};
use dropbox_emulator::content as synth;
use serde::{Deserialize, Serialize};

use crate::{bench_cache, median, APP};

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct FormatRow {
    pub name: String,
    pub format: String,
    pub bytes: usize,
    pub native_ms: f64,
    /// Native: loopback download of the same bytes from the same server, then extraction.
    pub native_fetch_ms: f64,
    pub wasm_ms: f64,
    /// The whole `fetch-content` call.
    pub wasm_call_ms: f64,
    pub peak_linear_mib: f64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct SyncRow {
    pub concurrency: usize,
    pub files: u64,
    pub secs: f64,
    pub bytes: u64,
    pub listing_secs: f64,
}

/// The inputs: real files from the corpus, and larger documents of each format.
fn inputs() -> Vec<(String, Format, Vec<u8>)> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus");
    let read = |f: &str| std::fs::read(corpus.join(f)).expect("tests/corpus");
    let lines: Vec<String> = (0..20_000)
        .map(|i| format!("line {i}: quarterly revenue contract renewal budget forecast roadmap customer"))
        .collect();
    let html = String::from_utf8(read("users-and-groups.html")).unwrap();
    let body = &html[html.find("<body").unwrap_or(0)..];
    let big_html = format!("<html><body>{}</body></html>", body.repeat(40));
    let markdown = String::from_utf8(read("python-docx-README.md")).unwrap().repeat(200);
    let csv: String = (0..30_000).map(|i| format!("{i},alpha beta,{},gamma\n", i * 7)).collect();
    vec![
        ("text, 1.5 MiB".into(), Format::PlainText, lines.join("\n").into_bytes()),
        ("markdown (README ×200)".into(), Format::Markdown, markdown.into_bytes()),
        ("csv, 30k rows".into(), Format::Csv, csv.into_bytes()),
        ("html (Debian guide ×40)".into(), Format::Html, big_html.into_bytes()),
        ("docx, 20k paragraphs".into(), Format::Docx, synth::docx(&lines)),
        ("xlsx, 20k rows".into(), Format::Xlsx, synth::xlsx(&lines)),
        ("pptx, 2k slides".into(), Format::Pptx, synth::pptx(&lines[..2000])),
        ("pdf, 1 page × 3k lines".into(), Format::Pdf, synth::pdf(&lines[..3000])),
        ("corpus: crazyones.pdf (XeTeX)".into(), Format::Pdf, read("crazyones.pdf")),
        ("corpus: comments-rich-para.docx (Word)".into(), Format::Docx, read("comments-rich-para.docx")),
        ("corpus: sheets.xlsx (Excel)".into(), Format::Xlsx, read("sheets.xlsx")),
        ("corpus: test.pptx (PowerPoint)".into(), Format::Pptx, read("test.pptx")),
        ("corpus: serious_poem.odt (OpenOffice)".into(), Format::Odt, read("serious_poem.odt")),
    ]
}

/// Serves whatever file is current for `files/download`.
async fn file_server(current: Arc<std::sync::Mutex<Vec<u8>>>) -> anyhow::Result<String> {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/2/files/download",
        post(move |_body: axum::body::Bytes| {
            let bytes = current.lock().unwrap().clone();
            async move {
                let result = format!(r#"{{"name":"f","size":{}}}"#, bytes.len());
                ([("dropbox-api-result", result), ("content-type", "application/octet-stream".to_string())], bytes)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}"))
}

fn request(base: &str, name: &str, size: u64) -> ContentRequest {
    ContentRequest {
        app: AppCredentials { client_id: APP.0.into(), client_secret: APP.1.into() },
        tokens: Tokens { access_token: "t".into(), expires_at: now_unix() + 86_400, refresh_token: "r".into() },
        now: now_unix(),
        endpoints: Endpoints { authorize: base.into(), api: base.into() },
        content: base.into(),
        refresh_margin_secs: None,
        root_info: None,
        file_id: "id:bench".into(),
        rev: None,
        name: name.into(),
        size,
        downloadable: true,
        export_as: None,
        export_options: vec![],
        limits: ContentLimits { max_download_bytes: Some(64 << 20), max_text_bytes: Some(64 << 20), formats: None },
    }
}

fn file_name(f: Format) -> String {
    let ext = coco_dropbox::content::format::FORMATS.iter().find(|(g, _, _)| *g == f).map(|(_, _, e)| e[0]).unwrap();
    format!("bench.{ext}")
}

/// Time `f` until at least `budget` has passed (and 5 runs); the median in ms.
async fn time_async<F, Fut>(budget: Duration, mut f: F) -> anyhow::Result<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut samples = Vec::new();
    let started = Instant::now();
    while samples.len() < 5 || (started.elapsed() < budget && samples.len() < 2000) {
        let t = Instant::now();
        f().await?;
        samples.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(&mut samples))
}

/// Extraction per format: native `extract` vs the component's `fetch-content` minus the cost
/// of fetching an empty file (instantiation and loopback HTTP), and peak memory per format.
pub async fn extraction(component: &Path, cache: &Path) -> anyhow::Result<(Vec<FormatRow>, f64)> {
    let current = Arc::new(std::sync::Mutex::new(Vec::new()));
    let base = file_server(current.clone()).await?;
    let budget = Duration::from_millis(400);
    // The per-call floor: an empty text file.
    let runtime = Runtime::load(component, Some(bench_cache(cache)), Limits::default())?;
    *current.lock().unwrap() = Vec::new();
    let empty_req = request(&base, "empty.txt", 0);
    let empty_ms = time_async(budget, || async {
        runtime.fetch_content(&empty_req).await?.map_err(|f| anyhow::anyhow!("{:?}", f.error))?;
        Ok(())
    })
    .await?;
    let mut rows = Vec::new();
    for (name, format, bytes) in inputs() {
        let native_ms = time_async(budget, || {
            let r = coco_dropbox::content::extract(format, &bytes, 64 << 20);
            async move { r.map(|_| ()).map_err(|s| anyhow::anyhow!("{s}")) }
        })
        .await?;
        *current.lock().unwrap() = bytes.clone();
        let url = format!("{base}/2/files/download");
        let native_fetch_ms = time_async(budget, || {
            let url = url.clone();
            async move {
                let body = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<u8>> {
                    let mut resp = ureq::post(&url).header("dropbox-api-arg", r#"{"path":"id:bench"}"#).send_empty()?;
                    Ok(resp.body_mut().with_config().limit(64 << 20).read_to_vec()?)
                })
                .await??;
                coco_dropbox::content::extract(format, &body, 64 << 20).map_err(|s| anyhow::anyhow!("{s}"))?;
                Ok(())
            }
        })
        .await?;
        // A fresh runtime per format, so its peak memory is this format's.
        let runtime = Runtime::load(component, Some(bench_cache(cache)), Limits::default())?;
        let req = request(&base, &file_name(format), bytes.len() as u64);
        let whole_ms = time_async(budget, || async {
            let c = runtime.fetch_content(&req).await?.map_err(|f| anyhow::anyhow!("{name}: {:?}", f.error))?;
            anyhow::ensure!(!c.text.is_empty(), "{name}: no text");
            Ok(())
        })
        .await?;
        rows.push(FormatRow {
            name: name.clone(),
            format: format.name().into(),
            bytes: bytes.len(),
            native_ms,
            native_fetch_ms,
            wasm_ms: (whole_ms - empty_ms).max(0.0),
            wasm_call_ms: whole_ms,
            peak_linear_mib: runtime.peak_linear_memory() as f64 / 1048576.0,
        });
    }
    Ok((rows, empty_ms))
}

/// Child: connect to the emulator, list the account, then fetch every file's content with
/// `concurrency` calls in flight.
pub async fn content_sync_child(component: &Path, emulator: &str, concurrency: usize) -> anyhow::Result<SyncRow> {
    let tmp = tempfile::tempdir()?;
    let (host, ids) = crate::service::connected_host(tmp.path(), component, emulator, 1).await?;
    let ds_id = ids.into_iter().next().ok_or_else(|| anyhow::anyhow!("no datasource was connected"))?;
    let listed = Instant::now();
    host.sync(&ds_id, |_| {}).await?;
    let listing_secs = listed.elapsed().as_secs_f64();
    let host = Arc::new(host);
    let report = drain_content(host.clone(), Some(ds_id), concurrency, Arc::new(DrainControl::default())).await?;
    Ok(SyncRow {
        concurrency,
        files: report.calls,
        secs: report.elapsed.as_secs_f64(),
        bytes: report.bytes,
        listing_secs,
    })
}
