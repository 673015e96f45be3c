//! What sinks send, as data: Coco Server's REST calls and Elasticsearch's `_bulk` NDJSON, and
//! how their answers are read. No I/O here; the delivery loop that drains the outbox through
//! them is the next step of the sinks work.

use serde::Deserialize;

use crate::outbox::Change;

/// An HTTP call a sink makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkRequest {
    pub method: &'static str,
    pub url: String,
    pub body: Vec<u8>,
    pub content_type: &'static str,
}

/// Coco Server's datasource object for one of ours: upstream's id and name, so a Coco that ran
/// the Go connector finds the same datasource. `sync.enabled` is false and no credential is
/// sent: this host syncs it, Coco only stores what it is given.
pub fn coco_datasource(id: &str, name: &str, connector_id: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "type": "connector",
        "name": name,
        "icon": "default",
        "enabled": true,
        "sync": { "enabled": false, "interval": "30s" },
        "connector": { "id": connector_id, "config": {} },
    })
}

/// `POST {coco}/datasource/` creating the datasource.
pub fn coco_create_datasource(base: &str, datasource: &serde_json::Value) -> SinkRequest {
    SinkRequest {
        method: "POST",
        url: format!("{}/datasource/", base.trim_end_matches('/')),
        body: datasource.to_string().into_bytes(),
        content_type: "application/json",
    }
}

/// `POST {coco}/datasource/{id}/_doc/{doc_id}`: create or overwrite one document.
pub fn coco_upsert(base: &str, datasource_id: &str, doc_id: &str, json: &str) -> SinkRequest {
    SinkRequest {
        method: "POST",
        url: format!("{}/datasource/{datasource_id}/_doc/{doc_id}", base.trim_end_matches('/')),
        body: json.as_bytes().to_vec(),
        content_type: "application/json",
    }
}

/// `DELETE {coco}/document/` with a JSON array of ids.
pub fn coco_delete(base: &str, doc_ids: &[&str]) -> SinkRequest {
    SinkRequest {
        method: "DELETE",
        url: format!("{}/document/", base.trim_end_matches('/')),
        body: serde_json::to_vec(doc_ids).unwrap_or_default(),
        content_type: "application/json",
    }
}

/// `_bulk` bodies for `changes`, each at most `max_docs` actions and (unless one document alone
/// is larger) `max_bytes` bytes.
pub fn bulk_bodies(index: &str, changes: &[Change], max_docs: usize, max_bytes: usize) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    let mut body = Vec::new();
    let mut n = 0;
    for c in changes {
        let mut item = Vec::new();
        match c {
            Change::Upsert { doc_id, json } => {
                item.extend(serde_json::json!({ "index": { "_index": index, "_id": doc_id } }).to_string().bytes());
                item.push(b'\n');
                item.extend(json.bytes());
                item.push(b'\n');
            }
            Change::Delete { doc_id } => {
                item.extend(serde_json::json!({ "delete": { "_index": index, "_id": doc_id } }).to_string().bytes());
                item.push(b'\n');
            }
        }
        if n > 0 && (n >= max_docs.max(1) || body.len() + item.len() > max_bytes) {
            bodies.push(std::mem::take(&mut body));
            n = 0;
        }
        body.extend(item);
        n += 1;
    }
    if n > 0 {
        bodies.push(body);
    }
    bodies
}

/// How one `_bulk` action ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemOutcome {
    Done,
    /// 429 or 5xx for this item: send it again.
    Retry(String),
    /// Refused for good (a mapping error, a bad document): report it, do not block the rest.
    Rejected(String),
}

#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    items: Vec<std::collections::HashMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    #[serde(rename = "_id", default)]
    id: String,
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// Per-action outcomes of a `_bulk` answer, by document id, in order. A delete of a missing
/// document (404) is done: the goal state holds.
pub fn bulk_outcomes(body: &[u8]) -> Result<Vec<(String, ItemOutcome)>, String> {
    let r: BulkResponse = serde_json::from_slice(body).map_err(|e| format!("unreadable _bulk answer: {e}"))?;
    Ok(r.items
        .into_iter()
        .filter_map(|m| m.into_iter().next())
        .map(|(action, item)| {
            let why = || {
                item.error
                    .as_ref()
                    .map(|e| e.get("reason").and_then(|r| r.as_str()).map_or_else(|| e.to_string(), str::to_string))
                    .unwrap_or_else(|| format!("status {}", item.status))
            };
            let outcome = match item.status {
                200..=299 => ItemOutcome::Done,
                404 if action == "delete" => ItemOutcome::Done,
                429 | 500..=599 => ItemOutcome::Retry(why()),
                _ => ItemOutcome::Rejected(why()),
            };
            (item.id, outcome)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(id: &str) -> Change {
        Change::Upsert { doc_id: id.into(), json: format!(r#"{{"id":"{id}"}}"#) }
    }

    #[test]
    fn bulk_bodies_are_ndjson_split_by_count_and_bytes() {
        let changes = [up("a"), Change::Delete { doc_id: "b".into() }, up("c")];
        let bodies = bulk_bodies("coco", &changes, 2, 1 << 20);
        assert_eq!(bodies.len(), 2);
        let first = String::from_utf8(bodies[0].clone()).unwrap();
        assert_eq!(
            first,
            "{\"index\":{\"_index\":\"coco\",\"_id\":\"a\"}}\n{\"id\":\"a\"}\n{\"delete\":{\"_index\":\"coco\",\"_id\":\"b\"}}\n"
        );
        assert!(first.ends_with('\n'), "NDJSON ends with a newline");
        let by_bytes = bulk_bodies("coco", &changes, 100, 60);
        assert_eq!(by_bytes.len(), 3, "each action alone once the byte cap is reached");
        assert!(bulk_bodies("coco", &[], 10, 10).is_empty());
    }

    #[test]
    fn bulk_answers_split_into_done_retry_and_rejected() {
        let answer = br#"{"took": 3, "errors": true, "items": [
            {"index": {"_id": "a", "status": 201}},
            {"delete": {"_id": "b", "status": 404}},
            {"index": {"_id": "c", "status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "queue full"}}},
            {"index": {"_id": "d", "status": 400, "error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [size]"}}}
        ]}"#;
        let out = bulk_outcomes(answer).unwrap();
        assert_eq!(
            out,
            [
                ("a".to_string(), ItemOutcome::Done),
                ("b".to_string(), ItemOutcome::Done),
                ("c".to_string(), ItemOutcome::Retry("queue full".into())),
                ("d".to_string(), ItemOutcome::Rejected("failed to parse field [size]".into())),
            ]
        );
        assert!(bulk_outcomes(b"<html>").is_err());
    }

    #[test]
    fn coco_calls_are_upstreams_routes_without_credentials() {
        let ds = coco_datasource("0335b4e59c687f2666f7d7e5d5d17686", "Franz's Dropbox", "dropbox");
        assert_eq!(ds["sync"]["enabled"], false, "Coco must not try to sync it itself");
        assert_eq!(ds["connector"]["config"], serde_json::json!({}));
        let create = coco_create_datasource("http://coco:9000/", &ds);
        assert_eq!((create.method, create.url.as_str()), ("POST", "http://coco:9000/datasource/"));
        let up = coco_upsert("http://coco:9000", "ds1", "doc1", "{}");
        assert_eq!(up.url, "http://coco:9000/datasource/ds1/_doc/doc1");
        let del = coco_delete("http://coco:9000", &["a", "b"]);
        assert_eq!(
            (del.method, del.url.as_str(), del.body.as_slice()),
            ("DELETE", "http://coco:9000/document/", &br#"["a","b"]"#[..])
        );
    }
}
