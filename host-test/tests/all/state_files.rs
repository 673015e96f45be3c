//! The state folder holds sealed secrets and compiled code the host executes: it is created
//! owner-only, and so are the database and the compiled-component cache.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::wasm;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn state_folder_and_files_are_owner_only() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("nested/state");
    let out = Command::new(env!("CARGO_BIN_EXE_coco-host"))
        .args(["connect", "--client-id", "k", "--client-secret", "s", "--dropbox", "http://127.0.0.1:9"])
        .env("COCO_STATE_DIR", &state)
        .env("COCO_DROPBOX_WASM", wasm())
        .env("COCO_MASTER_KEY", "state-files-master-key-0123456789abcdef")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("coco.sqlite")), 0o600);
    let cache = state.join("cache");
    assert_eq!(mode(&cache), 0o700);
    let compiled: Vec<_> = std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(!compiled.is_empty(), "the compiled component is cached");
    for f in compiled {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    for side in ["coco.sqlite-wal", "coco.sqlite-shm"] {
        let p = state.join(side);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{side}");
        }
    }
}
