//! Draining the outbox into a sink: batches in order per datasource, retries with backoff on
//! 429 / 5xx / transport failures (honouring `Retry-After`), and progress recorded only after
//! a batch was accepted, so delivery is at least once and idempotent by document id.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::outbox::{coalesce, Change};
use crate::secret::Secret;
use crate::sinks::{self, ItemOutcome, SinkRequest};
use crate::store::Store;

/// Outbox rows read per batch.
const BATCH_ROWS: usize = 500;

/// Where documents go.
#[derive(Clone, Debug)]
pub enum SinkConfig {
    /// One JSON line per change appended to a file: `{"op":"upsert","id":…,"document":…}` or
    /// `{"op":"delete","id":…}`.
    Jsonl { path: PathBuf },
    /// Coco Server's REST API (`X-API-TOKEN`).
    Coco { url: String, token: Secret },
    /// `_bulk` into one index of Elasticsearch, OpenSearch or Easysearch.
    Elasticsearch { url: String, index: String, auth: EsAuth, max_docs: usize, max_bytes: usize },
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
    Store(#[from] crate::store::StoreError),
}

/// The datasource a delivery is for.
pub struct Target<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub connector_id: &'a str,
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
    agent: ureq::Agent,
    /// Attempts per batch before giving up (the changes stay queued).
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    coco_datasources: std::collections::HashSet<String>,
}

impl Deliverer {
    pub fn new(config: SinkConfig) -> Self {
        Self::with_timeout(config, Duration::from_secs(30))
    }

    /// `timeout` bounds each request to the sink (a hung sink is a retryable failure).
    pub fn with_timeout(config: SinkConfig, timeout: Duration) -> Self {
        let agent =
            ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(timeout)).build().into();
        Deliverer {
            config,
            agent,
            attempts: 8,
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            coco_datasources: Default::default(),
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
                        let backoff =
                            self.first_backoff.saturating_mul(1 << (attempt - 1).min(16)).min(self.max_backoff);
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
                    store.record_sink_error(&sink, target.id, &e.to_string())?;
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
            SinkConfig::Coco { url, token } => self.send_coco(&url, &token, target, changes),
            SinkConfig::Elasticsearch { url, index, auth, max_docs, max_bytes } => {
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

    fn send_coco(
        &mut self,
        url: &str,
        token: &Secret,
        target: &Target<'_>,
        changes: &[Change],
    ) -> Result<Vec<(String, String)>, Failure> {
        let headers = [("x-api-token", token.expose().to_string())];
        // Deletes alone need no datasource (its documents may outlive it: it was removed here).
        let upserts = changes.iter().any(|c| matches!(c, Change::Upsert { .. }));
        if upserts && !self.coco_datasources.contains(target.id) {
            let ds = sinks::coco_datasource(target.id, target.name, target.connector_id);
            let answer = self.call(&sinks::coco_create_datasource(url, &ds), &headers)?;
            // 409: it exists already, which is all we need.
            if answer.status != 409 {
                answer.check()?;
            }
            self.coco_datasources.insert(target.id.to_string());
        }
        let mut rejected = Vec::new();
        let mut deletes: Vec<&str> = Vec::new();
        let flush_deletes = |me: &mut Self, deletes: &mut Vec<&str>| -> Result<(), Failure> {
            if deletes.is_empty() {
                return Ok(());
            }
            me.call(&sinks::coco_delete(url, deletes), &headers)?.check()?;
            deletes.clear();
            Ok(())
        };
        for c in changes {
            match c {
                Change::Delete { doc_id } => deletes.push(doc_id),
                Change::Upsert { doc_id, json } => {
                    // In order: deletes before this upsert go first.
                    flush_deletes(self, &mut deletes)?;
                    let answer = self.call(&sinks::coco_upsert(url, target.id, doc_id, json), &headers)?;
                    match answer.check() {
                        Ok(()) => {}
                        // A refused document is reported; refused credentials stop the sink.
                        Err(Failure::Fatal(why)) if !matches!(answer.status, 401 | 403) => {
                            rejected.push((doc_id.clone(), why))
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        flush_deletes(self, &mut deletes)?;
        Ok(rejected)
    }

    fn call(&self, req: &SinkRequest, headers: &[(&str, String)]) -> Result<Answer, Failure> {
        let mut builder =
            http::Request::builder().method(req.method).uri(&req.url).header("content-type", req.content_type);
        for (k, v) in headers {
            builder = builder.header(*k, v);
        }
        let request = builder.body(req.body.clone()).map_err(|e| Failure::Fatal(format!("bad request: {e}")))?;
        let resp =
            self.agent.run(request).map_err(|e| Failure::Retry(format!("{} {}: {e}", req.method, req.url), None))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let body = resp
            .into_body()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .map_err(|e| Failure::Retry(format!("reading the answer of {}: {e}", req.url), None))?;
        Ok(Answer { status, headers, body })
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
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
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
        };
        assert_eq!(es.name(), "elasticsearch:https://es.example:9200/coco");
        let coco = SinkConfig::Coco { url: "http://localhost:9000/".into(), token: Secret::new("t0k3n") };
        assert_eq!(coco.name(), "coco:http://localhost:9000");
        assert!(!format!("{coco:?}").contains("t0k3n"), "Debug hides the token");
    }
}
