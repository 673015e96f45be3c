//! The end-to-end suite, one binary: the real compiled component under wasmtime (embedded, and
//! under `wasmtime serve`), the reference host, and the emulator over loopback.

mod bad_input;
mod coco_server;
mod connect_and_sync;
mod content;
mod facade_kv;
mod facade_serve;
mod incremental;
mod oauth_lifecycle;
mod parallel;
/// The sinks' stand-ins, shared with the host's own tests.
#[allow(dead_code)]
#[path = "../../host-test/tests/all/receivers.rs"]
mod receivers;
mod spin_kv;
mod spin_manifest;
mod spinkube;
