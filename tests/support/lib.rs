//! Shared set-up for the end-to-end tests: the real compiled component under wasmtime, the
//! emulator on 127.0.0.1, and a host with its SQLite state in a temporary folder.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use coco_host::host::{Host, RetryPolicy};
use coco_host::keys::Keys;
use coco_host::runtime::{CompileCache, Limits, Runtime};

/// Authenticates the tests' shared compile cache (any fixed key will do for tests).
pub const TEST_CACHE_KEY: &[u8; 32] = b"coco-e2e-compile-cache-key-00001";
use coco_host::secret::Secret;
use coco_host::state::{ConnectorRecord, DatasourceRecord, EndpointsRecord, Store};
use dropbox_emulator::{self as emulator, Emulator};

pub const CLIENT_ID: &str = "test-app-key";
pub const CLIENT_SECRET: &str = "test-app-secret";
pub const REDIRECT_URI: &str = "http://localhost:9000/connector/dropbox/dropbox/oauth_redirect";

/// The release component; `./dev test` builds it before the tests run.
pub fn wasm_path() -> PathBuf {
    let path =
        std::env::var_os("COCO_DROPBOX_WASM").map(PathBuf::from).unwrap_or_else(coco_host::paths::connector_wasm);
    assert!(
        path.exists(),
        "component not found at {}: run `cargo build --target wasm32-wasip2 --release` first (./dev test does)",
        path.display()
    );
    path
}

pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/coco-test-cache")
}

pub fn runtime(limits: Limits) -> Arc<Runtime> {
    let cache = CompileCache { dir: &cache_dir(), key: *TEST_CACHE_KEY };
    Arc::new(Runtime::load(&wasm_path(), Some(cache), limits).expect("load the component"))
}

/// Short waits so fault tests stay fast.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        max_attempts: 4,
        max_rate_limits: 10,
        ..RetryPolicy::default()
    }
}

/// The state a test runs on: SQLite in `dir`, or, with `COCO_TEST_STORE=postgres`, a fresh
/// database on the server `COCO_TEST_POSTGRES` names (`./dev test` starts one and runs the
/// behaviour suites both ways).
pub fn open_store(dir: &std::path::Path, keys: Keys) -> Store {
    if std::env::var("COCO_TEST_STORE").as_deref() == Ok("postgres") {
        let admin = std::env::var("COCO_TEST_POSTGRES")
            .expect("COCO_TEST_STORE=postgres needs COCO_TEST_POSTGRES=postgres://… (./dev test sets both)");
        let url = coco_host::db::scratch_database(&admin, "e2e").expect("create a scratch database");
        return Store::open_postgres(&url, keys).expect("open the PostgreSQL state");
    }
    Store::open(&dir.join("coco.sqlite"), keys).unwrap()
}

pub struct Harness {
    pub emu: Emulator,
    pub host: Host,
    pub connector: ConnectorRecord,
    pub tmp: tempfile::TempDir,
}

pub async fn harness_with(config: emulator::Config, limits: Limits) -> Harness {
    let emu = Emulator::start(config, "127.0.0.1:0".parse().unwrap()).await.expect("start emulator");
    let tmp = tempfile::tempdir().unwrap();
    let keys = Keys::from_master(b"test-master-key-0123456789abcdef").unwrap();
    let store = open_store(tmp.path(), keys);
    let mut host = Host::new(runtime(limits), store);
    host.retry = fast_retry();
    let connector = ConnectorRecord {
        id: "dropbox".into(),
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(CLIENT_SECRET),
        redirect_uri: REDIRECT_URI.into(),
        endpoints: EndpointsRecord::single(&emu.base_url()),
    };
    host.store.upsert_connector(&connector).unwrap();
    Harness { emu, host, connector, tmp }
}

pub async fn harness(entries: usize, seed: u64) -> Harness {
    harness_with(emulator::Config::single(seed, entries, CLIENT_ID, CLIENT_SECRET), Limits::default()).await
}

impl Harness {
    /// The full OAuth round trip: authorize URL → emulator consent → redirect → finish.
    pub async fn connect(&self) -> DatasourceRecord {
        let url = self.host.authorize_url(&self.connector, None).await.expect("authorize url");
        let redirected = emulator::approve(&url).await.expect("consent");
        self.host.finish_connect(&self.connector, &redirected, None).await.expect("finish connect")
    }
}

/// doc id → path_display, for every file and folder the emulator holds under `prefix`
/// (a namespace `path_lower`; "" = everything), as seen `display_skip` bytes in.
pub fn expected_index(
    h: &Harness,
    ds_id: &str,
    prefix: &str,
    display_skip: usize,
) -> std::collections::BTreeMap<String, String> {
    h.emu
        .tree(0)
        .into_iter()
        .filter(|e| {
            let k = &e.path_lower;
            e.name != ".DS_Store"
                && (prefix.is_empty() || k.as_str() == prefix || k.starts_with(&format!("{prefix}/")))
                && k.len() > display_skip
        })
        .map(|e| (document_id(ds_id, &e.id), e.path_display[display_skip..].to_string()))
        .collect()
}

/// doc id → metadata.path_display, for what the host indexed.
pub fn actual_index(h: &Harness, ds_id: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    h.host
        .store
        .for_each_document(ds_id, |id, json| {
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            let display = v["metadata"]["path_display"].as_str().unwrap().to_string();
            assert!(out.insert(id.to_string(), display).is_none(), "duplicate {id}");
            Ok(())
        })
        .unwrap();
    out
}

/// Assert the index equals the account, naming the first differences.
pub fn assert_index_matches(h: &Harness, ds_id: &str, prefix: &str, display_skip: usize) {
    let want = expected_index(h, ds_id, prefix, display_skip);
    let got = actual_index(h, ds_id);
    if want != got {
        let missing: Vec<_> = want.iter().filter(|(k, v)| got.get(*k) != Some(v)).take(5).collect();
        let extra: Vec<_> = got.iter().filter(|(k, v)| want.get(*k) != Some(v)).take(5).collect();
        panic!(
            "index != account ({} expected, {} indexed); missing or stale: {missing:?}; extra or stale: {extra:?}",
            want.len(),
            got.len()
        );
    }
}

/// A Coco document id as upstream computes it (`md5_hex("{datasource}_{entry id}")`), with the
/// test's own md5: an oracle that shares no code with the component.
pub fn document_id(datasource_id: &str, entry_id: &str) -> String {
    use md5::Digest as _;
    md5::Md5::digest(format!("{datasource_id}_{entry_id}")).iter().map(|b| format!("{b:02x}")).collect()
}

/// The HTTP facade build, as `./dev test` makes it.
pub fn facade_wasm_path() -> PathBuf {
    coco_host::paths::facade_wasm()
}

/// A built component, or a failed test that names the command building it.
pub fn built(name: &str) -> PathBuf {
    let build = coco_host::paths::component(name);
    let path = build.path();
    assert!(path.exists(), "{} is not built: {}", path.display(), build.build_hint());
    path
}
