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

fn host(state: &std::path::Path, key: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_coco-host"))
        .args(args)
        .env("COCO_STATE_DIR", state)
        .env("COCO_DROPBOX_WASM", wasm())
        .env("COCO_MASTER_KEY", key)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

const KEY: &str = "state-files-master-key-0123456789abcdef";
const CONNECT: [&str; 7] = ["connect", "--client-id", "k", "--client-secret", "s", "--dropbox", "http://127.0.0.1:9"];

/// A compiled component in the cache runs only if its MAC under the master key verifies:
/// whoever can write the folder cannot make the host execute their code.
#[test]
fn a_tampered_compiled_component_is_not_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    assert!(host(&state, KEY, &CONNECT).status.success());
    let cached: Vec<_> = std::fs::read_dir(state.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(cached.len(), 2, "the connector and the extractor: {cached:?}");
    let mut tampered = Vec::new();
    for file in &cached {
        assert_eq!(mode(&file.with_extension("cwasm.mac")), 0o600);
        let mut bytes = std::fs::read(file).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(file, &bytes).unwrap();
        tampered.push(bytes);
    }
    let out = host(&state, KEY, &CONNECT);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("MAC does not verify").count(), 2, "{stderr}");
    for (file, bytes) in cached.iter().zip(&tampered) {
        assert_ne!(&std::fs::read(file).unwrap(), bytes, "recompiled and replaced");
    }
    // The same file under another master key is not trusted either.
    let other = "another-master-key-for-a-second-state-000";
    let state2 = tmp.path().join("state2");
    std::fs::create_dir_all(state2.join("cache")).unwrap();
    for f in std::fs::read_dir(state.join("cache")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, state2.join("cache").join(f.file_name().unwrap())).unwrap();
    }
    let out = host(&state2, other, &CONNECT);
    assert!(String::from_utf8_lossy(&out.stderr).contains("MAC does not verify"));
}

/// A wrong COCO_MASTER_KEY fails at once with one line and changes nothing.
#[test]
fn a_wrong_master_key_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    assert!(host(&state, KEY, &CONNECT).status.success());
    let db = std::fs::read(state.join("coco.sqlite")).unwrap();
    let out = host(&state, "a-different-master-key-0123456789abcdef", &CONNECT);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: COCO_MASTER_KEY is not the key this state was created with"), "{err}");
    assert_eq!(std::fs::read(state.join("coco.sqlite")).unwrap(), db);
    assert!(host(&state, KEY, &["status"]).status.success());
}
