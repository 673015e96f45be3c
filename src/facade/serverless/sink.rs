//! The key-value facade's Coco sink: [`coco_api`]'s protocol (the one the host's sink speaks)
//! over the core's I/O seam. Before a datasource's first document the connector and the
//! datasource are ensured; upserts are `PUT /document/:doc_id` (create or overwrite), at most
//! `in_flight` at once; deletes `DELETE /document/`; removing a datasource
//! `DELETE /datasource/:id`. Any refusal fails the page: the caller keeps the cursor.

use coco_api::{Coco, DatasourceRef, Failure, UpsertRoute};

use crate::http::{HttpRequest, HttpResponse, Method, Transport, TransportError};
use crate::secret::Secret;

/// Where documents go: Coco Server's base URL, its API token, and the writes in flight.
#[derive(Debug)]
pub struct CocoSink {
    pub url: String,
    pub token: Secret,
    pub in_flight: usize,
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
    /// Coco asked to slow down (`429` / `Retry-After`), or a retry is worth it after this.
    pub retry_after_secs: Option<u64>,
    /// Retrying cannot help until someone acts (a refused token, an unknown connector).
    pub needs_operator: bool,
}

impl From<Failure> for SinkFailure {
    fn from(f: Failure) -> Self {
        SinkFailure {
            message: f.to_string(),
            retry_after_secs: f.retry_after().map(|d| d.as_secs().max(1)),
            needs_operator: !f.is_retryable(),
        }
    }
}

/// What went to Coco for one page.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    pub upserts: usize,
    pub deletes: usize,
}

/// [`coco_api::Transport`] over the core's seam (waki in the component, fakes in tests).
struct Via<'t, T>(&'t mut T);

impl<T: Transport> coco_api::Transport for Via<'_, T> {
    fn send_all(&mut self, requests: &[coco_api::Request]) -> Vec<Result<coco_api::Response, String>> {
        let ours: Vec<HttpRequest> = requests
            .iter()
            .map(|r| {
                let method = match r.method {
                    coco_api::Method::Get => Method::Get,
                    coco_api::Method::Post => Method::Post,
                    coco_api::Method::Put => Method::Put,
                    coco_api::Method::Delete => Method::Delete,
                };
                let mut req = HttpRequest::new(method, r.url.clone()).body(r.body.clone());
                req.headers = r.headers.clone();
                req.max_response_bytes(crate::http::MAX_ERROR_BODY_BYTES)
            })
            .collect();
        self.0
            .send_all(&ours)
            .into_iter()
            .map(|a| {
                a.map(|HttpResponse { status, headers, body }| coco_api::Response { status, headers, body }).map_err(
                    |e| match e {
                        TransportError::Denied(_) => {
                            "the runtime refused the request (is Coco Server in allowed_outbound_hosts?)".to_string()
                        }
                        TransportError::Failed(_) => "Coco Server is unreachable".to_string(),
                        TransportError::TooLarge { limit } => format!("its answer is over {limit} bytes"),
                    },
                )
            })
            .collect()
    }
}

impl CocoSink {
    fn coco(&self) -> Coco<'_> {
        Coco { base: &self.url, token: self.token.expose(), in_flight: self.in_flight.max(1), route: UpsertRoute::Save }
    }

    /// Hand one page on. `ensure`: the connector and datasource may not exist at Coco yet.
    pub fn push<T: Transport>(
        &self,
        transport: &mut T,
        target: &Target<'_>,
        ensure: bool,
        deletes: &[String],
        upserts: &[(&str, &str)],
    ) -> Result<Pushed, SinkFailure> {
        let mut via = Via(transport);
        let coco = self.coco();
        let ds = DatasourceRef { id: target.id, name: target.name, connector_id: target.connector_id };
        if ensure && !upserts.is_empty() {
            coco.ensure_datasource(&mut via, ds, &crate::mapping::FILE_ICON_KEYS)?;
        }
        let deletes: Vec<&str> = deletes.iter().map(String::as_str).collect();
        let pushed = coco.push(&mut via, ds, &deletes, upserts)?;
        Ok(Pushed { upserts: pushed.upserts, deletes: pushed.deletes })
    }

    /// Remove the datasource at Coco, with its documents. `ids`: the documents the index
    /// holds, deleted by id when Coco has no such datasource (a `PUT` needs none, so they may
    /// be there all the same).
    pub fn remove<T: Transport>(
        &self,
        transport: &mut T,
        datasource_id: &str,
        ids: impl FnOnce() -> Vec<String>,
    ) -> Result<(), SinkFailure> {
        let mut via = Via(transport);
        match self.coco().remove_datasource(&mut via, datasource_id)? {
            coco_api::Removal::Removed => Ok(()),
            coco_api::Removal::NotThere => {
                let ids = ids();
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                let ds = DatasourceRef { id: datasource_id, name: "", connector_id: "" };
                self.coco().push(&mut via, ds, &ids, &[])?;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::fake::{reply, Scripted};

    fn sink() -> CocoSink {
        CocoSink { url: "http://coco:9000/".into(), token: Secret::new("COCO-token"), in_flight: 8 }
    }

    fn target() -> Target<'static> {
        Target { id: "ds1", name: "My Dropbox", connector_id: "dropbox" }
    }

    #[test]
    fn ensures_then_deletes_then_saves_with_the_token() {
        let mut t = Scripted::new([
            reply(200, r#"{"found":true}"#),
            reply(404, r#"{"found":false}"#),
            reply(200, "{}"),
            reply(200, "{}"),
            reply(200, "{}"),
            reply(200, "{}"),
        ]);
        let docs = [("d1", r#"{"id":"d1"}"#), ("d2", r#"{"id":"d2"}"#)];
        let pushed = sink().push(&mut t, &target(), true, &["gone".into()], &docs).unwrap();
        assert_eq!(pushed, Pushed { upserts: 2, deletes: 1 });
        let seen: Vec<_> = t.seen.iter().map(|r| (r.method, r.url.as_str())).collect();
        assert_eq!(
            seen,
            [
                (Method::Get, "http://coco:9000/connector/dropbox"),
                (Method::Get, "http://coco:9000/datasource/ds1"),
                (Method::Post, "http://coco:9000/datasource/"),
                (Method::Delete, "http://coco:9000/document/"),
                (Method::Put, "http://coco:9000/document/d1"),
                (Method::Put, "http://coco:9000/document/d2"),
            ]
        );
        assert_eq!(t.seen[3].body, br#"["gone"]"#);
        assert!(t.seen.iter().all(|r| r.headers.iter().any(|(k, v)| *k == "x-api-token" && v == "COCO-token")));
    }

    #[test]
    fn every_refusal_fails_the_page_and_says_why_without_the_token() {
        let mut t = Scripted::new([reply(500, r#"{"error":{"reason":"mapper_parsing_exception"},"status":500}"#)]);
        let f = sink().push(&mut t, &target(), false, &[], &[("d1", "{}")]).unwrap_err();
        assert_eq!(f.message, "Coco Server, PUT /document/d1: mapper_parsing_exception");
        assert!(!f.needs_operator);
        let throttled = HttpResponse { status: 429, headers: vec![("retry-after".into(), "7".into())], body: vec![] };
        let mut t = Scripted::new([Ok(throttled)]);
        let f = sink().push(&mut t, &target(), false, &[], &[("d1", "{}")]).unwrap_err();
        assert_eq!(f.retry_after_secs, Some(7));
        let mut t = Scripted::new([reply(401, r#"{"error":{"reason":"invalid login"},"status":401}"#)]);
        assert!(sink().push(&mut t, &target(), false, &[], &[("d1", "{}")]).unwrap_err().needs_operator);
        let mut t = Scripted::offline();
        let f = sink().push(&mut t, &target(), false, &["x".into()], &[]).unwrap_err();
        assert_eq!(f.message, "Coco Server, DELETE /document/: Coco Server is unreachable");
        assert!(!f.message.contains("COCO-token"));
        // Nothing to ensure for a page of deletes only.
        let mut t = Scripted::new([reply(200, "{}")]);
        sink().push(&mut t, &target(), true, &["x".into()], &[]).unwrap();
        assert_eq!(t.seen.len(), 1);
    }
}
