//! Crash safety: `coco-host sync` is killed with SIGKILL at random points of a sync (several
//! seeds), the account changes in between, and a final run must leave the index equal to the
//! account with no duplicates.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use dropbox_emulator::{Config, Emulator};

use crate::wasm;
use coco_host::host::Host;
use coco_host::keys::Keys;
use coco_host::runtime::{Limits, Runtime};
use coco_host::secret::Secret;
use coco_host::state::{ConnectorRecord, EndpointsRecord, Store};
use rand::{Rng, SeedableRng};

pub(crate) const MASTER_KEY: &str = "crash-test-master-key-0123456789abcdef";

fn sync_process(state: &Path, id: &str) -> Command {
    sync_process_with(state, id, 1)
}

/// `sync` with `parallelism` list pages in flight during the initial listing.
fn sync_process_with(state: &Path, id: &str, parallelism: u32) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coco-host"));
    cmd.args(["sync", id, "--page-limit", "100", "--listing-parallelism", &parallelism.to_string()])
        .env("COCO_STATE_DIR", state)
        .env("COCO_DROPBOX_WASM", wasm())
        .env("COCO_MASTER_KEY", MASTER_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// A host in this process on `state`, with the emulator's account connected through OAuth.
pub(crate) async fn connected_host(
    emu: &Emulator,
    state: &Path,
    app: (&str, &str),
) -> (Host, coco_host::state::DatasourceRecord) {
    let runtime = Arc::new(Runtime::load(&wasm(), None, Limits::default()).expect("load component"));
    let store = Store::open(&state.join("coco.sqlite"), Keys::from_master(MASTER_KEY.as_bytes()).unwrap()).unwrap();
    let host = Host::new(runtime, store);
    let connector = ConnectorRecord {
        id: "dropbox".into(),
        client_id: app.0.into(),
        client_secret: Secret::new(app.1),
        redirect_uri: "http://localhost:9000/connector/dropbox/dropbox/oauth_redirect".into(),
        endpoints: EndpointsRecord::single(&emu.base_url()),
    };
    let url = host.authorize_url(&connector, None).await.unwrap();
    let ds = host.finish_connect(&connector, &dropbox_emulator::approve(&url).await.unwrap(), None).await.unwrap();
    (host, ds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_nothing() {
    // Seed 4 lists in parallel: its kills land between shard pages of the first listing.
    for (seed, parallelism) in [(1u64, 1), (2, 1), (3, 1), (4, 4)] {
        let emu =
            Emulator::start(Config::single(seed, 15_000, "crash-app", "crash-secret"), "127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().to_path_buf();
        let (host, ds) = connected_host(&emu, &state, ("crash-app", "crash-secret")).await;

        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut kills = 0;
        for round in 0..6 {
            let mut child = sync_process_with(&state, &ds.id, parallelism).spawn().unwrap();
            let wait = Duration::from_millis(rng.random_range(20..300));
            tokio::time::sleep(wait).await;
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                kills += 1;
            }
            child.wait().unwrap();
            // The account keeps changing between crashes: deletes, a moved folder, and enough
            // new files that the next run has pages to be killed in.
            let mut ns = emu.edit(0);
            for _ in 0..3 {
                let tree = ns.tree();
                let victim = &tree[rng.random_range(0..tree.len())].path_lower;
                let _ = ns.delete(victim);
            }
            if let Some(folder) = ns.tree().into_iter().filter(|e| e.is_folder).nth(round as usize) {
                let _ = ns.move_entry(&folder.path_lower, &format!("/moved in round {round}"));
            }
            ns.add(&format!("/after crash {round}"), true, 0).unwrap();
            for i in 0..400 {
                ns.add(&format!("/after crash {round}/file {i}.pdf"), false, i).unwrap();
            }
            drop(ns);
        }
        assert!(kills >= 2, "seed {seed}: the kills must land mid-sync ({kills})");
        let status = sync_process_with(&state, &ds.id, parallelism).status().unwrap();
        assert!(status.success(), "seed {seed}: the final sync completes");

        // Index == account, no duplicates (ids are the primary key; paths must be unique too).
        let want: BTreeMap<String, String> = emu
            .tree(0)
            .into_iter()
            .filter(|e| e.name != ".DS_Store")
            .map(|e| (crate::document_id(&ds.id, &e.id), e.path_lower))
            .collect();
        let got: BTreeMap<String, String> = host.store.index_entries(&ds.id).unwrap().into_iter().collect();
        let paths: std::collections::BTreeSet<_> = got.values().collect();
        assert_eq!(paths.len(), got.len(), "seed {seed}: two documents share a path");
        assert_eq!(got.len(), want.len(), "seed {seed}: document count");
        assert!(got == want, "seed {seed}: index != account");
        emu.stop().await;
    }
}

/// Two processes on one state never sync one datasource at once: the second says who holds it
/// and exits without a single Dropbox request; once the holder is gone it syncs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_does_not_sync_a_leased_datasource() {
    let emu = Emulator::start(Config::single(5, 500, "lease-app", "lease-secret"), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let (host, ds) = connected_host(&emu, &state, ("lease-app", "lease-secret")).await;

    // This test process holds the lease, as a running `serve` or `sync` would.
    host.store.acquire_lease(&ds.id, &host.lease_holder, Duration::from_secs(600)).unwrap();
    let listings = emu.counters().get("files/list_folder");
    let out = tokio::task::spawn_blocking({
        let (state, id) = (state.clone(), ds.id.clone());
        move || sync_process(&state, &id).stderr(Stdio::piped()).output().unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is being synced by another process") && err.contains(&host.lease_holder), "{err}");
    assert_eq!(emu.counters().get("files/list_folder"), listings, "no request from the refused process");

    host.store.release_lease(&ds.id, &host.lease_holder).unwrap();
    let status = tokio::task::spawn_blocking({
        let (state, id) = (state.clone(), ds.id.clone());
        move || sync_process(&state, &id).status().unwrap()
    })
    .await
    .unwrap();
    assert!(status.success());
    assert_eq!(host.store.lease_holder(&ds.id).unwrap(), None, "released at the end");
    emu.stop().await;
}
