//! What the Elasticsearch sink sends, as data: `_bulk` NDJSON, and how its answers are read.
//! No I/O here. (Coco Server's protocol is the `coco-api` crate, shared with the facade.)

use serde::Deserialize;

use crate::state::outbox::Change;

/// An HTTP call a sink makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkRequest {
    pub method: &'static str,
    pub url: String,
    pub body: Vec<u8>,
    pub content_type: &'static str,
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
}
