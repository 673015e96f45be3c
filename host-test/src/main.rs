//! `coco-host`: run the Dropbox connector component against real Dropbox or the built-in
//! emulator. Scriptable: results on stdout (URL / id / JSONL on the last line or in a file),
//! progress and logs on stderr, and a one-line `error: …` with a non-zero exit on failure.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use coco_host::host::{Host, SyncEvent, SyncReport};
use coco_host::keys::Keys;
use coco_host::runtime::{CompileCache, Limits, Runtime};
use coco_host::secret::Secret;
use coco_host::state::{ConnectorRecord, EndpointsRecord, StateLocation, Status, Store};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(
    name = "coco-host",
    version,
    about = "Reference host for the coco-dropbox WebAssembly connector",
    after_help = "Secrets (COCO_MASTER_KEY, COCO_API_TOKEN, COCO_SERVER_TOKEN, COCO_DROPBOX_CLIENT_SECRET, \
COCO_ES_PASSWORD, COCO_ES_API_KEY): prefer the environment, or a file named by NAME_FILE (e.g. \
COCO_MASTER_KEY_FILE=/run/secrets/master-key), over flags, which anyone on the machine can read in `ps`."
)]
struct Cli {
    /// Where the state lives: a folder (SQLite database and compiled-component cache), or a
    /// PostgreSQL URL `postgres://user:password@host:port/db` that several replicas share
    /// (the cache is then `--cache-dir`).
    #[arg(long, global = true, env = "COCO_STATE_DIR", default_value = ".coco-state", value_parser = parse_state)]
    state: StateLocation,
    /// Compiled-component cache when the state is in PostgreSQL (default `.coco-cache`).
    #[arg(long, global = true, env = "COCO_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// The connector component (.wasm).
    #[arg(long, global = true, env = "COCO_DROPBOX_WASM", default_value_os_t = coco_host::paths::connector_wasm())]
    component: PathBuf,
    /// The extractor component (.wasm) that fetches and reads file content.
    #[arg(long, global = true, env = "COCO_DROPBOX_EXTRACTOR_WASM", default_value_os_t = coco_host::paths::extractor_wasm())]
    extractor: PathBuf,
    /// Linear memory of each content call (download + extraction of one file), in MiB.
    #[arg(long, global = true, default_value_t = 256, value_parser = clap::value_parser!(u64).range(16..=4096))]
    content_memory_mib: u64,
    /// Wall-clock limit of each content call, in seconds.
    #[arg(long, global = true, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    content_timeout_secs: u64,
    /// wasmtime's pooling allocator: page calls cost ~13% less (bench section 1), and each of the
    /// last few slots used keeps up to 16 MiB of memory resident.
    #[arg(long, global = true, env = "COCO_POOLING")]
    pooling: bool,
    /// Extra trusted roots (PEM) for every outbound TLS connection: Dropbox, the sinks,
    /// `register`, PostgreSQL. Added to the system's roots and to SSL_CERT_FILE's.
    #[arg(long, global = true, env = "COCO_CA_FILE")]
    ca_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the emulator, connect through the full OAuth round trip, sync, summarise.
    #[cfg(feature = "emulator")]
    Demo(DemoArgs),
    /// Run the Dropbox emulator standalone until interrupted (same as `dropbox-emulator`).
    #[cfg(feature = "emulator")]
    Emulator(dropbox_emulator::cli::ServeArgs),
    /// Register app credentials and print the authorize URL (last line of stdout).
    Connect(ConnectArgs),
    /// Finish connecting with the URL the browser was redirected to; prints the datasource id.
    Finish(FinishArgs),
    /// Sync a datasource to completion; writes its documents as JSONL.
    Sync(SyncArgs),
    /// Revoke a datasource's tokens at Dropbox and remove its state and index.
    Disconnect(DisconnectArgs),
    /// Print the connector JSON to register in Coco Server.
    ConnectorJson(ConnectorIdArgs),
    /// Register the connector in a Coco Server (`POST {coco-url}/connector/`).
    Register(RegisterArgs),
    /// Datasources, their status and index sizes.
    Status(StatusArgs),
    /// Run as a service: keep every datasource in sync, serve the connect flow, the admin API,
    /// Dropbox webhooks and /metrics (needs COCO_API_TOKEN).
    Serve(Box<ServeArgs>),
    /// Write a datasource's current index as JSONL, without syncing.
    Export(ExportArgs),
    /// Show or change a datasource's content extraction (on by default).
    Content(ContentArgs),
}

#[derive(Args)]
struct ContentArgs {
    datasource_id: String,
    /// Extract file content (the default).
    #[arg(long, conflicts_with = "off")]
    on: bool,
    /// Index names and metadata only; forgets extracted text.
    #[arg(long)]
    off: bool,
    /// Largest file to download, in MiB (default 10).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    max_download_mib: Option<u64>,
    /// Most text kept per file, in KiB (default 1024).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_text_kib: Option<u32>,
    /// Formats to extract, comma-separated (e.g. pdf,docx,markdown); `all` for every format.
    #[arg(long)]
    formats: Option<String>,
}

#[derive(Args)]
struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:9300")]
    listen: std::net::SocketAddr,
    /// Serve https with this certificate chain (PEM), for a deployment without a TLS proxy in
    /// front. The public URL then defaults to https://{listen}.
    #[arg(long, env = "COCO_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "COCO_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Where browsers reach this service; the redirect URI registered at Dropbox is
    /// {public-url}/connector/{id}/dropbox/oauth_redirect. Default: http://{listen}, or
    /// https://{listen} with --tls-cert.
    #[arg(long, env = "COCO_PUBLIC_URL")]
    public_url: Option<String>,
    /// Guards the admin API and /metrics (X-API-TOKEN or Bearer); at least 16 characters.
    #[arg(long, env = "COCO_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// Default re-sync interval in seconds (upstream's sync.interval is 30 s).
    #[arg(long, default_value_t = 30)]
    interval: u64,
    /// Pages in flight across all datasources (runs open at once: twice this).
    #[arg(long, default_value_t = 8)]
    max_in_flight: usize,
    /// Pages per minute per datasource (0 = unlimited).
    #[arg(long, default_value_t = 600)]
    pages_per_minute: u32,
    /// list_folder limit for datasources that set none (Dropbox's maximum, 2000, by default).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=2000))]
    page_limit: u32,
    /// List pages in flight per datasource during its initial listing (see `sync`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=32))]
    listing_parallelism: u64,
    /// During a sequential listing, apply fetched pages together once this many documents wait
    /// (see `sync`). 0 by default here: many runs are open at once, and each would hold its
    /// waiting pages in memory.
    #[arg(long, env = "COCO_LISTING_COMMIT_DOCS", default_value_t = 0)]
    listing_commit_docs: usize,
    /// Do not keep longpolls on idle datasources (interval polling and webhooks only).
    #[arg(long)]
    no_longpoll: bool,
    #[arg(long, default_value_t = 1000)]
    max_longpolls: usize,
    /// Seconds Dropbox may hold each longpoll (30..=480).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u32).range(30..=480))]
    longpoll_timeout: u32,
    /// Where the browser goes after connecting (?datasource_id&name appended); default: a page.
    #[arg(long, env = "COCO_CONNECTED_URL")]
    connected_url: Option<String>,
    /// Let anyone start a connect flow (as upstream behind Coco's login); by default it takes
    /// the API token or a link from POST /api/connect-links.
    #[arg(long)]
    open_connect: bool,
    /// Serve /metrics without the API token.
    #[arg(long)]
    open_metrics: bool,
    /// Seconds in-flight pages get to finish at shutdown.
    #[arg(long, default_value_t = 30)]
    shutdown_grace: u64,
    /// Content calls in flight across datasources (0: fetch no content in this process).
    #[arg(long, default_value_t = 2)]
    content_concurrency: usize,
    /// Open HTTP connections at most; more are closed at once.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Seconds a client has to send a request's header.
    #[arg(long, default_value_t = 10)]
    header_timeout_secs: u64,
    /// Seconds a whole request (its body and the answer) may take; then 408.
    #[arg(long, default_value_t = 30)]
    request_timeout_secs: u64,
    /// Sync lease length in seconds (renewed every third of it).
    #[arg(long, default_value_t = 60)]
    lease_ttl: u64,
    /// Register (or update) this app at start; the connect routes use it.
    #[arg(long, default_value = "dropbox")]
    connector_id: String,
    #[arg(long, env = "COCO_DROPBOX_CLIENT_ID")]
    client_id: Option<String>,
    #[arg(long, env = "COCO_DROPBOX_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    #[command(flatten)]
    endpoints: EndpointArgs,
    #[command(flatten)]
    sink: SinkArgs,
}

#[derive(Args)]
struct ExportArgs {
    datasource_id: String,
    /// JSONL file to write; `-` for stdout.
    #[arg(long)]
    out: PathBuf,
}

#[cfg(feature = "emulator")]
#[derive(Args)]
struct DemoArgs {
    /// Entries in the generated account.
    #[arg(long, default_value_t = 25_000)]
    entries: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// list_folder limit (Dropbox's maximum is 2000; upstream uses 100).
    #[arg(long, default_value_t = 2000)]
    page_limit: u32,
    /// Also write every document as JSONL here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Sample documents to print.
    #[arg(long, default_value_t = 3)]
    show: usize,
    /// Skip content extraction (names and metadata only).
    #[arg(long)]
    no_content: bool,
}

/// Real files the demo adds to the generated account.
#[cfg(feature = "emulator")]
const DEMO_FILES: [(&str, &[u8]); 3] = [
    ("/Demo/The Crazy Ones.pdf", include_bytes!("../../tests/corpus/crazyones.pdf")),
    ("/Demo/Comments.docx", include_bytes!("../../tests/corpus/comments-rich-para.docx")),
    ("/Demo/Languages.xlsx", include_bytes!("../../tests/corpus/utf8.xlsx")),
];

#[derive(Args, Clone)]
struct EndpointArgs {
    /// One base URL for all Dropbox services (e.g. the emulator's http://127.0.0.1:8788).
    #[arg(long)]
    dropbox: Option<String>,
    /// Dropbox's web and OAuth host (default: real Dropbox).
    #[arg(long)]
    authorize_url: Option<String>,
    /// Dropbox's API host (default: real Dropbox).
    #[arg(long)]
    api_url: Option<String>,
    /// Dropbox's notify (longpoll) host (default: real Dropbox).
    #[arg(long)]
    notify_url: Option<String>,
    /// Dropbox's content (download/export) host (default: real Dropbox).
    #[arg(long)]
    content_url: Option<String>,
}

impl EndpointArgs {
    fn record(&self) -> EndpointsRecord {
        let mut e = match &self.dropbox {
            Some(base) => EndpointsRecord::single(base),
            None => EndpointsRecord::dropbox(),
        };
        if let Some(a) = &self.authorize_url {
            e.authorize = a.trim_end_matches('/').to_string();
        }
        if let Some(a) = &self.api_url {
            e.api = a.trim_end_matches('/').to_string();
        }
        if let Some(n) = &self.notify_url {
            e.notify = Some(n.trim_end_matches('/').to_string());
        }
        if let Some(c) = &self.content_url {
            e.content = Some(c.trim_end_matches('/').to_string());
        }
        e
    }
}

#[derive(Args)]
struct ConnectArgs {
    #[arg(long, default_value = "dropbox")]
    connector_id: String,
    #[arg(long, env = "COCO_DROPBOX_CLIENT_ID")]
    client_id: String,
    #[arg(long, env = "COCO_DROPBOX_CLIENT_SECRET", hide_env_values = true)]
    client_secret: String,
    /// Must be registered in the Dropbox App Console.
    #[arg(long, default_value = "http://localhost:9000/connector/dropbox/dropbox/oauth_redirect")]
    redirect_uri: String,
    #[command(flatten)]
    endpoints: EndpointArgs,
}

#[derive(Args)]
struct FinishArgs {
    #[arg(long, default_value = "dropbox")]
    connector_id: String,
    /// The URL (or just its query) the browser was redirected to.
    redirected_url: String,
}

#[derive(Args)]
struct SyncArgs {
    datasource_id: String,
    /// Write the documents as JSONL to this file; `-` for stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Folder to index ("" or "/" = whole account); changing it restarts the listing.
    #[arg(long)]
    path: Option<String>,
    #[arg(long)]
    page_limit: Option<u32>,
    /// List pages in flight during an initial listing: the account's cursor first, then its
    /// subtrees side by side (1: one page at a time).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=32))]
    listing_parallelism: u64,
    /// During a sequential listing, apply fetched pages in one transaction once this many
    /// documents wait (0: every page in its own). Fewer commits write each index page once per
    /// group; a crash costs at most the waiting pages, fetched again.
    #[arg(long, env = "COCO_LISTING_COMMIT_DOCS", default_value_t = coco_host::host::DEFAULT_LISTING_COMMIT_DOCS)]
    listing_commit_docs: usize,
    /// Content calls in flight (download + extraction, one file each).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    content_concurrency: u64,
    /// List only: leave queued content for a later run.
    #[arg(long)]
    no_content: bool,
    #[command(flatten)]
    sink: SinkArgs,
}

/// Where `sync` delivers the documents (from the outbox) before it exits.
#[derive(Args)]
struct SinkArgs {
    /// jsonl, coco or elasticsearch.
    #[arg(long, value_parser = ["jsonl", "coco", "elasticsearch"])]
    sink: Option<String>,
    /// jsonl: the file to append change records to.
    #[arg(long)]
    sink_file: Option<PathBuf>,
    /// coco: Coco Server's base URL.
    #[arg(long)]
    coco_url: Option<String>,
    /// coco: Coco Server's API token (not COCO_API_TOKEN, which guards this host's own API).
    #[arg(long, env = "COCO_SERVER_TOKEN", hide_env_values = true)]
    coco_server_token: Option<String>,
    /// coco: writes in flight per datasource. Coco answers each write only after its index's
    /// next refresh (1 s by default), so this is about the documents per second.
    #[arg(long, env = "COCO_SINK_IN_FLIGHT", default_value_t = coco_api::DEFAULT_IN_FLIGHT)]
    coco_in_flight: usize,
    /// elasticsearch: base URL (Elasticsearch, OpenSearch or Easysearch).
    #[arg(long)]
    es_url: Option<String>,
    /// elasticsearch: the index.
    #[arg(long)]
    index: Option<String>,
    /// elasticsearch: basic-auth user (password from COCO_ES_PASSWORD).
    #[arg(long)]
    es_user: Option<String>,
    #[arg(long, env = "COCO_ES_PASSWORD", hide_env_values = true)]
    es_password: Option<String>,
    #[arg(long, env = "COCO_ES_API_KEY", hide_env_values = true)]
    es_api_key: Option<String>,
    /// elasticsearch: a client certificate (PEM) for clusters that require mutual TLS.
    #[arg(long, env = "COCO_ES_CLIENT_CERT", requires = "es_client_key")]
    es_client_cert: Option<PathBuf>,
    /// elasticsearch: the client certificate's private key (PEM).
    #[arg(long, env = "COCO_ES_CLIENT_KEY", requires = "es_client_cert")]
    es_client_key: Option<PathBuf>,
    /// elasticsearch: actions per _bulk request.
    #[arg(long, default_value_t = 500)]
    batch_docs: usize,
    /// elasticsearch: bytes per _bulk request.
    #[arg(long, default_value_t = 5 << 20)]
    batch_bytes: usize,
}

impl SinkArgs {
    fn config(&self) -> anyhow::Result<Option<coco_host::deliver::SinkConfig>> {
        use coco_host::deliver::{EsAuth, SinkConfig};
        let need = |v: &Option<String>, what: &str| {
            v.clone().filter(|s| !s.is_empty()).with_context(|| format!("--sink needs {what}"))
        };
        Ok(match self.sink.as_deref() {
            None => None,
            Some("jsonl") => {
                let path = self.sink_file.clone().context("--sink jsonl needs --sink-file")?;
                // Refused now rather than after a sync: a symbolic link is never written through.
                coco_host::paths::open_output(&path, true)
                    .with_context(|| format!("cannot open {}", path.display()))?;
                Some(SinkConfig::Jsonl { path })
            }
            Some("coco") => Some(SinkConfig::Coco {
                url: need(&self.coco_url, "--coco-url")?,
                token: Secret::new(need(&self.coco_server_token, "COCO_SERVER_TOKEN")?),
                in_flight: self.coco_in_flight.clamp(1, 1000),
                route: coco_api::UpsertRoute::Save,
            }),
            Some(_) => {
                let auth = match (&self.es_user, &self.es_password, &self.es_api_key) {
                    (_, _, Some(key)) => EsAuth::ApiKey(Secret::new(key.clone())),
                    (Some(user), Some(pw), None) => {
                        EsAuth::Basic { user: user.clone(), password: Secret::new(pw.clone()) }
                    }
                    (Some(_), None, None) => bail!("--es-user needs COCO_ES_PASSWORD"),
                    _ => EsAuth::None,
                };
                Some(SinkConfig::Elasticsearch {
                    url: need(&self.es_url, "--es-url")?,
                    index: need(&self.index, "--index")?,
                    auth,
                    max_docs: self.batch_docs.max(1),
                    max_bytes: self.batch_bytes.max(1024),
                    identity: match (&self.es_client_cert, &self.es_client_key) {
                        (Some(cert), Some(key)) => {
                            let id = coco_host::net::tls::ClientIdentity { cert: cert.clone(), key: key.clone() };
                            // Refused now, with the file and the reason, rather than at the first batch.
                            let settings = coco_host::net::client::settings()?;
                            coco_host::net::HttpClient::new(&settings, Some(&id))?;
                            Some(id)
                        }
                        _ => None,
                    },
                })
            }
        })
    }
}

#[derive(Args)]
struct DisconnectArgs {
    datasource_id: String,
}

#[derive(Args)]
struct ConnectorIdArgs {
    #[arg(long, default_value = "dropbox")]
    connector_id: String,
}

#[derive(Args)]
struct RegisterArgs {
    /// Coco Server's base URL, e.g. http://localhost:9000
    #[arg(long)]
    coco_url: String,
    /// Coco Server's API token (sent as X-API-TOKEN), as the sinks take it. COCO_API_TOKEN,
    /// which guards this host's own API, is still read here for one release, with a warning.
    #[arg(long = "coco-server-token", alias = "api-token", env = "COCO_SERVER_TOKEN", hide_env_values = true)]
    coco_server_token: Option<String>,
    #[arg(long, default_value = "dropbox")]
    connector_id: String,
}

#[derive(Args)]
struct StatusArgs {
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    // RUST_LOG picks the level (default warn). The compiler's internals are capped: at trace
    // level Cranelift writes gigabytes while compiling the component and says nothing useful.
    let requested = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    let filter =
        format!("{requested},cranelift_codegen=warn,cranelift_frontend=warn,wasmtime_cranelift=warn,regalloc2=warn");
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "warn".into()))
        .init();
    // `NAME_FILE` for every secret variable, before the flags and variables are read.
    match coco_host::secret_files::from_files(|k| std::env::var(k).ok()) {
        Ok(found) => {
            for (name, value) in found {
                // Single-threaded still: nothing else reads the environment yet.
                std::env::set_var(name, value);
            }
        }
        Err(why) => return fail(anyhow::anyhow!(why)),
    }
    // `--version` names the build and each component it would run (WIT package, sha256).
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 2 && matches!(args[1].as_str(), "--version" | "-V") {
        println!("coco-host {}", env!("CARGO_PKG_VERSION"));
        // The two the host runs (the environment may point elsewhere), then the facades a
        // release carries beside them.
        let connector = std::env::var_os("COCO_DROPBOX_WASM").map(PathBuf::from);
        let connector = connector.unwrap_or_else(coco_host::paths::connector_wasm);
        println!("{}", coco_host::paths::describe_component("connector", &connector));
        println!("{}", coco_host::paths::describe_component("extractor", &coco_host::paths::extractor_wasm()));
        for build in coco_host::paths::component_builds().filter(|c| !matches!(c.name, "connector" | "extractor")) {
            let path = build.path();
            if path.is_file() {
                println!("{}", coco_host::paths::describe_component(build.name, &path));
            }
        }
        return ExitCode::SUCCESS;
    }
    let cli = Cli::parse();
    // The host's admin token and Coco Server's token guard different things; one value for
    // both means whoever reads one (Coco's logs, this host's clients) holds the other.
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if set("COCO_API_TOKEN").is_some() && set("COCO_API_TOKEN") == set("COCO_SERVER_TOKEN") {
        tracing::warn!(
            "COCO_API_TOKEN and COCO_SERVER_TOKEN are the same: give Coco Server and this host's API different tokens"
        );
    }
    // Whom every outbound connection trusts and which proxy it takes, settled once.
    let net = coco_host::net::NetSettings::from_env(cli.ca_file.as_deref()).and_then(|settings| {
        if let Some(p) = &settings.proxy.https {
            tracing::info!(proxy = %coco_host::net::proxy::shown(p), "https requests go through a proxy");
        }
        coco_host::net::client::configure(settings)
    });
    if let Err(e) = net {
        return fail(anyhow::anyhow!(e));
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// One line on stderr, whatever the error chain looks like.
fn fail(e: anyhow::Error) -> ExitCode {
    let msg = format!("{e:#}").replace('\n', " ");
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

fn load_runtime(cli: &Cli, cache: &Path, keys: &Keys) -> anyhow::Result<Arc<Runtime>> {
    let runtime = load_runtime_lazily(cli, cache, keys)?;
    // The extractor loads on its first call; commands load it now, so a missing or broken one
    // is reported at start (and compiled into the cache) rather than mid-sync.
    let _ = runtime.extractor_status();
    Ok(runtime)
}

/// The runtime with the extractor left unloaded until a content call needs it.
fn load_runtime_lazily(cli: &Cli, cache: &Path, keys: &Keys) -> anyhow::Result<Arc<Runtime>> {
    let cache = CompileCache { dir: cache, key: keys.cache_key() };
    let limits = Limits {
        content_memory_bytes: (cli.content_memory_mib << 20) as usize,
        content_timeout: Duration::from_secs(cli.content_timeout_secs),
        pooling: cli.pooling,
        ..Limits::default()
    };
    Ok(Arc::new(Runtime::load_with(&cli.component, Some(&cli.extractor), Some(cache), limits)?))
}

fn parse_state(s: &str) -> Result<StateLocation, String> {
    Ok(StateLocation::parse(s))
}

impl Cli {
    /// `--cache-dir`, else the state's own place for it.
    fn cache_dir_for(&self, state: &StateLocation) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(|| state.cache_dir())
    }
}

fn open_store(cli: &Cli, keys: Keys) -> anyhow::Result<Store> {
    // Errors name the place themselves (a PostgreSQL URL without its password).
    Ok(Store::open_at(&cli.state, keys)?)
}

fn open_host(cli: &Cli, keys: Keys) -> anyhow::Result<Host> {
    let store = open_store(cli, keys)?;
    let runtime = load_runtime(cli, &cli.cache_dir_for(&cli.state), store.keys())?;
    Ok(Host::new(runtime, store))
}

/// A host for listing only (`sync --no-content`): the extractor is never loaded.
fn open_listing_host(cli: &Cli, keys: Keys) -> anyhow::Result<Host> {
    let store = open_store(cli, keys)?;
    let runtime = load_runtime_lazily(cli, &cli.cache_dir_for(&cli.state), store.keys())?;
    Ok(Host::new(runtime, store))
}

/// List and fetch content side by side: content calls run on their own tasks while the
/// listing queues files, then finish what is due. Returns the sync and content reports.
async fn sync_and_fetch(
    host: Arc<Host>,
    id: &str,
    total: Option<u64>,
    concurrency: u64,
    fetch: bool,
) -> anyhow::Result<(SyncReport, Option<coco_host::extract::ContentReport>)> {
    use coco_host::extract::{drain_content, DrainControl};
    let control = Arc::new(DrainControl::default());
    let content = fetch.then(|| {
        control.more_coming.store(true, std::sync::atomic::Ordering::Release);
        tokio::spawn(drain_content(host.clone(), Some(id.to_string()), concurrency as usize, control.clone()))
    });
    let listed = sync_with_progress(&host, id, total).await;
    control.more_coming.store(false, std::sync::atomic::Ordering::Release);
    if listed.is_err() {
        control.stop.store(true, std::sync::atomic::Ordering::Release);
    }
    let content = match content {
        Some(task) => Some(task.await.context("the content task panicked")??),
        None => None,
    };
    Ok((listed?, content))
}

fn content_summary(store: &Store, id: &str, run: Option<&coco_host::extract::ContentReport>) -> anyhow::Result<String> {
    let c = store.content_counts(id)?;
    if !c.enabled {
        return Ok("Content: off for this datasource (coco-host content ID --on).".into());
    }
    let by = |m: &std::collections::BTreeMap<String, u64>| {
        m.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ")
    };
    let mut line = format!(
        "Content: {} files with text, {} pending, {} skipped ({}), {} failed{}",
        c.done,
        c.pending,
        c.skipped.values().sum::<u64>(),
        by(&c.skipped),
        c.failed.values().sum::<u64>(),
        if c.failed.is_empty() { String::new() } else { format!(" ({})", by(&c.failed)) }
    );
    if let Some(r) = run {
        let secs = r.elapsed.as_secs_f64().max(1e-9);
        line.push_str(&format!(
            "; this run: {} calls, {:.1} MB downloaded, {:.0} files/s",
            r.calls,
            r.bytes as f64 / 1e6,
            r.calls as f64 / secs
        ));
    }
    Ok(line + ".")
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        #[cfg(feature = "emulator")]
        Command::Demo(args) => demo(&cli, args).await,
        #[cfg(feature = "emulator")]
        Command::Emulator(args) => dropbox_emulator::cli::serve(args).await,
        Command::Connect(args) => {
            let host = open_host(&cli, Keys::from_env()?)?;
            let connector = ConnectorRecord {
                id: args.connector_id.clone(),
                client_id: args.client_id.clone(),
                client_secret: Secret::new(args.client_secret.clone()),
                redirect_uri: args.redirect_uri.clone(),
                endpoints: args.endpoints.record(),
            };
            let url = host.authorize_url(&connector, None).await?;
            host.store.upsert_connector(&connector)?;
            eprintln!("Open this URL, approve, then run: coco-host finish '<the URL you were redirected to>'");
            println!("{url}");
            Ok(())
        }
        Command::Finish(args) => {
            let host = open_host(&cli, Keys::from_env()?)?;
            let connector = host.store.connector(&args.connector_id)?.with_context(|| {
                format!("connector {:?} is not registered: run `coco-host connect` first", args.connector_id)
            })?;
            let ds = host.finish_connect(&connector, &args.redirected_url, None).await?;
            eprintln!("Connected {:?} ({}).", ds.name, ds.profile.email);
            println!("{}", ds.id);
            Ok(())
        }
        Command::Sync(args) => {
            let mut host = if args.no_content {
                open_listing_host(&cli, Keys::from_env()?)?
            } else {
                open_host(&cli, Keys::from_env()?)?
            };
            host.listing_parallelism = args.listing_parallelism as usize;
            host.listing_commit_docs = args.listing_commit_docs;
            let host = Arc::new(host);
            let ds = host.store.datasource(&args.datasource_id)?;
            if args.path.is_some() || args.page_limit.is_some() {
                let path = args.path.clone().unwrap_or(ds.path.clone());
                host.store.set_options(&ds.id, &path, args.page_limit.unwrap_or(ds.page_limit))?;
            }
            if ds.status == Status::ReauthRequired {
                bail!(
                    "datasource {} needs to be connected again ({}); run `coco-host connect` and `finish` for the same account",
                    ds.id,
                    ds.status_detail.unwrap_or_default()
                );
            }
            // Where the documents go is checked before a long sync, not after it.
            if let Some(out) = args.out.as_deref().filter(|o| *o != Path::new("-")) {
                coco_host::paths::open_output(out, true).with_context(|| format!("cannot create {}", out.display()))?;
            }
            let sink = args.sink.config()?;
            if let Some(sink) = &sink {
                // Before the sync: its pages then record their changes for the sink.
                host.store.register_sink(&sink.name())?;
            }
            let (report, content) =
                sync_and_fetch(host.clone(), &ds.id, None, args.content_concurrency, !args.no_content).await?;
            eprintln!("{}", summary(&report));
            eprintln!("{}", content_summary(&host.store, &ds.id, content.as_ref())?);
            let host = Arc::try_unwrap(host).map_err(|_| anyhow::anyhow!("the host is still in use"))?;
            if let Some(out) = &args.out {
                let n = export_jsonl(&host.store, &ds.id, out)?;
                eprintln!("Wrote {n} documents to {}.", out.display());
            }
            if let Some(sink) = sink {
                let store = host.store;
                let (id, name, connector) = (ds.id.clone(), ds.name.clone(), ds.connector_id.clone());
                let drained = tokio::task::spawn_blocking(move || {
                    let mut d = coco_host::deliver::Deliverer::new(sink);
                    let target =
                        coco_host::deliver::Target { id: &id, name: &name, connector_id: &connector, removed: false };
                    d.drain(&store, &target)
                })
                .await??;
                eprintln!(
                    "Delivered {} upserts and {} deletes ({} retries); {} document(s) refused by the sink.",
                    drained.upserts,
                    drained.deletes,
                    drained.retries,
                    drained.rejected.len()
                );
                for (doc, why) in drained.rejected.iter().take(10) {
                    eprintln!("  refused {doc}: {why}");
                }
            }
            Ok(())
        }
        Command::Disconnect(args) => {
            let host = open_host(&cli, Keys::from_env()?)?;
            let outcome = host.disconnect(&args.datasource_id).await?;
            let how = match outcome {
                coco_host::host::DisconnectOutcome::Revoked => "tokens revoked at Dropbox",
                coco_host::host::DisconnectOutcome::AlreadyRevoked => "Dropbox had already revoked its tokens",
            };
            eprintln!("Disconnected {} ({how}); its state and index were removed.", args.datasource_id);
            println!("{}", args.datasource_id);
            Ok(())
        }
        Command::ConnectorJson(args) => {
            println!("{}", serde_json::to_string_pretty(&coco_host::registration::connector_json(&args.connector_id))?);
            Ok(())
        }
        Command::Register(args) => {
            let (url, id) = (args.coco_url.clone(), args.connector_id.clone());
            let token = match args.coco_server_token.clone().filter(|t| !t.is_empty()) {
                Some(t) => t,
                None => match std::env::var("COCO_API_TOKEN").ok().filter(|t| !t.is_empty()) {
                    Some(t) => {
                        eprintln!(
                            "warning: register read COCO_API_TOKEN; set COCO_SERVER_TOKEN instead (COCO_API_TOKEN guards this host's own API and will not be read here in the next release)"
                        );
                        t
                    }
                    None => String::new(),
                },
            };
            let found =
                tokio::task::spawn_blocking(move || coco_host::registration::register(&url, &token, &id)).await??;
            let (said, word) = match found {
                coco_api::Ensured::Created => ("Registered", "created"),
                coco_api::Ensured::Existed => ("Coco Server already has", "existed"),
            };
            eprintln!("{said} connector {:?} at {}.", args.connector_id, args.coco_url);
            println!("{word}");
            Ok(())
        }
        Command::Status(args) => status(&cli, args),
        Command::Serve(args) => serve(&cli, args).await,
        Command::Content(args) => {
            let store = open_store(&cli, Keys::from_env()?)?;
            store.datasource(&args.datasource_id)?;
            let mut s = store.content_settings(&args.datasource_id)?;
            let before = s.clone();
            if args.on {
                s.enabled = true;
            }
            if args.off {
                s.enabled = false;
            }
            if let Some(m) = args.max_download_mib {
                s.max_download_bytes = m << 20;
            }
            if let Some(k) = args.max_text_kib {
                s.max_text_bytes = k << 10;
            }
            if let Some(f) = &args.formats {
                s.formats = if f == "all" {
                    None
                } else {
                    Some(f.split(',').map(|x| x.trim().to_ascii_lowercase()).filter(|x| !x.is_empty()).collect())
                };
            }
            if let Err(why) = s.validate() {
                bail!("{why}");
            }
            if s != before {
                store.set_content_settings(&args.datasource_id, &s)?;
                eprintln!("Content settings changed; the next sync lists the account again to apply them.");
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "settings": s,
                    "counts": store.content_counts(&args.datasource_id)?,
                }))?
            );
            Ok(())
        }
        Command::Export(args) => {
            let store = open_store(&cli, Keys::from_env()?)?;
            store.datasource(&args.datasource_id)?;
            let n = export_jsonl(&store, &args.datasource_id, &args.out)?;
            eprintln!("Wrote {n} documents to {}.", args.out.display());
            Ok(())
        }
    }
}

async fn serve(cli: &Cli, args: &ServeArgs) -> anyhow::Result<()> {
    use coco_host::serve::{self, ServeConfig};
    let token = args
        .api_token
        .clone()
        .filter(|t| !t.trim().is_empty())
        .context("serve needs COCO_API_TOKEN (or --api-token): the admin API and /metrics are closed without it")?;
    if token.len() < 16 {
        bail!("COCO_API_TOKEN must be at least 16 characters");
    }
    let mut host = open_host(cli, Keys::from_env()?)?;
    host.default_page_limit = args.page_limit;
    host.listing_parallelism = args.listing_parallelism as usize;
    host.listing_commit_docs = args.listing_commit_docs;
    match (&args.client_id, &args.client_secret) {
        (Some(id), Some(secret)) => {
            let existing = host.store.connector(&args.connector_id)?;
            host.store.upsert_connector(&ConnectorRecord {
                id: args.connector_id.clone(),
                client_id: id.clone(),
                client_secret: Secret::new(secret.clone()),
                // serve derives the redirect URI from --public-url for each flow.
                redirect_uri: existing.map(|c| c.redirect_uri).unwrap_or_default(),
                endpoints: args.endpoints.record(),
            })?;
        }
        (None, None) => {}
        _ => bail!("give both COCO_DROPBOX_CLIENT_ID and COCO_DROPBOX_CLIENT_SECRET, or neither"),
    }
    let mut config = ServeConfig::new(args.listen, Secret::new(token));
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config.tls = Some(Arc::new(coco_host::net::tls::server_config(cert, key)?));
        config.public_url = format!("https://{}", args.listen);
    }
    if let Some(url) = &args.public_url {
        let parsed = url::Url::parse(url).with_context(|| format!("--public-url {url:?} is not a URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            bail!("--public-url must be http(s)");
        }
        config.public_url = url.trim_end_matches('/').to_string();
    }
    config.schedule.default_interval = Duration::from_secs(args.interval.max(1));
    config.schedule.max_in_flight = args.max_in_flight.max(1);
    config.schedule.pages_per_minute = args.pages_per_minute;
    config.longpoll = !args.no_longpoll;
    config.max_longpolls = args.max_longpolls;
    config.longpoll_timeout = args.longpoll_timeout;
    config.connected_url = args.connected_url.clone().filter(|u| !u.is_empty());
    config.open_connect = args.open_connect;
    config.open_metrics = args.open_metrics;
    config.shutdown_grace = Duration::from_secs(args.shutdown_grace);
    config.lease_ttl = Duration::from_secs(args.lease_ttl.max(3));
    config.sinks = args.sink.config()?.into_iter().collect();
    config.content_concurrency = args.content_concurrency;
    config.http_limits = coco_host::serve::listener::Limits {
        max_connections: args.max_connections.max(1),
        header_timeout: Duration::from_secs(args.header_timeout_secs.max(1)),
        request_timeout: Duration::from_secs(args.request_timeout_secs.max(1)),
    };
    let service = serve::Service::new(host, config);
    serve::run(service, serve::terminated()).await
}

fn status(cli: &Cli, args: &StatusArgs) -> anyhow::Result<()> {
    let store = open_store(cli, Keys::from_env()?)?;
    let mut rows = Vec::new();
    for ds in store.datasources()? {
        let st = store.sync_state(&ds.id)?;
        rows.push(serde_json::json!({
            "id": ds.id,
            "name": ds.name,
            "account": ds.profile.email,
            "status": ds.status,
            "detail": ds.status_detail,
            "documents": store.document_count(&ds.id)?,
            "pages": st.pages,
            "phase": if st.listing { "full-listing" } else { "incremental" },
            "last_synced_at": st.last_synced_at,
            "path": if ds.path.is_empty() { "/".to_string() } else { ds.path.clone() },
            "content": store.content_counts(&ds.id)?,
        }));
    }
    // Each datasource's backlog per sink, inside its row (the array shape stays as it was).
    let backlogs = store.sink_backlogs()?;
    for row in &mut rows {
        let id = row["id"].as_str().unwrap_or("").to_string();
        row["sinks"] = backlogs
            .iter()
            .filter(|b| b.datasource_id == id)
            .map(|b| {
                serde_json::json!({
                    "sink": b.sink, "pending": b.pending, "delivered": b.delivered, "last_error": b.last_error,
                })
            })
            .collect();
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    for b in &backlogs {
        println!(
            "sink {}  datasource {}: {} pending, {} delivered{}",
            b.sink,
            b.datasource_id,
            b.pending,
            b.delivered,
            b.last_error.as_deref().map(|e| format!("  (last error: {e})")).unwrap_or_default()
        );
    }
    if rows.is_empty() {
        println!("no datasources (run `coco-host connect`)");
    }
    for r in rows {
        println!(
            "{}  {:<16} {:>9} docs  {:<13} {}  {}{}",
            r["id"].as_str().unwrap_or(""),
            r["status"].as_str().unwrap_or(""),
            r["documents"],
            r["phase"].as_str().unwrap_or(""),
            r["name"].as_str().unwrap_or(""),
            r["account"].as_str().unwrap_or(""),
            r["detail"].as_str().map(|d| format!("  ({d})")).unwrap_or_default(),
        );
        if let Some(id) = r["id"].as_str() {
            println!("    {}", content_summary(&store, id, None)?);
        }
    }
    Ok(())
}

async fn sync_with_progress(host: &Host, id: &str, total: Option<u64>) -> anyhow::Result<SyncReport> {
    let bar = match total {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{spinner} syncing [{bar:40}] {pos}/{len} entries {per_sec} {msg}")?
                .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner()
            .with_style(ProgressStyle::with_template("{spinner} syncing: {pos} entries {per_sec} {msg}")?),
    };
    bar.enable_steady_tick(Duration::from_millis(120));
    let report = host
        .sync(id, |event| match event {
            SyncEvent::Page { pages, entries, .. } => {
                bar.set_position(*entries);
                bar.set_message(format!("({pages} pages)"));
            }
            SyncEvent::Retry { attempt, delay, why } => {
                bar.println(format!("retry {attempt} in {delay:.1?}: {why}"));
            }
            SyncEvent::RateLimited { wait, capped } => bar.println(format!(
                "rate limited: waiting {wait:.1?}{}",
                if *capped { " (Dropbox asked for longer; capped)" } else { "" }
            )),
            SyncEvent::Restart { why } => bar.println(format!("restarting the full listing: {why}")),
        })
        .await;
    bar.finish_and_clear();
    Ok(report?)
}

fn summary(r: &SyncReport) -> String {
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    format!(
        "Synced {} entries in {} pages ({} requests, {} token refreshes) in {:.2} s, {:.0} entries/s: {} upserted, {} deleted, {} swept, {} skipped (.DS_Store); index now holds {} documents.",
        r.entries,
        r.pages,
        r.requests,
        r.refreshes,
        secs,
        r.entries as f64 / secs,
        r.upserted,
        r.deleted,
        r.swept,
        r.skipped,
        r.documents_now
    )
}

/// One JSON document per line, to a file or stdout (`-`).
fn export_jsonl(store: &Store, id: &str, out: &Path) -> anyhow::Result<u64> {
    let sink: Box<dyn Write> = if out == Path::new("-") {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(coco_host::paths::open_output(out, false).with_context(|| format!("cannot create {}", out.display()))?)
    };
    let mut w = std::io::BufWriter::new(sink);
    let n = store.for_each_document(id, |_, json| {
        w.write_all(json.as_bytes())?;
        w.write_all(b"\n")
    })?;
    w.flush()?;
    Ok(n)
}

#[cfg(feature = "emulator")]
async fn demo(cli: &Cli, args: &DemoArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    eprintln!("Generating an emulated Dropbox account of {} entries (seed {})…", args.entries, args.seed);
    use dropbox_emulator::cli::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET};
    let config = dropbox_emulator::Config::single(args.seed, args.entries, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET);
    let emu = dropbox_emulator::Emulator::start(config, "127.0.0.1:0".parse()?).await?;
    // Demo state lives in a fresh folder with a throw-away key unless COCO_MASTER_KEY is set.
    let (keys, state_dir, _tmp) = match Keys::from_env() {
        Ok(k) => (k, cli.state.clone(), None),
        Err(_) => {
            let tmp = tempfile::tempdir()?;
            (Keys::ephemeral(), StateLocation::Folder(tmp.path().to_path_buf()), Some(tmp))
        }
    };
    // A few real files beside the generated ones (from tests/corpus; origins in ORIGINS.md).
    {
        let mut account = emu.edit(0);
        account.add("/Demo", true, 0).map_err(|e| anyhow::anyhow!("{e}"))?;
        for (path, bytes) in DEMO_FILES {
            account.upload(path, bytes.to_vec()).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    let store = Store::open_at(&state_dir, keys)?;
    let runtime = load_runtime(cli, &cli.cache_dir_for(&state_dir), store.keys())?;
    eprintln!(
        "Component {} {} in {:.0?}; emulator at {}.",
        cli.component.display(),
        if runtime.loaded_from == coco_host::runtime::LoadedFrom::Cache { "loaded from cache" } else { "compiled" },
        runtime.load_time,
        emu.base_url()
    );
    let mut host = Host::new(runtime, store);
    host.default_page_limit = args.page_limit;
    let host = Arc::new(host);
    let connector = ConnectorRecord {
        id: "dropbox".into(),
        client_id: DEMO_CLIENT_ID.into(),
        client_secret: Secret::new(DEMO_CLIENT_SECRET),
        redirect_uri: "http://localhost:9000/connector/dropbox/dropbox/oauth_redirect".into(),
        endpoints: EndpointsRecord::single(&emu.base_url()),
    };
    host.store.upsert_connector(&connector)?;
    let url = host.authorize_url(&connector, None).await?;
    let redirected = dropbox_emulator::approve(&url).await?;
    let ds = host.finish_connect(&connector, &redirected, None).await?;
    eprintln!(
        "Connected {:?} <{}> as datasource {} (OAuth code flow with signed state + PKCE S256).",
        ds.name, ds.profile.email, ds.id
    );
    let total = (args.entries + DEMO_FILES.len() + 1) as u64;
    let (report, content) = sync_and_fetch(host.clone(), &ds.id, Some(total), 2, !args.no_content).await?;
    eprintln!("{}", summary(&report));
    eprintln!("{}", content_summary(&host.store, &ds.id, content.as_ref())?);
    let counters = emu.counters();
    eprintln!(
        "Emulator served {} requests: {} list_folder, {} continue, {} download, {} export, {} token, {} account.",
        counters.total(),
        counters.get("files/list_folder"),
        counters.get("files/list_folder/continue"),
        counters.get("files/download"),
        counters.get("files/export"),
        counters.get("oauth2/token"),
        counters.get("users/get_current_account"),
    );
    let mut shown = 0;
    let mut with_content = None;
    println!("Sample documents:");
    host.store.for_each_document(&ds.id, |_, json| {
        // Show nested files: they carry every field.
        if shown < args.show && json.contains("\"type\":\"file\"") && json.contains("\"categories\"") {
            shown += 1;
            println!("{json}");
        }
        if with_content.is_none() && json.contains("/Demo/") && json.contains("\"content\":") {
            with_content = Some(json.to_string());
        }
        Ok(())
    })?;
    if let Some(json) = with_content {
        println!("A document with extracted content (a real file from tests/corpus/ uploaded under /Demo; `content` is its text):");
        println!("{json}");
    }
    if let Some(out) = &args.out {
        let n = export_jsonl(&host.store, &ds.id, out)?;
        eprintln!("Wrote {n} documents to {}.", out.display());
    }
    eprintln!("Demo finished in {:.1?}.", started.elapsed());
    emu.stop().await;
    Ok(())
}
