//! Shared set-up for the end-to-end tests: the real compiled component under wasmtime, the
//! emulator on 127.0.0.1, and a host with its SQLite state in a temporary folder.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use coco_dropbox::Secret;
use coco_host::emulator::{self, Emulator};
use coco_host::host::{browse_authorize, Host, RetryPolicy};
use coco_host::keys::Keys;
use coco_host::runtime::{Limits, Runtime};
use coco_host::store::{ConnectorRecord, DatasourceRecord, EndpointsRecord, Store};

pub const CLIENT_ID: &str = "test-app-key";
pub const CLIENT_SECRET: &str = "test-app-secret";
pub const REDIRECT_URI: &str = "http://localhost:9000/connector/dropbox/dropbox/oauth_redirect";

/// The release component; `./dev test` builds it before the tests run.
pub fn wasm_path() -> PathBuf {
    let path = std::env::var_os("COCO_DROPBOX_WASM").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/wasm32-wasip2/release/coco_dropbox.wasm")
    });
    assert!(
        path.exists(),
        "component not found at {}: run `cargo build --target wasm32-wasip2 --release` first (./dev test does)",
        path.display()
    );
    path
}

pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/coco-test-cache")
}

pub fn runtime(limits: Limits) -> Arc<Runtime> {
    Arc::new(Runtime::load(&wasm_path(), Some(&cache_dir()), limits).expect("load the component"))
}

/// Short waits so fault tests stay fast.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        max_attempts: 4,
        max_rate_limits: 10,
    }
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
    let store = Store::open(&tmp.path().join("coco.sqlite"), keys).unwrap();
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
        let url = self.host.authorize_url(&self.connector).await.expect("authorize url");
        let redirected = browse_authorize(&url).await.expect("consent");
        self.host.finish_connect(&self.connector, &redirected).await.expect("finish connect")
    }
}
