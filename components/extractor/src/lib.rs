//! The extractor component: content.fetch-content (the `extractor` world).
//! The exports are generated in the component crate; linking it is all this crate does.

#[cfg(target_family = "wasm")]
extern crate coco_dropbox;
