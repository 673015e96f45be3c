//! The key-value mode end to end in plain Rust: the facade's `handle` with an in-memory store
//! and a scripted network (Dropbox and Coco Server answers in order).

use std::collections::HashMap;

use super::kv::MemoryKv;
use crate::facade::*;
use crate::http::fake::{reply, Scripted};
use crate::http::{HttpResponse, Method, TransportError};

const API_TOKEN: &str = "api-token-0123456789";
const SEAL: &str = "seal-secret-0123456789abcdef-0123456789";
const TOKEN_BODY: &str =
    r#"{"access_token":"sl.ACCESS-xyz","expires_in":14400,"refresh_token":"REFRESH-abc","token_type":"bearer"}"#;
const ACCOUNT: &str = r#"{"account_id":"dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc","name":{"display_name":"Franz"},
    "email":"franz@dropbox.com","root_info":{".tag":"user","root_namespace_id":"1","home_namespace_id":"1"}}"#;
/// The datasource id upstream gives that account under connector `dropbox`.
const DS: &str = "0335b4e59c687f2666f7d7e5d5d17686";

fn config() -> FacadeConfig {
    let vars: HashMap<&str, &str> = HashMap::from([
        (ENV_CLIENT_ID, "APPKEY"),
        (ENV_CLIENT_SECRET, "APP-SECRET-xyz"),
        (ENV_STATE_SECRET, "state-secret-0123456789"),
        (ENV_API_TOKEN, API_TOKEN),
        (ENV_SEAL_SECRET, SEAL),
        (ENV_SERVER_URL, "http://coco.test:9000"),
        (ENV_SERVER_TOKEN, "COCO-token-1"),
        (ENV_BASE_URL, "http://dropbox.test"),
    ]);
    FacadeConfig::from_lookup(|k| vars.get(k).map(|v| v.to_string()))
}

fn random(n: u8) -> Randomness {
    Randomness { nonce: [n; 16], cookie: [n; 32], seal_nonce: [n; 24], holder: [n; 16] }
}

struct World {
    config: FacadeConfig,
    kv: MemoryKv,
    now: u64,
    calls: u8,
}

impl World {
    fn new() -> World {
        World { config: config(), kv: MemoryKv::default(), now: 1_000, calls: 0 }
    }

    fn call(&mut self, method: &str, path: &str, query: &str, hs: &[(&str, &str)], t: &mut Scripted) -> Outgoing {
        self.calls = self.calls.wrapping_add(1);
        let headers: Vec<(String, String)> = hs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let req = Incoming { method, path, query, headers: &headers, body: b"" };
        handle(&self.config, &req, t, self.now, &random(self.calls), Some(&mut self.kv))
    }

    fn api(&mut self, method: &str, path: &str, t: &mut Scripted) -> (u16, serde_json::Value) {
        let out = self.call(method, path, "", &[("x-api-token", API_TOKEN)], t);
        (out.status, serde_json::from_slice(&out.body).unwrap_or(serde_json::Value::Null))
    }

    /// The browser flow: connect, consent (the scripted token and account), redirect.
    fn connect(&mut self) -> Outgoing {
        let out = self.call(
            "GET",
            "/connector/dropbox/dropbox/connect",
            "",
            &[("host", "127.0.0.1:8080"), ("x-api-token", API_TOKEN)],
            &mut Scripted::offline(),
        );
        let location = out.headers.iter().find(|(k, _)| *k == "location").unwrap().1.clone();
        let state =
            url::Url::parse(&location).unwrap().query_pairs().find(|(k, _)| k == "state").unwrap().1.to_string();
        let cookie =
            out.headers.iter().find(|(k, _)| *k == "set-cookie").unwrap().1.split(';').next().unwrap().to_string();
        let mut t = Scripted::new([reply(200, TOKEN_BODY), reply(200, ACCOUNT)]);
        let query = format!("code=CODE&state={state}");
        self.call(
            "GET",
            "/connector/dropbox/dropbox/oauth_redirect",
            &query,
            &[("host", "127.0.0.1:8080"), ("cookie", &cookie)],
            &mut t,
        )
    }

    fn all_values(&self) -> String {
        self.kv.map.iter().map(|(k, v)| format!("{k}={}\n", String::from_utf8_lossy(v))).collect()
    }
}

fn file(name: &str, id: &str, path: &str) -> String {
    format!(
        r#"{{".tag":"file","name":"{name}","id":"{id}","path_lower":"{path}","path_display":"{path}","size":3,"rev":"0123456789a","is_downloadable":true}}"#
    )
}

fn folder(name: &str, id: &str, path: &str) -> String {
    format!(r#"{{".tag":"folder","name":"{name}","id":"{id}","path_lower":"{path}","path_display":"{path}"}}"#)
}

fn deleted(path: &str) -> String {
    format!(r#"{{".tag":"deleted","name":"x","path_lower":"{path}","path_display":"{path}"}}"#)
}

fn page(entries: &[String], cursor: &str, has_more: bool) -> Result<HttpResponse, TransportError> {
    reply(200, &format!(r#"{{"entries":[{}],"cursor":"{cursor}","has_more":{has_more}}}"#, entries.join(",")))
}

fn doc_id(entry_id: &str) -> String {
    crate::mapping::document_id(DS, entry_id)
}

#[test]
fn connecting_stores_the_datasource_sealed_and_lists_it_without_secrets() {
    let mut w = World::new();
    let out = w.connect();
    assert_eq!(out.status, 200, "{}", String::from_utf8_lossy(&out.body));
    let body = String::from_utf8_lossy(&out.body).to_string();
    assert!(body.contains(DS) && !body.contains("REFRESH") && !body.contains("ACCESS"));
    let stored = w.all_values();
    assert!(stored.contains(&format!("ds:{DS}=")), "{stored}");
    assert!(!stored.contains("REFRESH-abc") && !stored.contains("sl.ACCESS"), "tokens are sealed: {stored}");
    let (status, list) = w.api("GET", "/datasources", &mut Scripted::offline());
    assert_eq!(status, 200);
    assert_eq!(list["datasources"][0]["id"], DS);
    assert_eq!(list["datasources"][0]["status"], "listing");
    assert!(!list.to_string().contains("REFRESH") && !list.to_string().contains("v1."), "{list}");
    let (status, one) = w.api("GET", &format!("/datasources/{DS}"), &mut Scripted::offline());
    assert_eq!((status, one["name"].as_str()), (200, Some("Franz's Dropbox")));
    assert_eq!(w.api("GET", "/datasources/nope", &mut Scripted::offline()).0, 404);
    // The API routes need the token; the browser routes never see the store's contents.
    let out = w.call("GET", "/datasources", "", &[], &mut Scripted::offline());
    assert_eq!(out.status, 401);
    assert_eq!(
        w.call("POST", &format!("/sync/{DS}"), "", &[("x-api-token", "wrong")], &mut Scripted::offline()).status,
        401
    );
}

#[test]
fn sync_hands_each_page_to_coco_before_the_cursor_moves() {
    let mut w = World::new();
    w.connect();
    let first = [folder("a", "id:A", "/a"), file("x.txt", "id:X", "/a/x.txt"), file("y.txt", "id:Y", "/y.txt")];
    // Page 1: list_folder, then Coco: the connector and the datasource exist, three documents.
    let mut t = Scripted::new([
        page(&first, "C1", true),
        reply(200, "{}"),
        reply(200, "{}"),
        reply(200, "{}"),
        reply(200, "{}"),
        reply(200, "{}"),
    ]);
    let (status, step) = w.api("POST", &format!("/sync/{DS}"), &mut t);
    assert_eq!(status, 200, "{step}");
    assert_eq!((step["has_more"].as_bool(), step["upserted"].as_u64()), (Some(true), Some(3)));
    assert_eq!(step["wait_secs"].as_u64(), Some(0), "more to come: go on");
    assert!(t.seen[0].url.ends_with("/2/files/list_folder"));
    assert_eq!((t.seen[1].method, t.seen[1].url.as_str()), (Method::Get, "http://coco.test:9000/connector/dropbox"));
    assert_eq!(
        (t.seen[2].method, t.seen[2].url.clone()),
        (Method::Get, format!("http://coco.test:9000/datasource/{DS}"))
    );
    assert_eq!(t.seen[3].method, Method::Put, "create or overwrite");
    assert!(t.seen[3].url.ends_with(&format!("/document/{}", doc_id("id:A"))));
    // Page 2: Coco is down. The cursor stays at C1: the next call asks for the same page.
    let second = [deleted("/a"), file("z.txt", "id:Z", "/z.txt")];
    let mut t = Scripted::new([page(&second, "C2", false)]);
    let (status, step) = w.api("POST", &format!("/sync/{DS}"), &mut t);
    assert_eq!((status, step["error"]["kind"].as_str()), (502, Some("sink-failed")));
    let (_, shown) = w.api("GET", &format!("/datasources/{DS}"), &mut Scripted::offline());
    assert_eq!(shown["status"], "error");
    let mut t = Scripted::new([page(&second, "C2", false), reply(200, "{}"), reply(200, "{}")]);
    let (status, step) = w.api("POST", &format!("/sync/{DS}"), &mut t);
    assert_eq!(status, 200, "{step}");
    assert!(String::from_utf8_lossy(&t.seen[0].body).contains(r#""cursor":"C1""#), "the same page again");
    // The folder delete took its child with it, by id.
    assert_eq!(t.seen[1].method, Method::Delete);
    let mut ids: Vec<String> = serde_json::from_slice(&t.seen[1].body).unwrap();
    ids.sort();
    let mut want = vec![doc_id("id:A"), doc_id("id:X")];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(
        (step["deleted"].as_u64(), step["documents"].as_u64(), step["listing"].as_bool()),
        (Some(2), Some(2), Some(false))
    );
    // Synced: the next call continues from C2.
    let mut t = Scripted::new([page(&[], "C3", false)]);
    let (status, step) = w.api("POST", &format!("/sync/{DS}"), &mut t);
    assert_eq!((status, step["upserted"].as_u64()), (200, Some(0)));
    assert_eq!(step["wait_secs"].as_u64(), Some(super::IDLE_WAIT_SECS), "caught up: come back later");
    assert!(
        t.seen[0].url.ends_with("/list_folder/continue") && String::from_utf8_lossy(&t.seen[0].body).contains("C2")
    );
    assert_eq!(t.seen.len(), 1, "nothing to hand on");
}

#[test]
fn a_reset_relists_and_sweeps_what_is_gone() {
    let mut w = World::new();
    w.connect();
    let mut t = Scripted::new([
        page(&[file("a", "id:A", "/a"), file("b", "id:B", "/b")], "C1", false),
        reply(200, "{}"),
        reply(200, "{}"),
        reply(200, "{}"),
        reply(200, "{}"),
    ]);
    assert_eq!(w.api("POST", &format!("/sync/{DS}"), &mut t).0, 200);
    let reset = reply(409, r#"{"error_summary":"reset/..","error":{".tag":"reset"}}"#);
    let (status, step) = w.api("POST", &format!("/sync/{DS}"), &mut Scripted::new([reset]));
    assert_eq!((status, step["reset"].as_bool(), step["has_more"].as_bool()), (200, Some(true), Some(true)));
    // The re-listing sees only /a: /b is deleted at its end.
    let mut t = Scripted::new([page(&[file("a", "id:A", "/a")], "R1", false), reply(200, "{}"), reply(200, "{}")]);
    let (status, step) = w.api("POST", &format!("/sync/{DS}"), &mut t);
    assert_eq!(status, 200, "{step}");
    assert!(!String::from_utf8_lossy(&t.seen[0].body).contains("C1"), "listed from the start");
    assert_eq!(t.seen[1].method, Method::Delete);
    assert_eq!(serde_json::from_slice::<Vec<String>>(&t.seen[1].body).unwrap(), [doc_id("id:B")]);
    assert_eq!((step["documents"].as_u64(), step["listing"].as_bool()), (Some(1), Some(false)));
}

#[test]
fn a_concurrent_call_is_refused_and_rate_limits_carry_retry_after() {
    let mut w = World::new();
    w.connect();
    let claim = super::lease::claim(&mut w.kv, DS, w.now, "someone-else").unwrap();
    assert!(matches!(claim, super::lease::Claim::Held(_)));
    let out = w.call("POST", &format!("/sync/{DS}"), "", &[("x-api-token", API_TOKEN)], &mut Scripted::offline());
    assert_eq!(out.status, 409);
    assert!(out.headers.iter().any(|(k, v)| *k == "retry-after" && v == "300"));
    w.now += super::lease::LEASE_SECS + 1;
    let limited = HttpResponse {
        status: 429,
        headers: vec![("retry-after".into(), "12".into())],
        body: br#"{"error_summary":"too_many_requests/","error":{"reason":{".tag":"too_many_requests"},"retry_after":12}}"#.to_vec(),
    };
    let out =
        w.call("POST", &format!("/sync/{DS}"), "", &[("x-api-token", API_TOKEN)], &mut Scripted::new([Ok(limited)]));
    assert_eq!(out.status, 429, "{}", String::from_utf8_lossy(&out.body));
    assert!(out.headers.iter().any(|(k, v)| *k == "retry-after" && v == "12"));
    // The lease was given back after each call: it can be taken at once.
    assert!(matches!(super::lease::claim(&mut w.kv, DS, w.now, "next").unwrap(), super::lease::Claim::Held(_)));
}

#[test]
fn refreshed_tokens_are_kept_even_when_the_page_is_not_handed_on() {
    let mut w = World::new();
    w.connect();
    w.now += 20_000;
    let refreshed = r#"{"access_token":"sl.FRESH-1","expires_in":14400,"token_type":"bearer"}"#;
    let mut t = Scripted::new([reply(200, refreshed), page(&[file("a", "id:A", "/a")], "C1", false)]);
    assert_eq!(w.api("POST", &format!("/sync/{DS}"), &mut t).0, 502);
    assert!(!w.all_values().contains("FRESH"), "sealed");
    // The next call uses the refreshed token without refreshing again.
    let mut t = Scripted::new([page(&[file("a", "id:A", "/a")], "C1", false), reply(200, "{}"), reply(200, "{}")]);
    t.answers.push_back(reply(200, "{}"));
    assert_eq!(w.api("POST", &format!("/sync/{DS}"), &mut t).0, 200);
    assert!(t.seen[0].headers.iter().any(|(k, v)| *k == "authorization" && v == "Bearer sl.FRESH-1"));
}

#[test]
fn delete_revokes_then_forgets_everything() {
    let mut w = World::new();
    w.connect();
    let mut t = Scripted::new([page(&[folder("a", "id:A", "/a"), file("x", "id:X", "/a/x")], "C1", false)]);
    t.answers.extend([reply(200, "{}"), reply(200, "{}"), reply(200, "{}"), reply(200, "{}")]);
    assert_eq!(w.api("POST", &format!("/sync/{DS}"), &mut t).0, 200);
    // Dropbox down: nothing is removed.
    let (status, _) = w.api("DELETE", &format!("/datasources/{DS}"), &mut Scripted::new([reply(503, "down")]));
    assert_eq!(status, 503);
    assert!(w.kv.map.contains_key(&format!("ds:{DS}")));
    // Coco refuses: the record stays, and the call can be made again.
    let mut t = Scripted::new([reply(200, "null"), reply(500, r#"{"error":{"reason":"es down"},"status":500}"#)]);
    let (status, body) = w.api("DELETE", &format!("/datasources/{DS}"), &mut t);
    assert_eq!((status, body["error"]["kind"].as_str()), (502, Some("sink-failed")), "{body}");
    assert!(w.kv.map.contains_key(&format!("ds:{DS}")));
    assert!(!w.all_values().contains("v1."), "the revoked tokens are gone from the store");
    // Again: the revoke went through before, so straight to Coco, which no longer has the
    // datasource: the documents the index holds are deleted by id.
    let not_found = r#"{"error":{"reason":"record not found","status":500}}"#;
    let mut t = Scripted::new([reply(500, not_found), reply(200, "{}")]);
    let (status, body) = w.api("DELETE", &format!("/datasources/{DS}"), &mut t);
    assert_eq!((status, body["revoked"].as_bool()), (200, Some(true)), "{body}");
    assert_eq!(
        (t.seen[0].method, t.seen[0].url.clone()),
        (Method::Delete, format!("http://coco.test:9000/datasource/{DS}"))
    );
    assert_eq!(t.seen[1].url, "http://coco.test:9000/document/");
    let mut ids: Vec<String> = serde_json::from_slice(&t.seen[1].body).unwrap();
    ids.sort();
    let mut want = vec![doc_id("id:A"), doc_id("id:X")];
    want.sort();
    assert_eq!(ids, want);
    assert!(w.kv.map.is_empty(), "{}", w.all_values());
    assert_eq!(w.api("POST", &format!("/sync/{DS}"), &mut Scripted::offline()).0, 404);
}

#[test]
fn a_coco_that_refuses_for_good_keeps_the_record_until_forced() {
    let mut w = World::new();
    w.connect();
    let denied = r#"{"error":{"reason":"permission [[coco#datasource/delete]] not allowed"},"status":403}"#;
    let mut t = Scripted::new([reply(200, "null"), reply(403, denied)]);
    let (status, body) = w.api("DELETE", &format!("/datasources/{DS}"), &mut t);
    assert_eq!((status, body["error"]["needs_operator"].as_bool()), (502, Some(true)), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("not allowed"), "{body}");
    assert!(w.kv.map.contains_key(&format!("ds:{DS}")));
    let hs = [("x-api-token", API_TOKEN)];
    let out =
        w.call("DELETE", &format!("/datasources/{DS}"), "force=true", &hs, &mut Scripted::new([reply(403, denied)]));
    assert_eq!(out.status, 200, "{}", String::from_utf8_lossy(&out.body));
    assert!(w.kv.map.is_empty(), "{}", w.all_values());
}

#[test]
fn without_seal_secret_or_sink_the_stateful_routes_say_what_is_missing() {
    let mut w = World::new();
    w.connect();
    w.config.sink = Err(crate::Error::InvalidInput(format!("{ENV_SERVER_URL} is not set")));
    let (status, body) = w.api("POST", &format!("/sync/{DS}"), &mut Scripted::offline());
    assert_eq!((status, body["error"]["kind"].as_str()), (503, Some("not-configured")));
    assert!(body.to_string().contains(ENV_SERVER_URL));
    // The stateless build answers 404 on these routes.
    let headers = vec![("x-api-token".to_string(), API_TOKEN.to_string())];
    let req = Incoming { method: "GET", path: "/datasources", query: "", headers: &headers, body: b"" };
    assert_eq!(handle(&w.config, &req, &mut Scripted::offline(), 1, &random(1), None).status, 404);
    // Ids that could reach other keys are not routes.
    assert_eq!(w.api("GET", "/datasources/a:b", &mut Scripted::offline()).0, 404);
    assert_eq!(w.api("PUT", &format!("/datasources/{DS}"), &mut Scripted::offline()).0, 405);
}

#[test]
fn a_tick_steps_every_datasource_once() {
    let mut w = World::new();
    w.connect();
    let mut t = Scripted::new([page(&[file("a", "id:A", "/a")], "C1", false), reply(200, "{}"), reply(200, "{}")]);
    t.answers.push_back(reply(200, "{}"));
    let mut n = 0u8;
    let steps = super::tick(&w.config, &mut w.kv, &mut t, w.now, || {
        n += 1;
        Ok(random(100 + n))
    })
    .unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!((steps[0].0.as_str(), steps[0].1.status), (DS, 200));
    // Without a sink, a tick says what is missing instead of syncing.
    w.config.sink = Err(crate::Error::InvalidInput(format!("{ENV_SERVER_URL} is not set")));
    let e = super::tick(&w.config, &mut w.kv, &mut Scripted::offline(), w.now, || Ok(random(1))).unwrap_err();
    assert!(e.contains(ENV_SERVER_URL), "{e}");
}

#[test]
fn a_store_that_refuses_writes_fails_the_step_without_moving_the_cursor() {
    let mut w = World::new();
    w.connect();
    w.kv.fail_writes_to = Some("n:".into());
    let mut t = Scripted::new([page(&[file("a", "id:A", "/a")], "C1", false), reply(200, "{}"), reply(200, "{}")]);
    t.answers.push_back(reply(200, "{}"));
    let (status, body) = w.api("POST", &format!("/sync/{DS}"), &mut t);
    assert_eq!((status, body["error"]["kind"].as_str()), (503, Some("store-failed")), "{body}");
    w.kv.fail_writes_to = None;
    // The page again, handed on again (Coco's datasource too: that it exists was not stored).
    let mut t = Scripted::new([page(&[file("a", "id:A", "/a")], "C1", false), reply(200, "{}"), reply(200, "{}")]);
    t.answers.push_back(reply(200, "{}"));
    assert_eq!(w.api("POST", &format!("/sync/{DS}"), &mut t).0, 200);
    assert!(!String::from_utf8_lossy(&t.seen[0].body).contains("C1"), "the same first page again");
}

/// With a store a connect link is single-use: the first browser that opens it holds it (and may
/// open it again); a second browser is refused.
#[test]
fn a_connect_link_binds_to_the_first_browser() {
    let mut w = World::new();
    let hs = [("x-api-token", API_TOKEN), ("host", "127.0.0.1:8080")];
    let out = w.call("POST", "/api/connect-links", "", &hs, &mut Scripted::offline());
    assert_eq!(out.status, 200, "{}", String::from_utf8_lossy(&out.body));
    let v: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
    let url = url::Url::parse(v["url"].as_str().unwrap()).unwrap();
    let (path, query) = (url.path().to_string(), url.query().unwrap().to_string());
    let first = w.call("GET", &path, &query, &[("host", "127.0.0.1:8080")], &mut Scripted::offline());
    assert_eq!(first.status, 302, "{}", String::from_utf8_lossy(&first.body));
    let cookie =
        first.headers.iter().find(|(k, _)| *k == "set-cookie").unwrap().1.split(';').next().unwrap().to_string();
    // The same browser again (it sends its cookie): fine.
    let again =
        w.call("GET", &path, &query, &[("host", "127.0.0.1:8080"), ("cookie", &cookie)], &mut Scripted::offline());
    assert_eq!(again.status, 302);
    // Another browser: no cookie, or another one.
    for other in [
        vec![("host", "127.0.0.1:8080")],
        vec![("host", "127.0.0.1:8080"), ("cookie", "coco_dropbox_oauth=someone-else")],
    ] {
        let out = w.call("GET", &path, &query, &other, &mut Scripted::offline());
        assert_eq!(out.status, 403, "{}", String::from_utf8_lossy(&out.body));
    }
    // The API token still opens /connect without a link.
    assert_eq!(w.connect().status, 200);
}
