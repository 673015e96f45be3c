//! Reference host for the coco-dropbox component: wasmtime runtime, SQLite state, the sync
//! driver, a CLI, and a local Dropbox emulator for demos, tests and benchmarks.

pub mod emulator;
pub mod host;
pub mod keys;
pub mod registration;
pub mod runtime;
pub mod store;
