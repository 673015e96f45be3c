//! The release layout (`deploy/layout.sh`, what `./dev dist` packs) laid out from the test
//! build into a temporary prefix and run from there, with nothing pointing into the build
//! tree: `--version` names the installed components, `serve` connects and syncs against the
//! emulator, SIGTERM exits 0; and the systemd unit passes `systemd-analyze verify`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dropbox_emulator::{Config, Emulator};

use crate::serve::{datasource_id, expected, indexed, open_store};
use crate::tls::{spawn_serve, terminate, APP};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_layout_runs_from_a_prefix_outside_the_build_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("opt/coco-dropbox");
    let laid = Command::new(repo().join("deploy/layout.sh"))
        .arg(env!("CARGO_BIN_EXE_coco-host"))
        .arg(&prefix)
        .output()
        .unwrap();
    assert!(laid.status.success(), "{}", String::from_utf8_lossy(&laid.stderr));
    let bin = prefix.join("bin/coco-host");
    for build in coco_host::paths::component_builds() {
        let file = format!("lib/coco-dropbox/{}.wasm", build.name);
        assert!(prefix.join(&file).is_file(), "{file} in the layout");
    }
    for file in ["LICENSE", "README.md", "share/coco-dropbox/coco-host.service"] {
        assert!(prefix.join(file).is_file(), "{file} in the layout");
    }

    // `--version` names each component it would run, from the prefix.
    let version = Command::new(&bin)
        .arg("--version")
        .env_remove("COCO_DROPBOX_WASM")
        .env_remove("COCO_DROPBOX_EXTRACTOR_WASM")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&version.stdout).into_owned();
    let lib = std::fs::canonicalize(prefix.join("lib/coco-dropbox")).unwrap();
    for name in ["connector", "extractor"] {
        let line = said.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{said}"));
        assert!(line.contains("coco:dropbox@") && line.contains("sha256:"), "{line}");
        assert!(line.ends_with(&lib.join(format!("{name}.wasm")).display().to_string()), "{line}");
    }

    // serve from the prefix, its working folder elsewhere, no variable naming a component.
    let emu = Emulator::start(Config::single(41, 250, APP.0, APP.1), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let state = tmp.path().join("var/state");
    let served = spawn_serve(&bin, &emu.base_url(), &state, None, &[], &[]).await;
    let page = crate::serve::connect(&emu, &served.base, 0).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let ds = datasource_id(&emu, 0);
    let want = expected(&emu, 0, &ds);
    let deadline = Instant::now() + Duration::from_secs(120);
    while indexed(&open_store(&state), &ds).len() < want.len() {
        assert!(Instant::now() < deadline, "{}", std::fs::read_to_string(&served.stderr).unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(indexed(&open_store(&state), &ds), want);
    let stderr = served.stderr.clone();
    let status = terminate(served);
    assert!(status.success(), "SIGTERM exits 0 ({status}): {}", std::fs::read_to_string(&stderr).unwrap());

    // The unit, pointed at this prefix, as systemd reads it.
    let Ok(analyze) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("notice: systemd-analyze is not installed: the unit was not verified");
        return;
    };
    assert!(analyze.status.success());
    let unit = std::fs::read_to_string(prefix.join("share/coco-dropbox/coco-host.service")).unwrap();
    let unit_path = tmp.path().join("coco-host.service");
    std::fs::write(&unit_path, unit.replace("/opt/coco-dropbox", prefix.to_str().unwrap())).unwrap();
    let verified = Command::new("systemd-analyze").arg("verify").arg(&unit_path).output().unwrap();
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
}
