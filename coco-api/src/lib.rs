//! Coco Server's REST ingestion protocol as one client, shared by both Coco sinks: the
//! long-running host's (`coco-host`, native) and the key-value facade's (inside the
//! component). It does no I/O: the caller hands it a [`Transport`] that sends a batch of
//! requests, concurrently where it can.
//!
//! The protocol follows Coco Server's source (coco-server `8fcd0159`, its framework
//! infinilabs/framework), not its looser docs:
//! - create routes are create-only (`orm.Create`, Elasticsearch `_create`): a second create of
//!   an id is a version conflict, answered **500**, not 409 ([`Answer::Conflict`]);
//! - `PUT /document/:doc_id` saves (`orm.Save`, the index API): create or overwrite in one
//!   request, `source` kept as sent ([`UpsertRoute::Save`]);
//! - a datasource needs an existing connector, a document route an existing datasource, so
//!   both are ensured (`GET`, then `POST` on a 404) before a datasource's first document;
//! - every write waits for the index's next refresh (`refresh=wait_for`, 1 s by default), so
//!   throughput comes from writes in flight, not from a faster loop ([`Coco::in_flight`]).

mod answer;
mod client;
mod routes;

pub use answer::{classify, Answer};
pub use client::{Coco, DatasourceRef, Ensured, Failure, Pushed, Removal, UpsertRoute};
pub use routes::{connector_json, datasource_json, Method, Request, Response};

/// Sends requests. `send_all` answers in the order asked; a transport that can keep several
/// requests in flight (threads natively, `wasi:http` futures in a component) sends them at
/// once, one that cannot sends them one after another. `Err` is a request that got no HTTP
/// answer (refused connection, timeout), with the reason.
pub trait Transport {
    fn send_all(&mut self, requests: &[Request]) -> Vec<Result<Response, String>>;
}

/// In-flight writes per datasource by default: each write waits for Coco's next refresh (1 s
/// by default), so this is about the documents per second one datasource reaches; it stays
/// well under Elasticsearch's 1,000 refresh listeners per shard, past which it forces refreshes.
pub const DEFAULT_IN_FLIGHT: usize = 256;
