//! Native targets: the component's own parsers and handlers, called directly. Each returns
//! `Err` when the property breaks; a panic is caught by the runner and counted as a failure.

use coco_dropbox::api::{self, Route};
use coco_dropbox::facade::serverless::kv::{KvStore, MemoryKv};
use coco_dropbox::facade::serverless::record::{self, Record};
use coco_dropbox::facade::{self, FacadeConfig, Incoming, Randomness};
use coco_dropbox::http::{HttpRequest, HttpResponse, Transport, TransportError};
use coco_dropbox::oauth::{self, Grant};
use coco_dropbox::secret::{Secret, SecretBytes};
use coco_dropbox::types::{AppCredentials, Endpoints, PageRequest, RedirectRequest, SyncOptions, Tokens};
use coco_dropbox::{connect, page};

use crate::gen::{self, FuzzRequest};

/// Answers every request with one canned response and keeps what was sent.
pub struct Canned {
    pub answer: Option<HttpResponse>,
    pub sent: Vec<HttpRequest>,
}

impl Transport for Canned {
    fn send(&mut self, r: &HttpRequest) -> Result<HttpResponse, TransportError> {
        self.sent.push(r.clone());
        self.answer.take().ok_or_else(|| TransportError::Failed("no more answers".into()))
    }
}

fn app() -> AppCredentials {
    AppCredentials { client_id: "fuzz-app".into(), client_secret: Secret::new(gen::CLIENT_SECRET) }
}

fn page_request(cursor: Option<String>) -> PageRequest {
    PageRequest {
        datasource_id: "ds".into(),
        datasource_name: "Fuzz's Dropbox".into(),
        owner_id: None,
        app: app(),
        tokens: Tokens {
            access_token: Secret::new(gen::ACCESS_TOKEN),
            expires_at: u64::MAX,
            refresh_token: Secret::new(gen::REFRESH_TOKEN),
        },
        cursor,
        options: SyncOptions::default(),
        batch_number: "b".into(),
        now: 1_000,
        endpoints: Endpoints::single("http://127.0.0.1:9"),
    }
}

fn no_leak(what: &str, text: &str) -> Result<(), String> {
    match gen::leaked(text) {
        Some(secret) => {
            Err(format!("{what} carries the secret {secret:?}: {}", text.chars().take(300).collect::<String>()))
        }
        None => Ok(()),
    }
}

/// A list_folder/continue answer: a page, or a typed error; documents are JSON.
pub fn page_body(body: &[u8]) -> Result<(), String> {
    let mut t =
        Canned { answer: Some(HttpResponse { status: 200, headers: vec![], body: body.to_vec() }), sent: vec![] };
    match page::sync_page(&page_request(Some("C1".into())), &mut t) {
        Ok(r) => {
            for d in r.documents.iter() {
                serde_json::from_str::<serde_json::Value>(d.json)
                    .map_err(|e| format!("a document is not JSON: {e}"))?;
                no_leak("a document", d.json)?;
            }
            Ok(())
        }
        Err(f) => no_leak("the error", &format!("{} {:?}", f.error, f.error)),
    }
}

/// A token endpoint answer: tokens, or a typed error that never quotes a token.
pub fn token_answer((status, body): &(u16, Vec<u8>)) -> Result<(), String> {
    let resp = HttpResponse { status: *status, headers: vec![], body: body.to_vec() };
    for grant in [Grant::Code, Grant::Refresh] {
        if let Err(e) = oauth::parse_token_response(grant, &app(), &resp, 1_000, Some(&Secret::new(gen::REFRESH_TOKEN)))
        {
            no_leak("the error", &format!("{e} {e:?}"))?;
        }
    }
    Ok(())
}

/// An RPC error answer: classified without panicking; rate limits keep a finite wait.
pub fn error_answer((status, retry_after, body): &(u16, Option<String>, Vec<u8>)) -> Result<(), String> {
    let headers = retry_after.iter().map(|v| ("retry-after".to_string(), v.clone())).collect();
    let resp = HttpResponse { status: *status, headers, body: body.to_vec() };
    for route in [Route::ListFolder, Route::ListFolderContinue, Route::GetCurrentAccount, Route::Revoke] {
        if let Err(api::Failure::Error(e)) = api::check_rpc(route, &resp) {
            no_leak("the error", &format!("{e} {e:?}"))?;
        }
    }
    Ok(())
}

/// `Retry-After` on a 429: always a rate limit with some wait, whatever the header says.
pub fn retry_after(value: &str) -> Result<(), String> {
    let resp = HttpResponse { status: 429, headers: vec![("retry-after".into(), value.to_string())], body: vec![] };
    match api::check_rpc(Route::ListFolderContinue, &resp) {
        Err(api::Failure::Error(coco_dropbox::Error::RateLimited(_))) => Ok(()),
        other => Err(format!("429 with Retry-After {value:?} gave {other:?}")),
    }
}

/// Whatever comes back to the redirect route: denied or invalid, never an exchange without a
/// valid state, never a secret in the error.
pub fn redirect_query(query: &str) -> Result<(), String> {
    let req = RedirectRequest {
        connector_id: "dropbox".into(),
        app: app(),
        redirect_uri: "https://coco.example/cb".into(),
        redirect_query: query.to_string(),
        state_secret: SecretBytes::new(gen::STATE_SECRET),
        now: 1_000,
        endpoints: Endpoints::single("http://127.0.0.1:9"),
        session_binding: None,
    };
    let mut t = Canned { answer: None, sent: vec![] };
    match connect::handle_redirect(&req, &mut t) {
        Ok(_) => Err("a forged redirect connected".into()),
        Err(e) => {
            if !t.sent.is_empty() {
                return Err(format!("a redirect with an unsigned state reached Dropbox ({e})"));
            }
            no_leak("the error", &format!("{e} {e:?}"))
        }
    }
}

/// A cursor from the host: sent as exactly that JSON string, or refused as invalid input.
pub fn cursor(cursor: &str) -> Result<(), String> {
    let page = br#"{"entries":[],"cursor":"C2","has_more":false}"#.to_vec();
    let mut t = Canned { answer: Some(HttpResponse { status: 200, headers: vec![], body: page }), sent: vec![] };
    match page::sync_page(&page_request(Some(cursor.to_string())), &mut t) {
        Ok(_) => {
            let sent: serde_json::Value =
                serde_json::from_slice(&t.sent[0].body).map_err(|e| format!("the continue body is not JSON: {e}"))?;
            (sent["cursor"] == cursor).then_some(()).ok_or_else(|| format!("cursor {cursor:?} was sent as {sent}"))
        }
        Err(f) if matches!(f.error, coco_dropbox::Error::InvalidInput(_)) => Ok(()),
        Err(f) => Err(format!("cursor {cursor:?}: {}", f.error)),
    }
}

pub fn facade_config() -> FacadeConfig {
    FacadeConfig::from_lookup(|k| {
        let v = match k {
            facade::ENV_CLIENT_ID => "fuzz-app",
            facade::ENV_CLIENT_SECRET => gen::CLIENT_SECRET,
            facade::ENV_STATE_SECRET => gen::STATE_SECRET,
            facade::ENV_API_TOKEN => gen::API_TOKEN,
            facade::ENV_CALLBACK_URL => "http://127.0.0.1:9/cb",
            facade::ENV_CALLBACK_TOKEN => gen::CALLBACK_TOKEN,
            facade::ENV_BASE_URL => "http://127.0.0.1:9",
            facade::ENV_SEAL_SECRET => gen::SEAL_SECRET,
            facade::ENV_SERVER_URL => "http://127.0.0.1:9/coco",
            facade::ENV_SERVER_TOKEN => gen::CALLBACK_TOKEN,
            _ => return None,
        };
        Some(v.to_string())
    })
}

/// The key-value build's store, holding one connected datasource with sealed tokens.
fn seeded_store(config: &FacadeConfig) -> MemoryKv {
    let mut kv = MemoryKv::default();
    let Ok(seal) = &config.seal else { return kv };
    let mut r = Record {
        id: gen::KV_DATASOURCE.into(),
        name: "Fuzz's Dropbox".into(),
        connector_id: "dropbox".into(),
        tokens: String::new(),
        root_info: None,
        cursor: Some("C1".into()),
        generation: 1,
        listing: false,
        coco_created: true,
        documents: 0,
        pages: 1,
        connected_at: 1,
        last_sync_at: None,
        last_error: None,
        reauth_required: false,
        revoked: false,
    };
    let tokens = Tokens {
        access_token: Secret::new(gen::ACCESS_TOKEN),
        expires_at: 0,
        refresh_token: Secret::new(gen::REFRESH_TOKEN),
    };
    r.seal_tokens(seal, &tokens, &[7; 24]);
    let _ = record::save(&mut kv, &r);
    kv
}

/// Any request to the facade, stateless and with a store: an answer, never a secret in it,
/// never a token to the browser, and nothing in clear in the store.
pub fn facade_request(r: &FuzzRequest) -> Result<(), String> {
    let config = facade_config();
    let mut kv = seeded_store(&config);
    facade_request_with(&config, r, None)?;
    facade_request_with(&config, r, Some(&mut kv))?;
    let stored: String = kv.map.values().map(|v| String::from_utf8_lossy(v).into_owned()).collect();
    no_leak("the store", &stored)
}

fn facade_request_with(config: &FacadeConfig, r: &FuzzRequest, kv: Option<&mut dyn KvStore>) -> Result<(), String> {
    let incoming = Incoming { method: &r.method, path: &r.path, query: &r.query, headers: &r.headers, body: &r.body };
    // The planted tokens ride in /sync bodies; a refresh at "Dropbox" answers with another.
    let token = br#"{"access_token":"sl.FUZZ-issued-token-0007","expires_in":14400}"#.to_vec();
    let mut t = Canned { answer: Some(HttpResponse { status: 200, headers: vec![], body: token }), sent: vec![] };
    let random = Randomness { nonce: [1; 16], cookie: [2; 32], seal_nonce: [3; 24], holder: [4; 16] };
    let out = facade::handle(config, &incoming, &mut t, 1_000, &random, kv);
    let text = format!("{} {:?}", String::from_utf8_lossy(&out.body), out.headers);
    let authenticated =
        r.headers.iter().any(|(k, v)| k == "authorization" && v == &format!("Bearer {}", gen::API_TOKEN));
    if authenticated && r.path == "/sync" && r.method == "POST" {
        // The caller's own tokens (and a refreshed one) may come back to the authenticated caller.
        for s in [gen::CLIENT_SECRET, gen::STATE_SECRET, gen::API_TOKEN, gen::CALLBACK_TOKEN] {
            if text.contains(s) {
                return Err(format!("/sync answered with {s:?}"));
            }
        }
        return Ok(());
    }
    if !(100..600).contains(&out.status) {
        return Err(format!("status {}", out.status));
    }
    no_leak("the response", &text)
}

/// Damaged or mislabelled files: text or a typed skip, never a panic, and the text stays
/// within its cap. PDFs go through the guarded entry point: pdf-extract's own panics are a
/// skip natively and a trapped call (reported as `crashed`) in the component.
pub fn content_file((format, bytes): &(String, Vec<u8>)) -> Result<(), String> {
    use coco_dropbox::content::{extract, extract_guarded, format::Format};
    let format = Format::from_name(format).ok_or("unknown format")?;
    const CAP: usize = 4096;
    let result = if format == Format::Pdf { extract_guarded(format, bytes, CAP) } else { extract(format, bytes, CAP) };
    match result {
        Ok(x) if x.text.len() > CAP => Err(format!("{} bytes of text over the {CAP}-byte cap", x.text.len())),
        _ => Ok(()),
    }
}
