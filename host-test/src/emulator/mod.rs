//! A local Dropbox: OAuth (authorize, token, revoke), accounts, list_folder and continue with
//! Dropbox's JSON shapes and error envelopes, a change log, and scripted faults.

pub mod model;
pub mod server;
pub mod state;

pub use server::Emulator;
pub use state::{Config, Fault, FaultKind};
