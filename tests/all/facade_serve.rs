//! The HTTP facade under `wasmtime serve -Scli` (wasmtime-cli 48), against the emulator:
//! the connect redirect, oauth_redirect, and a full sync driven only over HTTP.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dropbox_emulator::{Config, Emulator, Fault, FaultKind};

const CLIENT_ID: &str = "facade-app";
const CLIENT_SECRET: &str = "FACADE-client-secret-9d8e";
const STATE_SECRET: &str = "FACADE-state-secret-0123456789";

fn facade_wasm() -> PathBuf {
    let p = std::env::var_os("COCO_DROPBOX_FACADE_WASM").map(PathBuf::from).unwrap_or_else(coco_e2e::facade_wasm_path);
    assert!(
        p.exists(),
        "facade not built at {}: cargo build --target wasm32-wasip2 --release --features http-handler --target-dir target/facade (./dev test does)",
        p.display()
    );
    p
}

fn wasmtime_cli() -> PathBuf {
    if let Some(p) = std::env::var_os("WASMTIME") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    let p = home.join("bin/wasmtime");
    assert!(
        p.exists(),
        "wasmtime-cli not found at {}: cargo install wasmtime-cli@48.0.8 --locked (./dev test does)",
        p.display()
    );
    p
}

struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(emulator: &str) -> (Served, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(wasmtime_cli())
        .args(["serve", "-Scli", "--addr", &addr])
        .arg(format!("--env=COCO_DROPBOX_CLIENT_ID={CLIENT_ID}"))
        .arg(format!("--env=COCO_DROPBOX_CLIENT_SECRET={CLIENT_SECRET}"))
        .arg(format!("--env=COCO_STATE_SECRET={STATE_SECRET}"))
        .arg(format!("--env=COCO_DROPBOX_BASE_URL={emulator}"))
        .arg(facade_wasm())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start wasmtime serve");
    let served = Served(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "wasmtime serve did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (served, format!("http://{addr}"))
}

struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

fn http(method: &str, url: &str, body: Option<&str>) -> Reply {
    let agent: ureq::Agent = ureq::Agent::config_builder().max_redirects(0).http_status_as_error(false).build().into();
    let resp = match (method, body) {
        ("GET", _) => agent.get(url).call(),
        (_, Some(b)) => agent.post(url).header("content-type", "application/json").send(b),
        _ => agent.post(url).send_empty(),
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers =
        resp.headers().iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect();
    let body = resp.into_body().read_to_string().unwrap_or_default();
    Reply { status, headers, body }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_redirect_and_full_sync_over_http_under_wasmtime_serve() {
    let emu = Emulator::start(Config::single(77, 3_000, CLIENT_ID, CLIENT_SECRET), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let emu_base = emu.base_url();
    let expected: BTreeSet<String> = emu.tree(0).into_iter().filter(|e| e.name != ".DS_Store").map(|e| e.id).collect();

    let (transcript, served_ok) = tokio::task::spawn_blocking(move || {
        let (served, base) = serve(&emu_base);
        let mut transcript = String::new();

        // 1. GET …/connect → 302 to the authorize URL, redirect_uri derived from the request.
        for prefix in ["", "/api/coco"] {
            let r = http("GET", &format!("{base}{prefix}/connector/dropbox/dropbox/connect"), None);
            assert_eq!(r.status, 302, "{}", r.body);
            let location = &r.headers["location"];
            assert!(location.starts_with(&format!("{emu_base}/oauth2/authorize?")), "{location}");
            let want = format!("{base}{prefix}/connector/dropbox/dropbox/oauth_redirect");
            let u = url::Url::parse(location).unwrap();
            assert_eq!(u.query_pairs().find(|(k, _)| k == "redirect_uri").unwrap().1, want.as_str());
            transcript.push_str(location);
        }
        let location =
            http("GET", &format!("{base}/connector/dropbox/dropbox/connect"), None).headers["location"].clone();

        // 2. The emulator approves and sends the browser back to …/oauth_redirect.
        let back = http("GET", &location, None).headers["location"].clone();
        assert!(back.starts_with(&format!("{base}/connector/dropbox/dropbox/oauth_redirect?")), "{back}");
        let r = http("GET", &back, None);
        assert_eq!(r.status, 200, "{}", r.body);
        transcript.push_str(&r.body);
        let ds: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(ds["id"].as_str().unwrap().len(), 32);
        assert_eq!(ds["name"], "Franz Ferdinand's Dropbox");
        assert_eq!(ds["connector"]["config"]["client_id"], CLIENT_ID);
        assert!(ds["connector"]["config"].get("client_secret").is_none());
        assert_eq!(ds["connector"]["config"]["profile"]["email"], "franz@example.com");
        // Replaying the redirect is refused.
        assert_eq!(http("GET", &back, None).status, 403);

        // 3. POST /sync until has_more is false.
        let mut tokens = ds["tokens"].clone();
        let mut cursor = serde_json::Value::Null;
        let mut docs: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        let mut pages = 0;
        loop {
            let body = serde_json::json!({
                "datasource": { "id": ds["id"], "name": ds["name"] },
                "tokens": tokens, "cursor": cursor, "options": { "page_limit": 700 }
            });
            let r = http("POST", &format!("{base}/sync"), Some(&body.to_string()));
            assert_eq!(r.status, 200, "{}", r.body);
            transcript.push_str(&r.body);
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
        let got: BTreeSet<String> = docs.keys().cloned().collect();

        // 4. Errors over HTTP: bad body 400, dead tokens 401.
        let r = http("POST", &format!("{base}/sync"), Some("{"));
        assert_eq!(r.status, 400);
        let dead = serde_json::json!({
            "datasource": { "id": ds["id"], "name": ds["name"] },
            "tokens": { "access_token": "nope", "expires_at": 4_000_000_000u64, "refresh_token": "nope" }
        });
        let r = http("POST", &format!("{base}/sync"), Some(&dead.to_string()));
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(r.body.contains("reauth-required"));
        assert_eq!(http("GET", &format!("{base}/sync"), None).status, 405);
        transcript.push_str(&r.body);
        (transcript, (got, tokens, cursor, ds, (served, base)))
    })
    .await
    .unwrap();
    let (got, tokens, cursor, ds, (served, base)) = served_ok;
    assert_eq!(got, expected, "the documents synced over HTTP are exactly the account's");

    // 5. A rate limit comes back as 429 with Retry-After.
    emu.push_fault(Fault {
        route: Some("files/list_folder/continue".into()),
        kind: FaultKind::RateLimit { retry_after: 7.0, json: true },
    });
    let limited = tokio::task::spawn_blocking(move || {
        let body = serde_json::json!({ "datasource": { "id": ds["id"], "name": ds["name"] }, "tokens": tokens, "cursor": cursor });
        let r = http("POST", &format!("{base}/sync"), Some(&body.to_string()));
        drop(served);
        r
    })
    .await
    .unwrap();
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert_eq!(limited.headers["retry-after"], "7");

    for secret in [CLIENT_SECRET, STATE_SECRET] {
        assert!(!transcript.contains(secret), "a response carries {secret}");
    }
}
