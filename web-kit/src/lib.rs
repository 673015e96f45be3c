//! The web kit of coco-dropbox's two HTTP surfaces: the facade component (`src/facade/`) and
//! `coco-host serve`. One implementation of what a browser or an API client sees on either:
//! the API token check, the OAuth session cookie, signed connect links, the page a connected
//! browser lands on, the datasource a connected account becomes, the error envelope, the
//! sealing format of secrets at rest, and the encodings they use. Plain functions and shapes
//! over strings and bytes: no wasmtime, no Dropbox logic, no I/O.

pub mod cookie;
pub mod datasource;
pub mod encode;
pub mod envelope;
pub mod landing;
pub mod links;
pub mod seal;
pub mod token;
