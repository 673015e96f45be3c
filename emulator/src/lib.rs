//! A local Dropbox on real HTTP, for tests, demos and benchmarks: OAuth (authorize, token,
//! revoke), accounts (user and team spaces), `list_folder` and `continue` with Dropbox's JSON
//! shapes and error envelopes, a change log that replays edits to older cursors, and faults.
//!
//! It is a test double, not part of the product: the deployable host is built without it.
//!
//! The API for tests is narrow on purpose: start an [`Emulator`] from a [`Config`], read an
//! account's [`Entry`]s with [`Emulator::tree`], change them through [`Emulator::edit`], script
//! [`Fault`]s or a seeded [`FaultPlan`], and read the request [`Counters`]. [`approve`] plays
//! the browser on the consent page. `model` (the namespace and its generator) is public for
//! benchmarks that build Dropbox pages without a server.

mod browser;
pub mod cli;
pub mod coco;
pub mod content;
pub mod model;
mod server;
mod state;
pub mod tls;

pub use browser::{approve, BrowserError};
pub use model::MutationError;
pub use server::{AccountEditor, Emulator, Entry};
pub use state::{AccountSpec, Config, Counters, Fault, FaultKind, FaultPlan, Webhook};
