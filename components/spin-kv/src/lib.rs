//! The serverless facade for Spin: its state in Spin's key-value store.
//! The exports are generated in the component crate; linking it is all this crate does.

#[cfg(target_family = "wasm")]
extern crate coco_dropbox;
