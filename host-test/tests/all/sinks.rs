//! Documents reach the sinks through the outbox: Elasticsearch `_bulk`, Coco Server's REST
//! routes and JSONL, each under injected faults (500, 429 + Retry-After, a hung answer, per-item
//! refusals, the receiver down for a while), after a full sync and after renames, moves and a
//! 1,000-descendant subtree delete; and `kill -9` of `coco-host sync --sink` mid-delivery.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use coco_host::deliver::{DeliverError, Deliverer, EsAuth, SinkConfig, Target};
use coco_host::host::Host;
use coco_host::state::DatasourceRecord;
use dropbox_emulator::{Config, Emulator};

use crate::crash::{connected_host, MASTER_KEY};
use crate::receivers::{indexed as index, Fault, Kind, Receiver, COCO_TOKEN};

const APP: (&str, &str) = ("sink-app", "sink-secret");

/// What the sink must hold: every indexed document (ids and JSON), minus refused ones.
fn expected_ids(emu: &Emulator, ds: &str) -> BTreeSet<String> {
    emu.tree(0).into_iter().filter(|e| e.name != ".DS_Store").map(|e| crate::document_id(ds, &e.id)).collect()
}

async fn drain(
    mut d: Deliverer,
    host: &Host,
    ds: &DatasourceRecord,
) -> (Deliverer, Result<coco_host::deliver::Drained, DeliverError>) {
    // Delivery is blocking I/O; the emulator and the receiver run on this runtime's other worker.
    let target = Target::of(ds);
    let r = tokio::task::block_in_place(|| d.drain(&host.store, &target));
    (d, r)
}

/// JSONL records replayed into the state they describe.
fn replay_jsonl(path: &std::path::Path) -> BTreeMap<String, serde_json::Value> {
    let mut docs = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = r["id"].as_str().unwrap().to_string();
        match r["op"].as_str().unwrap() {
            "upsert" => {
                docs.insert(id, r["document"].clone());
            }
            "delete" => {
                docs.remove(&id);
            }
            op => panic!("unknown op {op}"),
        }
    }
    docs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sink_converges_under_faults_after_renames_moves_and_subtree_deletes() {
    for kind in ["elasticsearch", "coco", "jsonl"] {
        let emu =
            Emulator::start(Config::single(21, 2500, APP.0, APP.1), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        {
            let mut ns = emu.edit(0);
            ns.add("/Big", true, 0).unwrap();
            for i in 0..1000 {
                ns.add(&format!("/Big/file {i}.txt"), false, i).unwrap();
            }
            ns.add("/reject-me.txt", false, 1).unwrap();
        }
        let tmp = tempfile::tempdir().unwrap();
        let (host, ds) = connected_host(&emu, tmp.path(), APP).await;
        let mut receiver = match kind {
            "coco" => Some(Receiver::start(Kind::Coco).await),
            "elasticsearch" => Some(Receiver::start(Kind::Elasticsearch).await),
            _ => None,
        };
        let jsonl = tmp.path().join("out.jsonl");
        let config = match kind {
            "coco" => SinkConfig::Coco {
                url: receiver.as_ref().unwrap().url(),
                token: coco_host::secret::Secret::new(COCO_TOKEN),
                in_flight: 64,
                route: coco_api::UpsertRoute::Save,
            },
            "elasticsearch" => SinkConfig::Elasticsearch {
                url: receiver.as_ref().unwrap().url(),
                index: "coco".into(),
                auth: EsAuth::None,
                max_docs: 300,
                max_bytes: 256 << 10,
                identity: None,
            },
            _ => SinkConfig::Jsonl { path: jsonl.clone() },
        };
        let sink_name = config.name();
        host.store.register_sink(&sink_name).unwrap();
        host.sync(&ds.id, |_| {}).await.unwrap();
        if let Some(r) = &receiver {
            let mut s = r.state.lock().unwrap();
            s.faults.extend([
                Fault::Status(500),
                Fault::RateLimited(1),
                Fault::Delay(Duration::from_secs(3)),
                Fault::Status(503),
            ]);
            s.reject_titles_containing = Some("reject-me".into());
        }
        let mut d = Deliverer::with_timeout(config, Duration::from_secs(1));
        d.backoff.first = Duration::from_millis(50);
        let (mut d, r) = drain(d, &host, &ds).await;
        let drained = r.unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(drained.retries >= 4 || receiver.is_none(), "{kind}: every fault was retried ({})", drained.retries);
        // Elasticsearch refuses per item; Coco Server has no per-document refusal to skip.
        let refuses = kind == "elasticsearch";
        let want = |host: &Host, r: &Option<Receiver>| {
            let mut want = index(host, &ds.id);
            if refuses {
                want.retain(|_, d| !d["title"].as_str().unwrap_or("").contains("reject-me"));
            }
            match r {
                Some(r) => r.comparable(want),
                None => want,
            }
        };
        let got = |receiver: &Option<Receiver>| match receiver {
            Some(r) => r.docs(),
            None => replay_jsonl(&jsonl),
        };
        if refuses {
            assert_eq!(drained.rejected.len(), 1, "{kind}: the refused document is reported");
        }
        let full = got(&receiver);
        assert_eq!(full.len(), want(&host, &receiver).len(), "{kind}: full sync delivered");
        assert!(full == want(&host, &receiver), "{kind}: the sink holds the index");
        assert_eq!(index(&host, &ds.id).keys().cloned().collect::<BTreeSet<_>>(), expected_ids(&emu, &ds.id));

        // Renames, moves, a modified file and a 1,000-descendant subtree delete.
        let big_ids: Vec<String> = emu
            .tree(0)
            .into_iter()
            .filter(|e| e.path_lower.starts_with("/big/"))
            .map(|e| crate::document_id(&ds.id, &e.id))
            .collect();
        assert_eq!(big_ids.len(), 1000);
        {
            let mut ns = emu.edit(0);
            let folders: Vec<_> =
                ns.tree().into_iter().filter(|e| e.is_folder && e.path_lower != "/big").take(2).collect();
            ns.move_entry(&folders[0].path_display, "/Renamed folder").unwrap();
            let file = ns.tree().into_iter().find(|e| !e.is_folder && !e.path_lower.starts_with("/big")).unwrap();
            ns.move_entry(&file.path_display, "/Big moved out.pdf").unwrap();
            ns.delete("/Big").unwrap();
        }
        host.sync(&ds.id, |_| {}).await.unwrap();
        // The receiver is down for a while: delivery gives up, the changes stay queued.
        if let Some(r) = receiver.as_mut() {
            r.down();
            d.attempts = 3;
            let (back, r2) = drain(d, &host, &ds).await;
            d = back;
            assert!(matches!(r2, Err(DeliverError::GaveUp { .. })), "{kind}: {r2:?}");
            let backlog = host.store.sink_backlogs().unwrap();
            let mine = backlog.iter().find(|b| b.sink == sink_name).unwrap();
            assert!(mine.pending > 0 && mine.last_error.is_some(), "{kind}: backlog and error shown");
        }
        if let Some(r) = receiver.as_mut() {
            r.up().await;
        }
        d.attempts = 8;
        let (_, r) = drain(d, &host, &ds).await;
        r.unwrap_or_else(|e| panic!("{kind} after recovery: {e}"));
        let after = got(&receiver);
        for id in &big_ids {
            assert!(!after.contains_key(id), "{kind}: the subtree's documents were deleted by id");
        }
        assert!(after == want(&host, &receiver), "{kind}: the sink holds the index after the changes");
        assert_eq!(index(&host, &ds.id).keys().cloned().collect::<BTreeSet<_>>(), expected_ids(&emu, &ds.id));
        let backlog = host.store.sink_backlogs().unwrap();
        assert_eq!(backlog.iter().find(|b| b.sink == sink_name).unwrap().pending, 0);
        if kind == "coco" {
            let coco = receiver.as_ref().unwrap().coco.lock().unwrap();
            let created = &coco.datasources[&ds.id];
            assert_eq!(created["connector"]["id"], "dropbox", "the datasource is created with upstream's id");
            assert!(!created.to_string().contains(APP.1), "no credential reaches Coco");
        }
        emu.stop().await;
    }
}

/// `kill -9` of `coco-host sync --sink` while it delivers; the next run delivers the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_delivery_loses_nothing() {
    let emu = Emulator::start(Config::single(22, 4000, APP.0, APP.1), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (host, ds) = connected_host(&emu, tmp.path(), APP).await;
    let receiver = Receiver::start(Kind::Elasticsearch).await;
    receiver.state.lock().unwrap().delay = Duration::from_millis(40);
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_coco-host"))
            .args(["sync", &ds.id, "--sink", "elasticsearch", "--es-url", &receiver.url(), "--index", "coco"])
            .args(["--batch-docs", "50"])
            .env("COCO_STATE_DIR", tmp.path())
            .env("COCO_DROPBOX_WASM", crate::wasm())
            .env("COCO_MASTER_KEY", MASTER_KEY)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut kills = 0;
    for round in 0..3 {
        let mut child = run();
        tokio::time::sleep(Duration::from_millis(1500 + 200 * round)).await;
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
        emu.edit(0).add(&format!("/after kill {round}.txt"), false, 1).unwrap();
    }
    assert!(kills >= 1, "a kill landed mid-delivery");
    receiver.state.lock().unwrap().delay = Duration::ZERO;
    assert!(run().wait().unwrap().success());
    let want: BTreeSet<String> = expected_ids(&emu, &ds.id);
    assert_eq!(receiver.docs().keys().cloned().collect::<BTreeSet<_>>(), want);
    assert_eq!(index(&host, &ds.id).keys().cloned().collect::<BTreeSet<_>>(), want);
    emu.stop().await;
}

/// `serve --sink coco`: documents reach Coco as pages are applied, changes follow, and the
/// admin API and `/metrics` show the sink's backlog and deliveries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_delivers_to_coco_as_it_syncs() {
    use crate::serve::{connect, datasource_id, http, open_store, serve, token_header, until};
    let emu =
        Emulator::start(Config::accounts(23, &[1200], "serve-app", "serve-app-secret"), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
    let receiver = Receiver::start(Kind::Coco).await;
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let url = receiver.url();
    let s = serve(
        &emu,
        &state,
        &["--interval", "3600", "--sink", "coco", "--coco-url", &url, "--coco-server-token", COCO_TOKEN],
    )
    .await;
    connect(&emu, &s.base, 0).await;
    let ds = datasource_id(&emu, 0);
    let store = open_store(&state);
    let synced = |store: &coco_host::state::Store| {
        let mut want = BTreeMap::new();
        store
            .for_each_document(&ds, |id, json| {
                want.insert(id.to_string(), serde_json::from_str::<serde_json::Value>(json).unwrap());
                Ok(())
            })
            .unwrap();
        want.len() > 1000 && receiver.docs() == receiver.comparable(want)
    };
    until("the first delivery", Duration::from_secs(30), || synced(&store)).await;
    receiver.state.lock().unwrap().faults.push_back(Fault::Status(502));
    emu.edit(0).add("/delivered later.txt", false, 1).unwrap();
    let tree_ids = || expected_ids(&emu, &ds);
    until("the change delivered", Duration::from_secs(30), || {
        synced(&store) && receiver.docs().keys().cloned().collect::<BTreeSet<_>>() == tree_ids()
    })
    .await;
    // Extracted text keeps arriving after the metadata; each is one more write into Coco.
    until("the backlog drained", Duration::from_secs(60), || {
        store.content_counts(&ds).unwrap().pending == 0
            && store.sink_backlogs().unwrap().iter().all(|b| b.pending == 0)
            && synced(&store)
    })
    .await;
    // The admin API shows the same: a content result written just before the check above
    // may still be on its way to Coco, so it gets a moment to land too.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let one = http("GET", &format!("{}/api/datasources/{ds}", s.base), &[token_header()], None).await.json();
        if one["sinks"][0]["pending"] == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the admin API shows the backlog drained: {one}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(synced(&store), "Coco holds the index");
    let metrics = http("GET", &format!("{}/metrics", s.base), &[token_header()], None).await.body;
    assert!(metrics.contains("coco_sink_delivered_total{sink=\"coco:"), "{metrics}");
    assert!(metrics.contains("coco_sink_backlog{sink=\"coco:"));
    emu.stop().await;
}

/// A sink that answers with a redirect is not followed (its credentials would go along): one
/// clear refusal that names where it pointed, and nothing reaches that place. A sink URL with
/// credentials never shows them, in the error or in the state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_follow_no_redirect_and_never_show_url_credentials() {
    use std::sync::{Arc, Mutex};
    const PASSWORD: &str = "sink-url-password-4711";
    let emu = Emulator::start(Config::single(24, 30, APP.0, APP.1), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (host, ds) = connected_host(&emu, tmp.path(), APP).await;
    host.sync(&ds.id, |_| {}).await.unwrap();

    async fn listen(app: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }
    let reached: Arc<Mutex<u32>> = Arc::default();
    let elsewhere = listen(axum::Router::new().fallback({
        let reached = reached.clone();
        move || async move {
            *reached.lock().unwrap() += 1;
            "{}"
        }
    }))
    .await;
    let target = format!("{elsewhere}/landing");
    let redirector = listen(axum::Router::new().fallback(move || {
        let target = target.clone();
        async move { (axum::http::StatusCode::TEMPORARY_REDIRECT, [("location", target)], "") }
    }))
    .await;
    let with_password = |base: &str| base.replace("http://", &format!("http://elastic:{PASSWORD}@"));
    let es = |url: String| SinkConfig::Elasticsearch {
        url,
        index: "coco".into(),
        auth: EsAuth::None,
        max_docs: 100,
        max_bytes: 1 << 20,
        identity: None,
    };
    let coco = SinkConfig::Coco {
        url: redirector.clone(),
        token: coco_host::secret::Secret::new(COCO_TOKEN),
        in_flight: 8,
        route: coco_api::UpsertRoute::Save,
    };
    for config in [es(with_password(&redirector)), coco] {
        host.store.register_sink(&config.name()).unwrap();
        let mut d = Deliverer::new(config);
        d.attempts = 1;
        let (_, r) = drain(d, &host, &ds).await;
        let e = r.expect_err("a redirect is refused").to_string();
        assert!(e.contains("redirect") && e.contains(&format!("{elsewhere}/landing")), "{e}");
        assert!(!e.contains(PASSWORD), "{e}");
    }
    assert_eq!(*reached.lock().unwrap(), 0, "nothing followed the redirect");

    // No answer at all: the error names the URL without its credentials, here and in the state.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = es(with_password(&format!("http://{closed}")));
    host.store.register_sink(&config.name()).unwrap();
    let mut d = Deliverer::new(config);
    d.attempts = 1;
    let (_, r) = drain(d, &host, &ds).await;
    let e = r.expect_err("nothing listens").to_string();
    assert!(e.contains(&closed.to_string()) && !e.contains(PASSWORD), "{e}");
    let shown = format!("{:?}", host.store.sink_backlogs().unwrap());
    assert!(shown.contains(&closed.to_string()) && !shown.contains(PASSWORD), "{shown}");
    emu.stop().await;
}
