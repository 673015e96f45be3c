//! Reference host for the coco-dropbox component: wasmtime runtime, SQLite or PostgreSQL state, the sync
//! driver and its retry policy, and a CLI. Its only link to the component is the WIT
//! (`wit/connector.wit`, bound in `runtime`) and the data file beside it (`info`).

pub mod clock;
pub mod db;
pub mod deliver;
pub mod documents;
pub mod extract;
pub mod host;
pub mod info;
pub mod keys;
pub mod net;
pub mod paths;
pub mod policy;
pub mod redact;
pub mod registration;
pub mod runtime;
pub mod secret;
pub mod secret_files;
pub mod serve;
pub mod sinks;
pub mod state;
