//! Draining the outbox into a sink: batches in order per datasource, retries with backoff on
//! 429 / 5xx / transport failures (honouring `Retry-After`), and progress recorded only after
//! a batch was accepted, so delivery is at least once and idempotent by document id.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::net::HttpClient;
use crate::redact;
use crate::secret::Secret;
use crate::sinks::{self, ItemOutcome, SinkRequest};
use crate::state::outbox::{coalesce, Change};
use crate::state::Store;

/// Outbox rows read per batch.
const BATCH_ROWS: usize = 500;

/// Where documents go.
#[derive(Clone, Debug)]
pub enum SinkConfig {
    /// One JSON line per change appended to a file: `{"op":"upsert","id":…,"document":…}` or
    /// `{"op":"delete","id":…}`.
    Jsonl { path: PathBuf },
    /// Coco Server's REST API (`X-API-TOKEN`), through [`coco_api`]: at most `in_flight`
    /// writes at once (each waits for Coco's next refresh), upserts by `route`.
    Coco { url: String, token: Secret, in_flight: usize, route: coco_api::UpsertRoute },
    /// `_bulk` into one index of Elasticsearch, OpenSearch or Easysearch.
    /// `identity`: a client certificate for clusters that require mTLS.
    Elasticsearch {
        url: String,
        index: String,
        auth: EsAuth,
        max_docs: usize,
        max_bytes: usize,
        identity: Option<crate::net::tls::ClientIdentity>,
    },
}

#[derive(Clone, Debug)]
pub enum EsAuth {
    None,
    Basic { user: String, password: Secret },
    ApiKey(Secret),
}

impl SinkConfig {
    /// The sink's name in the store (its progress is kept under it), shown in status and
    /// metrics: credentials written into a URL are left out.
    pub fn name(&self) -> String {
        match self {
            SinkConfig::Jsonl { path } => format!("jsonl:{}", path.display()),
            SinkConfig::Coco { url, .. } => format!("coco:{}", without_credentials(url)),
            SinkConfig::Elasticsearch { url, index, .. } => {
                format!("elasticsearch:{}/{index}", without_credentials(url))
            }
        }
    }
}

fn without_credentials(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    match url::Url::parse(trimmed) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string().trim_end_matches('/').to_string()
        }
        _ => trimmed.to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("sink {sink}: {why} (gave up after {attempts} attempts; the changes stay queued)")]
    GaveUp { sink: String, why: String, attempts: u32 },
    #[error("sink {sink}: {why}")]
    Refused { sink: String, why: String },
    #[error(transparent)]
    Store(#[from] crate::state::StoreError),
}

/// The datasource a delivery is for.
pub struct Target<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub connector_id: &'a str,
    /// The datasource was removed from the state: what is queued for it are the deletes of
    /// its documents, which Coco does in one `DELETE /datasource/:id`.
    pub removed: bool,
}

impl<'a> Target<'a> {
    pub fn of(ds: &'a crate::state::DatasourceRecord) -> Self {
        Target { id: &ds.id, name: &ds.name, connector_id: &ds.connector_id, removed: false }
    }
}

/// What a drain did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    pub upserts: u64,
    pub deletes: u64,
    /// Documents the sink refused for good (reported, not retried).
    pub rejected: Vec<(String, String)>,
    pub retries: u32,
}

/// How one attempt at a batch failed.
enum Failure {
    /// Worth another try, after at least this long.
    Retry(String, Option<Duration>),
    /// Retrying cannot help (bad credentials, a refused request).
    Fatal(String),
}

pub struct Deliverer {
    pub config: SinkConfig,
    client: Result<HttpClient, String>,
    /// Bounds each request to the sink (a hung sink is a retryable failure).
    timeout: Duration,
    /// Attempts per batch before giving up (the changes stay queued).
    pub attempts: u32,
    /// Between attempts of one batch (a sink's longer `Retry-After` wins).
    pub backoff: crate::policy::Backoff,
    /// Datasources whose connector and datasource this deliverer has seen in Coco (a new
    /// deliverer, e.g. after a restart, checks again: two `GET`s).
    coco_ready: std::collections::HashSet<String>,
    /// Datasources this deliverer removed at Coco: their remaining queued deletes are done.
    coco_removed: std::collections::HashSet<String>,
}

impl Deliverer {
    pub fn new(config: SinkConfig) -> Self {
        Self::with_timeout(config, Duration::from_secs(30))
    }

    /// `timeout` bounds each request to the sink (a hung sink is a retryable failure).
    pub fn with_timeout(config: SinkConfig, timeout: Duration) -> Self {
        let client = match &config {
            // A cluster that wants a client certificate gets its own client (same roots, proxy).
            SinkConfig::Elasticsearch { identity: Some(id), .. } => {
                crate::net::client::settings().and_then(|s| HttpClient::new(&s, Some(id))).map_err(|e| e.to_string())
            }
            _ => HttpClient::shared().map_err(|e| e.to_string()),
        };
        Self::with_client(config, timeout, client)
    }

    /// Over a given client (tests: a client that trusts a test CA).
    pub fn with_client(config: SinkConfig, timeout: Duration, client: Result<HttpClient, String>) -> Self {
        Deliverer {
            config,
            client,
            timeout,
            attempts: 8,
            backoff: crate::policy::Backoff::DELIVERY,
            coco_ready: Default::default(),
            coco_removed: Default::default(),
        }
    }

    /// Deliver everything queued for `target` (blocking).
    pub fn drain(&mut self, store: &Store, target: &Target<'_>) -> Result<Drained, DeliverError> {
        self.drain_some(store, target, usize::MAX).map(|(d, _)| d)
    }

    /// Deliver at most `max_batches` batches for `target` (a long-running host takes turns
    /// across datasources); true in the second field if more is queued.
    pub fn drain_some(
        &mut self,
        store: &Store,
        target: &Target<'_>,
        max_batches: usize,
    ) -> Result<(Drained, bool), DeliverError> {
        let sink = self.config.name();
        let mut drained = Drained::default();
        for _ in 0..max_batches {
            let pending = store.outbox_pending(&sink, target.id, BATCH_ROWS)?;
            let Some(last) = pending.last().map(|p| p.seq) else { return Ok((drained, false)) };
            let changes = coalesce(&pending);
            let mut attempt = 0;
            let outcome = loop {
                attempt += 1;
                match self.send(target, &changes) {
                    Ok(rejected) => break Ok(rejected),
                    Err(Failure::Fatal(why)) => break Err(DeliverError::Refused { sink: sink.clone(), why }),
                    Err(Failure::Retry(why, after)) => {
                        if attempt >= self.attempts {
                            break Err(DeliverError::GaveUp { sink: sink.clone(), why, attempts: attempt });
                        }
                        drained.retries += 1;
                        let backoff = self.backoff.delay(attempt - 1, rand::random::<f64>());
                        // Dropbox-style politeness: the sink's Retry-After, if longer, wins.
                        std::thread::sleep(after.map_or(backoff, |a| a.max(backoff)));
                    }
                }
            };
            match outcome {
                Ok(rejected) => {
                    for c in &changes {
                        match c {
                            Change::Upsert { .. } => drained.upserts += 1,
                            Change::Delete { .. } => drained.deletes += 1,
                        }
                    }
                    store.mark_delivered(&sink, target.id, last, changes.len() as u64)?;
                    if !rejected.is_empty() {
                        // mark_delivered clears the error; keep the refusal visible.
                        let why = format!(
                            "{} document(s) refused, e.g. {}: {}",
                            rejected.len(),
                            rejected[0].0,
                            rejected[0].1
                        );
                        store.record_sink_error(&sink, target.id, &why)?;
                    }
                    drained.rejected.extend(rejected);
                }
                Err(e) => {
                    store.record_sink_error(&sink, target.id, &redact::urls(&e.to_string()))?;
                    return Err(e);
                }
            }
        }
        let more = !store.outbox_pending(&sink, target.id, 1)?.is_empty();
        Ok((drained, more))
    }

    /// One attempt at a batch; Ok with the documents refused for good.
    fn send(&mut self, target: &Target<'_>, changes: &[Change]) -> Result<Vec<(String, String)>, Failure> {
        match self.config.clone() {
            SinkConfig::Jsonl { path } => write_jsonl(&path, changes).map(|()| Vec::new()),
            SinkConfig::Coco { url, token, in_flight, route } => {
                let coco = coco_api::Coco { base: &url, token: token.expose(), in_flight, route };
                self.send_coco(&coco, target, changes)?;
                Ok(Vec::new())
            }
            SinkConfig::Elasticsearch { url, index, auth, max_docs, max_bytes, .. } => {
                let mut rejected = Vec::new();
                for body in sinks::bulk_bodies(&index, changes, max_docs, max_bytes) {
                    let req = SinkRequest {
                        method: "POST",
                        url: format!("{}/_bulk", url.trim_end_matches('/')),
                        body,
                        content_type: "application/x-ndjson",
                    };
                    let answer = self.call(&req, &es_headers(&auth))?;
                    answer.check()?;
                    let outcomes = sinks::bulk_outcomes(&answer.body).map_err(|e| Failure::Retry(e, None))?;
                    if let Some((id, why)) = outcomes.iter().find_map(|(id, o)| match o {
                        ItemOutcome::Retry(why) => Some((id, why)),
                        _ => None,
                    }) {
                        // The whole batch again: what was done is idempotent by id.
                        return Err(Failure::Retry(format!("document {id}: {why}"), None));
                    }
                    rejected.extend(outcomes.into_iter().filter_map(|(id, o)| match o {
                        ItemOutcome::Rejected(why) => Some((id, why)),
                        _ => None,
                    }));
                }
                Ok(rejected)
            }
        }
    }

    /// One batch into Coco Server: ensure the connector and the datasource before its first
    /// upsert, then deletes and upserts ([`coco_api::Coco::push`]). Every refusal fails the
    /// batch (it stays queued): Coco has no per-document rejection that is safe to skip.
    fn send_coco(&mut self, coco: &coco_api::Coco<'_>, target: &Target<'_>, changes: &[Change]) -> Result<(), Failure> {
        let client = self.client.clone().map_err(Failure::Fatal)?;
        let mut transport = HttpTransport::new(&client, self.timeout);
        let result = self.push_coco(coco, target, changes, &mut transport);
        match (result, transport.permanent) {
            (Ok(()), _) => Ok(()),
            // A certificate that does not verify is not worth the backed-off attempts.
            (Err(_), Some(why)) => Err(Failure::Fatal(why)),
            (Err(f), None) if f.is_retryable() => Err(Failure::Retry(f.to_string(), f.retry_after())),
            (Err(f), None) => Err(Failure::Fatal(f.to_string())),
        }
    }

    fn push_coco(
        &mut self,
        coco: &coco_api::Coco<'_>,
        target: &Target<'_>,
        changes: &[Change],
        transport: &mut HttpTransport<'_>,
    ) -> Result<(), coco_api::Failure> {
        let only_deletes = changes.iter().all(|c| matches!(c, Change::Delete { .. }));
        // A removed datasource's documents go with it in one request. Only for a batch of
        // deletes alone: one with upserts means the account was connected again since.
        if target.removed && only_deletes {
            if self.coco_removed.contains(target.id) {
                return Ok(());
            }
            self.coco_ready.remove(target.id);
            match coco.remove_datasource(transport, target.id)? {
                coco_api::Removal::Removed => {
                    self.coco_removed.insert(target.id.to_string());
                    return Ok(());
                }
                // Documents may be there without their datasource: delete them by id.
                coco_api::Removal::NotThere => {}
            }
        }
        self.coco_removed.remove(target.id);
        let mut deletes = Vec::new();
        let mut upserts = Vec::new();
        for c in changes {
            match c {
                Change::Delete { doc_id } => deletes.push(doc_id.as_str()),
                Change::Upsert { doc_id, json } => upserts.push((doc_id.as_str(), json.as_str())),
            }
        }
        if !upserts.is_empty() && !self.coco_ready.contains(target.id) {
            let ds = coco_api::DatasourceRef { id: target.id, name: target.name, connector_id: target.connector_id };
            let keys = &crate::info::connector_info().file_icon_keys;
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            coco.ensure_datasource(transport, ds, &keys)?;
            self.coco_ready.insert(target.id.to_string());
        }
        // A batch is coalesced (one change per document), so deletes and upserts name
        // different documents and their order does not matter.
        let ds = coco_api::DatasourceRef { id: target.id, name: target.name, connector_id: target.connector_id };
        coco.push(transport, ds, &deletes, &upserts)?;
        Ok(())
    }

    fn call(&self, req: &SinkRequest, headers: &[(&str, String)]) -> Result<Answer, Failure> {
        let client = self.client.as_ref().map_err(|e| Failure::Fatal(e.clone()))?;
        let mut all: Vec<(&str, String)> = vec![("content-type", req.content_type.to_string())];
        all.extend(headers.iter().map(|(k, v)| (*k, v.clone())));
        let answer =
            crate::net::block_on(client.send(req.method, &req.url, &all, req.body.clone(), self.timeout, 64 << 20))
                .map_err(|e| {
                    let why = redact::urls(&format!("{} {}: {e}", req.method, req.url));
                    if e.is_permanent() {
                        Failure::Fatal(why)
                    } else {
                        Failure::Retry(why, None)
                    }
                })?;
        Ok(Answer { status: answer.status, headers: answer.headers, body: answer.body })
    }
}

/// A sink's HTTP answer.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn check(&self) -> Result<(), Failure> {
        check_status(self.status, &self.headers, &self.body)
    }
}

/// [`coco_api::Transport`] over the shared client: a batch of requests at once on the async
/// runtime. Each Coco write waits for its index's refresh, so what bounds throughput is how
/// many wait together.
pub struct HttpTransport<'a> {
    client: &'a HttpClient,
    timeout: Duration,
    /// The last failure that no retry can fix (a certificate that does not verify).
    pub permanent: Option<String>,
}

impl<'a> HttpTransport<'a> {
    pub fn new(client: &'a HttpClient, timeout: Duration) -> Self {
        HttpTransport { client, timeout, permanent: None }
    }
}

impl coco_api::Transport for HttpTransport<'_> {
    fn send_all(&mut self, requests: &[coco_api::Request]) -> Vec<Result<coco_api::Response, String>> {
        let (client, timeout) = (self.client, self.timeout);
        let sends = requests.iter().map(|r| {
            let headers: Vec<(&str, String)> = r.headers.iter().map(|(k, v)| (*k, v.clone())).collect();
            let body = r.body.clone();
            async move { client.send(r.method.as_str(), &r.url, &headers, body, timeout, 1 << 20).await }
        });
        let answers = crate::net::block_on(futures_util::future::join_all(sends));
        answers
            .into_iter()
            .map(|a| match a {
                Ok(a) => Ok(coco_api::Response { status: a.status, headers: a.headers, body: a.body }),
                Err(e) => {
                    let why = redact::urls(&e.to_string());
                    if e.is_permanent() {
                        self.permanent = Some(why.clone());
                    }
                    Err(why)
                }
            })
            .collect()
    }
}

fn es_headers(auth: &EsAuth) -> Vec<(&'static str, String)> {
    use base64::Engine as _;
    match auth {
        EsAuth::None => vec![],
        EsAuth::Basic { user, password } => {
            let raw = format!("{user}:{}", password.expose());
            vec![("authorization", format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw)))]
        }
        EsAuth::ApiKey(key) => vec![("authorization", format!("ApiKey {}", key.expose()))],
    }
}

/// 2xx is fine; 429 and 5xx are worth retrying (after `Retry-After`); the rest is refused.
fn check_status(status: u16, headers: &[(String, String)], body: &[u8]) -> Result<(), Failure> {
    let quote = || String::from_utf8_lossy(&body[..body.len().min(200)]).replace(['\n', '\r'], " ");
    match status {
        200..=299 => Ok(()),
        300..=399 => {
            let to = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("location")).map_or("", |(_, v)| v.as_str());
            Err(Failure::Fatal(redact::urls(&format!(
                "answered {status}, a redirect to {to}: not followed (the credentials would go along); configure the final URL"
            ))))
        }
        429 | 500..=599 => {
            let after = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
                .and_then(|(_, v)| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| Duration::from_secs_f64(s.min(3600.0)));
            Err(Failure::Retry(format!("answered {status}: {}", quote()), after))
        }
        _ => Err(Failure::Fatal(format!("answered {status}: {}", quote()))),
    }
}

fn write_jsonl(path: &std::path::Path, changes: &[Change]) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::Retry(format!("writing {}: {e}", path.display()), None);
    // A symbolic link at the target is refused for good: retrying would not change it.
    let file = crate::paths::open_output(path, true).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidInput => Failure::Fatal(e.to_string()),
        _ => io(e),
    })?;
    let mut w = std::io::BufWriter::new(file);
    for c in changes {
        match c {
            Change::Upsert { doc_id, json } => {
                w.write_all(br#"{"op":"upsert","id":"#).map_err(io)?;
                serde_json::to_writer(&mut w, doc_id).map_err(|e| io(e.into()))?;
                w.write_all(br#","document":"#).map_err(io)?;
                w.write_all(json.as_bytes()).map_err(io)?;
                w.write_all(b"}\n").map_err(io)?;
            }
            Change::Delete { doc_id } => {
                w.write_all(br#"{"op":"delete","id":"#).map_err(io)?;
                serde_json::to_writer(&mut w, doc_id).map_err(|e| io(e.into()))?;
                w.write_all(b"}\n").map_err(io)?;
            }
        }
    }
    let file = w.into_inner().map_err(|e| io(e.into_error()))?;
    // Durable before the outbox forgets the batch.
    file.sync_data().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_names_never_carry_credentials() {
        let es = SinkConfig::Elasticsearch {
            url: "https://elastic:hunter2@es.example:9200/".into(),
            index: "coco".into(),
            auth: EsAuth::None,
            max_docs: 1,
            max_bytes: 1,
            identity: None,
        };
        assert_eq!(es.name(), "elasticsearch:https://es.example:9200/coco");
        let coco = SinkConfig::Coco {
            url: "http://localhost:9000/".into(),
            token: Secret::new("t0k3n"),
            in_flight: 1,
            route: coco_api::UpsertRoute::Save,
        };
        assert_eq!(coco.name(), "coco:http://localhost:9000");
        assert!(!format!("{coco:?}").contains("t0k3n"), "Debug hides the token");
    }
}
