//! The host's one test binary: the `coco-host` CLI run as a process against the emulator on
//! loopback and the real compiled component.

mod browser;
mod cli;
mod crash;
mod pki;
mod receivers;
mod register;
mod release;
mod replicas;
mod serve;
mod sinks;
mod state_files;
mod tls;

use std::path::PathBuf;

/// The release component (`./dev test` builds it first); `COCO_DROPBOX_WASM` overrides.
pub fn wasm() -> PathBuf {
    let p = std::env::var_os("COCO_DROPBOX_WASM").map(PathBuf::from).unwrap_or_else(coco_host::paths::connector_wasm);
    assert!(p.exists(), "build the component first: cargo build --target wasm32-wasip2 --release ({})", p.display());
    p
}

/// A Coco document id as upstream computes it, with this test's own md5: an oracle that
/// shares no code with the component.
pub fn document_id(datasource_id: &str, entry_id: &str) -> String {
    use md5::Digest as _;
    md5::Md5::digest(format!("{datasource_id}_{entry_id}")).iter().map(|b| format!("{b:02x}")).collect()
}
