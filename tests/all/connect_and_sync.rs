//! End to end: the compiled component under wasmtime, real HTTP to the emulator on loopback.
//! Connect through OAuth, sync a generated account over many pages, and check the index
//! against the emulator's tree and against upstream's mapping rules.

use std::collections::{HashMap, HashSet};

use coco_e2e::*;
use coco_host::runtime::Limits;
use serde_json::Value;

/// Upstream's icon table, written out again here so the test does not trust the mapping code.
fn expected_icon(name: &str, folder: bool) -> &'static str {
    if folder {
        return "font_filetype-folder";
    }
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "docx" | "doc" => "docx",
        "xlsx" | "xls" => "xlsx",
        "pptx" | "ppt" => "pptx",
        "pdf" => "pdf",
        "paper" => "paper",
        "gdoc" => "gdoc",
        "gsheet" => "gexcel",
        "gslides" => "gppt",
        _ => "default",
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_and_full_sync_of_12k_entries_matches_the_account() {
    let mut h = harness(12_000, 42).await;
    h.host.default_page_limit = 1000;
    let ds = h.connect().await;

    // md5_hex("dropbox,dropbox,{account_id},{email}"), computed independently (Python hashlib).
    assert_eq!(ds.id, "9f759c066304f648a96aef6ed88305af");
    assert_eq!(ds.name, "Franz Ferdinand's Dropbox");
    assert_eq!(ds.profile.email, "franz@example.com");
    assert!(ds.profile.account_id.starts_with("dbid:"));

    let report = h.host.sync(&ds.id, |_| {}).await.expect("sync");
    assert!(report.pages >= 12, "several pages: {report:?}");
    assert_eq!(report.entries, 12_000);

    // The emulator's tree is the truth.
    let (tree, ds_store): (Vec<_>, Vec<_>) =
        h.emu.tree(0).into_iter().map(|e| (e.path_lower.clone(), e)).partition(|(_, e)| e.name != ".DS_Store");
    assert!(!ds_store.is_empty(), "the account has .DS_Store files to skip");
    assert_eq!(report.skipped as usize, ds_store.len());

    let mut docs: HashMap<String, Value> = HashMap::new();
    let mut lines = 0;
    h.host
        .store
        .for_each_document(&ds.id, |id, json| {
            lines += 1;
            let v: Value = serde_json::from_str(json).expect("document is JSON");
            assert_eq!(v["id"], id);
            assert!(docs.insert(id.to_string(), v).is_none(), "duplicate document {id}");
            Ok(())
        })
        .unwrap();
    assert_eq!(lines, tree.len(), "one document per file and folder, nothing extra");

    let mut folders = 0;
    let mut root_level = 0;
    let mut icons = HashSet::new();
    for (path_lower, node) in &tree {
        let id = document_id(&ds.id, &node.id);
        let doc = docs.get(&id).unwrap_or_else(|| panic!("{} missing from the index", node.path_display));
        assert_eq!(doc["title"], node.name.as_str());
        assert_eq!(doc["type"], if node.is_folder { "folder" } else { "file" });
        assert_eq!(doc["icon"], expected_icon(&node.name, node.is_folder), "{}", node.name);
        icons.insert(doc["icon"].as_str().unwrap().to_string());
        assert_eq!(doc["metadata"]["path_lower"], path_lower.as_str());
        assert_eq!(doc["metadata"]["path_display"], node.path_display.as_str());
        assert_eq!(doc["metadata"]["file_id"], node.id.as_str());
        assert_eq!(doc["source"], serde_json::json!({"type": "connector", "name": ds.name, "id": ds.id}));
        assert_eq!(doc["processed"], false);
        // Categories: the directory parts of path_display; nothing at the root.
        let parts: Vec<&str> =
            node.path_display.rsplit_once('/').unwrap().0.split('/').filter(|p| !p.is_empty()).collect();
        if parts.is_empty() {
            root_level += 1;
            assert!(doc.get("categories").is_none() && doc.get("category").is_none(), "{}", node.path_display);
            assert!(doc.get("_system").is_none_or(|s| s.get("parent_path").is_none()));
        } else {
            let category = format!("/{}/", parts.join("/"));
            assert_eq!(doc["categories"], serde_json::json!(parts));
            assert_eq!(doc["category"], category.as_str());
            assert_eq!(doc["_system"]["parent_path"], category.as_str());
        }
        if node.is_folder {
            folders += 1;
            assert!(doc.get("size").is_none() && doc.get("created").is_none() && doc.get("updated").is_none());
            assert_eq!(doc["metadata"]["tag"], "folder");
        } else {
            assert_eq!(doc.get("size").and_then(Value::as_u64).unwrap_or(0), node.size);
            assert_eq!(doc["created"], node.client_modified.as_str());
            assert_eq!(doc["updated"], node.server_modified.as_str());
            assert_eq!(doc["metadata"]["rev"], node.rev.as_str());
            assert_eq!(doc["metadata"]["content_hash"], node.content_hash.as_str());
        }
        assert!(doc["url"].as_str().unwrap().starts_with(&format!("{}/home/", h.emu.base_url())));
    }
    assert!(folders > 100 && root_level > 10, "folders {folders}, root-level {root_level}");
    for icon in ["docx", "xlsx", "pptx", "pdf", "paper", "gdoc", "gexcel", "gppt", "default", "font_filetype-folder"] {
        assert!(icons.contains(icon), "no document got icon {icon}");
    }

    // Known vectors (Python hashlib over the emulator's ids): one nested, one root-level.
    let nested = &docs["5c65c201a1bb32406abf6b0c0016c5b3"];
    assert_eq!(nested["title"], "100% done 2388.gdoc");
    assert_eq!(nested["categories"], serde_json::json!(["2024 29", "50% Off 154"]));
    assert_eq!(nested["_system"]["parent_path"], "/2024 29/50% Off 154/");
    assert_eq!(nested["icon"], "gdoc");
    assert!(nested["url"].as_str().unwrap().ends_with("/home/2024%2029/50%25%20Off%20154/100%25%20done%202388.gdoc"));
    let root = &docs["7e12673e2f6c80718e617642c1f81341"];
    assert_eq!(root["title"], "100% done 2268.paper");
    assert_eq!(root["icon"], "paper");
    assert!(root.get("category").is_none());

    // Requests: one token exchange, one account read, then one list call per page.
    let c = h.emu.counters();
    assert_eq!(c.get("files/list_folder"), 1);
    assert_eq!(c.get("files/list_folder/continue"), report.pages - 1);
    assert_eq!(c.get("oauth2/token"), 1, "no refresh while the token is fresh");
}

#[tokio::test(flavor = "multi_thread")]
async fn component_exports_the_contract_and_imports_no_filesystem_or_sockets() {
    let rt = runtime(Limits::default());
    let exports = rt.exports();
    for interface in ["oauth-redirect", "sync-page", "watch"] {
        let name = format!("coco:dropbox/{interface}@0.4.0");
        assert!(exports.contains(&name), "{name} not in {exports:?}");
    }
    // File content is the extractor component's alone.
    assert!(!exports.iter().any(|e| e.starts_with("coco:dropbox/content")), "{exports:?}");
    rt.extractor_status().expect("the extractor component is loaded beside the connector");
    for imports in [rt.imports(), rt.extractor_imports()] {
        assert!(imports.iter().any(|i| i.starts_with("wasi:http/outgoing-handler")), "{imports:?}");
        for forbidden in ["wasi:filesystem", "wasi:sockets"] {
            assert!(!imports.iter().any(|i| i.starts_with(forbidden)), "imports {forbidden}: {imports:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_sync_continues_from_the_saved_cursor() {
    let h = harness(3_000, 7).await;
    let ds = h.connect().await;
    h.host.sync(&ds.id, |_| {}).await.unwrap();
    let before = h.emu.counters();
    let again = h.host.sync(&ds.id, |_| {}).await.unwrap();
    let after = h.emu.counters();
    assert_eq!(again.pages, 1);
    assert_eq!(again.entries, 0, "nothing changed, nothing listed");
    assert_eq!(after.get("files/list_folder"), before.get("files/list_folder"), "no new full listing");
    assert_eq!(after.get("files/list_folder/continue"), before.get("files/list_folder/continue") + 1);
    assert_eq!(h.host.store.document_count(&ds.id).unwrap(), again.documents_now);
}
