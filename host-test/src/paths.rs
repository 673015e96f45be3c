//! Where the builds put the component, and where the host keeps its files.

use std::path::{Path, PathBuf};

/// The workspace root (this crate lives in `host-test/`).
fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Where a release keeps its components: `<exe dir>/../lib/coco-dropbox/` (the tarball's and
/// the container's layout).
pub fn installed_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
    Some(exe.parent()?.parent()?.join("lib/coco-dropbox"))
}

/// `name` beside the binary when a release put it there, else the build tree's `built`.
fn installed_or(name: &str, built: &str) -> PathBuf {
    installed_dir().map(|d| d.join(name)).filter(|p| p.is_file()).unwrap_or_else(|| workspace().join(built))
}

/// The connector component: a release's `connector.wasm`, else
/// `cargo build --target wasm32-wasip2 --release`'s.
pub fn connector_wasm() -> PathBuf {
    installed_or("connector.wasm", "target/wasm32-wasip2/release/coco_dropbox.wasm")
}

/// The extractor component (`content.fetch-content`): `COCO_DROPBOX_EXTRACTOR_WASM`, a
/// release's `extractor.wasm`, else the build tree's (`--features extractor --target-dir target/extractor`).
pub fn extractor_wasm() -> PathBuf {
    std::env::var_os("COCO_DROPBOX_EXTRACTOR_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| installed_or("extractor.wasm", "target/extractor/wasm32-wasip2/release/coco_dropbox.wasm"))
}

/// The HTTP facade build (`--features http-handler --target-dir target/facade`).
pub fn facade_wasm() -> PathBuf {
    installed_or("facade.wasm", "target/facade/wasm32-wasip2/release/coco_dropbox.wasm")
}

/// The Spin build (`--features spin --target-dir target/spin`).
pub fn spin_wasm() -> PathBuf {
    installed_or("spin.wasm", "target/spin/wasm32-wasip2/release/coco_dropbox.wasm")
}

/// The serverless facade for `wasmtime serve -Skeyvalue` (`--features keyvalue --target-dir target/facade-kv`).
pub fn facade_kv_wasm() -> PathBuf {
    installed_or("facade-kv.wasm", "target/facade-kv/wasm32-wasip2/release/coco_dropbox.wasm")
}

/// The serverless facade for Spin (`--features spin,keyvalue --target-dir target/spin-kv`).
pub fn spin_kv_wasm() -> PathBuf {
    installed_or("spin-kv.wasm", "target/spin-kv/wasm32-wasip2/release/coco_dropbox.wasm")
}

/// What `coco-host --version` says of one component: its WIT package (from the component's
/// own export names) and its sha256, so an operator can tell which build is running.
pub fn describe_component(label: &str, path: &Path) -> String {
    use sha2::Digest as _;
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return format!("{label:<10} {}: {e}", path.display()),
    };
    let sha = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>();
    let package = wit_package(&bytes).unwrap_or_else(|| "(no coco:dropbox export)".into());
    format!("{label:<10} {package:<20} sha256:{sha} {}", path.display())
}

/// `coco:dropbox@x.y.z` from the first `coco:dropbox/…@x.y.z` export of a component.
fn wit_package(bytes: &[u8]) -> Option<String> {
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        if let Ok(wasmparser::Payload::ComponentExportSection(reader)) = payload {
            for export in reader.into_iter().flatten() {
                let name = export.name.name;
                if let Some(rest) = name.strip_prefix("coco:dropbox/") {
                    let version = rest.split_once('@').map_or("(unversioned)", |(_, v)| v);
                    return Some(format!("coco:dropbox@{version}"));
                }
            }
        }
    }
    None
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

/// Open a file documents are written to (`export --out`, the JSONL sink) the safe way: created
/// readable by its owner only, and never through a symbolic link (`O_NOFOLLOW`), so nobody
/// who can write the folder can redirect the documents elsewhere.
pub fn open_output(path: &Path, append: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.create(true).mode(0o600).custom_flags(libc::O_NOFOLLOW);
    if append {
        options.append(true);
    } else {
        options.write(true).truncate(true);
    }
    options.open(path).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} is a symbolic link: not writing documents through it", path.display()),
            )
        } else {
            e
        }
    })
}

#[cfg(test)]
mod tests {
    use super::open_output;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn outputs_are_owner_only_and_never_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("docs.jsonl");
        for append in [false, true] {
            open_output(&out, append).unwrap();
            assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, "keep").unwrap();
        let link = dir.path().join("link.jsonl");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        for append in [false, true] {
            let e = open_output(&link, append).unwrap_err();
            assert!(e.to_string().contains("symbolic link"), "{e}");
        }
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "keep", "the link's target is untouched");
    }
}
