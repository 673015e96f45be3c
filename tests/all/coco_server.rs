//! Documents into a Coco Server that answers as the real one does (`dropbox_emulator::coco`,
//! behind the test receivers: create-only creates that conflict with a 500, a datasource that
//! needs its connector, writes answered on the next refresh tick). The host's Coco sink is
//! followed through a full sync whose extracted text arrives after the metadata, then edits,
//! renames, a folder delete and a moved subtree, a restart that forgets what was delivered,
//! and removing the datasource. After each step Coco holds exactly the index.

use std::sync::Arc;
use std::time::Duration;

use coco_e2e::{harness_with, Harness, CLIENT_ID, CLIENT_SECRET};
use coco_host::deliver::{Deliverer, SinkConfig, Target};
use coco_host::extract::{drain_content, DrainControl};
use coco_host::host::Host;
use coco_host::runtime::Limits;
use coco_host::secret::Secret;
use coco_host::state::DatasourceRecord;
use dropbox_emulator::Config;

use crate::receivers::{indexed as index, Kind, Receiver, COCO_TOKEN};

/// Coco holds exactly the index (but for the fields Coco's ORM stamps itself).
fn assert_holds(coco: &Receiver, host: &Host, ds: &str, step: &str) {
    let (got, want) = (coco.docs(), coco.comparable(index(host, ds)));
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let differ: Vec<_> = want.keys().filter(|k| got.get(*k).is_some_and(|g| g != &want[*k])).collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differ.is_empty(),
        "{step}: Coco != index: missing {missing:?}, extra {extra:?}, differ {differ:?}"
    );
    assert!(!want.is_empty() || step == "removed", "{step}: an empty index proves nothing");
}

fn deliver(d: &mut Deliverer, host: &Host, ds: &DatasourceRecord, removed: bool) -> coco_host::deliver::Drained {
    let target = Target { removed, ..Target::of(ds) };
    tokio::task::block_in_place(|| d.drain(&host.store, &target)).expect("delivered")
}

async fn sync_and_fetch(host: &Arc<Host>, id: &str) {
    host.sync(id, |_| {}).await.expect("sync");
    drain_content(host.clone(), Some(id.to_string()), 2, Arc::new(DrainControl::default())).await.expect("content");
}

fn text_of(coco: &Receiver, doc_id: &str) -> String {
    coco.coco.lock().unwrap().documents[doc_id]["content"].as_str().unwrap_or("").to_string()
}

fn count(coco: &Receiver, route: &str) -> u64 {
    coco.coco.lock().unwrap().counters.get(route)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coco_holds_the_index_through_content_edits_a_restart_and_removal() {
    let Harness { emu, host, tmp: _tmp, .. } =
        harness_with(Config::single(31, 300, CLIENT_ID, CLIENT_SECRET), Limits::default()).await;
    let host = Arc::new(host);
    {
        let mut e = emu.edit(0);
        e.add("/Notes", true, 0).unwrap();
        e.add("/Notes/Deep", true, 0).unwrap();
        e.upload("/Notes/alpha.txt", b"alpha words for the search index".to_vec()).unwrap();
        e.upload("/Notes/Deep/beta.txt", b"beta words in a nested folder".to_vec()).unwrap();
        e.add("/Old", true, 0).unwrap();
        for i in 0..40 {
            e.add(&format!("/Old/file {i}.txt"), false, 10 + i).unwrap();
        }
    }
    let connector = host.store.connector("dropbox").unwrap().unwrap();
    let url = host.authorize_url(&connector, None).await.unwrap();
    let ds = host.finish_connect(&connector, &dropbox_emulator::approve(&url).await.unwrap(), None).await.unwrap();
    let id_of = |path: &str| {
        let entry = emu.tree(0).into_iter().find(|e| e.path_display == path).unwrap();
        coco_e2e::document_id(&ds.id, &entry.id)
    };
    let coco = Receiver::start(Kind::Coco).await;
    let config = SinkConfig::Coco {
        url: coco.url(),
        token: Secret::new(COCO_TOKEN),
        in_flight: 32,
        route: coco_api::UpsertRoute::Save,
    };
    host.store.register_sink(&config.name()).unwrap();
    let mut d = Deliverer::with_timeout(config.clone(), Duration::from_secs(10));

    // 1. A full sync: the metadata first, then the extracted text of the same documents,
    //    which a create-only route would refuse.
    host.sync(&ds.id, |_| {}).await.unwrap();
    deliver(&mut d, &host, &ds, false);
    assert_holds(&coco, &host, &ds.id, "metadata");
    let alpha = id_of("/Notes/alpha.txt");
    assert_eq!(text_of(&coco, &alpha), "", "no text yet");
    drain_content(host.clone(), Some(ds.id.clone()), 2, Arc::new(DrainControl::default())).await.unwrap();
    deliver(&mut d, &host, &ds, false);
    assert_holds(&coco, &host, &ds.id, "text after metadata");
    assert!(text_of(&coco, &alpha).contains("alpha words"), "the text reached Coco over the metadata");
    assert_eq!(count(&coco, "POST /connector/"), 0, "a set-up server has `dropbox`");
    assert_eq!(count(&coco, "POST /datasource/"), 1);
    assert_eq!(count(&coco, "POST /datasource/:id/_doc/:doc_id"), 0, "upserts are saves");

    // 2. An edit, renames, a folder delete and a moved subtree.
    let old_ids: Vec<String> = emu
        .tree(0)
        .into_iter()
        .filter(|e| e.path_lower.starts_with("/old/"))
        .map(|e| coco_e2e::document_id(&ds.id, &e.id))
        .collect();
    let beta = id_of("/Notes/Deep/beta.txt");
    {
        let mut e = emu.edit(0);
        e.upload("/Notes/alpha.txt", b"alpha rewritten with other words".to_vec()).unwrap();
        let renamed = e.tree().into_iter().find(|x| !x.is_folder && x.path_lower.starts_with("/old/")).unwrap();
        e.move_entry(&renamed.path_display, "/Renamed out of Old.txt").unwrap();
        e.delete("/Old").unwrap();
        e.add("/Archive", true, 0).unwrap();
        e.move_entry("/Notes/Deep", "/Archive/Deep").unwrap();
    }
    sync_and_fetch(&host, &ds.id).await;
    let deletes_before = count(&coco, "DELETE /document/");
    deliver(&mut d, &host, &ds, false);
    assert_holds(&coco, &host, &ds.id, "edits, renames, a folder delete and a moved subtree");
    assert!(text_of(&coco, &alpha).contains("rewritten"), "the edited text replaced the old one");
    assert_eq!(coco.docs()[&beta]["metadata"]["path_display"], "/Archive/Deep/beta.txt", "moved, same id");
    assert!(old_ids.iter().filter(|i| coco.docs().contains_key(*i)).count() <= 1, "the folder's files went");
    assert!(count(&coco, "DELETE /document/") > deletes_before);

    // 3. A restart that forgets what was delivered: a new deliverer and the sink's progress
    //    gone, so every document is sent again over what Coco has.
    host.store.unregister_sink(&config.name()).unwrap();
    host.store.register_sink(&config.name()).unwrap();
    let saves_before = count(&coco, "PUT /document/:doc_id");
    let mut d = Deliverer::with_timeout(config.clone(), Duration::from_secs(10));
    let drained = deliver(&mut d, &host, &ds, false);
    assert_eq!(drained.upserts, index(&host, &ds.id).len() as u64, "everything again");
    assert_eq!(count(&coco, "PUT /document/:doc_id") - saves_before, drained.upserts);
    assert_eq!(count(&coco, "POST /datasource/"), 1, "the datasource was found, not created twice");
    assert_holds(&coco, &host, &ds.id, "after a restart");

    // 4. Removing the datasource removes it at Coco, with its documents.
    let removed = host.store.datasource(&ds.id).unwrap();
    host.store.remove_datasource(&ds.id).unwrap();
    deliver(&mut d, &host, &removed, true);
    assert_eq!(count(&coco, "DELETE /datasource/:id"), 1);
    {
        let m = coco.coco.lock().unwrap();
        assert!(!m.datasources.contains_key(&ds.id), "the datasource is gone");
        assert!(m.documents_of(&ds.id).is_empty(), "and every document of it");
    }
    assert_holds(&coco, &host, &ds.id, "removed");
    let backlog = host.store.sink_backlogs().unwrap();
    assert!(backlog.iter().all(|b| b.pending == 0), "{backlog:?}");
    emu.stop().await;
}
