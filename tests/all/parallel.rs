//! Parallel initial listing: the account's cursor first, subtrees side by side, then the
//! replay from that cursor. Whatever changes during the listing, and whatever fails on one
//! shard, the index must end equal to the account, as a sequential listing leaves it.

use coco_e2e::*;
use coco_host::host::{Run, Step};
use dropbox_emulator::{Fault, FaultKind};

/// Step a run to the end; `between(step_number)` runs before each step.
async fn run_steps(h: &Harness, id: &str, mut between: impl FnMut(usize)) -> Run {
    let mut run = Run::new();
    for n in 0.. {
        between(n);
        match h.host.step(id, &mut run).await.unwrap() {
            Step::Done => return run,
            Step::Wait { delay, .. } | Step::Backoff { delay, .. } => tokio::time::sleep(delay).await,
            Step::More | Step::Restarted { .. } => {}
        }
        assert!(n < 2_000, "the listing does not end");
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_listing_matches_the_account_through_changes_made_during_it() {
    let mut h = harness(6_000, 31).await;
    h.host.default_page_limit = 150;
    h.host.listing_parallelism = 4;
    let ds = h.connect().await;
    let tree = h.emu.tree(0);
    let top: Vec<String> = tree
        .iter()
        .filter(|e| e.is_folder && e.path_lower.matches('/').count() == 1)
        .map(|e| e.path_lower.clone())
        .collect();
    assert!(top.len() >= 3, "the account has top-level folders to shard: {top:?}");
    let deep_file =
        tree.iter().find(|e| !e.is_folder && e.path_lower.matches('/').count() >= 3).unwrap().path_lower.clone();
    let emu = &h.emu;
    let before = emu.counters();
    let run = run_steps(&h, &ds.id, |n| match n {
        // While shards are in flight: changes in several subtrees, a move across them, a
        // folder deleted before or while it is listed, and a new top-level folder.
        4 => {
            let mut ns = emu.edit(0);
            ns.add("/Added during listing", true, 0).unwrap();
            ns.add("/Added during listing/new.pdf", false, 7).unwrap();
            ns.add(&format!("{}/late arrival.docx", top[0]), false, 9).unwrap();
            ns.move_entry(&deep_file, &format!("{}/moved across.txt", top[1])).unwrap();
            ns.delete(&top[2]).unwrap();
        }
        9 => {
            let mut ns = emu.edit(0);
            ns.modify(&format!("{}/late arrival.docx", top[0]), 99).unwrap();
            ns.delete("/added during listing/new.pdf").unwrap();
        }
        _ => {}
    })
    .await;
    assert_index_matches(&h, &ds.id, "", 0);
    let after = emu.counters();
    assert_eq!(after.get("files/list_folder/get_latest_cursor") - before.get("files/list_folder/get_latest_cursor"), 1);
    assert!(
        after.get("files/list_folder") - before.get("files/list_folder") > 3,
        "subtrees were listed on their own: {:?}",
        run.report
    );
    assert!(run.report.shards >= 3, "{:?}", run.report);

    // The cursor it ended with is an ordinary one: later changes arrive as deltas.
    h.emu.edit(0).add("/after.pdf", false, 1).unwrap();
    let r = h.host.sync(&ds.id, |_| {}).await.unwrap();
    assert!(r.entries <= 2, "a delta, not a re-list: {r:?}");
    assert_index_matches(&h, &ds.id, "", 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limit_or_reset_on_one_shard_and_a_fresh_run_midway_still_converge() {
    let mut h = harness(4_000, 32).await;
    h.host.default_page_limit = 100;
    h.host.listing_parallelism = 3;
    let ds = h.connect().await;
    // Two rounds in, then stop: a new run (as after a crash) resumes from the store.
    let mut first = Run::new();
    for _ in 0..4 {
        h.host.step(&ds.id, &mut first).await.unwrap();
    }
    let emu = &h.emu;
    run_steps(&h, &ds.id, |n| {
        if n == 1 {
            emu.push_fault(Fault {
                route: Some("files/list_folder/continue".into()),
                kind: FaultKind::RateLimit { retry_after: 0.05, json: true },
            });
        }
        if n == 3 {
            emu.push_fault(Fault { route: Some("files/list_folder/continue".into()), kind: FaultKind::Reset });
            emu.edit(0).add("/during the retry.txt", false, 3).unwrap();
        }
    })
    .await;
    assert_index_matches(&h, &ds.id, "", 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_folder_is_sharded_below_it() {
    let mut h = harness(3_000, 33).await;
    h.host.default_page_limit = 120;
    h.host.listing_parallelism = 4;
    let ds = h.connect().await;
    let tree = h.emu.tree(0);
    let (folder, display) = tree
        .iter()
        .filter(|e| e.is_folder && e.path_lower.matches('/').count() == 1)
        .max_by_key(|f| tree.iter().filter(|e| e.path_lower.starts_with(&format!("{}/", f.path_lower))).count())
        .map(|f| (f.path_lower.clone(), f.path_display.clone()))
        .unwrap();
    h.host.store.set_options(&ds.id, &format!("{display}/"), 0).unwrap();
    run_steps(&h, &ds.id, |_| {}).await;
    assert_index_matches(&h, &ds.id, &folder, 0);
}
