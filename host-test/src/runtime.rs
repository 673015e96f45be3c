//! The wasmtime embedding: one `Engine`, the component compiled once (and cached on disk keyed
//! by the wasm's hash and the engine's settings), an `InstancePre`, and a fresh `Store` per
//! call with a memory limit, an epoch deadline, a wall-clock timeout and an outbound allow-list.
//! A trap, a panic or a timeout in the guest is an error for that call, never a host crash.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits, StoreLimitsBuilder,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "connector",
    exports: { default: async },
});

pub use coco::dropbox::types::{AppCredentials, Endpoints, Error as WitError, Profile, RootInfo, Tokens};
pub use exports::coco::dropbox::oauth_redirect::{
    ConnectRequest, Datasource, DatasourceConfig, RedirectRequest, RevokeRequest,
};
pub use exports::coco::dropbox::sync_page::{
    Document, DocumentBatch, PageRequest, PageResult, PageStats, Span, SyncFailure, SyncOptions,
};
pub use exports::coco::dropbox::watch::{Changes, WaitRequest};

use crate::documents::{DocumentSpans, Documents, FileSpans, Malformed, Span as HostSpan};

/// The second component's bindings (`world extractor`): its own copy of the shared types.
mod extractor_world {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "extractor",
        exports: { default: async },
    });
}
/// The `content` interface's types (`fetch-content`), shared types included.
pub mod content_api {
    pub use super::extractor_world::coco::dropbox::types::{AppCredentials, Endpoints, Error, RootInfo, Tokens};
    pub use super::extractor_world::exports::coco::dropbox::content::*;
}
use extractor_world::ExtractorPre;

/// The extractor's copy of the shared error type, as the connector's: one wording and one
/// policy for both components.
impl From<content_api::Error> for WitError {
    fn from(e: content_api::Error) -> Self {
        use content_api::Error as E;
        match e {
            E::InvalidInput(m) => WitError::InvalidInput(m),
            E::Denied(m) => WitError::Denied(m),
            E::InvalidClient(m) => WitError::InvalidClient(m),
            E::ReauthRequired(m) => WitError::ReauthRequired(m),
            E::RateLimited(ms) => WitError::RateLimited(ms),
            E::CursorReset(m) => WitError::CursorReset(m),
            E::RootChanged(r) => WitError::RootChanged(RootInfo {
                is_team: r.is_team,
                root_namespace_id: r.root_namespace_id,
                home_namespace_id: r.home_namespace_id,
                home_path: r.home_path,
            }),
            E::PathNotFound(m) => WitError::PathNotFound(m),
            E::Transient(m) => WitError::Transient(m),
            E::Api(m) => WitError::Api(m),
        }
    }
}

/// A `sync-page` result with its batch checked.
#[derive(Clone, Debug)]
pub struct Page {
    pub deletes: Vec<String>,
    pub documents: Documents,
    pub cursor: String,
    pub has_more: bool,
    pub tokens: Option<Tokens>,
    pub stats: PageStats,
}

impl Page {
    /// Check the batch once, so everything after reads it without re-checking.
    pub fn check(r: PageResult) -> Result<Self, Malformed> {
        Ok(Page {
            deletes: r.deletes,
            documents: Documents::check(r.documents.text, r.documents.documents.into_iter().map(spans_of))?,
            cursor: r.cursor,
            has_more: r.has_more,
            tokens: r.tokens,
            stats: r.stats,
        })
    }
}

/// What a `sync-page` call answers once its batch is checked.
pub type PageOutcome = Result<Page, SyncFailure>;

/// One WIT document as the host's own spans (copied; nothing allocated but the file's
/// export options).
fn spans_of(d: Document) -> DocumentSpans {
    let span = |s: Span| HostSpan { start: s.start, len: s.len };
    DocumentSpans {
        id: span(d.id),
        path_lower: span(d.path_lower),
        rev: d.rev.map(span),
        json: span(d.json),
        file: d.file.map(|f| FileSpans {
            file_id: span(f.file_id),
            size: f.size,
            content_hash: f.content_hash.map(span),
            downloadable: f.downloadable,
            export_as: f.export_as.map(span),
            export_options: f.export_options.into_iter().map(span).collect(),
        }),
    }
}

fn checked(raw: Result<PageResult, SyncFailure>) -> Result<PageOutcome, RuntimeError> {
    match raw {
        Ok(page) => Page::check(page).map(Ok).map_err(|e| RuntimeError::Malformed(e.to_string())),
        Err(f) => Ok(Err(f)),
    }
}

/// Dropbox may hold a longpoll this much longer than its `timeout` (random jitter).
const LONGPOLL_JITTER: Duration = Duration::from_secs(90);

/// How often the epoch advances; the deadline is counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Guest stderr kept for error reports (panic messages).
const STDERR_CAPTURE: usize = 16 * 1024;

/// Sandbox limits for every call.
/// With the pooling allocator: linear memory kept resident per slot between calls.
pub const KEEP_RESIDENT_BYTES: usize = 16 << 20;
/// With the pooling allocator: idle slots that keep their memory (so at most 8 × 16 MiB).
pub const MAX_WARM_SLOTS: u32 = 8;

#[derive(Clone, Debug)]
pub struct Limits {
    /// Linear memory per instance.
    pub memory_bytes: usize,
    /// Wall-clock bound of one call, HTTP waits included.
    pub call_timeout: Duration,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub between_bytes_timeout: Duration,
    /// Use wasmtime's pooling allocator (faster instantiation, memory reserved up front).
    pub pooling: bool,
    /// Linear memory for a `fetch-content` call: it holds the file and what its parser builds.
    pub content_memory_bytes: usize,
    /// Wall-clock bound of a `fetch-content` call (download and extraction).
    pub content_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 128 << 20,
            call_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(60),
            between_bytes_timeout: Duration::from_secs(30),
            pooling: false,
            content_memory_bytes: 256 << 20,
            content_timeout: Duration::from_secs(60),
        }
    }
}

/// Why a call produced no result from the component.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("the component trapped: {0}")]
    Trap(String),
    #[error("the component did not finish within {0:?}")]
    Timeout(Duration),
    #[error("could not instantiate the component: {0}")]
    Instantiate(String),
    /// The component broke the WIT's promises (e.g. a span outside its batch).
    #[error("{0}")]
    Malformed(String),
    /// An outbound request failed in a way retrying cannot fix (a certificate that does not
    /// verify): the component saw a transport failure, the operator gets the reason.
    #[error("{0}")]
    Network(String),
}

/// Outbound HTTP only to the origins (scheme, host, port) the datasource is configured for,
/// sent through the host's shared client (its trust, its proxy; the allow-list judges the
/// target, never the proxy).
struct AllowList {
    allowed: Vec<(String, String, u16)>,
    options: wasmtime_wasi_http::RequestOptions,
    client: crate::net::HttpClient,
    /// A failure of this call's requests that no retry fixes, for the call's result.
    permanent: Arc<std::sync::Mutex<Option<String>>>,
}

fn origin(scheme: Option<&str>, host: &str, port: Option<u16>) -> (String, String, u16) {
    let scheme = scheme.unwrap_or("https").to_ascii_lowercase();
    let default = if scheme == "http" { 80 } else { 443 };
    (scheme, host.to_ascii_lowercase(), port.unwrap_or(default))
}

impl AllowList {
    fn new(endpoints: &[&str], limits: &Limits, client: crate::net::HttpClient) -> Self {
        let allowed = endpoints
            .iter()
            .filter_map(|e| url::Url::parse(e).ok())
            .filter_map(|u| Some(origin(Some(u.scheme()), u.host_str()?, u.port())))
            .collect();
        AllowList {
            allowed,
            options: wasmtime_wasi_http::RequestOptions {
                connect_timeout: Some(limits.connect_timeout),
                first_byte_timeout: Some(limits.first_byte_timeout),
                between_bytes_timeout: Some(limits.between_bytes_timeout),
            },
            client,
            permanent: Arc::default(),
        }
    }

    fn permits(&self, uri: &http::Uri) -> bool {
        let Some(host) = uri.host() else { return false };
        let key = origin(uri.scheme_str(), host, uri.port_u16());
        self.allowed.contains(&key)
    }
}

type SendFuture = Box<
    dyn std::future::Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<wasmtime_wasi_http::WasiBody>,
                Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for AllowList {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn std::future::Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        let permitted = self.permits(request.uri());
        // The guest may tighten our timeouts, never loosen them.
        let ours = self.options;
        let pick = |theirs: Option<Duration>, ours: Option<Duration>| match (theirs, ours) {
            (Some(t), Some(o)) => Some(t.min(o)),
            (t, o) => o.or(t),
        };
        let options = wasmtime_wasi_http::RequestOptions {
            connect_timeout: pick(options.and_then(|o| o.connect_timeout), ours.connect_timeout),
            first_byte_timeout: pick(options.and_then(|o| o.first_byte_timeout), ours.first_byte_timeout),
            between_bytes_timeout: pick(options.and_then(|o| o.between_bytes_timeout), ours.between_bytes_timeout),
        };
        let client = self.client.clone();
        let permanent = self.permanent.clone();
        Box::new(async move {
            if !permitted {
                tracing::warn!(uri = %request.uri(), "outbound request denied: not a configured Dropbox host");
                return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
            }
            match crate::net::wasi::send(&client, request, options).await {
                Ok(res) => {
                    // A later answer means the failure passed: the call's own result stands.
                    if let Ok(mut p) = permanent.lock() {
                        *p = None;
                    }
                    Ok((res, Box::new(async { Ok(()) }) as Box<dyn std::future::Future<Output = _> + Send>))
                }
                Err((code, failure)) => {
                    // A passing outage is the call's transient failure, logged where it is
                    // handled; what needs an operator is said here, with the host and why.
                    match failure {
                        Some(f) if f.is_permanent() => {
                            tracing::warn!("{f}");
                            if let Ok(mut p) = permanent.lock() {
                                *p = Some(f.to_string());
                            }
                        }
                        Some(f) => tracing::debug!("{f}"),
                        None => {}
                    }
                    Err(code)
                }
            }
        })
    }
}

/// A call's result, unless one of its requests failed for good: then the reason, for the
/// operator (the component only saw a transport failure).
fn escalated<T, E>(
    store: &Store<Ctx>,
    result: Result<Result<T, E>, RuntimeError>,
) -> Result<Result<T, E>, RuntimeError> {
    match result {
        Ok(Err(e)) => match store.data().hooks.permanent.lock().ok().and_then(|p| p.clone()) {
            Some(why) => Err(RuntimeError::Network(why)),
            None => Ok(Err(e)),
        },
        other => other,
    }
}

struct Ctx {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: AllowList,
    limits: PeakTracking,
}

/// `StoreLimits`, also recording the largest linear memory the guest asked for.
struct PeakTracking {
    inner: StoreLimits,
    peak: Arc<std::sync::atomic::AtomicUsize>,
}

impl wasmtime::ResourceLimiter for PeakTracking {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        if allowed {
            self.peak.fetch_max(desired, Ordering::Relaxed);
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

impl WasiView for Ctx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for Ctx {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

/// Advances the engine's epoch until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawn epoch thread");
        EpochTicker { stop, thread: Some(thread) }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How the component was obtained, for reporting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadedFrom {
    Compiled,
    Cache,
}

/// A loaded connector component, ready to run calls concurrently.
pub struct Runtime {
    engine: Engine,
    component: Component,
    pre: ConnectorPre<Ctx>,
    /// The extractor component, loaded on the first content call.
    extractor: LazyExtractor,
    limits: Limits,
    pub loaded_from: LoadedFrom,
    pub load_time: Duration,
    /// Largest linear memory any call of this runtime grew to, in bytes.
    peak_memory: Arc<std::sync::atomic::AtomicUsize>,
    /// The host's outbound client: the components' requests go through it.
    http: crate::net::HttpClient,
    _ticker: EpochTicker,
}

impl Runtime {
    /// Load (and compile, or fetch from the authenticated cache) the connector component at
    /// `wasm_path`, and the extractor at [`crate::paths::extractor_wasm`] if it is there.
    pub fn load(wasm_path: &Path, cache: Option<CompileCache<'_>>, limits: Limits) -> anyhow::Result<Self> {
        Self::load_with(wasm_path, Some(&crate::paths::extractor_wasm()), cache, limits)
    }

    /// [`Runtime::load`] with the extractor's path given (None: no content calls).
    pub fn load_with(
        wasm_path: &Path,
        extractor_path: Option<&Path>,
        cache: Option<CompileCache<'_>>,
        limits: Limits,
    ) -> anyhow::Result<Self> {
        let started = Instant::now();
        let mut config = Config::new();
        config.epoch_interruption(true);
        // Every call runs on a fiber: a smaller stack is cheaper to map and touch. The guest's
        // own stack stays at wasmtime's default (512 KiB); Dropbox JSON is shallow.
        config.async_stack_size(1 << 20);
        // `perf record` can name the component's functions (./dev bench profiling, operators).
        if std::env::var_os("COCO_DROPBOX_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        if limits.pooling {
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(256)
                .total_memories(256)
                .total_tables(256)
                .total_stacks(256)
                .max_memory_size(limits.memory_bytes.max(limits.content_memory_bytes))
                // A page call touches ~8 MiB of fresh linear memory: reset a reused slot with
                // memset instead of madvise, so the next call does not fault every page back in.
                .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
                .table_keep_resident(1 << 20)
                // Bounds what stays resident: at most this many idle slots keep their memory.
                .max_unused_warm_slots(MAX_WARM_SLOTS);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = wt(Engine::new(&config))?;
        let bytes = std::fs::read(wasm_path).with_context(|| {
            format!(
                "cannot read the component {} (build it: cargo build --target wasm32-wasip2 --release)",
                wasm_path.display()
            )
        })?;
        let (component, loaded_from) = load_component(&engine, &bytes, cache.as_ref())?;
        let mut linker = Linker::<Ctx>::new(&engine);
        wt(wasmtime_wasi::p2::add_to_linker_async(&mut linker))?;
        wt(wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))?;
        let pre = wt(linker.instantiate_pre(&component).and_then(ConnectorPre::new))?;
        let extractor = LazyExtractor {
            path: extractor_path.map(Path::to_path_buf),
            cache: cache.map(|c| (c.dir.to_path_buf(), c.key)),
            linker,
            loaded: std::sync::OnceLock::new(),
        };
        let ticker = EpochTicker::start(engine.clone());
        Ok(Runtime {
            engine,
            component,
            pre,
            extractor,
            limits,
            loaded_from,
            load_time: started.elapsed(),
            peak_memory: Arc::default(),
            http: crate::net::HttpClient::shared()?,
            _ticker: ticker,
        })
    }

    /// Largest linear memory a call has grown to so far (bytes).
    pub fn peak_linear_memory(&self) -> usize {
        self.peak_memory.load(Ordering::Relaxed)
    }

    /// The component's imports, e.g. to check it asks for no filesystem or sockets.
    pub fn imports(&self) -> Vec<String> {
        self.component.component_type().imports(&self.engine).map(|(name, _)| name.to_string()).collect()
    }

    /// The component's exports.
    pub fn exports(&self) -> Vec<String> {
        self.component.component_type().exports(&self.engine).map(|(name, _)| name.to_string()).collect()
    }

    /// The extractor component's imports (empty when it is not loaded).
    pub fn extractor_imports(&self) -> Vec<String> {
        match self.extractor.get(&self.engine) {
            Ok(pre) => pre
                .instance_pre()
                .component()
                .component_type()
                .imports(&self.engine)
                .map(|(name, _)| name.to_string())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Whether content calls can run (the extractor component was loaded), and why not.
    pub fn extractor_status(&self) -> Result<(), String> {
        self.extractor.get(&self.engine).as_ref().map(|_| ()).map_err(Clone::clone)
    }

    fn store(&self, endpoints: &[&str]) -> (Store<Ctx>, MemoryOutputPipe) {
        self.store_with(endpoints, &self.limits)
    }

    fn store_with(&self, endpoints: &[&str], limits: &Limits) -> (Store<Ctx>, MemoryOutputPipe) {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
        let wasi = WasiCtxBuilder::new().stderr(stderr.clone()).build();
        let ctx = Ctx {
            table: ResourceTable::new(),
            wasi,
            http: WasiHttpCtx::new(),
            hooks: AllowList::new(endpoints, limits, self.http.clone()),
            limits: PeakTracking {
                inner: StoreLimitsBuilder::new()
                    .memory_size(limits.memory_bytes)
                    .instances(8)
                    .tables(8)
                    .memories(4)
                    .trap_on_grow_failure(true)
                    .build(),
                peak: self.peak_memory.clone(),
            },
        };
        let mut store = Store::new(&self.engine, ctx);
        store.limiter(|c| &mut c.limits);
        let ticks = (limits.call_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        (store, stderr)
    }

    /// A fresh store and instance for one call.
    async fn instance(&self, endpoints: &[&str]) -> Result<(Store<Ctx>, MemoryOutputPipe, Connector), RuntimeError> {
        let (mut store, stderr) = self.store(endpoints);
        let connector =
            self.pre.instantiate_async(&mut store).await.map_err(|e| RuntimeError::Instantiate(format!("{e:#}")))?;
        Ok((store, stderr, connector))
    }

    /// Bound a whole call (instantiation, guest work, HTTP waits) by the wall-clock limit.
    async fn bounded<R>(
        &self,
        work: impl std::future::Future<Output = Result<R, RuntimeError>>,
    ) -> Result<R, RuntimeError> {
        let timeout = self.limits.call_timeout;
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(RuntimeError::Timeout(timeout)),
        }
    }

    pub async fn authorize_url(&self, req: &ConnectRequest) -> Result<Result<String, WitError>, RuntimeError> {
        // Builds a URL only: no outbound HTTP at all.
        self.bounded(async {
            let (mut store, stderr, c) = self.instance(&[]).await?;
            c.coco_dropbox_oauth_redirect().call_authorize_url(&mut store, req).await.map_err(|e| trap(e, &stderr))
        })
        .await
    }

    pub async fn handle_redirect(&self, req: &RedirectRequest) -> Result<Result<Datasource, WitError>, RuntimeError> {
        self.bounded(async {
            let (mut store, stderr, c) = self.instance(&[req.endpoints.api.as_str()]).await?;
            {
                let r = c
                    .coco_dropbox_oauth_redirect()
                    .call_handle_redirect(&mut store, req)
                    .await
                    .map_err(|e| trap(e, &stderr));
                escalated(&store, r)
            }
        })
        .await
    }

    pub async fn revoke(&self, req: &RevokeRequest) -> Result<Result<(), WitError>, RuntimeError> {
        self.bounded(async {
            let (mut store, stderr, c) = self.instance(&[req.endpoints.api.as_str()]).await?;
            {
                let r =
                    c.coco_dropbox_oauth_redirect().call_revoke(&mut store, req).await.map_err(|e| trap(e, &stderr));
                escalated(&store, r)
            }
        })
        .await
    }

    pub async fn sync_page(&self, req: &PageRequest) -> Result<PageOutcome, RuntimeError> {
        let e = &req.endpoints;
        let raw = self
            .bounded(async {
                let (mut store, stderr, c) = self.instance(&[e.api.as_str()]).await?;
                {
                    let r = c.coco_dropbox_sync_page().call_sync(&mut store, req).await.map_err(|e| trap(e, &stderr));
                    escalated(&store, r)
                }
            })
            .await?;
        checked(raw)
    }

    /// The cursor of "now" for `req.options` (`get_latest_cursor`): a page without documents.
    pub async fn latest_cursor(&self, req: &PageRequest) -> Result<PageOutcome, RuntimeError> {
        let e = &req.endpoints;
        let raw = self
            .bounded(async {
                let (mut store, stderr, c) = self.instance(&[e.api.as_str()]).await?;
                {
                    let r = c
                        .coco_dropbox_sync_page()
                        .call_latest_cursor(&mut store, req)
                        .await
                        .map_err(|e| trap(e, &stderr));
                    escalated(&store, r)
                }
            })
            .await?;
        checked(raw)
    }

    /// Block on Dropbox's longpoll for `req.cursor`. The call may last the timeout plus Dropbox's
    /// jitter, so its limits are the usual ones stretched by that much; outbound HTTP only to
    /// the notify endpoint.
    pub async fn wait_for_changes(&self, req: &WaitRequest) -> Result<Result<Changes, WitError>, RuntimeError> {
        let held = Duration::from_secs(u64::from(req.timeout_secs.unwrap_or(30))) + LONGPOLL_JITTER;
        let limits = Limits {
            call_timeout: self.limits.call_timeout + held,
            first_byte_timeout: self.limits.first_byte_timeout + held,
            ..self.limits.clone()
        };
        let timeout = limits.call_timeout;
        let work = async {
            let (mut store, stderr) = self.store_with(&[req.notify.as_str()], &limits);
            let c = self
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| RuntimeError::Instantiate(format!("{e:#}")))?;
            {
                let r =
                    c.coco_dropbox_watch().call_wait_for_changes(&mut store, req).await.map_err(|e| trap(e, &stderr));
                escalated(&store, r)
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(RuntimeError::Timeout(timeout)),
        }
    }

    /// Fetch and extract one file's content. Its own limits: `content_memory_bytes` of linear
    /// memory and `content_timeout` of wall clock, so a hostile file fails its call and
    /// nothing else; outbound HTTP only to the content service and the API (token refresh).
    pub async fn fetch_content(
        &self,
        req: &content_api::ContentRequest,
    ) -> Result<Result<content_api::Content, content_api::ContentFailure>, RuntimeError> {
        let limits = Limits {
            memory_bytes: self.limits.content_memory_bytes,
            call_timeout: self.limits.content_timeout,
            ..self.limits.clone()
        };
        let timeout = limits.call_timeout;
        let pre = self.extractor.get(&self.engine).as_ref().map_err(|why| RuntimeError::Instantiate(why.clone()))?;
        let work = async {
            let (mut store, stderr) = self.store_with(&[req.content.as_str(), req.endpoints.api.as_str()], &limits);
            let c = pre.instantiate_async(&mut store).await.map_err(|e| RuntimeError::Instantiate(format!("{e:#}")))?;
            {
                let r =
                    c.coco_dropbox_content().call_fetch_content(&mut store, req).await.map_err(|e| trap(e, &stderr));
                escalated(&store, r)
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(RuntimeError::Timeout(timeout)),
        }
    }

    /// Instantiate without calling anything (benchmarks the per-call overhead).
    pub async fn instantiate_only(&self) -> Result<(), RuntimeError> {
        let (mut store, _) = self.store(&[]);
        self.pre
            .instantiate_async(&mut store)
            .await
            .map(|_| ())
            .map_err(|e| RuntimeError::Instantiate(format!("{e:#}")))
    }
}

/// A guest trap (panic, out of memory, deadline) with whatever the guest wrote to stderr.
fn trap(e: wasmtime::Error, stderr: &MemoryOutputPipe) -> RuntimeError {
    let mut msg = format!("{e:#}");
    let captured = stderr.contents();
    if !captured.is_empty() {
        msg.push_str(&format!("; guest stderr: {}", String::from_utf8_lossy(&captured).trim()));
    }
    RuntimeError::Trap(msg)
}

fn wt<T>(r: wasmtime::Result<T>) -> anyhow::Result<T> {
    r.map_err(|e| anyhow::anyhow!("{e:#}"))
}

/// The extractor component, compiled (or loaded from the cache) on the first content call: a
/// process that only lists never holds its ~2 MiB of parsers' machine code.
struct LazyExtractor {
    path: Option<PathBuf>,
    cache: Option<(PathBuf, [u8; 32])>,
    linker: Linker<Ctx>,
    loaded: std::sync::OnceLock<Result<ExtractorPre<Ctx>, String>>,
}

impl LazyExtractor {
    fn get(&self, engine: &Engine) -> &Result<ExtractorPre<Ctx>, String> {
        self.loaded.get_or_init(|| {
            let loaded = self.load(engine);
            if let Err(why) = &loaded {
                tracing::warn!("file content is unavailable: {why}");
            }
            loaded
        })
    }

    fn load(&self, engine: &Engine) -> Result<ExtractorPre<Ctx>, String> {
        let path = self.path.as_deref().ok_or("no extractor component was configured")?;
        let bytes = std::fs::read(path).map_err(|e| {
            format!(
                "cannot read the extractor component {} ({e}); {}",
                path.display(),
                crate::paths::component("extractor").build_hint()
            )
        })?;
        let cache = self.cache.as_ref().map(|(dir, key)| CompileCache { dir, key: *key });
        let (c, _) = load_component(engine, &bytes, cache.as_ref()).map_err(|e| format!("{e:#}"))?;
        self.linker.instantiate_pre(&c).and_then(ExtractorPre::new).map_err(|e| format!("{e:#}"))
    }
}

/// Where compiled components are cached, and the key that authenticates them.
pub struct CompileCache<'a> {
    pub dir: &'a Path,
    /// From the master key ([`crate::keys::Keys::cache_key`]): a cached file is loaded only if
    /// its MAC under this key checks out, so whoever can write the folder but lacks the key
    /// cannot make the host run their code.
    pub key: [u8; 32],
}

fn cache_mac(key: &[u8; 32], bytes: &[u8]) -> hmac::Hmac<Sha256> {
    use hmac::Mac as _;
    let mut mac = <hmac::Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(bytes);
    mac
}

/// Compile, or load a previous compilation of the same bytes by the same engine settings after
/// checking its MAC. A missing, unreadable or unauthenticated file is recompiled and replaced.
fn load_component(
    engine: &Engine,
    bytes: &[u8],
    cache: Option<&CompileCache<'_>>,
) -> anyhow::Result<(Component, LoadedFrom)> {
    use hmac::Mac as _;
    let Some(cache) = cache else {
        return Ok((wt(Component::new(engine, bytes))?, LoadedFrom::Compiled));
    };
    let dir = cache.dir;
    let mut engine_hash = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut engine_hash);
    let digest = Sha256::digest(bytes);
    let key: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    let path: PathBuf = dir.join(format!("coco-dropbox-{key}-{:016x}.cwasm", engine_hash.finish()));
    let mac_path = path.with_extension("cwasm.mac");
    if let (Ok(compiled), Ok(tag)) = (std::fs::read(&path), std::fs::read(&mac_path)) {
        if cache_mac(&cache.key, &compiled).verify_slice(&tag).is_ok() {
            // SAFETY: these bytes are exactly what `Component::serialize` produced for this
            // host: their MAC under the master-key-derived cache key verified above.
            match unsafe { Component::deserialize(engine, &compiled) } {
                Ok(c) => return Ok((c, LoadedFrom::Cache)),
                Err(e) => tracing::warn!(path = %path.display(), "discarding unusable compiled component: {e:#}"),
            }
        } else {
            tracing::warn!(path = %path.display(), "discarding a compiled component whose MAC does not verify");
        }
    }
    let component = wt(Component::new(engine, bytes))?;
    let saved = wt(component.serialize()).and_then(|compiled| {
        let tag = cache_mac(&cache.key, &compiled).finalize().into_bytes();
        write_atomically(dir, &path, &compiled)?;
        write_atomically(dir, &mac_path, &tag)
    });
    if let Err(e) = saved {
        tracing::warn!(path = %path.display(), "could not cache the compiled component: {e:#}");
    }
    Ok((component, LoadedFrom::Compiled))
}

fn write_atomically(dir: &Path, path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    crate::paths::private_dir(dir)?;
    let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), rand::random::<u64>()));
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?.write_all(data)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_matches_host_and_effective_port() {
        let client = crate::net::HttpClient::shared().unwrap();
        let a = AllowList::new(&["https://api.dropboxapi.com", "http://127.0.0.1:8080/"], &Limits::default(), client);
        let ok = |u: &str| a.permits(&u.parse::<http::Uri>().unwrap());
        assert!(ok("https://api.dropboxapi.com/2/files/list_folder"));
        assert!(ok("https://API.dropboxapi.com:443/2/x"));
        assert!(ok("http://127.0.0.1:8080/oauth2/token"));
        assert!(!ok("http://127.0.0.1:8081/oauth2/token"));
        assert!(!ok("http://api.dropboxapi.com/2/x"), "port 80 is not 443");
        assert!(!ok("http://api.dropboxapi.com:443/2/x"), "plain http to the TLS port is another origin");
        assert!(!ok("https://127.0.0.1:8080/oauth2/token"), "https where http was configured");
        assert!(!ok("https://evil.example/2/x"));
    }

    #[tokio::test]
    async fn a_denied_host_stays_denied_with_a_proxy_and_the_proxy_is_never_asked() {
        use http_body_util::BodyExt as _;
        let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        proxy.set_nonblocking(true).unwrap();
        let url = format!("http://{}", proxy.local_addr().unwrap());
        let settings = crate::net::NetSettings {
            trust: Default::default(),
            proxy: crate::net::proxy::ProxySettings::from_env(|k| (k == "HTTPS_PROXY").then(|| url.clone())).unwrap(),
        };
        let client = crate::net::HttpClient::new(&settings, None).unwrap();
        let mut hooks = AllowList::new(&["https://api.dropboxapi.com"], &Limits::default(), client);
        // The proxy's own address is no more allowed than any other host.
        for target in ["https://evil.example/steal", &format!("{url}/")] {
            let body = http_body_util::Empty::<bytes::Bytes>::new().map_err(|never| match never {}).boxed_unsync();
            let req = http::Request::builder().uri(target).body(body).unwrap();
            let sent = Box::into_pin(hooks.send_request(req, None, Box::new(async { Ok(()) }))).await;
            assert!(matches!(sent, Err(wasmtime_wasi_http::Error::HttpRequestDenied)), "{target}");
        }
        assert!(proxy.accept().is_err(), "nothing reached the proxy");
    }
}
