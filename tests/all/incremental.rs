//! Incremental sync through the component: deltas from the saved cursor, deletes and moves,
//! cursor resets with sweep, configured root paths, and team spaces. After every scenario the
//! index must equal the account.

use coco_e2e::*;
use coco_host::host::HostError;
use coco_host::runtime::Limits;
use dropbox_emulator::{Config, Fault, FaultKind};

fn add(h: &Harness, path: &str, folder: bool) -> String {
    h.emu.edit(0).add(path, folder, if folder { 0 } else { 42 }).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn deltas_apply_only_what_changed() {
    let mut h = harness(5_000, 21).await;
    h.host.default_page_limit = 700;
    let ds = h.connect().await;
    h.host.sync(&ds.id, |_| {}).await.unwrap();
    assert_index_matches(&h, &ds.id, "", 0);

    // Ten changes of every kind.
    let (file, folder) = {
        let tree = h.emu.tree(0);
        let file = tree.iter().find(|e| !e.is_folder && e.path_lower.matches('/').count() >= 2).unwrap();
        let folder = tree.iter().find(|e| e.is_folder && e.path_lower.matches('/').count() == 2).unwrap();
        (file.path_lower.clone(), folder.path_lower.clone())
    };
    add(&h, "/New Folder", true);
    add(&h, "/New Folder/new file.pdf", false);
    add(&h, "/top level.docx", false);
    {
        let mut ns = h.emu.edit(0);
        ns.modify("/top level.docx", 99).unwrap();
        ns.move_entry(&file, "/New Folder/moved here.txt").unwrap();
        ns.delete(&folder).unwrap();
        ns.move_entry("/new folder", "/Renamed Folder").unwrap();
    }
    let before = h.emu.counters();
    let r = h.host.sync(&ds.id, |_| {}).await.unwrap();
    let after = h.emu.counters();
    assert_eq!(after.get("files/list_folder"), before.get("files/list_folder"), "no full listing");
    assert_eq!(after.get("files/list_folder/continue") - before.get("files/list_folder/continue"), r.pages);
    assert!(r.entries < 20, "only the changes were listed: {r:?}");
    assert!(r.deleted > 1, "the folder's subtree went: {r:?}");
    assert_index_matches(&h, &ds.id, "", 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn renaming_a_folder_with_1000_descendants_moves_every_document() {
    let mut h = harness(200, 22).await;
    h.host.default_page_limit = 300;
    add(&h, "/Big", true);
    for d in 0..10 {
        add(&h, &format!("/Big/sub {d}"), true);
        for f in 0..99 {
            add(&h, &format!("/Big/sub {d}/file {f}.pdf"), false);
        }
    }
    let ds = h.connect().await;
    h.host.sync(&ds.id, |_| {}).await.unwrap();
    let ids_before: std::collections::BTreeSet<_> = actual_index(&h, &ds.id).into_keys().collect();
    h.emu.edit(0).move_entry("/Big", "/Archive 2024 #1").unwrap();
    let r = h.host.sync(&ds.id, |_| {}).await.unwrap();
    assert!(r.pages >= 4, "the move spans pages: {r:?}");
    assert_index_matches(&h, &ds.id, "", 0);
    let after = actual_index(&h, &ds.id);
    let ids_after: std::collections::BTreeSet<_> = after.keys().cloned().collect();
    assert_eq!(ids_before, ids_after, "same documents, new paths");
    assert_eq!(after.values().filter(|p| p.starts_with("/Archive 2024 #1/")).count(), 1000);
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_subtree_removes_everything_below_it_and_nothing_else() {
    let h = harness(300, 23).await;
    add(&h, "/Keep", true);
    add(&h, "/Keep/a.txt", false);
    add(&h, "/Kill", true);
    add(&h, "/Kill/deep", true);
    add(&h, "/Kill/deep/b.txt", false);
    add(&h, "/Kill more.txt", false); // shares the prefix text, not the folder
    let ds = h.connect().await;
    h.host.sync(&ds.id, |_| {}).await.unwrap();
    let before = h.host.store.document_count(&ds.id).unwrap();
    h.emu.edit(0).delete("/Kill").unwrap();
    let r = h.host.sync(&ds.id, |_| {}).await.unwrap();
    assert_eq!(r.deleted, 3);
    assert_eq!(h.host.store.document_count(&ds.id).unwrap(), before - 3);
    assert_index_matches(&h, &ds.id, "", 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn moves_out_of_and_into_the_configured_path() {
    let h = harness(300, 24).await;
    for (p, folder) in
        [("/Inside", true), ("/Inside/a.txt", false), ("/Inside/sub", true), ("/Inside/sub/c.txt", false)]
    {
        add(&h, p, folder);
    }
    for (p, folder) in [("/Outside", true), ("/Outside/b.txt", false)] {
        add(&h, p, folder);
    }
    let ds = h.connect().await;
    // "Inside/" is normalised to "/Inside".
    h.host.store.set_options(&ds.id, "Inside/", 0).unwrap();
    h.host.sync(&ds.id, |_| {}).await.unwrap();
    assert_index_matches(&h, &ds.id, "/inside", 0);
    assert_eq!(h.host.store.document_count(&ds.id).unwrap(), 4);
    {
        let mut ns = h.emu.edit(0);
        ns.move_entry("/Inside/a.txt", "/Outside/a.txt").unwrap();
        ns.move_entry("/Outside/b.txt", "/Inside/b.txt").unwrap();
        ns.move_entry("/Inside/sub", "/Outside/sub").unwrap();
        ns.add("/Outside/ignored.txt", false, 1).unwrap();
    }
    h.host.sync(&ds.id, |_| {}).await.unwrap();
    assert_index_matches(&h, &ds.id, "/inside", 0);
    assert_eq!(h.host.store.document_count(&ds.id).unwrap(), 2, "/Inside and /Inside/b.txt");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_case_only_rename_updates_paths_and_categories_in_place() {
    let h = harness(100, 25).await;
    add(&h, "/Docs", true);
    add(&h, "/Docs/Plan.pdf", false);
    let ds = h.connect().await;
    h.host.sync(&ds.id, |_| {}).await.unwrap();
    h.emu.edit(0).move_entry("/Docs", "/DOCS").unwrap();
    let r = h.host.sync(&ds.id, |_| {}).await.unwrap();
    assert_eq!(r.deleted, 0, "path_lower did not change: nothing to delete");
    assert_index_matches(&h, &ds.id, "", 0);
    let mut plan = None;
    h.host
        .store
        .for_each_document(&ds.id, |_, json| {
            if json.contains("Plan.pdf") {
                plan = Some(serde_json::from_str::<serde_json::Value>(json).unwrap());
            }
            Ok(())
        })
        .unwrap();
    let plan = plan.unwrap();
    assert_eq!(plan["categories"], serde_json::json!(["DOCS"]));
    assert_eq!(plan["_system"]["parent_path"], "/DOCS/");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cursor_reset_relists_and_sweeps_what_is_gone() {
    let mut h = harness(3_000, 26).await;
    h.host.default_page_limit = 800;
    let ds = h.connect().await;
    h.host.sync(&ds.id, |_| {}).await.unwrap();
    let gone: Vec<String> = h.emu.tree(0).into_iter().filter(|e| !e.is_folder).take(25).map(|e| e.path_lower).collect();
    {
        let mut ns = h.emu.edit(0);
        for p in &gone {
            ns.delete(p).unwrap();
        }
        ns.reset_cursors();
    }
    let listings = h.emu.counters().get("files/list_folder");
    let r = h.host.sync(&ds.id, |_| {}).await.unwrap();
    assert_eq!(r.resets, 1);
    assert_eq!(h.emu.counters().get("files/list_folder"), listings + 1, "one new full listing");
    assert!(r.swept >= 20, "documents the new listing did not see were swept: {r:?}");
    assert_index_matches(&h, &ds.id, "", 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_configured_folder_is_named() {
    let h = harness(50, 27).await;
    let ds = h.connect().await;
    h.host.store.set_options(&ds.id, "/No Such Folder", 0).unwrap();
    let err = h.host.sync(&ds.id, |_| {}).await.unwrap_err();
    assert!(matches!(&err, HostError::Failing { detail, .. } if detail.contains("\"/No Such Folder\"")), "{err}");
    let stored = h.host.store.datasource(&ds.id).unwrap();
    assert_eq!(stored.status, coco_host::state::Status::Failing);
}

#[tokio::test(flavor = "multi_thread")]
async fn team_space_is_listed_through_path_root_and_a_changed_root_relists() {
    let mut config = Config::single(31, 600, CLIENT_ID, CLIENT_SECRET);
    config.accounts[0].team_folder = Some("Team Shared".into());
    let mut h = harness_with(config, Limits::default()).await;
    h.host.default_page_limit = 250;
    let ds = h.connect().await;
    let root = &ds.profile.root_info;
    assert!(root.is_team && root.root_namespace_id != root.home_namespace_id, "{root:?}");
    assert_eq!(root.home_path.as_deref(), Some("/Franz Ferdinand"));

    h.host.sync(&ds.id, |_| {}).await.unwrap();
    assert_index_matches(&h, &ds.id, "", 0);
    let docs = actual_index(&h, &ds.id);
    assert!(docs.values().any(|p| p.starts_with("/Team Shared/")), "team folder indexed");
    assert!(docs.values().any(|p| p.starts_with("/Franz Ferdinand/")), "member folder indexed");

    // Without the header, the same account shows only the member folder, re-rooted.
    let home_root = coco_host::state::RootRecord { is_team: false, ..ds.profile.root_info.clone() };
    h.host.store.set_root_and_restart(&ds.id, &home_root).unwrap();
    h.host.sync(&ds.id, |_| {}).await.unwrap();
    let home_only = actual_index(&h, &ds.id);
    assert!(!home_only.values().any(|p| p.contains("Team Shared")), "team folder invisible without the header");
    assert_index_matches(&h, &ds.id, "/franz ferdinand", "/Franz Ferdinand".len());

    // Back to the team root; then the member moves to another team space: 422 invalid_root.
    h.host.store.set_root_and_restart(&ds.id, &ds.profile.root_info).unwrap();
    h.host.sync(&ds.id, |_| {}).await.unwrap();
    let moved_to = h.emu.edit(0).change_team_root();
    let r = h.host.sync(&ds.id, |_| {}).await.unwrap();
    assert_eq!(r.resets, 1, "root changed → full listing under the new root");
    let new_root = h.host.store.datasource(&ds.id).unwrap().profile.root_info;
    assert_eq!(new_root.root_namespace_id, moved_to);
    assert_index_matches(&h, &ds.id, "", 0);
}

/// Every fault kind × 5 seeds: a full sync, ten changes, an incremental sync; the index must
/// equal the account every time.
#[tokio::test(flavor = "multi_thread")]
async fn seeded_fault_matrix_ends_with_index_equal_to_account() {
    let kinds = [
        FaultKind::Status { status: 500 },
        FaultKind::Status { status: 502 },
        FaultKind::Status { status: 503 },
        FaultKind::RateLimit { retry_after: 0.01, json: true },
        FaultKind::RateLimit { retry_after: 0.01, json: false },
        FaultKind::Reset,
        FaultKind::Garbage,
        FaultKind::Truncate,
        FaultKind::Hangup,
        FaultKind::Delay { ms: 400 },
    ];
    // Slow answers must hit the host's first-byte timeout.
    let limits = Limits { first_byte_timeout: std::time::Duration::from_millis(150), ..Limits::default() };
    for kind in kinds {
        let mut recoveries = 0;
        for seed in 0..5u64 {
            let config = Config::single(100 + seed, 1_200, CLIENT_ID, CLIENT_SECRET);
            let mut h = harness_with(config, limits.clone()).await;
            h.host.default_page_limit = 150;
            h.host.retry.max_attempts = 12;
            // A reset on 30% of requests restarts the listing many times in one run: adversarial
            // on purpose here; the bound itself is tested below.
            h.host.retry.max_restarts = 1_000;
            let ds = h.connect().await;
            h.emu.set_fault_plan(Some(dropbox_emulator::FaultPlan::new(seed, 0.3, vec![kind.clone()])));
            let first = h.host.sync(&ds.id, |_| {}).await.unwrap_or_else(|e| panic!("{kind:?} seed {seed}: {e}"));
            assert_index_matches(&h, &ds.id, "", 0);
            {
                let mut ns = h.emu.edit(0);
                let victims: Vec<String> =
                    ns.tree().into_iter().skip(seed as usize * 7).step_by(97).take(5).map(|e| e.path_lower).collect();
                for v in &victims {
                    let _ = ns.delete(v);
                }
                for i in 0..5 {
                    ns.add(&format!("/fault {seed} {i}.pdf"), false, i).unwrap();
                }
            }
            let second = h.host.sync(&ds.id, |_| {}).await.unwrap_or_else(|e| panic!("{kind:?} seed {seed}: {e}"));
            assert_index_matches(&h, &ds.id, "", 0);
            recoveries += first.retries
                + first.rate_limited
                + first.resets
                + second.retries
                + second.rate_limited
                + second.resets;
        }
        eprintln!("{kind:?}: {recoveries} recoveries over 5 seeds");
        assert!(recoveries >= 3, "{kind:?}: the faults were not exercised ({recoveries} recoveries)");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_are_bounded_and_leave_the_cursor_where_it_was() {
    let h = harness(500, 28).await;
    let ds = h.connect().await;
    h.host.sync(&ds.id, |_| {}).await.unwrap();
    let cursor = h.host.store.sync_state(&ds.id).unwrap().cursor;
    h.emu.set_fault_plan(Some(dropbox_emulator::FaultPlan::new(1, 1.0, vec![FaultKind::Status { status: 500 }])));
    let err = h.host.sync(&ds.id, |_| {}).await.unwrap_err();
    assert!(matches!(&err, HostError::Failing { detail, .. } if detail.contains("transient")), "{err}");
    assert_eq!(h.emu.counters().faults_injected, u64::from(h.host.retry.max_attempts) + 1);
    assert_eq!(h.host.store.sync_state(&ds.id).unwrap().cursor, cursor, "cursor untouched");
    // Once Dropbox recovers, the same datasource syncs again and is ok.
    h.emu.set_fault_plan(None);
    h.host.sync(&ds.id, |_| {}).await.unwrap();
    assert_eq!(h.host.store.datasource(&ds.id).unwrap().status, coco_host::state::Status::Ok);
}

/// A cursor that resets on every `continue` would list forever: the run ends as `failing`
/// after the bounded number of restarts, naming why; the datasource syncs again afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn endless_resets_are_bounded_and_end_as_failing() {
    let mut h = harness(600, 41).await;
    h.host.default_page_limit = 100;
    let ds = h.connect().await;
    let restarts = h.host.retry.max_restarts;
    for _ in 0..=restarts {
        h.emu.push_fault(Fault { route: Some("files/list_folder/continue".into()), kind: FaultKind::Reset });
    }
    let err = h.host.sync(&ds.id, |_| {}).await.unwrap_err();
    assert!(matches!(&err, HostError::Failing { detail, .. } if detail.contains("restarted")), "{err}");
    let stored = h.host.store.datasource(&ds.id).unwrap();
    assert_eq!(stored.status, coco_host::state::Status::Failing);
    assert!(stored.status_detail.unwrap().contains("cursor-reset"));
    assert_eq!(h.emu.counters().get("files/list_folder"), u64::from(restarts) + 1);
    h.host.sync(&ds.id, |_| {}).await.unwrap();
    assert_eq!(h.host.store.datasource(&ds.id).unwrap().status, coco_host::state::Status::Ok);
    assert_index_matches(&h, &ds.id, "", 0);
}

/// Dropbox may ask for hours: the host waits at most `max_server_wait` at once, and the status
/// says until when while it waits.
#[tokio::test(flavor = "multi_thread")]
async fn a_huge_retry_after_is_capped_and_the_status_says_until_when() {
    let mut h = harness(300, 42).await;
    h.host.retry.max_server_wait = std::time::Duration::from_millis(50);
    let ds = h.connect().await;
    h.emu.push_fault(Fault { route: None, kind: FaultKind::RateLimit { retry_after: 7200.0, json: true } });
    let mut seen = Vec::new();
    let report = h
        .host
        .sync(&ds.id, |e| {
            if let coco_host::host::SyncEvent::RateLimited { wait, capped } = e {
                let st = h.host.store.datasource(&ds.id).unwrap();
                seen.push((*wait, *capped, st.status, st.status_detail));
            }
        })
        .await
        .unwrap();
    assert_eq!(report.rate_limited, 1);
    let (wait, capped, status, detail) = seen.pop().unwrap();
    assert_eq!(wait, std::time::Duration::from_millis(50));
    assert!(capped);
    assert_eq!(status, coco_host::state::Status::RateLimited);
    assert!(detail.unwrap().starts_with("rate-limited until 20"));
    assert_eq!(h.host.store.datasource(&ds.id).unwrap().status, coco_host::state::Status::Ok);
    assert_index_matches(&h, &ds.id, "", 0);
}

/// A Dropbox (or proxy) that keeps answering the same cursor with no entries and `has_more`
/// would loop forever: the run stops as `failing` after the bounded number of such pages.
#[tokio::test(flavor = "multi_thread")]
async fn pages_without_progress_are_bounded() {
    let h = harness(200, 43).await;
    let ds = h.connect().await;
    h.host.sync(&ds.id, |_| {}).await.unwrap();
    let cursor = h.host.store.sync_state(&ds.id).unwrap().cursor.unwrap();
    let stuck = serde_json::json!({ "entries": [], "cursor": cursor, "has_more": true }).to_string();
    for _ in 0..=h.host.retry.max_stalled_pages {
        h.emu.push_fault(Fault {
            route: Some("files/list_folder/continue".into()),
            kind: FaultKind::Raw { status: 200, retry_after: None, body: stuck.clone().into_bytes() },
        });
    }
    let err = h.host.sync(&ds.id, |_| {}).await.unwrap_err();
    assert!(matches!(&err, HostError::Failing { detail, .. } if detail.contains("no progress")), "{err}");
    assert_eq!(h.host.store.sync_state(&ds.id).unwrap().cursor.as_deref(), Some(cursor.as_str()));
    h.host.sync(&ds.id, |_| {}).await.unwrap();
    assert_index_matches(&h, &ds.id, "", 0);
}

/// A listing commits several pages in one transaction. Pages fetched but not yet committed
/// are lost with the process and fetched again from the stored cursor; a failure mid-group
/// first commits the pages fetched before it, so its replay refetches none of them.
#[tokio::test(flavor = "multi_thread")]
async fn a_listing_commits_pages_in_groups_and_loses_nothing_between_them() {
    let mut h = harness(3_000, 43).await;
    h.host.default_page_limit = 250;
    // Commits once 1,000 documents wait: 4 pages, or 5 when skipped entries (.DS_Store) thin them.
    h.host.listing_commit_docs = 1_000;
    let ds = h.connect().await;

    // Three pages fetched, none committed yet; then the process "dies" (the run is dropped).
    h.host.store.acquire_lease(&ds.id, &h.host.lease_holder, std::time::Duration::from_secs(60)).unwrap();
    let mut run = coco_host::host::Run::new();
    for _ in 0..3 {
        assert!(matches!(h.host.step(&ds.id, &mut run).await.unwrap(), coco_host::host::Step::More));
    }
    assert_eq!(run.pending.len(), 3);
    assert_eq!(h.host.store.sync_state(&ds.id).unwrap().cursor, None, "nothing committed yet");
    assert_eq!(h.host.store.document_count(&ds.id).unwrap(), 0);
    drop(run);
    h.host.store.release_lease(&ds.id, &h.host.lease_holder).unwrap();

    // The next run starts over from the stored (empty) cursor. Its 3rd `continue` fails once:
    // the three pages before it are committed, and the replay fetches only the failed one.
    let listed_before = h.emu.counters().get("files/list_folder");
    let continued_before = h.emu.counters().get("files/list_folder/continue");
    for _ in 0..2 {
        h.emu.push_fault(Fault { route: Some("files/list_folder/continue".into()), kind: FaultKind::Delay { ms: 0 } });
    }
    h.emu.push_fault(Fault {
        route: Some("files/list_folder/continue".into()),
        kind: FaultKind::Status { status: 500 },
    });
    let mut commits = Vec::new();
    let report = h
        .host
        .sync(&ds.id, |e| {
            if let coco_host::host::SyncEvent::Page { pages, .. } = e {
                commits.push(*pages);
            }
        })
        .await
        .unwrap();
    let expected = expected_index(&h, &ds.id, "", 0).len() as u64;
    let pages = expected.div_ceil(250);
    assert_eq!(report.pages, pages);
    assert_eq!(commits.first(), Some(&3), "the failure committed the 3 pages fetched before it: {commits:?}");
    assert!(commits.windows(2).all(|w| w[1] - w[0] <= 5), "at most 5 pages per commit: {commits:?}");
    assert!((commits.len() as u64) < pages, "pages were grouped: {commits:?}");
    assert_eq!(h.emu.counters().get("files/list_folder") - listed_before, 1);
    assert_eq!(
        h.emu.counters().get("files/list_folder/continue") - continued_before,
        pages - 1 + 1,
        "every page fetched once, plus the one replay"
    );
    assert_eq!(h.host.store.sync_state(&ds.id).unwrap().pages as u64, pages);
    assert_index_matches(&h, &ds.id, "", 0);
}
