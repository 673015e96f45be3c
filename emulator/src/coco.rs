//! A Coco Server stand-in for the sinks' tests and benchmarks: the ingestion routes with the
//! answers Coco Server gives (coco-server `8fcd0159` and infinilabs/framework, read at the
//! source), refusals included.
//!
//! - Create routes are create-only: an id that exists is Elasticsearch's version conflict,
//!   passed on as a **500** with the store's error text (framework `WriteError`).
//! - `POST /datasource/` needs `type: "connector"` and an existing connector ("invalid
//!   connector", a handler panic: 500 in the recovery shape); `_doc` needs its datasource
//!   ("invalid datasource") and replaces `source` with the datasource's id, type and name.
//! - `PUT /document/:doc_id` saves (create or overwrite) and keeps `source` as sent; like the
//!   ORM it keeps a stored document's `created` and `_system`, and sets `updated` to now.
//! - `DELETE /document/` takes a JSON array of ids (400 when empty, ids not there are no error);
//!   `DELETE /datasource/:id` removes the datasource and, by `source.id`, its documents; a
//!   datasource that is not there is "record not found" (500).
//! - Every create, save and single delete waits for the next refresh tick (`refresh=wait_for`);
//!   the two delete-by-query routes and conflicts answer at once.
//! - A missing or wrong `X-API-TOKEN` is 401 "invalid login".
//!
//! [`CocoModel`] is the state and the rules, without I/O; [`router`] serves it over HTTP with
//! the refresh tick.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::{json, Value};

/// An answer of the model: status, body, and whether Coco answers only after the index's next
/// refresh (`refresh=wait_for`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub waits_for_refresh: bool,
}

impl Reply {
    fn json(status: u16, v: Value) -> Reply {
        Reply { status, body: v.to_string(), waits_for_refresh: false }
    }

    fn written(mut self) -> Reply {
        self.waits_for_refresh = true;
        self
    }
}

/// The framework's `WriteError`: `{"error":{"reason":…},"status":…}`.
fn write_error(status: u16, reason: &str) -> Reply {
    Reply::json(status, json!({ "error": { "reason": reason }, "status": status }))
}

/// A handler's panic, through the framework's recovery handler: the status sits inside `error`.
fn panicked(reason: &str) -> Reply {
    Reply::json(500, json!({ "error": { "reason": reason, "status": 500 } }))
}

/// Elasticsearch's answer to `_create` of an id that exists, as Coco passes it on.
fn version_conflict(index: &str, id: &str) -> Reply {
    let es = json!({
        "error": {
            "root_cause": [{ "type": "version_conflict_engine_exception",
                "reason": format!("[{id}]: version conflict, document already exists (current version [1])"),
                "index": index }],
            "type": "version_conflict_engine_exception",
            "reason": format!("[{id}]: version conflict, document already exists (current version [1])"),
            "index": index,
        },
        "status": 409,
    });
    write_error(500, &es.to_string())
}

fn found(id: &str, source: Option<&Value>) -> Reply {
    match source {
        Some(s) => Reply::json(200, json!({ "_id": id, "_source": s, "found": true })),
        None => Reply::json(404, json!({ "_id": id, "found": false })),
    }
}

fn done(id: &str, result: &str) -> Reply {
    Reply::json(200, json!({ "_id": id, "result": result }))
}

/// Requests per route, for tests and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CocoCounters {
    pub by_route: BTreeMap<String, u64>,
}

impl CocoCounters {
    pub fn get(&self, route: &str) -> u64 {
        self.by_route.get(route).copied().unwrap_or(0)
    }
}

/// Coco Server's objects, and the rules its handlers apply to them.
#[derive(Debug)]
pub struct CocoModel {
    pub token: String,
    pub connectors: BTreeMap<String, Value>,
    pub datasources: BTreeMap<String, Value>,
    pub documents: BTreeMap<String, Value>,
    pub counters: CocoCounters,
    next_id: u64,
}

impl CocoModel {
    /// A server after its set-up wizard: it ships the connector `dropbox`.
    pub fn set_up(token: &str) -> CocoModel {
        let mut m = CocoModel::empty(token);
        let seed = json!({ "id": "dropbox", "name": "Dropbox Connector", "category": "cloud_storage",
            "processor": { "enabled": true, "name": "dropbox" }, "builtin": true });
        m.connectors.insert("dropbox".into(), seed);
        m
    }

    /// A server with no connector at all.
    pub fn empty(token: &str) -> CocoModel {
        CocoModel {
            token: token.into(),
            connectors: BTreeMap::new(),
            datasources: BTreeMap::new(),
            documents: BTreeMap::new(),
            counters: CocoCounters::default(),
            next_id: 0,
        }
    }

    /// The documents of one datasource (by `source.id`).
    pub fn documents_of(&self, datasource_id: &str) -> BTreeMap<String, Value> {
        self.documents
            .iter()
            .filter(|(_, d)| d["source"]["id"] == datasource_id)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn generated_id(&mut self) -> String {
        self.next_id += 1;
        format!("cocogen{:013}", self.next_id)
    }

    /// One request. `path` is the URI's path; `token` the `X-API-TOKEN` header.
    pub fn handle(&mut self, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Reply {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let route = match (method, segments.as_slice()) {
            ("POST", ["connector", ""]) => "POST /connector/",
            ("GET", ["connector", _]) => "GET /connector/:id",
            ("POST", ["datasource", ""]) => "POST /datasource/",
            ("GET", ["datasource", _]) => "GET /datasource/:id",
            ("DELETE", ["datasource", _]) => "DELETE /datasource/:id",
            ("POST", ["datasource", _, "_doc", _]) => "POST /datasource/:id/_doc/:doc_id",
            ("PUT", ["document", id]) if !id.is_empty() => "PUT /document/:doc_id",
            ("GET", ["document", id]) if !id.is_empty() => "GET /document/:doc_id",
            ("DELETE", ["document", ""]) => "DELETE /document/",
            ("DELETE", ["document", _]) => "DELETE /document/:doc_id",
            _ => return Reply { status: 404, body: "404 page not found".into(), waits_for_refresh: false },
        };
        *self.counters.by_route.entry(route.to_string()).or_default() += 1;
        if token != Some(self.token.as_str()) {
            return write_error(401, "invalid login");
        }
        let id = |i: usize| decode(segments.get(i).copied().unwrap_or(""));
        let parsed = || serde_json::from_slice::<Value>(body).map_err(|e| e.to_string());
        let now = now();
        match route {
            "POST /connector/" => {
                let mut c = match parsed() {
                    Ok(v) if v.is_object() => v,
                    Ok(_) => json!({}),
                    Err(e) => return write_error(500, &e),
                };
                let cid = c["id"].as_str().filter(|s| !s.is_empty()).map(str::to_string);
                let cid = cid.unwrap_or_else(|| self.generated_id());
                if self.connectors.contains_key(&cid) {
                    return version_conflict("coco_connector", &cid);
                }
                stamp(&mut c, &cid, &now, None);
                self.connectors.insert(cid.clone(), c);
                done(&cid, "created").written()
            }
            "GET /connector/:id" => found(&id(1), self.connectors.get(&id(1))),
            "POST /datasource/" => {
                let mut d = match parsed() {
                    Ok(v) => v,
                    Err(e) => return panicked(&e),
                };
                if d["type"] != "connector" {
                    return write_error(500, "invalid datasource");
                }
                let connector = d["connector"]["id"].as_str().unwrap_or("");
                if connector.is_empty() || !self.connectors.contains_key(connector) {
                    return panicked("invalid connector");
                }
                let did = d["id"].as_str().filter(|s| !s.is_empty()).map(str::to_string);
                let did = did.unwrap_or_else(|| self.generated_id());
                if self.datasources.contains_key(&did) {
                    return version_conflict("coco_datasource", &did);
                }
                stamp(&mut d, &did, &now, None);
                self.datasources.insert(did.clone(), d);
                done(&did, "created").written()
            }
            "GET /datasource/:id" => found(&id(1), self.datasources.get(&id(1))),
            "DELETE /datasource/:id" => {
                let did = id(1);
                if self.datasources.remove(&did).is_none() {
                    return panicked("record not found");
                }
                self.documents.retain(|_, d| d["source"]["id"] != did.as_str());
                Reply::json(200, json!({ "_id": did, "result": "deleted" })).written()
            }
            "POST /datasource/:id/_doc/:doc_id" => {
                let mut doc = match parsed() {
                    Ok(v) if v.is_object() => v,
                    Ok(_) => json!({}),
                    Err(e) => return panicked(&e),
                };
                let (did, doc_id) = (id(1), id(3));
                let Some(ds) = self.datasources.get(&did) else { return panicked("invalid datasource") };
                doc["source"] = json!({ "id": ds["id"], "type": ds["type"], "name": ds["name"] });
                if self.documents.contains_key(&doc_id) {
                    return version_conflict("coco_document-v2", &doc_id);
                }
                stamp(&mut doc, &doc_id, &now, None);
                self.documents.insert(doc_id.clone(), doc);
                done(&doc_id, "created").written()
            }
            "PUT /document/:doc_id" => {
                let mut doc = match parsed() {
                    Ok(v) if v.is_object() => v,
                    Ok(_) => json!({}),
                    Err(e) => return write_error(500, &e),
                };
                let doc_id = id(1);
                let prev = self.documents.get(&doc_id);
                stamp(&mut doc, &doc_id, &now, prev);
                self.documents.insert(doc_id.clone(), doc);
                done(&doc_id, "updated").written()
            }
            "GET /document/:doc_id" => found(&id(1), self.documents.get(&id(1))),
            "DELETE /document/" => {
                let ids: Vec<String> = match serde_json::from_slice(body) {
                    Ok(ids) => ids,
                    Err(_) if body.iter().all(u8::is_ascii_whitespace) => Vec::new(),
                    Err(e) => return write_error(500, &e.to_string()),
                };
                if ids.is_empty() {
                    return write_error(400, "document ids can not be empty");
                }
                for i in ids {
                    self.documents.remove(&i);
                }
                Reply { status: 200, body: "{\n  \"acknowledged\": true\n}".into(), waits_for_refresh: false }
            }
            "DELETE /document/:doc_id" => {
                let doc_id = id(1);
                if self.documents.remove(&doc_id).is_none() {
                    return write_error(500, "failed to delete, object was not found");
                }
                done(&doc_id, "deleted").written()
            }
            _ => unreachable!("every route above is handled"),
        }
    }
}

/// The ORM's stamps: the URL's id wins; a create sets `created` and `updated` to now; a save
/// over a stored object keeps its `created` and `_system`, and sets `updated` to now.
fn stamp(obj: &mut Value, id: &str, now: &str, prev: Option<&Value>) {
    obj["id"] = id.into();
    match prev {
        Some(p) => {
            for kept in ["created", "_system"] {
                match p.get(kept) {
                    Some(v) => obj[kept] = v.clone(),
                    None => {
                        if let Some(o) = obj.as_object_mut() {
                            o.remove(kept);
                        }
                    }
                }
            }
        }
        None => {
            if obj.get("created").and_then(Value::as_str).is_none() {
                obj["created"] = now.into();
            }
        }
    }
    obj["updated"] = now.into();
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

fn decode(segment: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The model shared between the server and a test.
pub type SharedCoco = Arc<Mutex<CocoModel>>;

/// Coco Server over HTTP: every route of [`CocoModel`], and writes answered on the next
/// refresh tick (every `refresh`, as Elasticsearch's `index.refresh_interval`).
pub fn router(model: SharedCoco, refresh: Duration) -> axum::Router {
    let epoch = Instant::now();
    axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let model = model.clone();
        async move {
            let token = headers.get("x-api-token").and_then(|v| v.to_str().ok());
            let reply = model.lock().unwrap().handle(method.as_str(), uri.path(), token, &body);
            if reply.waits_for_refresh && !refresh.is_zero() {
                let ticks = epoch.elapsed().as_nanos() / refresh.as_nanos() + 1;
                let next = epoch + refresh * u32::try_from(ticks).unwrap_or(u32::MAX);
                tokio::time::sleep_until(next.into()).await;
            }
            let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if reply.body.starts_with('{') {
                (status, [("content-type", "application/json; charset=utf-8")], reply.body).into_response()
            } else {
                (status, reply.body).into_response()
            }
        }
    })
}

/// A Coco stand-in on a loopback port (set up: it has the `dropbox` connector).
pub async fn serve(token: &str, refresh: Duration) -> std::io::Result<(SharedCoco, String)> {
    let model: SharedCoco = Arc::new(Mutex::new(CocoModel::set_up(token)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let app = router(model.clone(), refresh);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((model, url))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Option<&str> = Some("tok");

    fn call(m: &mut CocoModel, method: &str, path: &str, body: &str) -> (u16, Value) {
        let r = m.handle(method, path, T, body.as_bytes());
        (r.status, serde_json::from_str(&r.body).unwrap_or(Value::String(r.body)))
    }

    #[test]
    fn creates_are_create_only_and_saves_overwrite() {
        let mut m = CocoModel::set_up("tok");
        let ds = r#"{"id":"ds1","type":"connector","name":"D","connector":{"id":"dropbox"}}"#;
        assert_eq!(call(&mut m, "POST", "/datasource/", ds).0, 200);
        let (status, body) = call(&mut m, "POST", "/datasource/", ds);
        assert_eq!(status, 500);
        assert!(body["error"]["reason"].as_str().unwrap().contains("version_conflict_engine_exception"));
        let doc = r#"{"title":"a","source":{"id":"forged"}}"#;
        assert_eq!(call(&mut m, "POST", "/datasource/ds1/_doc/d1", doc).0, 200);
        assert_eq!(m.documents["d1"]["source"], json!({"id": "ds1", "type": "connector", "name": "D"}));
        assert_eq!(call(&mut m, "POST", "/datasource/ds1/_doc/d1", doc).0, 500, "create-only");
        let created = m.documents["d1"]["created"].clone();
        let (status, body) =
            call(&mut m, "PUT", "/document/d1", r#"{"title":"b","source":{"id":"ds1"},"created":"x"}"#);
        assert_eq!((status, body["result"].as_str()), (200, Some("updated")));
        assert_eq!(m.documents["d1"]["title"], "b");
        assert_eq!(m.documents["d1"]["created"], created, "a save keeps the stored created");
        assert_eq!(call(&mut m, "PUT", "/document/d2", r#"{"source":{"id":"ds1"}}"#).0, 200, "a save creates");
    }

    #[test]
    fn refusals_are_cocos() {
        let mut m = CocoModel::empty("tok");
        assert_eq!(m.handle("GET", "/connector/dropbox", Some("bad"), b"").status, 401);
        assert_eq!(call(&mut m, "GET", "/connector/dropbox", "").0, 404);
        let (s, b) =
            call(&mut m, "POST", "/datasource/", r#"{"id":"ds1","type":"connector","connector":{"id":"dropbox"}}"#);
        assert_eq!((s, b), (500, json!({"error": {"reason": "invalid connector", "status": 500}})));
        let (s, b) = call(&mut m, "POST", "/datasource/", r#"{"id":"ds1","type":"x"}"#);
        assert_eq!((s, b["error"]["reason"].as_str()), (500, Some("invalid datasource")));
        let (s, b) = call(&mut m, "POST", "/datasource/ds1/_doc/d1", "{}");
        assert_eq!((s, b["error"]["reason"].as_str()), (500, Some("invalid datasource")));
        assert_eq!(call(&mut m, "DELETE", "/document/", "[]").0, 400);
        let (s, b) = call(&mut m, "DELETE", "/datasource/ds1", "");
        assert_eq!((s, b["error"]["reason"].as_str()), (500, Some("record not found")));
    }

    #[test]
    fn removing_a_datasource_removes_its_documents_only() {
        let mut m = CocoModel::set_up("tok");
        for ds in ["a", "b"] {
            let body = format!(r#"{{"id":"{ds}","type":"connector","name":"{ds}","connector":{{"id":"dropbox"}}}}"#);
            call(&mut m, "POST", "/datasource/", &body);
            call(&mut m, "PUT", &format!("/document/{ds}1"), &format!(r#"{{"source":{{"id":"{ds}"}}}}"#));
        }
        assert_eq!(call(&mut m, "DELETE", "/datasource/a", "").0, 200);
        assert_eq!(m.documents.keys().collect::<Vec<_>>(), ["b1"]);
        assert_eq!(call(&mut m, "DELETE", "/document/", r#"["b1","zz"]"#).0, 200);
        assert!(m.documents.is_empty());
    }
}
