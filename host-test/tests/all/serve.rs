//! `coco-host serve` as a process: connect flow over HTTP with curl-like requests, the admin
//! API, webhooks, longpolls, fairness across 200 tenants, two processes on one state, and
//! SIGKILL/SIGTERM mid-run. Real component, real wasmtime, the emulator on loopback.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dropbox_emulator::{Config, Emulator, Webhook};

use crate::wasm;
use coco_host::keys::Keys;
use coco_host::state::Store;

const MASTER_KEY: &str = "serve-test-master-key-0123456789abcdef";
const TOKEN: &str = "serve-test-admin-token-0123456789";
const APP: (&str, &str) = ("serve-app", "serve-app-secret");

/// A plain HTTP answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One request, no redirects followed, off the async runtime (the emulator shares it).
pub async fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
    let (method, url) = (method.to_string(), url.to_string());
    let headers: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let body = body.map(<[u8]>::to_vec);
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut req = http::Request::builder().method(method.as_str()).uri(&url);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let resp = match body {
            Some(b) => agent.run(req.body(b).unwrap()),
            None => agent.run(req.body(()).unwrap()),
        }
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let body = resp.into_body().read_to_string().unwrap_or_default();
        Resp { status, headers, body }
    })
    .await
    .unwrap()
}

pub(crate) fn token_header() -> (&'static str, &'static str) {
    ("x-api-token", TOKEN)
}

/// A `coco-host serve` child process; killed (SIGKILL) when dropped.
pub struct Served {
    pub child: Child,
    pub base: String,
    pub stderr: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Start `serve` on `state` against the emulator, with extra flags; waits for `/readyz`.
pub async fn serve(emu: &Emulator, state: &Path, flags: &[&str]) -> Served {
    serve_on(emu, state.as_os_str(), state, flags).await
}

/// `serve` with `--state` as given (a folder or a `postgres://` URL), logging into `logs`.
pub async fn serve_on(emu: &Emulator, state: &std::ffi::OsStr, logs: &Path, flags: &[&str]) -> Served {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let stderr = logs.join(format!("serve-{port}.log"));
    std::fs::create_dir_all(logs).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_coco-host"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--dropbox", &emu.base_url()])
        .args(flags)
        .env("COCO_STATE_DIR", state)
        .env("COCO_CACHE_DIR", logs.join("cache"))
        .env("COCO_DROPBOX_WASM", wasm())
        .env("COCO_MASTER_KEY", MASTER_KEY)
        .env("COCO_API_TOKEN", TOKEN)
        .env("COCO_DROPBOX_CLIENT_ID", APP.0)
        .env("COCO_DROPBOX_CLIENT_SECRET", APP.1)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let served = Served { child, base, stderr };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
            && http("GET", &format!("{}/readyz", served.base), &[], None).await.status == 200;
        if ready {
            return served;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not get ready: {}",
            std::fs::read_to_string(&served.stderr).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The browser's part of connecting account `account` through `serve`: `/connect` (with the
/// API token, as an operator's curl would), Dropbox's consent, the redirect with the cookie.
/// Returns the page's text.
pub async fn connect(emu: &Emulator, base: &str, account: usize) -> Resp {
    emu.log_in(account);
    let start = http("GET", &format!("{base}/connector/dropbox/dropbox/connect"), &[token_header()], None).await;
    assert_eq!(start.status, 302, "{}", start.body);
    let cookie = start.header("set-cookie").expect("a session cookie").split(';').next().unwrap().to_string();
    let back = dropbox_emulator::approve(start.header("location").unwrap()).await.unwrap();
    http("GET", &back, &[("cookie", &cookie)], None).await
}

pub(crate) const MASTER: &str = MASTER_KEY;

pub(crate) fn open_store(state: &Path) -> Store {
    Store::open(&state.join("coco.sqlite"), Keys::from_master(MASTER_KEY.as_bytes()).unwrap()).unwrap()
}

/// The account's entries as (document id, path), the way the index must hold them.
pub(crate) fn expected(emu: &Emulator, account: usize, ds: &str) -> BTreeMap<String, String> {
    emu.tree(account)
        .into_iter()
        .filter(|e| e.name != ".DS_Store")
        .map(|e| (crate::document_id(ds, &e.id), e.path_lower))
        .collect()
}

pub(crate) fn indexed(store: &Store, ds: &str) -> BTreeMap<String, String> {
    let entries = store.index_entries(ds).unwrap();
    let n = entries.len();
    let map: BTreeMap<String, String> = entries.into_iter().collect();
    let paths: BTreeSet<&String> = map.values().collect();
    assert_eq!(paths.len(), n, "two documents of {ds} share a path");
    map
}

/// Wait until `done()` holds, or fail with `what`.
pub(crate) async fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn datasource_id(emu: &Emulator, account: usize) -> String {
    let acct = emu.account_id(account).unwrap();
    let email = if account == 0 { "franz@example.com".to_string() } else { format!("user{account}@example.com") };
    coco_host::registration::datasource_id("dropbox", &acct, &email)
}

fn sign(body: &[u8], secret: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_admin_api_and_webhooks() {
    let emu = Emulator::start(Config::accounts(11, &[1500, 700, 300], APP.0, APP.1), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    // Webhooks only: no longpoll, and an interval far beyond the test.
    let s = serve(&emu, &state, &["--no-longpoll", "--interval", "3600"]).await;
    let base = s.base.clone();

    // Closed by default: every admin route, connect and metrics need the token.
    let ds0 = datasource_id(&emu, 0);
    for (method, path) in [
        ("GET", "/api/datasources".to_string()),
        ("POST", "/api/datasources".to_string()),
        ("GET", format!("/api/datasources/{ds0}")),
        ("PATCH", format!("/api/datasources/{ds0}")),
        ("DELETE", format!("/api/datasources/{ds0}")),
        ("POST", format!("/api/datasources/{ds0}/sync")),
        ("POST", format!("/api/datasources/{ds0}/pause")),
        ("POST", format!("/api/datasources/{ds0}/resume")),
        ("POST", "/api/connect-links".to_string()),
        ("GET", "/metrics".to_string()),
        ("GET", "/connector/dropbox/dropbox/connect".to_string()),
        ("GET", "/api/coco/connector/dropbox/dropbox/connect".to_string()),
    ] {
        for headers in [vec![], vec![("x-api-token", "wrong-token-0123456789")], vec![("authorization", "Bearer ")]] {
            let r = http(method, &format!("{base}{path}"), &headers, Some(b"{}")).await;
            assert_eq!(r.status, 401, "{method} {path} with {headers:?}: {}", r.body);
        }
    }
    assert_eq!(http("GET", &format!("{base}/healthz"), &[], None).await.status, 200);
    assert_eq!(http("GET", &format!("{base}/readyz"), &[], None).await.status, 200);

    // The redirect without the browser's cookie is refused before any code exchange.
    emu.log_in(0);
    let start = http("GET", &format!("{base}/connector/dropbox/dropbox/connect"), &[token_header()], None).await;
    assert_eq!(start.status, 302);
    let cookie = start.header("set-cookie").unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    assert_eq!(start.header("cache-control"), Some("no-store"));
    let back = dropbox_emulator::approve(start.header("location").unwrap()).await.unwrap();
    let grants = emu.counters().code_grants;
    let stolen = http("GET", &back, &[("cookie", "coco_dropbox_oauth=someone-elses-cookie-value")], None).await;
    assert_eq!(stolen.status, 403, "{}", stolen.body);
    let no_cookie = http("GET", &back, &[], None).await;
    assert_eq!(no_cookie.status, 403);
    assert_eq!(emu.counters().code_grants, grants, "no exchange happened");

    // Three accounts, connected the way an operator's browser (or curl) does: one with a link.
    let page = connect(&emu, &base, 0).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(&ds0) && page.body.contains("Franz Ferdinand&#39;s Dropbox"), "{}", page.body);
    connect(&emu, &base, 1).await;
    let link = http(
        "POST",
        &format!("{base}/api/connect-links"),
        &[token_header(), ("content-type", "application/json")],
        Some(br#"{"connector_id": "dropbox"}"#),
    )
    .await;
    assert_eq!(link.status, 200, "{}", link.body);
    let link_url = link.json()["url"].as_str().unwrap().to_string();
    emu.log_in(2);
    let start = http("GET", &link_url, &[], None).await;
    assert_eq!(start.status, 302, "a signed link starts the flow without the token: {}", start.body);
    let tampered = http("GET", &link_url.replace("ticket=", "ticket=x"), &[], None).await;
    assert_eq!(tampered.status, 401);
    let cookie = start.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    // The link is single-use: another browser is refused; the first may open it again.
    let second = http("GET", &link_url, &[], None).await;
    assert_eq!(second.status, 403, "a second browser: {}", second.body);
    let planted = http("GET", &link_url, &[("cookie", "coco_dropbox_oauth=someone-elses")], None).await;
    assert_eq!(planted.status, 403);
    let again = http("GET", &link_url, &[("cookie", &cookie)], None).await;
    assert_eq!(again.status, 302, "the same browser: {}", again.body);
    let cookie = again.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    let start = again;
    let back = dropbox_emulator::approve(start.header("location").unwrap()).await.unwrap();
    assert_eq!(http("GET", &back, &[("cookie", &cookie)], None).await.status, 200);

    let ids: Vec<String> = (0..3).map(|a| datasource_id(&emu, a)).collect();
    let store = open_store(&state);
    until("three full syncs", Duration::from_secs(60), || {
        (0..3).all(|a| indexed(&store, &ids[a]) == expected(&emu, a, &ids[a]))
    })
    .await;

    // The admin API: stable fields.
    let list = http("GET", &format!("{base}/api/datasources"), &[token_header()], None).await;
    assert_eq!(list.status, 200);
    let all = list.json()["datasources"].as_array().unwrap().clone();
    assert_eq!(all.len(), 3);
    for d in &all {
        for field in ["id", "name", "status", "phase", "documents", "lag_secs", "last_error", "next_sync_at"] {
            assert!(d.get(field).is_some(), "{field} missing in {d}");
        }
        assert_eq!(d["status"], "ok");
        assert_eq!(d["phase"], "incremental");
        assert_eq!(d["interval_secs"], 3600);
    }
    let one =
        http("GET", &format!("{base}/api/datasources/{ds0}"), &[("authorization", &format!("Bearer {TOKEN}"))], None)
            .await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["documents"].as_u64().unwrap() as usize, expected(&emu, 0, &ds0).len());
    assert_eq!(http("GET", &format!("{base}/api/datasources/nope"), &[token_header()], None).await.status, 404);

    // Webhook: verification echo; a bad signature schedules nothing.
    let challenge = http("GET", &format!("{base}/dropbox/webhook?challenge=c-123"), &[], None).await;
    assert_eq!((challenge.status, challenge.body.as_str()), (200, "c-123"));
    assert_eq!(challenge.header("x-content-type-options"), Some("nosniff"));
    assert!(challenge.header("content-type").unwrap().starts_with("text/plain"));
    emu.edit(1).add("/webhook one.txt", false, 10).unwrap();
    let body = serde_json::to_vec(&serde_json::json!({ "list_folder": { "accounts": [emu.account_id(1).unwrap()] } }))
        .unwrap();
    let continues = emu.counters().get("files/list_folder/continue");
    let bad = http(
        "POST",
        &format!("{base}/dropbox/webhook"),
        &[("x-dropbox-signature", &sign(&body, "not-the-secret"))],
        Some(&body),
    )
    .await;
    assert_eq!(bad.status, 403);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(emu.counters().get("files/list_folder/continue"), continues, "a bad signature syncs nothing");
    assert!(indexed(&store, &ids[1]) != expected(&emu, 1, &ids[1]));
    // A good one: account 1 syncs at once, without waiting for its hour.
    let good =
        http("POST", &format!("{base}/dropbox/webhook"), &[("x-dropbox-signature", &sign(&body, APP.1))], Some(&body))
            .await;
    assert_eq!(good.status, 200, "{}", good.body);
    until("the webhook's sync", Duration::from_secs(20), || indexed(&store, &ids[1]) == expected(&emu, 1, &ids[1]))
        .await;
    // The emulator's own signed delivery works too.
    emu.set_webhook(Some(Webhook {
        url: format!("{base}/dropbox/webhook"),
        app_secret: APP.1.into(),
        attempts: 3,
        first_retry: Duration::from_millis(200),
    }));
    emu.edit(2).add("/delivered by dropbox.txt", false, 1).unwrap();
    until("the emulator's webhook sync", Duration::from_secs(20), || {
        indexed(&store, &ids[2]) == expected(&emu, 2, &ids[2])
    })
    .await;
    assert_eq!(emu.counters().webhooks_failed, 0);
    emu.set_webhook(None);

    // PATCH, pause, sync-now, resume.
    let patched = http(
        "PATCH",
        &format!("{base}/api/datasources/{}", ids[2]),
        &[token_header(), ("content-type", "application/json")],
        Some(br#"{"interval_secs": 120, "page_limit": 50}"#),
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(
        (patched.json()["interval_secs"].as_u64(), patched.json()["page_limit"].as_u64()),
        (Some(120), Some(50))
    );
    for bad in
        [&br#"{"page_limit": 5000}"#[..], br#"{"interval_secs": 0}"#, br#"{"path": "relative"}"#, br#"{"colour": 1}"#]
    {
        let r = http("PATCH", &format!("{base}/api/datasources/{}", ids[2]), &[token_header()], Some(bad)).await;
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(bad));
    }
    // Content: serve fetches it beside the listing; the API shows the counts and takes settings.
    until("content of account 2", Duration::from_secs(60), || {
        store.content_counts(&ids[2]).map(|c| c.pending == 0 && c.done > 0).unwrap_or(false)
    })
    .await;
    let shown = http("GET", &format!("{base}/api/datasources/{}", ids[2]), &[token_header()], None).await;
    let content = &shown.json()["content"];
    assert!(content["done"].as_u64().unwrap() > 0 && content["enabled"] == true, "{content}");
    assert!(content["skipped"]["unsupported"].as_u64().unwrap_or(0) > 0, "{content}");
    let doc_with_text = {
        let mut found = false;
        store
            .for_each_document(&ids[2], |_, json| {
                found |= json.contains("\"content\":\"token-");
                Ok(())
            })
            .unwrap();
        found
    };
    assert!(doc_with_text, "a generated document's extracted text is in its JSON");
    for bad in [
        &br#"{"content": {"formats": ["exe"]}}"#[..],
        br#"{"content": {"max_download_bytes": 0}}"#,
        br#"{"content": {"colour": 1}}"#,
    ] {
        let r = http("PATCH", &format!("{base}/api/datasources/{}", ids[2]), &[token_header()], Some(bad)).await;
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(bad));
    }
    let off = http(
        "PATCH",
        &format!("{base}/api/datasources/{}", ids[2]),
        &[token_header()],
        Some(br#"{"content": {"enabled": false}}"#),
    )
    .await;
    assert_eq!((off.status, off.json()["content"]["enabled"].as_bool()), (200, Some(false)), "{}", off.body);
    assert_eq!(off.json()["content"]["done"], 0);
    let paused = http("POST", &format!("{base}/api/datasources/{}/pause", ids[2]), &[token_header()], None).await;
    assert_eq!(paused.json()["status"], "paused");
    assert_eq!(paused.json()["next_sync_at"], serde_json::Value::Null);
    assert_eq!(
        http("POST", &format!("{base}/api/datasources/{}/sync", ids[2]), &[token_header()], None).await.status,
        409
    );
    let resumed = http("POST", &format!("{base}/api/datasources/{}/resume", ids[2]), &[token_header()], None).await;
    assert_eq!(resumed.json()["status"], "ok");
    emu.edit(0).add("/synced on request.txt", false, 3).unwrap();
    let now = http("POST", &format!("{base}/api/datasources/{ds0}/sync"), &[token_header()], None).await;
    assert_eq!(now.status, 202);
    until("the requested sync", Duration::from_secs(20), || indexed(&store, &ds0) == expected(&emu, 0, &ds0)).await;
    // Folder change through PATCH restarts the listing on that folder only.
    let folder = emu.tree(0).into_iter().find(|e| e.is_folder).unwrap();
    let r = http(
        "PATCH",
        &format!("{base}/api/datasources/{ds0}"),
        &[token_header()],
        Some(format!(r#"{{"path": "{}"}}"#, folder.path_display).as_bytes()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    http("POST", &format!("{base}/api/datasources/{ds0}/sync"), &[token_header()], None).await;
    let inside = |p: &String| p == &folder.path_lower || p.starts_with(&format!("{}/", folder.path_lower));
    until("the folder's listing", Duration::from_secs(30), || {
        let want: BTreeMap<_, _> = expected(&emu, 0, &ds0).into_iter().filter(|(_, p)| inside(p)).collect();
        indexed(&store, &ds0) == want
    })
    .await;

    // Metrics.
    let metrics = http("GET", &format!("{base}/metrics"), &[token_header()], None).await;
    assert_eq!(metrics.status, 200);
    for name in [
        "coco_pages_total",
        "coco_dropbox_requests_total",
        "coco_documents_upserted_total",
        "coco_documents_deleted_total",
        "coco_sync_duration_seconds_bucket",
        "coco_change_to_index_seconds_bucket",
        "coco_datasource_lag_seconds{datasource=",
        "coco_webhooks_total{result=\"bad-signature\"} 1",
        "coco_notice_to_index_seconds_bucket{trigger=\"webhook\"",
    ] {
        assert!(metrics.body.contains(name), "{name} missing from /metrics");
    }

    // DELETE revokes and removes.
    let gone = http("DELETE", &format!("{base}/api/datasources/{}", ids[1]), &[token_header()], None).await;
    assert_eq!(gone.status, 200, "{}", gone.body);
    assert_eq!(gone.json()["tokens"], "revoked");
    assert_eq!(http("GET", &format!("{base}/api/datasources/{}", ids[1]), &[token_header()], None).await.status, 404);
    assert!(store.index_entries(&ids[1]).unwrap().is_empty());

    // No browser answer, log line or API answer carries a secret.
    let mut seen = String::new();
    seen.push_str(&http("GET", &format!("{base}/api/datasources"), &[token_header()], None).await.body);
    seen.push_str(&metrics.body);
    seen.push_str(&page.body);
    seen.push_str(&std::fs::read_to_string(&s.stderr).unwrap());
    for secret in emu.issued_tokens().iter().map(String::as_str).chain([APP.1, MASTER_KEY, TOKEN]) {
        assert!(!seen.contains(secret), "a secret leaked: {}…", &secret[..6.min(secret.len())]);
    }
    emu.stop().await;
}

/// A change is picked up by the longpoll alone: no `continue` polling in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longpoll_picks_up_changes_without_polling() {
    let emu =
        Emulator::start(Config::accounts(12, &[800], APP.0, APP.1), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let s = serve(&emu, &state, &["--interval", "3600", "--longpoll-timeout", "30"]).await;
    connect(&emu, &s.base, 0).await;
    let ds = datasource_id(&emu, 0);
    let store = open_store(&state);
    until("the first sync", Duration::from_secs(30), || indexed(&store, &ds) == expected(&emu, 0, &ds)).await;
    until("a longpoll waiting", Duration::from_secs(10), || emu.counters().get("files/list_folder/longpoll") >= 1)
        .await;
    for round in 0..3 {
        let before = emu.counters();
        emu.edit(0).add(&format!("/longpoll {round}.txt"), false, 1).unwrap();
        until("the longpoll's sync", Duration::from_secs(20), || indexed(&store, &ds) == expected(&emu, 0, &ds)).await;
        let after = emu.counters();
        assert_eq!(
            after.get("files/list_folder/continue") - before.get("files/list_folder/continue"),
            1,
            "round {round}: exactly one continue, for the change"
        );
        // The longpoll that saw the change was counted before it; the watch is re-armed after.
        until("the next longpoll", Duration::from_secs(10), || {
            emu.counters().get("files/list_folder/longpoll") > before.get("files/list_folder/longpoll")
        })
        .await;
    }
    // Dropbox's backoff is honoured: with 2 s asked, the next longpoll waits.
    emu.set_longpoll_backoff(Some(2));
    emu.edit(0).add("/backoff.txt", false, 1).unwrap();
    until("the sync after the backoff answer", Duration::from_secs(20), || {
        indexed(&store, &ds) == expected(&emu, 0, &ds)
    })
    .await;
    let polls = emu.counters().get("files/list_folder/longpoll");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(emu.counters().get("files/list_folder/longpoll"), polls, "no longpoll inside the backoff");
    until("a longpoll after the backoff", Duration::from_secs(10), || {
        emu.counters().get("files/list_folder/longpoll") > polls
    })
    .await;
    emu.stop().await;
}

/// 200 tenants, one of 200k entries, one page in flight at a time: every small tenant's first
/// sync and then 20 of their deltas are indexed while the big account is still listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_tenants_one_huge_listing_never_holds_back_deltas() {
    let mut sizes = vec![30; 200];
    sizes[0] = 200_000;
    let emu =
        Emulator::start(Config::accounts(13, &sizes, APP.0, APP.1), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    emu.set_latency(Duration::from_millis(2));
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let s = serve(
        &emu,
        &state,
        &[
            "--no-longpoll",
            "--interval",
            "3600",
            "--max-in-flight",
            "1",
            "--page-limit",
            "500",
            "--pages-per-minute",
            "0",
        ],
    )
    .await;
    emu.set_webhook(Some(Webhook {
        url: format!("{}/dropbox/webhook", s.base),
        app_secret: APP.1.into(),
        attempts: 5,
        first_retry: Duration::from_millis(200),
    }));
    let ids: Vec<String> = (0..200).map(|a| datasource_id(&emu, a)).collect();
    // The big account first: its listing is under way while the others connect.
    for account in 0..200 {
        assert_eq!(connect(&emu, &s.base, account).await.status, 200);
    }
    let store = open_store(&state);
    let listing = |store: &Store| store.sync_state(&ids[0]).unwrap().listing;
    until("the small tenants' first syncs", Duration::from_secs(120), || {
        (1..200).all(|a| store.sync_state(&ids[a]).unwrap().last_synced_at.is_some())
    })
    .await;
    assert!(listing(&store), "the 200k listing is still going after 199 first syncs");
    let big_docs_then = store.document_count(&ids[0]).unwrap();
    for account in (10..200).step_by(10).take(20).chain([5]) {
        emu.edit(account).add(&format!("/delta for {account}.txt"), false, 1).unwrap();
    }
    let changed: Vec<usize> = (10..200).step_by(10).take(20).chain([5]).collect();
    until("20 tenants' deltas", Duration::from_secs(60), || {
        changed.iter().all(|&a| indexed(&store, &ids[a]) == expected(&emu, a, &ids[a]))
    })
    .await;
    assert!(listing(&store), "the deltas landed before the big listing finished");
    until("the big listing", Duration::from_secs(300), || !listing(&store)).await;
    assert!(store.document_count(&ids[0]).unwrap() > big_docs_then);
    assert!(indexed(&store, &ids[0]) == expected(&emu, 0, &ids[0]), "the 200k index == its account");
    assert_eq!(emu.counters().overlapping_list_calls, 0);
    drop(s);
    emu.stop().await;
}

/// Two `serve` processes on one state share the tenants: never two syncs of one datasource at
/// once (the emulator counts overlapping list calls per account), and every index is right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_state_never_sync_one_datasource_twice() {
    let emu =
        Emulator::start(Config::accounts(14, &[2500; 12], APP.0, APP.1), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    emu.set_latency(Duration::from_millis(3));
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let flags = ["--no-longpoll", "--interval", "1", "--page-limit", "100", "--lease-ttl", "6"];
    let a = serve(&emu, &state, &flags).await;
    let b = serve(&emu, &state, &flags).await;
    for account in 0..12 {
        let base = if account % 2 == 0 { &a.base } else { &b.base };
        assert_eq!(connect(&emu, base, account).await.status, 200);
    }
    // Keep changing accounts while both sync.
    for round in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        for account in 0..12 {
            emu.edit(account).add(&format!("/round {round}.txt"), false, round).unwrap();
        }
    }
    let ids: Vec<String> = (0..12).map(|a| datasource_id(&emu, a)).collect();
    let store = open_store(&state);
    until("every index == its account", Duration::from_secs(120), || {
        (0..12).all(|a| indexed(&store, &ids[a]) == expected(&emu, a, &ids[a]))
    })
    .await;
    let pages = |s: &Served| {
        let s = s.base.clone();
        async move {
            let m = http("GET", &format!("{s}/metrics"), &[token_header()], None).await.body;
            m.lines().find_map(|l| l.strip_prefix("coco_pages_total ")).unwrap().parse::<u64>().unwrap()
        }
    };
    let (pa, pb) = (pages(&a).await, pages(&b).await);
    assert!(pa > 0 && pb > 0, "both processes synced ({pa} and {pb} pages)");
    assert_eq!(emu.counters().overlapping_list_calls, 0, "a datasource was synced by two processes at once");
    emu.stop().await;
}

/// `kill -9` mid-run and restart converge with no duplicates; SIGTERM lets the in-flight page
/// commit, gives the leases back and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_sigterm_mid_run_lose_nothing() {
    let emu = Emulator::start(Config::accounts(15, &[30_000, 400, 400], APP.0, APP.1), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    emu.set_latency(Duration::from_millis(2));
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let flags = ["--no-longpoll", "--interval", "1", "--page-limit", "200"];
    let s = serve(&emu, &state, &flags).await;
    for account in 0..3 {
        connect(&emu, &s.base, account).await;
    }
    let ids: Vec<String> = (0..3).map(|a| datasource_id(&emu, a)).collect();
    let store = open_store(&state);
    let mut s = Some(s);
    for round in 0..4u64 {
        tokio::time::sleep(Duration::from_millis(300 + 150 * round)).await;
        let mut served = s.take().unwrap();
        served.child.kill().unwrap(); // SIGKILL
        served.child.wait().unwrap();
        let mut ns = emu.edit((round % 3) as usize);
        let tree = ns.tree();
        let _ = ns.delete(&tree[tree.len() / 2].path_lower);
        ns.add(&format!("/after kill {round}"), true, 0).unwrap();
        for i in 0..50 {
            ns.add(&format!("/after kill {round}/f{i}.txt"), false, i).unwrap();
        }
        drop(ns);
        s = Some(serve(&emu, &state, &flags).await);
    }
    // SIGTERM while the big listing may still run: exit 0, leases released.
    let mut served = s.take().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = served.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(st) = served.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "SIGTERM → exit 0, got {status}");
    for id in &ids {
        assert_eq!(store.lease_holder(id).unwrap(), None, "lease of {id} given back");
    }
    let _s = serve(&emu, &state, &flags).await;
    until("convergence after the kills", Duration::from_secs(120), || {
        (0..3).all(|a| indexed(&store, &ids[a]) == expected(&emu, a, &ids[a]))
    })
    .await;
    // `export` writes the current index while serve runs, without syncing.
    let out = tmp.path().join("export.jsonl");
    let status = Command::new(env!("CARGO_BIN_EXE_coco-host"))
        .args(["export", &ids[1], "--out"])
        .arg(&out)
        .env("COCO_STATE_DIR", &state)
        .env("COCO_MASTER_KEY", MASTER_KEY)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ids_out: BTreeSet<String> = lines.iter().map(|d| d["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids_out, expected(&emu, 1, &ids[1]).into_keys().collect::<BTreeSet<_>>());
    emu.stop().await;
}

/// The facade's callback delivers a connected datasource to `POST /api/datasources`: the app
/// secret comes from the registered connector, the datasource syncs, nothing secret is echoed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datasource_delivered_by_the_facade_is_adopted_and_synced() {
    let emu =
        Emulator::start(Config::accounts(16, &[600], APP.0, APP.1), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let s = serve(&emu, &state, &["--no-longpoll", "--interval", "3600"]).await;
    // What the facade did elsewhere: the code flow and the account read, giving tokens.
    let redirect = "http://127.0.0.1:9/cb";
    let authorize =
        format!("{}/oauth2/authorize?client_id={}&response_type=code&redirect_uri={redirect}", emu.base_url(), APP.0);
    let back = dropbox_emulator::approve(&authorize).await.unwrap();
    let code = url::Url::parse(&back).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let form = format!(
        "grant_type=authorization_code&code={code}&redirect_uri={redirect}&client_id={}&client_secret={}",
        APP.0, APP.1
    );
    let tokens = http(
        "POST",
        &format!("{}/oauth2/token", emu.base_url()),
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(form.as_bytes()),
    )
    .await
    .json();
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let account = http(
        "POST",
        &format!("{}/2/users/get_current_account", emu.base_url()),
        &[("authorization", &format!("Bearer {access}")), ("content-type", "application/json")],
        Some(b"null"),
    )
    .await
    .json();
    let root = &account["root_info"];
    let ds = datasource_id(&emu, 0);
    let delivered = |id: &str, connector: &str| {
        serde_json::json!({
            "id": id, "type": "connector", "name": "Franz Ferdinand's Dropbox", "icon": "default", "enabled": true,
            "sync": { "enabled": true, "interval": "30s" },
            "connector": { "id": connector, "config": {
                "client_id": APP.0, "refresh_token": tokens["refresh_token"],
                "profile": { "account_id": account["account_id"], "email": account["email"], "name": "Franz Ferdinand", "picture": null } } },
            "tokens": { "access_token": access, "expires_at": coco_host::clock::now_unix() + 3600, "refresh_token": tokens["refresh_token"] },
            "root_info": { "is_team": root[".tag"] == "team", "root_namespace_id": root["root_namespace_id"], "home_namespace_id": root["home_namespace_id"] },
        })
        .to_string()
    };
    let url = format!("{}/api/datasources", s.base);
    let good = delivered(&ds, "dropbox");
    assert_eq!(http("POST", &url, &[], Some(good.as_bytes())).await.status, 401);
    let forged = http(
        "POST",
        &url,
        &[token_header()],
        Some(delivered("0123456789abcdef0123456789abcdef", "dropbox").as_bytes()),
    )
    .await;
    assert_eq!(forged.status, 400, "an id that is not upstream's md5 is refused");
    let unknown = http("POST", &url, &[token_header()], Some(delivered(&ds, "another-connector").as_bytes())).await;
    assert_eq!(unknown.status, 409);
    let adopted = http("POST", &url, &[token_header()], Some(good.as_bytes())).await;
    assert_eq!(adopted.status, 201, "{}", adopted.body);
    assert_eq!(adopted.json()["id"], ds.as_str());
    assert!(!adopted.body.contains(&access) && !adopted.body.contains(tokens["refresh_token"].as_str().unwrap()));
    let store = open_store(&state);
    until("the adopted datasource's sync", Duration::from_secs(30), || indexed(&store, &ds) == expected(&emu, 0, &ds))
        .await;
    emu.stop().await;
}

/// Slow clients hold a connection for seconds, never the service: with 100 of them trickling a
/// header or a webhook body, `/healthz`, a signed webhook and the scheduled sync go on; each
/// slow one is cut off at its deadline; past the connection cap a new connection is closed at
/// once, and service resumes as the idle ones time out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_do_not_stop_webhooks_health_or_syncs() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let emu =
        Emulator::start(Config::accounts(41, &[200, 200], APP.0, APP.1), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let flags = ["--interval", "3600", "--header-timeout-secs", "2", "--request-timeout-secs", "3"];
    let s = serve(&emu, &state, &[&flags[..], &["--max-connections", "150"]].concat()).await;
    let base = s.base.clone();
    let addr = base.trim_start_matches("http://").to_string();
    connect(&emu, &base, 0).await;
    connect(&emu, &base, 1).await;
    let store = open_store(&state);
    let ids: Vec<String> = (0..2).map(|a| datasource_id(&emu, a)).collect();
    until("two full syncs", Duration::from_secs(60), || {
        (0..2).all(|a| indexed(&store, &ids[a]) == expected(&emu, a, &ids[a]))
    })
    .await;

    // 100 slow clients: half trickle a header, half announce a webhook body and send one byte.
    let mut slow = Vec::new();
    for i in 0..100 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let start: &[u8] = if i % 2 == 0 {
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
        } else {
            b"POST /dropbox/webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n{"
        };
        c.write_all(start).await.unwrap();
        slow.push(c);
    }
    let t = Instant::now();
    assert_eq!(http("GET", &format!("{base}/healthz"), &[], None).await.status, 200);
    emu.edit(1).add("/while slow clients hang.txt", false, 10).unwrap();
    let body = serde_json::to_vec(&serde_json::json!({ "list_folder": { "accounts": [emu.account_id(1).unwrap()] } }))
        .unwrap();
    let hook =
        http("POST", &format!("{base}/dropbox/webhook"), &[("x-dropbox-signature", &sign(&body, APP.1))], Some(&body))
            .await;
    assert_eq!(hook.status, 200, "{}", hook.body);
    assert!(t.elapsed() < Duration::from_secs(2), "answered while the slow clients hang: {:?}", t.elapsed());
    until("the webhook's sync", Duration::from_secs(20), || indexed(&store, &ids[1]) == expected(&emu, 1, &ids[1]))
        .await;

    // Each slow client is cut off at its deadline (EOF, or a 408 for a slow body).
    for mut c in slow {
        let mut seen = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut seen)).await;
        assert!(read.is_ok(), "a slow client still holds its connection");
        let text = String::from_utf8_lossy(&seen);
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 408") || text.starts_with("HTTP/1.1 400"), "{text}");
    }

    // The cap: 150 idle connections fill it; the next is closed at once, without an answer.
    let mut idle = Vec::new();
    for _ in 0..150 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut seen = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(1), extra.read_to_end(&mut seen)).await;
    assert!(
        read.is_ok() && seen.is_empty(),
        "past the cap a connection is closed unanswered: {:?}",
        String::from_utf8_lossy(&seen)
    );
    // The idle ones time out; then the service answers again.
    until_async_ok(&base).await;
    drop(idle);
    emu.stop().await;
}

/// `/healthz` answers again within the header deadline and a little.
async fn until_async_ok(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok =
            tokio::time::timeout(Duration::from_secs(1), health_over_a_new_connection(base)).await.unwrap_or(false);
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "the service did not answer again after the idle connections timed out");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn health_over_a_new_connection(base: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut c) = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await else { return false };
    if c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.is_err() {
        return false;
    }
    let mut seen = Vec::new();
    let _ = c.read_to_end(&mut seen).await;
    seen.starts_with(b"HTTP/1.1 200")
}
