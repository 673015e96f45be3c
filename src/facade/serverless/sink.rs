//! Coco Server's REST ingestion routes, as the long-running host's Coco sink uses them:
//! `POST /datasource/` once, `DELETE /document/` with the ids, then
//! `POST /datasource/{id}/_doc/{doc_id}` per document (create or overwrite: idempotent).

use crate::http::{HttpRequest, HttpResponse, Transport, TransportError, MAX_ERROR_BODY_BYTES};
use crate::secret::Secret;

/// Where documents go: Coco Server's base URL and its API token.
#[derive(Debug)]
pub struct CocoSink {
    pub url: String,
    pub token: Secret,
}

/// The datasource the documents belong to.
pub struct Target<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub connector_id: &'a str,
}

/// Why a page could not be handed on. Nothing of it counts as delivered.
#[derive(Debug, PartialEq, Eq)]
pub struct SinkFailure {
    pub message: String,
    /// Coco asked to slow down (`429` / `Retry-After`).
    pub retry_after_secs: Option<u64>,
}

/// What Coco refused for good (a bad document), by id and reason; the rest went in.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    pub rejected: Vec<(String, String)>,
}

/// Coco's datasource object for one of ours: upstream's id and name, sync left to us.
pub fn datasource_json(t: &Target<'_>) -> serde_json::Value {
    serde_json::json!({
        "id": t.id,
        "type": "connector",
        "name": t.name,
        "icon": "default",
        "enabled": true,
        "sync": { "enabled": false, "interval": "30s" },
        "connector": { "id": t.connector_id, "config": {} },
    })
}

impl CocoSink {
    fn base(&self) -> &str {
        self.url.trim_end_matches('/')
    }

    fn call<T: Transport>(&self, transport: &mut T, req: HttpRequest) -> Result<HttpResponse, SinkFailure> {
        let what = format!("{} {}", req.method.as_str(), without_query(&req.url));
        let req = req
            .header("content-type", "application/json")
            .header("x-api-token", self.token.expose())
            .max_response_bytes(MAX_ERROR_BODY_BYTES);
        transport.send(&req).map_err(|e| SinkFailure {
            message: format!(
                "{what}: {}",
                match e {
                    TransportError::Denied(_) => "the runtime refused the request (allowed_outbound_hosts?)",
                    TransportError::Failed(_) => "Coco Server is unreachable",
                    TransportError::TooLarge { .. } => "its answer is too large",
                }
            ),
            retry_after_secs: None,
        })
    }

    /// Hand one page on. `create`: the datasource may not exist at Coco yet.
    pub fn push<'d, T: Transport>(
        &self,
        transport: &mut T,
        target: &Target<'_>,
        create: bool,
        deletes: &[String],
        upserts: impl IntoIterator<Item = (&'d str, &'d str)>,
    ) -> Result<Pushed, SinkFailure> {
        let mut upserts = upserts.into_iter().peekable();
        if create && upserts.peek().is_some() {
            let body = datasource_json(target).to_string();
            let resp = self.call(transport, HttpRequest::post(format!("{}/datasource/", self.base())).body(body))?;
            // 409: it exists already, which is all we need.
            if resp.status != 409 {
                failure(&resp, "creating the datasource")?;
            }
        }
        if !deletes.is_empty() {
            let body = serde_json::to_vec(deletes).unwrap_or_default();
            let resp = self.call(transport, HttpRequest::delete(format!("{}/document/", self.base())).body(body))?;
            failure(&resp, "deleting documents")?;
        }
        let mut pushed = Pushed::default();
        for (doc_id, json) in upserts {
            let url = format!("{}/datasource/{}/_doc/{doc_id}", self.base(), target.id);
            let resp = self.call(transport, HttpRequest::post(url).body(json.as_bytes().to_vec()))?;
            match failure(&resp, "storing a document") {
                Ok(()) => {}
                // Refused for good: reported, and the page goes on. Refused credentials,
                // throttling and server errors stop it (the page is sent again).
                Err(f) if is_refusal(resp.status) => pushed.rejected.push((doc_id.to_string(), f.message)),
                Err(f) => return Err(f),
            }
        }
        Ok(pushed)
    }
}

fn is_refusal(status: u16) -> bool {
    (400..500).contains(&status) && !matches!(status, 401 | 403 | 404 | 408 | 429)
}

fn failure(resp: &HttpResponse, doing: &str) -> Result<(), SinkFailure> {
    if (200..300).contains(&resp.status) {
        return Ok(());
    }
    let retry_after_secs = (resp.status == 429 || resp.status == 503)
        .then(|| resp.header("retry-after").and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(1));
    let detail: String = String::from_utf8_lossy(&resp.body).chars().take(200).collect();
    Err(SinkFailure {
        message: format!("Coco Server answered {} {doing}: {}", resp.status, detail.trim()),
        retry_after_secs,
    })
}

fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::fake::{reply, Scripted};
    use crate::http::Method;

    fn sink() -> CocoSink {
        CocoSink { url: "http://coco:9000/".into(), token: Secret::new("COCO-token") }
    }

    fn target() -> Target<'static> {
        Target { id: "ds1", name: "My Dropbox", connector_id: "dropbox" }
    }

    #[test]
    fn creates_deletes_then_upserts_with_the_token() {
        let mut t = Scripted::new([reply(409, "exists"), reply(200, "{}"), reply(200, "{}"), reply(200, "{}")]);
        let docs = [("d1", r#"{"id":"d1"}"#), ("d2", r#"{"id":"d2"}"#)];
        let pushed = sink().push(&mut t, &target(), true, &["gone".into()], docs).unwrap();
        assert!(pushed.rejected.is_empty());
        let seen: Vec<_> = t.seen.iter().map(|r| (r.method, r.url.as_str())).collect();
        assert_eq!(
            seen,
            [
                (Method::Post, "http://coco:9000/datasource/"),
                (Method::Delete, "http://coco:9000/document/"),
                (Method::Post, "http://coco:9000/datasource/ds1/_doc/d1"),
                (Method::Post, "http://coco:9000/datasource/ds1/_doc/d2"),
            ]
        );
        assert_eq!(t.seen[1].body, br#"["gone"]"#);
        assert!(t.seen.iter().all(|r| r.headers.iter().any(|(k, v)| *k == "x-api-token" && v == "COCO-token")));
    }

    #[test]
    fn a_refused_document_is_reported_and_throttling_or_errors_fail_the_page() {
        let mut t = Scripted::new([reply(400, "bad doc"), reply(200, "{}")]);
        let pushed = sink().push(&mut t, &target(), false, &[], [("d1", "{}"), ("d2", "{}")]).unwrap();
        assert_eq!(pushed.rejected.len(), 1);
        assert_eq!(pushed.rejected[0].0, "d1");
        let mut throttled =
            HttpResponse { status: 429, headers: vec![("retry-after".into(), "7".into())], body: vec![] };
        throttled.body.extend_from_slice(b"slow");
        let mut t = Scripted::new([Ok(throttled)]);
        let f = sink().push(&mut t, &target(), false, &[], [("d1", "{}")]).unwrap_err();
        assert_eq!(f.retry_after_secs, Some(7));
        let mut t = Scripted::new([reply(401, "no")]);
        assert!(sink().push(&mut t, &target(), false, &[], [("d1", "{}")]).is_err());
        let mut t = Scripted::offline();
        let f = sink().push(&mut t, &target(), false, &["x".into()], []).unwrap_err();
        assert!(
            f.message.starts_with("DELETE http://coco:9000/document/: Coco Server is unreachable"),
            "{}",
            f.message
        );
        assert!(!f.message.contains("COCO-token"));
        // Nothing to create for a page of deletes only.
        let mut t = Scripted::new([reply(200, "{}")]);
        sink().push(&mut t, &target(), true, &["x".into()], []).unwrap();
        assert_eq!(t.seen.len(), 1);
    }
}
