//! The serverless facade for `wasmtime serve -Skeyvalue`: its state in wasi:keyvalue.
//! The exports are generated in the component crate; linking it is all this crate does.

#[cfg(target_family = "wasm")]
extern crate coco_dropbox;
