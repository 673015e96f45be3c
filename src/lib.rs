//! coco-dropbox: Coco Server's Dropbox connector as a WebAssembly component.
//!
//! The core is plain Rust with one I/O seam ([`http::Transport`]), so it is unit-tested and
//! benchmarked natively; `component` (wasm only) binds it to the WIT exports and to wasi:http.

pub mod api;
pub mod batch;
pub mod connect;
pub mod content;
pub mod error;
pub mod facade;
pub mod http;
pub mod json_write;
pub mod mapping;
pub mod oauth;
pub mod page;
pub mod secret;
pub mod session;
pub mod types;
pub mod watch;

#[cfg(all(target_family = "wasm", not(feature = "extractor")))]
mod component;
#[cfg(all(target_family = "wasm", feature = "extractor"))]
mod extractor;
#[cfg(target_family = "wasm")]
mod transport;
#[cfg(target_family = "wasm")]
mod wit_convert;

pub use error::Error;
pub use secret::{Secret, SecretBytes};
