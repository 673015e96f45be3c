//! The key-value build of the facade under a real `wasmtime serve -Scli -Skeyvalue`: connect in
//! the browser, then only `POST /sync/{id}` calls, with the documents pushed to a loopback Coco
//! Server. The runtime keeps the state; the test only calls routes and reads the receiver.

use std::collections::BTreeMap;
use std::path::PathBuf;

use dropbox_emulator::{Config, Emulator};

use super::facade_serve::{http, serve_component, Reply, Shapes, API_TOKEN, CLIENT_ID, CLIENT_SECRET};
use crate::receivers;

const SEAL_SECRET: &str = "KV-seal-secret-0123456789abcdef-0123456789";

/// The flags that keep wasmtime 48's in-memory store alive across requests: one instance,
/// reused, never dropped for idleness, one request at a time (see docs/serverless.md; calls are also
/// [`paced`]).
pub const KEEP_ONE_INSTANCE: [&str; 5] = [
    "-Scli",
    "-Skeyvalue",
    "--max-instance-reuse-count=1000000000",
    "--idle-instance-timeout=31536000",
    "--max-concurrent-requests=1",
];

fn kv_wasm() -> PathBuf {
    coco_e2e::built("facade-kv")
}

/// wasmtime 48 frees its request slot when a response starts, and the instance is ready again only
/// once the guest has returned; a request in between gets a fresh instance with an empty store. A
/// scheduler therefore leaves a moment between calls, and so does this test.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(200);

/// One request to the facade, then the pause that keeps the next one on the same instance.
fn paced(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
    let r = http(method, url, headers, body);
    std::thread::sleep(SETTLE);
    r
}

fn api(method: &str, url: &str) -> (Reply, serde_json::Value) {
    let r = paced(method, url, &[("x-api-token", API_TOKEN)], if method == "POST" { Some("") } else { None });
    let v = serde_json::from_str(&r.body).unwrap_or(serde_json::Value::Null);
    (r, v)
}

/// `POST /sync/{id}` until `has_more` is false; the steps' answers.
fn drain(base: &str, id: &str, transcript: &mut String) -> Vec<serde_json::Value> {
    let shapes = Shapes::load();
    let mut steps = Vec::new();
    for _ in 0..200 {
        let (r, step) = api("POST", &format!("{base}/sync/{id}"));
        transcript.push_str(&r.body);
        assert_eq!(r.status, 200, "{}", r.body);
        shapes.check("sync_step", &step);
        assert_eq!(r.headers["cache-control"], "no-store");
        let more = step["has_more"] == true;
        assert_eq!(step["wait_secs"].as_u64(), Some(if more { 0 } else { 30 }), "{step}");
        steps.push(step);
        if !more {
            return steps;
        }
    }
    panic!("no end to the listing after 200 calls");
}

fn upserted(steps: &[serde_json::Value]) -> u64 {
    steps.iter().map(|s| s["upserted"].as_u64().unwrap()).sum()
}

/// doc id → path_display for everything in the account (the Coco receiver must hold exactly this).
fn expected(emu: &Emulator, ds: &str) -> BTreeMap<String, String> {
    emu.tree(0)
        .into_iter()
        .filter(|e| e.name != ".DS_Store")
        .map(|e| (coco_e2e::document_id(ds, &e.id), e.path_display))
        .collect()
}

fn received(coco: &receivers::Receiver) -> BTreeMap<String, String> {
    coco.docs()
        .into_iter()
        .map(|(id, d)| (id, d["metadata"]["path_display"].as_str().unwrap_or("?").to_string()))
        .collect()
}

fn assert_converged(emu: &Emulator, coco: &receivers::Receiver, ds: &str) {
    let want = expected(emu, ds);
    let got = received(coco);
    if want != got {
        let missing: Vec<_> = want.iter().filter(|(k, v)| got.get(*k) != Some(v)).take(5).collect();
        let extra: Vec<_> = got.iter().filter(|(k, v)| want.get(*k) != Some(v)).take(5).collect();
        panic!("Coco != account ({} vs {}): missing {missing:?}, extra {extra:?}", want.len(), got.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_post_sync_per_page_keeps_coco_equal_to_the_account() {
    let emu = Emulator::start(Config::single(91, 1_500, CLIENT_ID, CLIENT_SECRET), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut coco = receivers::Receiver::start(receivers::Kind::Coco).await;
    let (emu_base, coco_url) = (emu.base_url(), coco.url());
    let env = [
        ("COCO_DROPBOX_BASE_URL", emu_base.as_str()),
        ("COCO_SEAL_SECRET", SEAL_SECRET),
        ("COCO_SERVER_URL", coco_url.as_str()),
        ("COCO_SERVER_TOKEN", receivers::COCO_TOKEN),
        ("COCO_PAGE_LIMIT", "300"),
    ];
    let (served, base) = serve_component(&kv_wasm(), &KEEP_ONE_INSTANCE, &env);
    let mut transcript = String::new();

    // 1. The browser connects; the facade keeps the datasource itself (no callback).
    let id = tokio::task::spawn_blocking({
        let base = base.clone();
        move || browser_connects(&base)
    })
    .await
    .unwrap();
    let (id, seen) = id;
    transcript.push_str(&seen);

    // 2. The scheduler's loop: POST /sync/{id} until has_more is false.
    let steps = tokio::task::spawn_blocking({
        let (base, id) = (base.clone(), id.clone());
        move || {
            let mut t = String::new();
            let steps = drain(&base, &id, &mut t);
            (steps, t)
        }
    })
    .await
    .unwrap();
    transcript.push_str(&steps.1);
    assert!(steps.0.len() >= 5, "several pages: {}", steps.0.len());
    assert_converged(&emu, &coco, &id);
    let total = expected(&emu, &id).len() as u64;
    assert_eq!(steps.0.last().unwrap()["documents"].as_u64(), Some(total));
    let routes = |route: &str| coco.coco.lock().unwrap().counters.get(route);
    assert_eq!(routes("POST /datasource/"), 1, "the datasource was created once");
    assert_eq!(routes("POST /datasource/:id/_doc/:doc_id"), 0, "documents are saved (PUT), never created twice");
    assert_eq!(routes("PUT /document/:doc_id"), total);
    assert_eq!(coco.coco.lock().unwrap().datasources[&id]["connector"]["id"], "dropbox");
    // 3. Changes arrive as deltas: a folder deleted with its subtree, a subtree moved, a file
    //    moved, a modify, an add.
    let (folder, children) = {
        let tree = emu.tree(0);
        let folder = tree
            .iter()
            .filter(|e| e.is_folder)
            .max_by_key(|e| tree.iter().filter(|c| c.path_lower.starts_with(&format!("{}/", e.path_lower))).count())
            .unwrap()
            .clone();
        let children = tree
            .iter()
            .filter(|c| c.name != ".DS_Store" && c.path_lower.starts_with(&format!("{}/", folder.path_lower)))
            .count();
        (folder, children)
    };
    assert!(children >= 3, "a folder with a subtree: {children}");
    let file = emu.tree(0).into_iter().find(|e| !e.is_folder && !e.path_lower.starts_with(&folder.path_lower)).unwrap();
    // A second top-level folder with files under it, apart from the deleted one and the file.
    let moved = emu
        .tree(0)
        .into_iter()
        .find(|e| {
            e.is_folder
                && e.path_lower.matches('/').count() == 1
                && e.path_lower != folder.path_lower
                && !folder.path_lower.starts_with(&format!("{}/", e.path_lower))
                && !file.path_lower.starts_with(&format!("{}/", e.path_lower))
                && emu.tree(0).iter().any(|c| !c.is_folder && c.path_lower.starts_with(&format!("{}/", e.path_lower)))
        })
        .unwrap();
    let moved_ids: Vec<String> = emu
        .tree(0)
        .into_iter()
        .filter(|c| c.name != ".DS_Store" && c.path_lower.starts_with(&format!("{}/", moved.path_lower)))
        .map(|c| coco_e2e::document_id(&id, &c.id))
        .collect();
    {
        let mut ns = emu.edit(0);
        ns.delete(&folder.path_display).unwrap();
        ns.move_entry(&moved.path_display, "/Moved subtree").unwrap();
        ns.move_entry(&file.path_display, "/Moved here.txt").unwrap();
        ns.add("/Fresh", true, 0).unwrap();
        ns.add("/Fresh/new file.pdf", false, 1234).unwrap();
        let edited = ns
            .tree()
            .into_iter()
            .find(|e| {
                !e.is_folder
                    && !e.path_lower.starts_with(&folder.path_lower)
                    && !e.path_lower.starts_with("/moved subtree/")
                    && e.path_lower != "/moved here.txt"
            })
            .unwrap();
        ns.modify(&edited.path_display, 4321).unwrap();
    }
    let deltas = tokio::task::spawn_blocking({
        let (base, id) = (base.clone(), id.clone());
        move || drain(&base, &id, &mut String::new())
    })
    .await
    .unwrap();
    assert_converged(&emu, &coco, &id);
    // The moved subtree keeps its document ids, now under the new path.
    let now_there = received(&coco);
    for doc in &moved_ids {
        assert!(now_there.get(doc).is_some_and(|p| p.starts_with("/Moved subtree/")), "{doc} moved with its folder");
    }
    assert!(upserted(&deltas) <= 7 + moved_ids.len() as u64, "deltas only: {deltas:?}");
    assert!(deltas.iter().map(|s| s["deleted"].as_u64().unwrap()).sum::<u64>() > children as u64);

    // 4. Coco down for a page: 502, the cursor stays, the next call sends the same page.
    emu.edit(0).add("/while coco was down.txt", false, 7).unwrap();
    coco.state.lock().unwrap().faults.push_back(receivers::Fault::Status(503));
    let (failed, again) = tokio::task::spawn_blocking({
        let (base, id) = (base.clone(), id.clone());
        move || {
            let (r, failed) = api("POST", &format!("{base}/sync/{id}"));
            assert_eq!(r.status, 502, "{}", r.body);
            Shapes::load().check("error", &failed);
            (failed, drain(&base, &id, &mut String::new()))
        }
    })
    .await
    .unwrap();
    assert_eq!(failed["error"]["kind"], "sink-failed");
    assert_eq!(upserted(&again), 1, "the same page again: {again:?}");
    assert_converged(&emu, &coco, &id);

    // 5. Dropbox resets the cursor while something is deleted: a re-listing, then a sweep.
    let victim = emu.tree(0).into_iter().find(|e| !e.is_folder).unwrap();
    {
        let mut ns = emu.edit(0);
        ns.delete(&victim.path_display).unwrap();
        ns.reset_cursors();
    }
    let relisted = tokio::task::spawn_blocking({
        let (base, id) = (base.clone(), id.clone());
        move || drain(&base, &id, &mut String::new())
    })
    .await
    .unwrap();
    assert_eq!(relisted[0]["reset"], true, "{:?}", relisted[0]);
    assert!(!coco.docs().contains_key(&coco_e2e::document_id(&id, &victim.id)));
    assert_converged(&emu, &coco, &id);

    // 6. Nothing the API answered, and no stored state it shows, holds a token in clear.
    let shown = tokio::task::spawn_blocking({
        let base = base.clone();
        move || api("GET", &format!("{base}/datasources")).0.body
    })
    .await
    .unwrap();
    transcript.push_str(&shown);
    let tokens = emu.issued_tokens();
    assert!(!tokens.is_empty());
    for t in tokens {
        assert!(!transcript.contains(&t), "a token reached a response");
    }
    assert!(!transcript.contains(SEAL_SECRET) && !transcript.contains("v1."), "no sealed value is shown");

    // 7. A restart that loses the facade's memory (wasmtime's in-memory store goes with the
    //    process): the browser connects again, the listing starts over, and every document is
    //    sent again over what Coco already has, which a create-only route would refuse.
    drop(served);
    let (_served, base) = serve_component(&kv_wasm(), &KEEP_ONE_INSTANCE, &env);
    let saves_before = routes("PUT /document/:doc_id");
    let again = tokio::task::spawn_blocking({
        let base = base.clone();
        move || {
            let (id, _) = browser_connects(&base);
            let steps = drain(&base, &id, &mut String::new());
            (id, steps)
        }
    })
    .await
    .unwrap();
    assert_eq!(again.0, id, "the same account is the same datasource");
    let total = expected(&emu, &id).len() as u64;
    assert_eq!(upserted(&again.1), total, "everything again");
    assert_eq!(routes("PUT /document/:doc_id") - saves_before, total);
    assert_eq!(routes("POST /datasource/"), 1, "found, not created again");
    assert_converged(&emu, &coco, &id);

    // 8. DELETE revokes at Dropbox, removes the datasource and its documents from Coco, and
    //    forgets it.
    let (deleted, after) = tokio::task::spawn_blocking({
        let (base, id) = (base.clone(), id.clone());
        move || {
            let (r, body) = api("DELETE", &format!("{base}/datasources/{id}"));
            assert_eq!(r.status, 200, "{}", r.body);
            Shapes::load().check("datasource_removed", &body);
            (body, api("GET", &format!("{base}/datasources")).1)
        }
    })
    .await
    .unwrap();
    assert_eq!(deleted["revoked"], true);
    assert_eq!(after["datasources"], serde_json::json!([]));
    assert_eq!(routes("DELETE /datasource/:id"), 1);
    assert!(!coco.coco.lock().unwrap().datasources.contains_key(&id), "the datasource is gone from Coco");
    assert!(coco.docs().is_empty(), "and every document of it");
    coco.down();
}

/// The browser's connect flow against the facade at `base`; the datasource id and what the
/// browser and the API showed.
fn browser_connects(base: &str) -> (String, String) {
    // Without the token or a link, nobody starts connecting; the operator hands out a link.
    assert_eq!(paced("GET", &format!("{base}/connector/dropbox/dropbox/connect"), &[], None).status, 401);
    let link = super::facade_serve::connect_link(base);
    std::thread::sleep(SETTLE);
    let r = paced("GET", &link, &[], None);
    assert_eq!(r.status, 302, "{}", r.body);
    // A second browser cannot use the same link.
    assert_eq!(paced("GET", &link, &[], None).status, 403, "single-use");
    let cookie = r.headers["set-cookie"].split(';').next().unwrap().to_string();
    let back = http("GET", &r.headers["location"], &[], None).headers["location"].clone();
    let page = paced("GET", &back, &[("cookie", &cookie)], None);
    assert_eq!(page.status, 200, "{}", page.body);
    let (r, list) = api("GET", &format!("{base}/datasources"));
    assert_eq!(r.status, 200, "{}", r.body);
    Shapes::load().check("datasource_list", &list);
    let ds = &list["datasources"][0];
    assert_eq!((ds["status"].as_str(), ds["documents"].as_u64()), (Some("listing"), Some(0)), "{list}");
    assert!(page.body.contains(ds["id"].as_str().unwrap()));
    // Without the API token: nothing.
    assert_eq!(paced("GET", &format!("{base}/datasources"), &[], None).status, 401);
    let id = ds["id"].as_str().unwrap().to_string();
    assert_eq!(paced("POST", &format!("{base}/sync/{id}"), &[("x-api-token", "nope")], Some("")).status, 401);
    (id, page.body + &r.body)
}
