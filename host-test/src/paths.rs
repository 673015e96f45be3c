//! Where the builds put the component, and where the host keeps its files.

use std::path::{Path, PathBuf};

/// The workspace root (this crate lives in `host-test/`).
fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// `deploy/components`: the one list of component builds (name, cargo features).
const COMPONENT_LIST: &str = include_str!("../../deploy/components");

/// One component build of the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComponentBuild {
    /// `connector`, `extractor`, `facade`, …: the file is `<name>.wasm`.
    pub name: &'static str,
    /// The cargo features it is built with (empty for the connector).
    pub features: &'static str,
}

impl ComponentBuild {
    /// Where the build tree keeps it: `target/components/<name>.wasm`.
    pub fn built_path(&self) -> PathBuf {
        workspace().join("target/components").join(format!("{}.wasm", self.name))
    }

    /// Where it is: a release's `lib/coco-dropbox/<name>.wasm` beside the binary when there,
    /// else the build tree's.
    pub fn path(&self) -> PathBuf {
        installed_dir()
            .map(|d| d.join(format!("{}.wasm", self.name)))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| self.built_path())
    }

    /// What to run when it is missing.
    pub fn build_hint(&self) -> String {
        format!("build it: ./dev components {} (./dev test and ./dev demo build all)", self.name)
    }
}

/// Every component build, in the list's order.
pub fn component_builds() -> impl Iterator<Item = ComponentBuild> {
    COMPONENT_LIST.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(|line| {
        let mut fields = line.split_whitespace();
        let name = fields.next().unwrap_or_default();
        let features = fields.next().filter(|f| *f != "-").unwrap_or("");
        ComponentBuild { name, features }
    })
}

/// The build called `name`. Panics on a name the list does not have: callers name them in code.
pub fn component(name: &str) -> ComponentBuild {
    component_builds().find(|c| c.name == name).unwrap_or_else(|| panic!("deploy/components has no {name}"))
}

/// Where a release keeps its components: `<exe dir>/../lib/coco-dropbox/` (the tarball's and
/// the container's layout).
pub fn installed_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
    Some(exe.parent()?.parent()?.join("lib/coco-dropbox"))
}

/// The connector component (`sync-page`, `oauth-redirect`, `watch`).
pub fn connector_wasm() -> PathBuf {
    component("connector").path()
}

/// The extractor component (`content.fetch-content`): `COCO_DROPBOX_EXTRACTOR_WASM`, else the
/// list's `extractor`.
pub fn extractor_wasm() -> PathBuf {
    std::env::var_os("COCO_DROPBOX_EXTRACTOR_WASM").map(PathBuf::from).unwrap_or_else(|| component("extractor").path())
}

/// The HTTP facade (`wasi:http/incoming-handler`, `wasmtime serve`).
pub fn facade_wasm() -> PathBuf {
    component("facade").path()
}

/// The facade for Spin (Spin variables).
pub fn spin_wasm() -> PathBuf {
    component("spin").path()
}

/// The serverless facade for `wasmtime serve -Skeyvalue`.
pub fn facade_kv_wasm() -> PathBuf {
    component("facade-kv").path()
}

/// The serverless facade for Spin (Spin's key-value store).
pub fn spin_kv_wasm() -> PathBuf {
    component("spin-kv").path()
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
    use super::{component_builds, open_output};

    #[test]
    fn the_component_list_names_each_build_once() {
        let names: Vec<_> = component_builds().map(|c| c.name).collect();
        assert_eq!(names, ["connector", "extractor", "facade", "spin", "facade-kv", "spin-kv"]);
        let features: Vec<_> = component_builds().map(|c| c.features).collect();
        assert_eq!(features, ["", "extractor", "http-handler", "spin", "keyvalue", "spin,keyvalue"]);
        assert!(component_builds().all(|c| c.built_path().ends_with(format!("target/components/{}.wasm", c.name))));
    }

    #[test]
    fn each_component_package_builds_the_features_the_list_names() {
        for build in component_builds() {
            let manifest = super::workspace().join("components").join(build.name).join("Cargo.toml");
            let text = std::fs::read_to_string(&manifest).unwrap();
            assert!(text.contains(&format!("name = \"coco-dropbox-{}\"", build.name)), "{}", manifest.display());
            let dependency = text.lines().find(|l| l.starts_with("coco-dropbox = ")).unwrap();
            let features: Vec<&str> = build.features.split(',').filter(|f| !f.is_empty()).collect();
            if features.is_empty() {
                assert_eq!(dependency, "coco-dropbox = { path = \"../..\" }");
            } else {
                let quoted: Vec<String> = features.iter().map(|f| format!("\"{f}\"")).collect();
                let want = format!("coco-dropbox = {{ path = \"../..\", features = [{}] }}", quoted.join(", "));
                assert_eq!(dependency, want, "{}", manifest.display());
            }
        }
    }
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
