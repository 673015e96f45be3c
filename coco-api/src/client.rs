//! The steps a sink takes: ensure the connector and the datasource, hand a page on (deletes,
//! then upserts with a bounded number in flight), remove a datasource with its documents.

use std::time::Duration;

use crate::answer::{classify, Answer};
use crate::routes::{connector_json, datasource_json, request, segment, Method, Request, Response};
use crate::Transport;

/// How an upsert reaches Coco.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UpsertRoute {
    /// `PUT /document/:doc_id`: create or overwrite in one request (`orm.Save`).
    #[default]
    Save,
    /// `POST /datasource/:id/_doc/:doc_id` (create only), then `PUT` for the ids that conflict:
    /// the route Coco documents for connectors, one extra request per update.
    CreateThenSave,
}

/// The datasource a sink works for.
#[derive(Clone, Copy, Debug)]
pub struct DatasourceRef<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub connector_id: &'a str,
}

/// Why a step did not complete. Nothing of it counts as delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Worth another try (throttling, a server error, no answer), not before `after` if set.
    Retry { route: String, why: String, after: Option<Duration> },
    /// Retrying the same request cannot help until someone acts: a refused token, a missing
    /// connector or datasource Coco would not create, a refused request.
    Stop { route: String, why: String },
}

impl Failure {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Failure::Retry { .. })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Retry { after, .. } => *after,
            Failure::Stop { .. } => None,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Retry { route, why, .. } => write!(f, "Coco Server, {route}: {why}"),
            Failure::Stop { route, why } => write!(f, "Coco Server refused {route}: {why}"),
        }
    }
}

/// What an ensure step found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ensured {
    /// Coco had it already (left as it is).
    Existed,
    /// It was created now (or by another writer in between).
    Created,
}

/// What a push sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    pub upserts: usize,
    pub deletes: usize,
    pub requests: usize,
}

/// Ids per `DELETE /document/` (a delete-by-query with a terms filter).
const DELETE_CHUNK: usize = 500;

/// What removing a datasource found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// Coco removed it, with its documents.
    Removed,
    /// Coco had no such datasource; documents it once had may still be there (a `PUT` needs
    /// no datasource), so deletes by id are still owed.
    NotThere,
}

/// One Coco Server, seen by one sink.
#[derive(Clone)]
pub struct Coco<'a> {
    pub base: &'a str,
    pub token: &'a str,
    /// Writes in flight at once (at least 1).
    pub in_flight: usize,
    pub route: UpsertRoute,
}

/// The token and a base URL that may carry credentials stay out of `Debug`.
impl std::fmt::Debug for Coco<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coco").field("in_flight", &self.in_flight).field("route", &self.route).finish_non_exhaustive()
    }
}

/// A transport that answered a different number of requests than it was given: nothing of
/// the window may count as delivered.
fn short_answer(route: &str) -> Failure {
    Failure::Retry { route: route.to_string(), why: "the transport lost answers".into(), after: None }
}

impl Coco<'_> {
    fn req(&self, method: Method, path: String, body: Vec<u8>) -> Request {
        request(self.base, self.token, method, path, body)
    }

    fn one<T: Transport>(&self, t: &mut T, req: Request) -> Result<(Request, Response), Failure> {
        let mut answers = t.send_all(std::slice::from_ref(&req));
        match answers.pop() {
            Some(Ok(resp)) => Ok((req, resp)),
            Some(Err(why)) => Err(Failure::Retry { route: req.route, why, after: None }),
            None => Err(Failure::Retry { route: req.route, why: "the transport gave no answer".into(), after: None }),
        }
    }

    /// `GET` the object, and `POST` it on a 404; a conflict on the create means another
    /// writer created it in between, which is as good.
    fn ensure<T: Transport>(&self, t: &mut T, get: Request, create: Request) -> Result<Ensured, Failure> {
        let (get, resp) = self.one(t, get)?;
        match classify(&resp) {
            Answer::Ok => return Ok(Ensured::Existed),
            Answer::NotFound => {}
            other => return Err(failure(&get, other)),
        }
        let (create, resp) = self.one(t, create)?;
        match classify(&resp) {
            Answer::Ok | Answer::Conflict => Ok(Ensured::Created),
            other => Err(failure(&create, other)),
        }
    }

    /// The connector exists afterwards (`GET /connector/:id`, `POST /connector/` on a 404).
    pub fn ensure_connector<T: Transport>(
        &self,
        t: &mut T,
        id: &str,
        file_icon_keys: &[&str],
    ) -> Result<Ensured, Failure> {
        let get = self.req(Method::Get, format!("/connector/{}", segment(id)), Vec::new());
        let create =
            self.req(Method::Post, "/connector/".into(), connector_json(id, file_icon_keys).to_string().into());
        self.ensure(t, get, create)
    }

    /// The connector, then the datasource, exist afterwards. Coco refuses a datasource whose
    /// connector it does not know ("invalid connector").
    pub fn ensure_datasource<T: Transport>(
        &self,
        t: &mut T,
        ds: DatasourceRef<'_>,
        file_icon_keys: &[&str],
    ) -> Result<(), Failure> {
        self.ensure_connector(t, ds.connector_id, file_icon_keys)?;
        let get = self.req(Method::Get, format!("/datasource/{}", segment(ds.id)), Vec::new());
        let body = datasource_json(ds.id, ds.name, ds.connector_id).to_string().into_bytes();
        let create = self.req(Method::Post, "/datasource/".into(), body);
        self.ensure(t, get, create).map(|_| ())
    }

    /// Hand one batch on: `deletes` (ids not there are no error), then `upserts` (each id at
    /// most once), at most `in_flight` at a time. Either all of it is in Coco or a failure
    /// says why; sending the batch again is harmless.
    pub fn push<T: Transport>(
        &self,
        t: &mut T,
        ds: DatasourceRef<'_>,
        deletes: &[&str],
        upserts: &[(&str, &str)],
    ) -> Result<Pushed, Failure> {
        let mut pushed = Pushed::default();
        for chunk in deletes.chunks(DELETE_CHUNK) {
            let body = serde_json::to_vec(chunk).unwrap_or_default();
            let (req, resp) = self.one(t, self.req(Method::Delete, "/document/".into(), body))?;
            pushed.requests += 1;
            match classify(&resp) {
                Answer::Ok => pushed.deletes += chunk.len(),
                other => return Err(failure(&req, other)),
            }
        }
        let save = |doc_id: &str, json: &str| {
            self.req(Method::Put, format!("/document/{}", segment(doc_id)), json.as_bytes().to_vec())
        };
        for window in upserts.chunks(self.in_flight.max(1)) {
            let first: Vec<Request> = window
                .iter()
                .map(|(doc_id, json)| match self.route {
                    UpsertRoute::Save => save(doc_id, json),
                    UpsertRoute::CreateThenSave => self.req(
                        Method::Post,
                        format!("/datasource/{}/_doc/{}", segment(ds.id), segment(doc_id)),
                        json.as_bytes().to_vec(),
                    ),
                })
                .collect();
            let mut conflicted = Vec::new();
            let mut first_failure = None;
            let answers = t.send_all(&first);
            pushed.requests += first.len();
            if answers.len() != first.len() {
                return Err(short_answer(&first[0].route));
            }
            for ((req, answer), upsert) in first.iter().zip(answers).zip(window) {
                match answer.map(|r| classify(&r)) {
                    Ok(Answer::Ok) => pushed.upserts += 1,
                    Ok(Answer::Conflict) if self.route == UpsertRoute::CreateThenSave => {
                        conflicted.push(save(upsert.0, upsert.1))
                    }
                    Ok(other) => {
                        first_failure.get_or_insert_with(|| failure(req, other));
                    }
                    Err(why) => {
                        first_failure.get_or_insert_with(|| Failure::Retry {
                            route: req.route.clone(),
                            why,
                            after: None,
                        });
                    }
                }
            }
            // Every request of the window has its answer: nothing is left in flight.
            if let Some(f) = first_failure {
                return Err(f);
            }
            if conflicted.is_empty() {
                continue;
            }
            let answers = t.send_all(&conflicted);
            pushed.requests += conflicted.len();
            if answers.len() != conflicted.len() {
                return Err(short_answer(&conflicted[0].route));
            }
            for (req, answer) in conflicted.iter().zip(answers) {
                match answer.map(|r| classify(&r)) {
                    Ok(Answer::Ok) => pushed.upserts += 1,
                    Ok(other) => return Err(failure(req, other)),
                    Err(why) => return Err(Failure::Retry { route: req.route.clone(), why, after: None }),
                }
            }
        }
        Ok(pushed)
    }

    /// `DELETE /datasource/:id`: Coco removes the datasource and, by query on `source.id`,
    /// every document of it.
    pub fn remove_datasource<T: Transport>(&self, t: &mut T, id: &str) -> Result<Removal, Failure> {
        let (req, resp) = self.one(t, self.req(Method::Delete, format!("/datasource/{}", segment(id)), Vec::new()))?;
        match classify(&resp) {
            Answer::Ok => Ok(Removal::Removed),
            Answer::NotFound => Ok(Removal::NotThere),
            other => Err(failure(&req, other)),
        }
    }
}

fn failure(req: &Request, answer: Answer) -> Failure {
    let route = req.route.clone();
    match answer {
        Answer::Retry { why, after } => Failure::Retry { route, why, after },
        Answer::Invalid(why) => Failure::Stop {
            route,
            why: format!("{why} (Coco Server does not know the connector or datasource this needs)"),
        },
        Answer::Unauthorized(why) => {
            Failure::Stop { route, why: format!("{why} (check COCO_SERVER_TOKEN and its permissions)") }
        }
        Answer::Refused(why) => Failure::Stop { route, why },
        Answer::NotFound => Failure::Stop { route, why: "not found".into() },
        Answer::Conflict => Failure::Stop { route, why: "the id exists already".into() },
        Answer::Ok => Failure::Stop { route, why: "no failure".into() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Answers from a script, one per request, recording what was asked and how many at once.
    struct Script {
        answers: VecDeque<Result<Response, String>>,
        seen: Vec<String>,
        batches: Vec<usize>,
    }

    fn script(answers: &[(u16, &str)]) -> Script {
        Script {
            answers: answers
                .iter()
                .map(|(s, b)| Ok(Response { status: *s, headers: vec![], body: b.as_bytes().to_vec() }))
                .collect(),
            seen: vec![],
            batches: vec![],
        }
    }

    impl Transport for Script {
        fn send_all(&mut self, requests: &[Request]) -> Vec<Result<Response, String>> {
            self.batches.push(requests.len());
            requests
                .iter()
                .map(|r| {
                    self.seen.push(r.route.clone());
                    self.answers.pop_front().unwrap_or_else(|| Err("no more answers".into()))
                })
                .collect()
        }
    }

    const CONFLICT: &str = r#"{"error":{"reason":"{\"error\":{\"type\":\"version_conflict_engine_exception\"},\"status\":409}"},"status":500}"#;
    const DS: DatasourceRef<'static> = DatasourceRef { id: "ds1", name: "My Dropbox", connector_id: "dropbox" };

    fn coco(in_flight: usize, route: UpsertRoute) -> Coco<'static> {
        Coco { base: "http://coco:9000/", token: "tok", in_flight, route }
    }

    #[test]
    fn ensure_gets_then_creates_on_404_and_takes_a_conflict_as_created() {
        let mut t = script(&[(404, r#"{"found":false}"#), (200, "{}"), (404, "{}"), (500, CONFLICT)]);
        coco(4, UpsertRoute::Save).ensure_datasource(&mut t, DS, &["default"]).unwrap();
        assert_eq!(t.seen, ["GET /connector/dropbox", "POST /connector/", "GET /datasource/ds1", "POST /datasource/"]);
        // On a set-up server the connector is there: one GET each.
        let mut t = script(&[(200, r#"{"found":true}"#), (200, r#"{"found":true}"#)]);
        coco(4, UpsertRoute::Save).ensure_datasource(&mut t, DS, &["default"]).unwrap();
        assert_eq!(t.seen, ["GET /connector/dropbox", "GET /datasource/ds1"]);
    }

    #[test]
    fn an_invalid_connector_stops_with_the_route_and_coco_s_reason() {
        let mut t =
            script(&[(200, "{}"), (404, "{}"), (500, r#"{"error":{"reason":"invalid connector","status":500}}"#)]);
        let f = coco(4, UpsertRoute::Save).ensure_datasource(&mut t, DS, &[]).unwrap_err();
        assert!(!f.is_retryable());
        assert_eq!(f.to_string(), "Coco Server refused POST /datasource/: invalid connector (Coco Server does not know the connector or datasource this needs)");
    }

    #[test]
    fn push_deletes_first_then_saves_in_windows_of_in_flight() {
        let mut t = script(&[(200, "{}"); 6]);
        let ups = [("a", "{}"), ("b", "{}"), ("c", "{}"), ("d", "{}"), ("e", "{}")];
        let pushed = coco(2, UpsertRoute::Save).push(&mut t, DS, &["gone"], &ups).unwrap();
        assert_eq!(pushed, Pushed { upserts: 5, deletes: 1, requests: 6 });
        assert_eq!(t.batches, [1, 2, 2, 1]);
        assert_eq!(t.seen[..3], ["DELETE /document/", "PUT /document/a", "PUT /document/b"]);
    }

    #[test]
    fn create_then_save_saves_only_what_conflicts() {
        let mut t = script(&[(200, "{}"), (500, CONFLICT), (200, "{}")]);
        let pushed =
            coco(8, UpsertRoute::CreateThenSave).push(&mut t, DS, &[], &[("new", "{}"), ("old", "{}")]).unwrap();
        assert_eq!(pushed.upserts, 2);
        assert_eq!(t.seen, ["POST /datasource/ds1/_doc/new", "POST /datasource/ds1/_doc/old", "PUT /document/old"]);
    }

    #[test]
    fn any_failed_write_fails_the_batch_after_its_window_is_answered() {
        let mut t = script(&[(200, "{}"), (500, r#"{"error":{"reason":"es down"},"status":500}"#), (200, "{}")]);
        let f = coco(3, UpsertRoute::Save).push(&mut t, DS, &[], &[("a", "{}"), ("b", "{}"), ("c", "{}")]).unwrap_err();
        assert!(f.is_retryable());
        assert_eq!(f.to_string(), "Coco Server, PUT /document/b: es down");
        assert_eq!(t.seen.len(), 3, "the whole window was answered");
        let mut t = script(&[]);
        let f = coco(3, UpsertRoute::Save).push(&mut t, DS, &[], &[("a", "{}")]).unwrap_err();
        assert_eq!(f, Failure::Retry { route: "PUT /document/a".into(), why: "no more answers".into(), after: None });
        let mut t = script(&[(401, r#"{"error":{"reason":"invalid login"},"status":401}"#)]);
        assert!(!coco(3, UpsertRoute::Save).push(&mut t, DS, &[], &[("a", "{}")]).unwrap_err().is_retryable());
    }

    #[test]
    fn removing_a_datasource_says_whether_it_was_there() {
        let mut t = script(&[
            (200, r#"{"_id":"ds1","result":"deleted"}"#),
            (500, r#"{"error":{"reason":"record not found","status":500}}"#),
        ]);
        assert_eq!(coco(1, UpsertRoute::Save).remove_datasource(&mut t, "ds1").unwrap(), Removal::Removed);
        assert_eq!(coco(1, UpsertRoute::Save).remove_datasource(&mut t, "ds1").unwrap(), Removal::NotThere);
        assert_eq!(t.seen, ["DELETE /datasource/ds1", "DELETE /datasource/ds1"]);
    }

    /// A transport that drops answers: nothing of the window counts as delivered.
    struct Lossy;

    impl Transport for Lossy {
        fn send_all(&mut self, requests: &[Request]) -> Vec<Result<Response, String>> {
            requests.iter().skip(1).map(|_| Ok(Response { status: 200, ..Response::default() })).collect()
        }
    }

    #[test]
    fn lost_answers_fail_the_window() {
        let f = coco(4, UpsertRoute::Save).push(&mut Lossy, DS, &[], &[("a", "{}"), ("b", "{}")]).unwrap_err();
        assert!(f.is_retryable(), "{f}");
    }

    #[test]
    fn debug_shows_neither_the_token_nor_the_base() {
        let c = Coco { base: "http://user:pw@coco:9000", token: "T0KEN", in_flight: 4, route: UpsertRoute::Save };
        let shown = format!("{c:?}");
        assert!(!shown.contains("T0KEN") && !shown.contains("pw"), "{shown}");
    }

    #[test]
    fn no_empty_delete_is_ever_sent() {
        let mut t = script(&[]);
        coco(1, UpsertRoute::Save).push(&mut t, DS, &[], &[]).unwrap();
        assert!(t.seen.is_empty(), "Coco answers 400 to an empty id list");
    }
}
