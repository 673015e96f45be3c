//! Where the builds put the component, and where the host keeps its files.

use std::path::{Path, PathBuf};

/// The workspace root (this crate lives in `host-test/`).
fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// `cargo build --target wasm32-wasip2 --release`: the connector component.
pub fn connector_wasm() -> PathBuf {
    workspace().join("target/wasm32-wasip2/release/coco_dropbox.wasm")
}

/// The extractor component (`--features extractor --target-dir target/extractor`):
/// `content.fetch-content`. `COCO_DROPBOX_EXTRACTOR_WASM` overrides it.
pub fn extractor_wasm() -> PathBuf {
    std::env::var_os("COCO_DROPBOX_EXTRACTOR_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/extractor/wasm32-wasip2/release/coco_dropbox.wasm"))
}

/// The HTTP facade build (`--features http-handler --target-dir target/facade`).
pub fn facade_wasm() -> PathBuf {
    workspace().join("target/facade/wasm32-wasip2/release/coco_dropbox.wasm")
}

/// The Spin build (`--features spin --target-dir target/spin`).
pub fn spin_wasm() -> PathBuf {
    workspace().join("target/spin/wasm32-wasip2/release/coco_dropbox.wasm")
}

/// The serverless facade for `wasmtime serve -Skeyvalue` (`--features keyvalue --target-dir target/facade-kv`).
pub fn facade_kv_wasm() -> PathBuf {
    workspace().join("target/facade-kv/wasm32-wasip2/release/coco_dropbox.wasm")
}

/// The serverless facade for Spin (`--features spin,keyvalue --target-dir target/spin-kv`).
pub fn spin_kv_wasm() -> PathBuf {
    workspace().join("target/spin-kv/wasm32-wasip2/release/coco_dropbox.wasm")
}

/// Create `dir` (and parents) readable by its owner only: it holds sealed secrets and
/// compiled code the host will execute. An existing folder open to others is tightened.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let meta = std::fs::metadata(dir)?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Create (or tighten) a file readable and writable by its owner only.
pub fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}
