//! Several `serve` replicas on one PostgreSQL state (`--state postgres://…`): they share 100
//! tenants, never sync one datasource at once, deliver to one Coco Server in order, and when
//! one is killed with SIGKILL mid-run the others finish its tenants. Needs the throwaway
//! server `./dev test` starts (`COCO_TEST_POSTGRES`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use dropbox_emulator::{Config, Emulator};

use crate::receivers::{Kind, Receiver, COCO_TOKEN};
use crate::serve::{connect, datasource_id, expected, indexed, serve_on, until, Served, MASTER};
use coco_host::keys::Keys;
use coco_host::state::{LeaseEvent, Store};

const APP: (&str, &str) = ("serve-app", "serve-app-secret");
const TENANTS: usize = 100;

fn scratch_state() -> String {
    let admin = std::env::var("COCO_TEST_POSTGRES").expect(
        "the replica tests need a PostgreSQL server: run them through ./dev test, or set \
         COCO_TEST_POSTGRES=postgres://user@127.0.0.1:port/postgres",
    );
    coco_host::db::scratch_database(&admin, "replicas").expect("create a scratch database")
}

/// Replay a datasource's lease log: every page and release comes from the current holder, a
/// new holder appears only after a release or as a takeover of exactly the current one.
/// Returns the takeovers (previous holder, new holder).
fn check_lease_log(id: &str, log: &[LeaseEvent]) -> Vec<(String, String)> {
    let mut current: Option<&str> = None;
    let mut takeovers = Vec::new();
    for e in log {
        match e.event.as_str() {
            "acquired" => {
                assert_eq!(current, None, "{id}: {} acquired while {current:?} held it: {log:#?}", e.holder);
                current = Some(&e.holder);
            }
            "took-over-dead" | "took-over-expired" => {
                assert_eq!(e.previous.as_deref(), current, "{id}: a takeover of a lease nobody held: {log:#?}");
                takeovers.push((e.previous.clone().unwrap_or_default(), e.holder.clone()));
                current = Some(&e.holder);
            }
            "page" => assert_eq!(current, Some(e.holder.as_str()), "{id}: a page outside its lease: {log:#?}"),
            "released" => {
                assert_eq!(current, Some(e.holder.as_str()), "{id}: a release by a non-holder: {log:#?}");
                current = None;
            }
            other => panic!("{id}: unknown lease event {other}"),
        }
    }
    takeovers
}

fn pid_of(holder: &str) -> u32 {
    holder.split(':').nth(1).and_then(|p| p.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_100_tenants_and_finish_a_killed_ones_work() {
    let sizes: Vec<usize> = (0..TENANTS).map(|i| 150 + (i * 37) % 400).collect();
    let emu =
        Emulator::start(Config::accounts(41, &sizes, APP.0, APP.1), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    emu.set_latency(Duration::from_millis(4));
    let receiver = Receiver::start(Kind::Coco).await;
    let coco = receiver.url();
    let tmp = tempfile::tempdir().unwrap();
    let state = scratch_state();
    let flags = [
        "--no-longpoll",
        // Listing and delivery only: extracting ~15,000 files would take minutes on 2 cores.
        "--content-concurrency",
        "0",
        "--interval",
        "2",
        "--page-limit",
        "60",
        "--lease-ttl",
        "6",
        "--sink",
        "coco",
        "--coco-url",
        &coco,
        "--coco-server-token",
        COCO_TOKEN,
    ];
    let mut replicas: Vec<Option<Served>> = Vec::new();
    for r in 0..3 {
        replicas.push(Some(serve_on(&emu, state.as_ref(), &tmp.path().join(format!("r{r}")), &flags).await));
    }
    let ids: Vec<String> = (0..TENANTS).map(|a| datasource_id(&emu, a)).collect();
    let store = Store::open_postgres(&state, Keys::from_master(MASTER.as_bytes()).unwrap()).unwrap();

    // Replica 0 dies with SIGKILL while it holds the lease of a tenant it is still listing. The
    // tenants are connected one by one, each through its own replica (a survivor once replica 0
    // is gone), and replica 0 is checked between connects: on a loaded machine the listings can
    // all be over by the time the last tenant is connected, so waiting until then may miss it.
    let victim_pid = replicas[0].as_ref().unwrap().child.id();
    let victim_holds = |id: &str| store.lease_holder(id).unwrap().is_some_and(|h| pid_of(&h) == victim_pid);
    let mid_run = |ids: &[String]| ids.iter().any(|id| victim_holds(id) && store.sync_state(id).unwrap().listing);
    let mut held_by_victim = Vec::new();
    let mut kill_victim = |replicas: &mut Vec<Option<Served>>| {
        let mut victim = replicas[0].take().unwrap();
        victim.child.kill().unwrap();
        victim.child.wait().unwrap();
        held_by_victim = ids.iter().filter(|id| victim_holds(id)).cloned().collect();
        assert!(!held_by_victim.is_empty());
    };
    for account in 0..TENANTS {
        if replicas[0].is_some() && mid_run(&ids[..account]) {
            kill_victim(&mut replicas);
        }
        let replica = if replicas[account % 3].is_some() { account % 3 } else { 1 + account % 2 };
        let base = &replicas[replica].as_ref().unwrap().base;
        assert_eq!(connect(&emu, base, account).await.status, 200);
    }
    if replicas[0].is_some() {
        until("replica 0 holding a lease mid-run", Duration::from_secs(60), || mid_run(&ids)).await;
        kill_victim(&mut replicas);
    }
    // Accounts keep changing while the two survivors work.
    for round in 0..3usize {
        tokio::time::sleep(Duration::from_millis(400)).await;
        for account in (round..TENANTS).step_by(7) {
            let mut ns = emu.edit(account);
            ns.add(&format!("/after kill {round}.txt"), false, round as u64).unwrap();
            let tree = ns.tree();
            let _ = ns.delete(&tree[tree.len() / 3].path_lower);
        }
    }

    until("every index == its account", Duration::from_secs(240), || {
        (0..TENANTS).all(|a| indexed(&store, &ids[a]) == expected(&emu, a, &ids[a]))
    })
    .await;
    assert_eq!(emu.counters().overlapping_list_calls, 0, "a datasource was listed by two replicas at once");

    // The lease log says the same: one holder at a time, and the victim's unfinished tenants
    // were taken over by a survivor.
    let mut taken_from_victim = BTreeSet::new();
    let mut holders = BTreeSet::new();
    for id in &ids {
        let log = store.lease_log(id).unwrap();
        holders.extend(log.iter().map(|e| pid_of(&e.holder)));
        for (from, to) in check_lease_log(id, &log) {
            if pid_of(&from) == victim_pid {
                assert_ne!(pid_of(&to), victim_pid);
                taken_from_victim.insert(id.clone());
            }
        }
    }
    for id in &held_by_victim {
        assert!(taken_from_victim.contains(id), "{id}'s lease was held by the killed replica and never taken over");
    }
    assert!(holders.len() >= 3, "all three replicas synced tenants ({holders:?})");

    // Coco Server holds every tenant's index: nothing lost, nothing left over from deleted
    // entries.
    let index_now = || {
        let mut want = BTreeMap::new();
        for id in &ids {
            store
                .for_each_document(id, |doc, json| {
                    want.insert(doc.to_string(), serde_json::from_str::<serde_json::Value>(json).unwrap());
                    Ok(())
                })
                .unwrap();
        }
        want
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (got, want) = (receiver.docs(), receiver.comparable(index_now()));
        if got == want {
            break;
        }
        if std::time::Instant::now() > deadline {
            let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
            let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
            let differ: Vec<&String> = want.keys().filter(|k| got.get(*k).is_some_and(|g| g != &want[*k])).collect();
            panic!(
                "Coco Server does not hold every index: {} missing, {} extra, {} differ; e.g. {:?}\nwant {}\ngot  {}",
                missing.len(),
                extra.len(),
                differ.len(),
                missing.first().or(extra.first()).or(differ.first()),
                differ.first().map(|k| want[*k].to_string()).unwrap_or_default(),
                differ.first().map(|k| got[*k].to_string()).unwrap_or_default(),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Quiet accounts: the two survivors claim turns instead of both syncing everything, so each
    // datasource is synced about once per interval (2 s, ±10 %), not once per replica.
    let window = Duration::from_secs(10);
    let before = emu.counters().get("files/list_folder/continue");
    tokio::time::sleep(window).await;
    let syncs = (emu.counters().get("files/list_folder/continue") - before) as usize;
    // At most one sync (one list_folder/continue) per 1.8 s per datasource, plus one at the
    // window's edge; two replicas each syncing everything would make about twice that.
    let most = TENANTS * (window.as_millis() as usize / 1800 + 1);
    eprintln!("quiet window: {syncs} syncs, at most {most}");
    assert!(
        syncs <= most,
        "{syncs} syncs in {window:?} of quiet accounts (at most {most}): replicas synced the same datasources"
    );
    drop(replicas);
    emu.stop().await;
}
