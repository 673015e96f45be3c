//! The HTTP facade for `wasmtime serve`: the connector plus wasi:http/incoming-handler.
//! The exports are generated in the component crate; linking it is all this crate does.

#[cfg(target_family = "wasm")]
extern crate coco_dropbox;
