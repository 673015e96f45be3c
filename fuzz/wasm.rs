//! The same inputs through the compiled component under wasmtime: hostile Dropbox answers are
//! served by the emulator (`FaultKind::Raw`), host inputs go in through the WIT, and facade
//! requests go over loopback to a real `wasmtime serve`. A trap is a failure.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coco_host::clock::now_unix;
use coco_host::runtime::{
    AppCredentials, Endpoints, PageRequest, RedirectRequest, Runtime, RuntimeError, SyncFailure, SyncOptions, Tokens,
};
use dropbox_emulator::{Config, Emulator, Fault, FaultKind};

use crate::gen::{self, FuzzRequest};

const APP: (&str, &str) = ("fuzz-app", gen::CLIENT_SECRET);

/// A component runtime, an emulator with one connected account, and its live tokens.
pub struct Rig {
    pub runtime: Arc<Runtime>,
    pub emu: Emulator,
    tokens: Tokens,
    state_secret: Vec<u8>,
}

impl Rig {
    pub async fn start(wasm: &std::path::Path) -> anyhow::Result<Rig> {
        let emu = Emulator::start(Config::single(9, 50, APP.0, APP.1), "127.0.0.1:0".parse()?).await?;
        let runtime = Arc::new(Runtime::load(wasm, None, coco_host::runtime::Limits::default())?);
        let state_secret = gen::STATE_SECRET.as_bytes().to_vec();
        let base = emu.base_url();
        let connect = coco_host::runtime::ConnectRequest {
            connector_id: "dropbox".into(),
            client_id: APP.0.into(),
            redirect_uri: "http://localhost/cb".into(),
            state_secret: state_secret.clone(),
            now: now_unix(),
            state_ttl_secs: None,
            scopes: None,
            endpoints: Endpoints { authorize: base.clone(), api: base.clone() },
            session_binding: None,
        };
        let url = runtime.authorize_url(&connect).await?.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let back = dropbox_emulator::approve(&url).await?;
        let ds = runtime
            .handle_redirect(&RedirectRequest {
                connector_id: "dropbox".into(),
                app: AppCredentials { client_id: APP.0.into(), client_secret: APP.1.into() },
                redirect_uri: "http://localhost/cb".into(),
                redirect_query: back,
                state_secret: state_secret.clone(),
                now: now_unix(),
                endpoints: Endpoints { authorize: base.clone(), api: base },
                session_binding: None,
            })
            .await?
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        Ok(Rig { runtime, emu, tokens: ds.tokens, state_secret })
    }

    fn request(&self, cursor: Option<String>, tokens: Tokens) -> PageRequest {
        let base = self.emu.base_url();
        PageRequest {
            datasource_id: "ds".into(),
            datasource_name: "n".into(),
            owner_id: None,
            app: AppCredentials { client_id: APP.0.into(), client_secret: APP.1.into() },
            tokens,
            cursor,
            options: SyncOptions {
                path: String::new(),
                page_limit: None,
                refresh_margin_secs: None,
                root_info: None,
                max_page_bytes: None,
                recursive: true,
            },
            batch_number: "b".into(),
            now: now_unix(),
            endpoints: Endpoints { authorize: base.clone(), api: base },
        }
    }

    fn live_tokens(&self) -> Tokens {
        self.tokens.clone()
    }

    fn expired_tokens(&self) -> Tokens {
        Tokens { expires_at: 0, ..self.tokens.clone() }
    }
}

fn check(result: Result<Result<impl std::fmt::Debug, SyncFailure>, RuntimeError>) -> Result<(), String> {
    match result {
        Err(e) => Err(format!("the component call failed: {e}")),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(f)) => match gen::leaked(&format!("{:?}", f.error)) {
            Some(s) => Err(format!("the error carries {s:?}: {:?}", f.error)),
            None => Ok(()),
        },
    }
}

pub async fn page_body(rig: &Rig, body: &[u8]) -> Result<(), String> {
    rig.emu.push_fault(Fault {
        route: Some("files/list_folder/continue".into()),
        kind: FaultKind::Raw { status: 200, retry_after: None, body: body.to_vec() },
    });
    check(rig.runtime.sync_page(&rig.request(Some("AAEfuzz".into()), rig.live_tokens())).await)
}

pub async fn token_answer(rig: &Rig, (status, body): &(u16, Vec<u8>)) -> Result<(), String> {
    rig.emu.push_fault(Fault {
        route: Some("oauth2/token".into()),
        kind: FaultKind::Raw { status: *status, retry_after: None, body: body.to_vec() },
    });
    check(rig.runtime.sync_page(&rig.request(Some("AAEfuzz".into()), rig.expired_tokens())).await)
}

pub async fn error_answer(
    rig: &Rig,
    (status, retry_after, body): &(u16, Option<String>, Vec<u8>),
) -> Result<(), String> {
    rig.emu.push_fault(Fault {
        route: Some("files/list_folder/continue".into()),
        kind: FaultKind::Raw { status: *status, retry_after: retry_after.clone(), body: body.to_vec() },
    });
    check(rig.runtime.sync_page(&rig.request(Some("AAEfuzz".into()), rig.live_tokens())).await)
}

pub async fn retry_after(rig: &Rig, value: &str) -> Result<(), String> {
    error_answer(rig, &(429, Some(value.to_string()), Vec::new())).await
}

pub async fn redirect_query(rig: &Rig, query: &str) -> Result<(), String> {
    let base = rig.emu.base_url();
    let grants = rig.emu.counters().code_grants;
    let out = rig
        .runtime
        .handle_redirect(&RedirectRequest {
            connector_id: "dropbox".into(),
            app: AppCredentials { client_id: APP.0.into(), client_secret: APP.1.into() },
            redirect_uri: "http://localhost/cb".into(),
            redirect_query: query.to_string(),
            state_secret: rig.state_secret.clone(),
            now: now_unix(),
            endpoints: Endpoints { authorize: base.clone(), api: base },
            session_binding: None,
        })
        .await
        .map_err(|e| format!("the component call failed: {e}"))?;
    match out {
        Ok(_) => Err("a forged redirect connected".into()),
        Err(_) if rig.emu.counters().code_grants != grants => {
            Err("a forged redirect reached the token endpoint".into())
        }
        Err(e) => gen::leaked(&format!("{e:?}")).map_or(Ok(()), |s| Err(format!("the error carries {s:?}"))),
    }
}

pub async fn cursor(rig: &Rig, cursor: &str) -> Result<(), String> {
    check(rig.runtime.sync_page(&rig.request(Some(cursor.to_string()), rig.live_tokens())).await)
}

/// The facade under a real `wasmtime serve`, configured with the planted secrets.
pub struct Served {
    child: Child,
    pub addr: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve_facade(wasmtime: &std::path::Path, facade: &std::path::Path, dropbox: &str) -> anyhow::Result<Served> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = format!("127.0.0.1:{port}");
    let env = [
        ("COCO_DROPBOX_CLIENT_ID", APP.0),
        ("COCO_DROPBOX_CLIENT_SECRET", gen::CLIENT_SECRET),
        ("COCO_STATE_SECRET", gen::STATE_SECRET),
        ("COCO_API_TOKEN", gen::API_TOKEN),
        ("COCO_DATASOURCE_CALLBACK_URL", "http://127.0.0.1:9/cb"),
        ("COCO_CALLBACK_TOKEN", gen::CALLBACK_TOKEN),
        ("COCO_DROPBOX_BASE_URL", dropbox),
    ];
    let mut cmd = Command::new(wasmtime);
    cmd.args(["serve", "-Scli", "--addr", &addr]);
    for (k, v) in env {
        cmd.arg(format!("--env={k}={v}"));
    }
    let child = cmd.arg(facade).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
    let served = Served { child, addr };
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(&served.addr).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "wasmtime serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(served)
}

/// One raw HTTP/1.1 exchange: whatever the request, an answer comes back without a secret.
pub fn facade_request(served: &Served, r: &FuzzRequest) -> Result<(), String> {
    let clean = |s: &str| s.chars().filter(|c| !c.is_control()).collect::<String>();
    let mut path = clean(&r.path).replace(' ', "%20");
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let query: String = url_encode_query(&r.query);
    let mut head =
        format!("{} {path}?{query} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", clean(&r.method), served.addr);
    for (k, v) in &r.headers {
        if k != "host" {
            head.push_str(&format!("{k}: {}\r\n", clean(v)));
        }
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", r.body.len()));
    let mut s = std::net::TcpStream::connect(&served.addr).map_err(|e| format!("the facade is gone: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    s.write_all(head.as_bytes()).and_then(|()| s.write_all(&r.body)).map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).map_err(|e| format!("no answer: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    if !text.starts_with("HTTP/1.1 ") {
        return Err(format!("not an HTTP answer: {:?}", text.chars().take(80).collect::<String>()));
    }
    let authenticated =
        r.headers.iter().any(|(k, v)| k == "authorization" && v == &format!("Bearer {}", gen::API_TOKEN));
    let may_echo_own_tokens = authenticated && r.path == "/sync";
    for secret in gen::SECRETS {
        let own = [gen::ACCESS_TOKEN, gen::REFRESH_TOKEN, gen::ISSUED_TOKEN].contains(&secret);
        if text.contains(secret) && !(may_echo_own_tokens && own) {
            return Err(format!("the answer carries {secret:?}"));
        }
    }
    Ok(())
}

fn url_encode_query(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'=' | b'&' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
