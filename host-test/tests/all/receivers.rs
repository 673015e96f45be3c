//! Loopback stand-ins for the sinks, each with scripted faults in front: Coco Server (the
//! emulator crate's [`dropbox_emulator::coco`], which answers as the real server does:
//! create-only creates, 500 conflicts, writes on the next refresh tick) and an
//! Elasticsearch-style `_bulk` with per-item results.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use dropbox_emulator::coco::{CocoModel, SharedCoco};

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
    /// Document id → document (Elasticsearch; Coco's are in [`Receiver::coco`]).
    pub docs: BTreeMap<String, serde_json::Value>,
    pub faults: VecDeque<Fault>,
    /// `_bulk` items whose title contains this are refused (Coco has no per-document refusal).
    pub reject_titles_containing: Option<String>,
    pub requests: u64,
    pub rejected: u64,
    /// Delay on every request (to be killed mid-delivery).
    pub delay: Duration,
}

pub struct Receiver {
    pub state: Arc<Mutex<Received>>,
    /// Coco Server's objects (a set-up server: it ships the connector `dropbox`).
    pub coco: SharedCoco,
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    kind: Kind,
    /// Serving https with this configuration.
    tls: Option<Arc<dropbox_emulator::tls::ServerConfig>>,
}

#[derive(Clone, Copy)]
pub enum Kind {
    Coco,
    Elasticsearch,
}

pub const COCO_TOKEN: &str = "coco-server-token-0123456789";

/// The stand-in's refresh tick: every Coco write waits for the next one, as with
/// `refresh=wait_for` (Coco's 1 s is the benchmark's; tests keep it short).
pub const COCO_REFRESH: Duration = Duration::from_millis(25);

/// Fields Coco Server's ORM sets itself on every write (`created`, `updated`, `_system`).
pub const COCO_STAMPS: [&str; 3] = ["created", "updated", "_system"];

type Shared = Arc<Mutex<Received>>;

impl Receiver {
    pub async fn start(kind: Kind) -> Receiver {
        Self::start_tls(kind, None).await
    }

    /// [`Receiver::start`], serving https with `tls` where given.
    pub async fn start_tls(kind: Kind, tls: Option<Arc<dropbox_emulator::tls::ServerConfig>>) -> Receiver {
        let coco = Arc::new(Mutex::new(CocoModel::set_up(COCO_TOKEN)));
        Self::serve(kind, Arc::default(), coco, "127.0.0.1:0".parse().unwrap(), tls).await
    }

    async fn serve(
        kind: Kind,
        state: Shared,
        coco: SharedCoco,
        addr: SocketAddr,
        tls: Option<Arc<dropbox_emulator::tls::ServerConfig>>,
    ) -> Receiver {
        let app = match kind {
            Kind::Coco => dropbox_emulator::coco::router(coco.clone(), COCO_REFRESH)
                .layer(axum::middleware::from_fn_with_state(state.clone(), faults_first)),
            Kind::Elasticsearch => Router::new().route("/_bulk", post(bulk)).with_state(state.clone()),
        };
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let stopped = async {
            let _ = rx.await;
        };
        let serving = tls.clone();
        tokio::spawn(async move {
            match serving {
                Some(tls) => dropbox_emulator::tls::serve(listener, app, tls, stopped).await,
                None => {
                    let _ = axum::serve(listener, app).with_graceful_shutdown(stopped).await;
                }
            }
        });
        Receiver { state, coco, addr, stop: Some(tx), kind, tls }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Down: nothing listens on its port until [`Receiver::up`].
    pub fn down(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    pub async fn up(&mut self) {
        let again = Self::serve(self.kind, self.state.clone(), self.coco.clone(), self.addr, self.tls.clone()).await;
        self.stop = again.stop;
    }

    /// What the sink holds, comparable with the index: Coco's documents without the fields
    /// its ORM stamps ([`COCO_STAMPS`]); Elasticsearch's as stored.
    pub fn docs(&self) -> BTreeMap<String, serde_json::Value> {
        match self.kind {
            Kind::Coco => self.comparable(self.coco.lock().unwrap().documents.clone()),
            Kind::Elasticsearch => self.state.lock().unwrap().docs.clone(),
        }
    }

    /// `docs` as [`Receiver::docs`] shows them (Coco's stamps left out).
    pub fn comparable(&self, mut docs: BTreeMap<String, serde_json::Value>) -> BTreeMap<String, serde_json::Value> {
        if matches!(self.kind, Kind::Coco) {
            for d in docs.values_mut() {
                if let Some(o) = d.as_object_mut() {
                    for f in COCO_STAMPS {
                        o.remove(f);
                    }
                }
            }
        }
        docs
    }
}

/// What a sink must hold for a datasource: every indexed document (ids and JSON, content merged).
pub fn indexed(host: &coco_host::host::Host, ds: &str) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    host.store
        .for_each_document(ds, |id, json| {
            out.insert(id.to_string(), serde_json::from_str(json).unwrap());
            Ok(())
        })
        .unwrap();
    out
}

/// The scripted fault (or delay) before Coco's own answer.
async fn faults_first(State(s): State<Shared>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match fault(&s).await {
        Some(r) => r,
        None => next.run(req).await,
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
