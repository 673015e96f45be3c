//! Loopback stand-ins for the sinks: Coco Server's three ingestion routes and an
//! Elasticsearch-style `_bulk` with per-item results, each with scripted faults.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::Router;

/// A fault for the next matching request.
#[derive(Clone, Debug)]
pub enum Fault {
    Status(u16),
    /// 429 with `Retry-After` seconds.
    RateLimited(u32),
    /// Answer only after this long (past the deliverer's timeout: a hung sink).
    Delay(Duration),
}

#[derive(Default)]
pub struct Received {
    /// Document id → document.
    pub docs: BTreeMap<String, serde_json::Value>,
    pub datasources: Vec<serde_json::Value>,
    pub faults: VecDeque<Fault>,
    /// Documents whose title contains this are refused (per item for `_bulk`, 400 for Coco).
    pub reject_titles_containing: Option<String>,
    pub requests: u64,
    pub rejected: u64,
    /// Delay on every request (to be killed mid-delivery).
    pub delay: Duration,
}

pub struct Receiver {
    pub state: Arc<Mutex<Received>>,
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    kind: Kind,
}

#[derive(Clone, Copy)]
pub enum Kind {
    Coco,
    Elasticsearch,
}

pub const COCO_TOKEN: &str = "coco-server-token-0123456789";

type Shared = Arc<Mutex<Received>>;

impl Receiver {
    pub async fn start(kind: Kind) -> Receiver {
        Self::serve(kind, Arc::default(), "127.0.0.1:0".parse().unwrap()).await
    }

    async fn serve(kind: Kind, state: Shared, addr: SocketAddr) -> Receiver {
        let app = match kind {
            Kind::Coco => Router::new()
                .route("/datasource/", post(coco_datasource))
                .route("/datasource/{ds}/_doc/{doc}", post(coco_upsert))
                .route("/document/", delete(coco_delete)),
            Kind::Elasticsearch => Router::new().route("/_bulk", post(bulk)),
        }
        .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Receiver { state, addr, stop: Some(tx), kind }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Down: nothing listens on its port until [`Receiver::up`].
    pub fn down(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    pub async fn up(&mut self) {
        let again = Self::serve(self.kind, self.state.clone(), self.addr).await;
        self.stop = again.stop;
    }

    pub fn docs(&self) -> BTreeMap<String, serde_json::Value> {
        self.state.lock().unwrap().docs.clone()
    }
}

/// The scripted fault for this request, if any, as the answer to send.
async fn fault(state: &Shared) -> Option<Response> {
    let (fault, delay) = {
        let mut s = state.lock().unwrap();
        s.requests += 1;
        (s.faults.pop_front(), s.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match fault? {
        Fault::Status(code) => Some((StatusCode::from_u16(code).unwrap(), "injected failure").into_response()),
        Fault::RateLimited(secs) => {
            Some((StatusCode::TOO_MANY_REQUESTS, [("retry-after", secs.to_string())], "slow down").into_response())
        }
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            None
        }
    }
}

fn refused(state: &Shared, doc: &serde_json::Value) -> bool {
    let s = state.lock().unwrap();
    let title = doc["title"].as_str().unwrap_or("");
    s.reject_titles_containing.as_deref().is_some_and(|r| title.contains(r))
}

fn coco_auth(headers: &HeaderMap) -> bool {
    headers.get("x-api-token").and_then(|v| v.to_str().ok()) == Some(COCO_TOKEN)
}

async fn coco_datasource(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if !coco_auth(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if let Some(r) = fault(&s).await {
        return r;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    s.lock().unwrap().datasources.push(v);
    (StatusCode::OK, r#"{"result":"created"}"#).into_response()
}

async fn coco_upsert(
    State(s): State<Shared>,
    Path((ds, doc)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !coco_auth(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if let Some(r) = fault(&s).await {
        return r;
    }
    let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    if refused(&s, &v) {
        s.lock().unwrap().rejected += 1;
        return (StatusCode::BAD_REQUEST, "document refused").into_response();
    }
    // Coco overwrites `source` with the datasource's; keep what identifies it.
    v["source"]["id"] = ds.into();
    s.lock().unwrap().docs.insert(doc, v);
    (StatusCode::OK, r#"{"result":"updated"}"#).into_response()
}

async fn coco_delete(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if !coco_auth(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if let Some(r) = fault(&s).await {
        return r;
    }
    let ids: Vec<String> = serde_json::from_slice(&body).unwrap();
    let mut st = s.lock().unwrap();
    for id in ids {
        st.docs.remove(&id);
    }
    (StatusCode::OK, r#"{"result":"deleted"}"#).into_response()
}

async fn bulk(State(s): State<Shared>, body: Bytes) -> Response {
    if let Some(r) = fault(&s).await {
        return r;
    }
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.ends_with('\n'), "NDJSON must end with a newline");
    let mut lines = text.lines();
    let mut items = Vec::new();
    let mut errors = false;
    while let Some(action) = lines.next() {
        let action: serde_json::Value = serde_json::from_str(action).unwrap();
        if let Some(meta) = action.get("index") {
            let id = meta["_id"].as_str().unwrap().to_string();
            let doc: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
            if refused(&s, &doc) {
                errors = true;
                s.lock().unwrap().rejected += 1;
                items.push(serde_json::json!({ "index": { "_id": id, "status": 400,
                    "error": { "type": "mapper_parsing_exception", "reason": "refused by the test" } } }));
            } else {
                s.lock().unwrap().docs.insert(id.clone(), doc);
                items.push(serde_json::json!({ "index": { "_id": id, "status": 200 } }));
            }
        } else if let Some(meta) = action.get("delete") {
            let id = meta["_id"].as_str().unwrap().to_string();
            let existed = s.lock().unwrap().docs.remove(&id).is_some();
            items.push(serde_json::json!({ "delete": { "_id": id, "status": if existed { 200 } else { 404 } } }));
        } else {
            panic!("unknown bulk action {action}");
        }
    }
    axum::Json(serde_json::json!({ "took": 1, "errors": errors, "items": items })).into_response()
}
