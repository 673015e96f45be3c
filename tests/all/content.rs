//! File content end to end: real files (tests/corpus) uploaded to the emulator, downloaded and
//! extracted by the compiled component under wasmtime, queued and recorded by the host.

use std::sync::Arc;

use coco_e2e::{harness_with, Harness, CLIENT_ID, CLIENT_SECRET};
use coco_host::extract::{drain_content, ContentReport, DrainControl};
use coco_host::host::Host;
use coco_host::runtime::Limits;
use dropbox_emulator::Config;

/// A small generated account (so the tests own most of what is in it) plus our uploads.
async fn setup(limits: Limits) -> (Harness, String) {
    let h = harness_with(Config::single(7, 20, CLIENT_ID, CLIENT_SECRET), limits).await;
    let ds = h.connect().await;
    (h, ds.id)
}

fn upload(h: &Harness, path: &str, bytes: Vec<u8>) {
    let mut e = h.emu.edit(0);
    let parent = &path[..path.rfind('/').unwrap()];
    if !parent.is_empty() && !e.tree().iter().any(|n| n.path_display == parent) {
        e.add(parent, true, 0).unwrap();
    }
    e.upload(path, bytes).unwrap();
}

async fn sync_and_fetch(host: &Arc<Host>, id: &str) -> ContentReport {
    host.sync(id, |_| {}).await.expect("sync");
    drain_content(host.clone(), Some(id.to_string()), 2, Arc::new(DrainControl::default())).await.expect("content")
}

/// path_display → the document as delivered (content merged).
fn documents(host: &Host, id: &str) -> std::collections::HashMap<String, serde_json::Value> {
    let mut out = std::collections::HashMap::new();
    host.store
        .for_each_document(id, |_, json| {
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            out.insert(v["metadata"]["path_display"].as_str().unwrap().to_string(), v);
            Ok(())
        })
        .unwrap();
    out
}

fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[derive(serde::Deserialize)]
struct Manifest {
    files: Vec<CorpusFile>,
}

#[derive(serde::Deserialize)]
struct CorpusFile {
    file: String,
    format: String,
    phrases: Vec<String>,
}

#[tokio::test(flavor = "multi_thread")]
async fn every_corpus_file_is_extracted_through_the_component() {
    let (h, id) = setup(Limits::default()).await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(dir.join("corpus.json")).unwrap()).unwrap();
    for f in &manifest.files {
        upload(&h, &format!("/Corpus/{}", f.file), std::fs::read(dir.join(&f.file)).unwrap());
    }
    let host = Arc::new(h.host);
    let report = sync_and_fetch(&host, &id).await;
    assert!(report.done >= manifest.files.len() as u64, "{report:?}");
    let docs = documents(&host, &id);
    let mut failures = Vec::new();
    for f in &manifest.files {
        let doc = &docs[&format!("/Corpus/{}", f.file)];
        assert_eq!(doc["metadata"]["content_format"], f.format.as_str(), "{}: {doc}", f.file);
        let text = flat(doc["content"].as_str().unwrap_or_default());
        for p in &f.phrases {
            if !text.contains(p.as_str()) {
                failures.push(format!("{}: {p:?} not in {:?}", f.file, &text[..text.len().min(300)]));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_files_fail_alone_with_typed_reasons() {
    let (h, id) = setup(Limits::default()).await;
    let crazy = std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/crazyones.pdf")).unwrap();
    // 80 MiB of XML that deflates to ~80 KB.
    let bomb = dropbox_emulator::content::zip(&[
        ("[Content_Types].xml", "<Types/>".into()),
        ("word/document.xml", format!("<w:document>{}</w:document>", "0".repeat(80 << 20))),
    ]);
    assert!(bomb.len() < 1 << 20);
    let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]><lolz>&lol2;</lolz>"#;
    let cyclic = dropbox_emulator::content::pdf_with(&[
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Pages /Parent 2 0 R /Kids [2 0 R 3 0 R] /Count 2 >>",
    ]);
    let nested = format!("%PDF-1.4\n1 0 obj\n{}\nendobj\n", "[".repeat(200_000)).into_bytes();
    let mut truncated = crazy.clone();
    truncated.truncate(crazy.len() / 3);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("/Hostile/bomb.docx", bomb, "hostile"),
        ("/Hostile/laughs.xml", laughs.as_bytes().to_vec(), "hostile"),
        ("/Hostile/cyclic.pdf", cyclic, "hostile"),
        ("/Hostile/nested.pdf", nested, "hostile"),
        ("/Hostile/really a pdf.docx", crazy.clone(), "malformed"),
        ("/Hostile/binary.txt", vec![0u8; 4096], "malformed"),
        (
            "/Hostile/truncated.xlsx",
            std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/utf8.xlsx")).unwrap()[..3000]
                .to_vec(),
            "malformed",
        ),
        ("/Hostile/huge.txt", vec![b'a'; 100 << 20], "too_large"),
    ];
    for (path, bytes, _) in &cases {
        upload(&h, path, bytes.clone());
    }
    // Files after the hostile ones still work.
    upload(&h, "/Hostile/zz after.pdf", crazy);
    upload(&h, "/Hostile/zz notes.md", b"# Still fine\n\nnothing to see".to_vec());
    let emu_downloads_before = h.emu.counters().get("files/download");
    let runtime = h.host.runtime.clone();
    let host = Arc::new(h.host);
    sync_and_fetch(&host, &id).await;
    let docs = documents(&host, &id);
    for (path, _, reason) in &cases {
        let error = docs[*path]["metadata"]["content_error"].as_str().unwrap_or_default();
        assert!(error.starts_with(reason), "{path}: want {reason}, got {error:?}");
        assert!(docs[*path].get("content").is_none(), "{path} has content");
    }
    assert!(flat(docs["/Hostile/zz after.pdf"]["content"].as_str().unwrap()).contains("The Crazy Ones"));
    assert!(docs["/Hostile/zz notes.md"]["content"].as_str().unwrap().contains("Still fine"));
    // The 100 MB file was decided from the listing: never downloaded.
    let downloads = h.emu.counters().get("files/download") - emu_downloads_before;
    let fetched = cases.len() - 1 + 2 + 20;
    assert!(downloads <= fetched as u64, "{downloads} downloads for {fetched} fetchable files");
    // Memory stayed inside the content calls' limit.
    assert!(runtime.peak_linear_memory() <= Limits::default().content_memory_bytes, "{}", runtime.peak_linear_memory());
    let counts = host.store.content_counts(&id).unwrap();
    assert_eq!(counts.pending, 0, "{counts:?}");
    assert!(counts.skipped.get("hostile").copied().unwrap_or(0) >= 4, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_that_exhausts_the_call_memory_is_skipped_and_the_next_one_works() {
    let limits = Limits { content_memory_bytes: 24 << 20, ..Limits::default() };
    let (h, id) = setup(limits).await;
    h.host
        .store
        .set_content_settings(
            &id,
            &coco_host::state::content::ContentSettings { max_download_bytes: 64 << 20, ..Default::default() },
        )
        .unwrap();
    upload(&h, "/Big/a huge.csv", "word,".repeat(6 << 20).into_bytes());
    upload(&h, "/Big/b small.txt", b"small and fine".to_vec());
    let host = Arc::new(h.host);
    sync_and_fetch(&host, &id).await;
    let docs = documents(&host, &id);
    let error = docs["/Big/a huge.csv"]["metadata"]["content_error"].as_str().unwrap_or_default();
    assert!(error.starts_with("crashed"), "{error:?}");
    assert_eq!(docs["/Big/b small.txt"]["content"], "small and fine");
}

#[tokio::test(flavor = "multi_thread")]
async fn non_ascii_names_download_and_extract() {
    let (h, id) = setup(Limits::default()).await;
    let files = [
        ("/Ünïcode/報告 2024.txt", "quarterly 報告 text"),
        ("/Ünïcode/rocket 🚀 launch.md", "# Launch 🚀\n\ncountdown"),
        ("/Ünïcode/cafe\u{301} menu.txt", "espresso and croissant"),
        ("/Ünïcode/Проекты/план.csv", "шаг,срок\nодин,завтра"),
    ];
    for (path, text) in files {
        upload(&h, path, text.as_bytes().to_vec());
    }
    let host = Arc::new(h.host);
    sync_and_fetch(&host, &id).await;
    let docs = documents(&host, &id);
    for (path, text) in files {
        assert_eq!(docs[path]["content"], text, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unchanged_files_are_not_downloaded_again_and_changed_ones_are() {
    let (h, id) = setup(Limits::default()).await;
    upload(&h, "/Docs/a.txt", b"first version".to_vec());
    upload(&h, "/Docs/b.md", b"stays the same".to_vec());
    upload(&h, "/Docs/Plan.paper", b"# Plan\n\nship the connector".to_vec());
    upload(&h, "/Docs/secret.pdf", b"%PDF-1.4 whatever".to_vec());
    h.emu.edit(0).set_restricted("/Docs/secret.pdf", true).unwrap();
    let emu = h.emu;
    let host = Arc::new(h.host);
    let first = sync_and_fetch(&host, &id).await;
    assert!(first.done >= 3, "{first:?}");
    let docs = documents(&host, &id);
    assert_eq!(docs["/Docs/Plan.paper"]["metadata"]["content_format"], "markdown", "Paper is exported as markdown");
    assert!(docs["/Docs/Plan.paper"]["content"].as_str().unwrap().contains("ship the connector"));
    let restricted = docs["/Docs/secret.pdf"]["metadata"]["content_error"].as_str().unwrap();
    assert!(restricted.starts_with("restricted"), "{restricted}");
    let fetches = |emu: &dropbox_emulator::Emulator| {
        let c = emu.counters();
        c.get("files/download") + c.get("files/export")
    };
    let before = fetches(&emu);

    // Nothing changed: no download at all.
    let again = sync_and_fetch(&host, &id).await;
    assert_eq!((again.calls, fetches(&emu)), (0, before), "{again:?}");

    // A rename keeps the bytes: no download, the content stays.
    emu.edit(0).move_entry("/Docs/b.md", "/Docs/b renamed.md").unwrap();
    let renamed = sync_and_fetch(&host, &id).await;
    assert_eq!((renamed.calls, fetches(&emu)), (0, before), "{renamed:?}");
    assert_eq!(documents(&host, &id)["/Docs/b renamed.md"]["content"], "stays the same");

    // New bytes: exactly one download, and the new text.
    emu.edit(0).upload("/Docs/a.txt", b"second version".to_vec()).unwrap();
    let changed = sync_and_fetch(&host, &id).await;
    assert_eq!((changed.calls, fetches(&emu)), (1, before + 1), "{changed:?}");
    assert_eq!(documents(&host, &id)["/Docs/a.txt"]["content"], "second version");

    // The restricted file is not retried in a loop: only a change brings it back.
    let counts = host.store.content_counts(&id).unwrap();
    assert_eq!(counts.pending, 0, "{counts:?}");
    assert_eq!(counts.skipped.get("restricted"), Some(&1), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn content_can_be_turned_off_and_on() {
    let (h, id) = setup(Limits::default()).await;
    upload(&h, "/Docs/a.txt", b"some words".to_vec());
    let host = Arc::new(h.host);
    sync_and_fetch(&host, &id).await;
    assert_eq!(documents(&host, &id)["/Docs/a.txt"]["content"], "some words");
    let off = coco_host::state::content::ContentSettings { enabled: false, ..Default::default() };
    host.store.set_content_settings(&id, &off).unwrap();
    let report = sync_and_fetch(&host, &id).await;
    assert_eq!(report.calls, 0);
    let doc = &documents(&host, &id)["/Docs/a.txt"];
    assert!(doc.get("content").is_none() && doc["metadata"].get("content_error").is_none(), "{doc}");
    host.store.set_content_settings(&id, &Default::default()).unwrap();
    sync_and_fetch(&host, &id).await;
    assert_eq!(documents(&host, &id)["/Docs/a.txt"]["content"], "some words");
}
