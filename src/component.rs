//! The wasm glue: WIT exports → core, core → WIT, and the waki transport. Nothing else.

use std::time::Duration;

use crate::http::{read_body_capped, HttpRequest, HttpResponse, ReadCapped, Transport, TransportError};
use crate::{connect, oauth, page, types as core, Error as CoreError, Secret, SecretBytes};

wit_bindgen::generate!({ path: "wit", world: "connector" });

use coco::dropbox::types as wit;
use exports::coco::dropbox::content as wit_content;
use exports::coco::dropbox::oauth_redirect as wit_oauth;
use exports::coco::dropbox::sync_page as wit_sync;
use exports::coco::dropbox::watch as wit_watch;

/// Bounds the TCP connect; the host bounds the rest of each request (first byte, between bytes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

struct WakiTransport;

impl Transport for WakiTransport {
    fn send(&mut self, r: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let mut builder = waki::Client::new().post(&r.url).connect_timeout(CONNECT_TIMEOUT);
        for (name, value) in &r.headers {
            builder = builder.header(*name, value.as_str());
        }
        let resp = builder.body(r.body.clone()).send().map_err(|e| match e.downcast_ref::<waki::ErrorCode>() {
            // The host's outbound policy, not the network: retrying cannot help.
            Some(waki::ErrorCode::HttpRequestDenied) => TransportError::Denied(format!("{e:#}")),
            _ => TransportError::Failed(format!("{e:#}")),
        })?;
        let status = resp.status_code();
        let headers = header_pairs(resp.headers());
        let limit = r.response_cap(status);
        let body = read_body_capped(&headers, limit, |n| resp.chunk(n)).map_err(|e| match e {
            ReadCapped::TooLarge => TransportError::TooLarge { limit },
            ReadCapped::Failed(e) => TransportError::Failed(format!("reading the response body: {e:#}")),
        })?;
        Ok(HttpResponse { status, headers, body })
    }
}

/// Header names (lower-case, as `http` keeps them) and values, for the core.
fn header_pairs(headers: &waki::header::HeaderMap) -> Vec<(String, String)> {
    headers.iter().map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect()
}

struct Component;

impl wit_oauth::Guest for Component {
    fn authorize_url(req: wit_oauth::ConnectRequest) -> Result<String, wit::Error> {
        let mut nonce = [0u8; oauth::NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| wit::Error::Transient(format!("no randomness for the state nonce: {e}")))?;
        let req = core::ConnectRequest {
            connector_id: req.connector_id,
            client_id: req.client_id,
            redirect_uri: req.redirect_uri,
            state_secret: SecretBytes::new(req.state_secret),
            now: req.now,
            state_ttl_secs: req.state_ttl_secs,
            scopes: req.scopes,
            endpoints: endpoints_in(req.endpoints),
            session_binding: req.session_binding.map(SecretBytes::new),
        };
        oauth::authorize_url(&req, &nonce).map_err(error_out)
    }

    fn handle_redirect(req: wit_oauth::RedirectRequest) -> Result<wit_oauth::Datasource, wit::Error> {
        let req = core::RedirectRequest {
            connector_id: req.connector_id,
            app: app_in(req.app),
            redirect_uri: req.redirect_uri,
            redirect_query: req.redirect_query,
            state_secret: SecretBytes::new(req.state_secret),
            now: req.now,
            endpoints: endpoints_in(req.endpoints),
            session_binding: req.session_binding.map(SecretBytes::new),
        };
        let ds = connect::handle_redirect(&req, &mut WakiTransport).map_err(error_out)?;
        Ok(wit_oauth::Datasource {
            id: ds.id,
            name: ds.name,
            connector_id: ds.connector_id,
            config: wit_oauth::DatasourceConfig {
                client_id: ds.config.client_id,
                refresh_token: ds.config.refresh_token.into_inner(),
                profile: profile_out(ds.config.profile),
            },
            tokens: tokens_out(ds.tokens),
        })
    }

    fn revoke(req: wit_oauth::RevokeRequest) -> Result<(), wit::Error> {
        let req = core::RevokeRequest {
            app: app_in(req.app),
            tokens: tokens_in(req.tokens),
            now: req.now,
            endpoints: endpoints_in(req.endpoints),
        };
        connect::revoke(&req, &mut WakiTransport).map_err(error_out)
    }
}

impl wit_sync::Guest for Component {
    fn sync(req: wit_sync::PageRequest) -> Result<wit_sync::PageResult, wit_sync::SyncFailure> {
        let req = core::PageRequest {
            datasource_id: req.datasource_id,
            datasource_name: req.datasource_name,
            owner_id: req.owner_id,
            app: app_in(req.app),
            tokens: tokens_in(req.tokens),
            cursor: req.cursor,
            options: core::SyncOptions {
                path: req.options.path,
                page_limit: req.options.page_limit,
                refresh_margin_secs: req.options.refresh_margin_secs,
                root_info: req.options.root_info.map(root_in),
                max_page_bytes: req.options.max_page_bytes,
            },
            batch_number: req.batch_number,
            now: req.now,
            endpoints: endpoints_in(req.endpoints),
        };
        match page::sync_page(&req, &mut WakiTransport) {
            Ok(r) => Ok(wit_sync::PageResult {
                documents: r
                    .documents
                    .into_iter()
                    .map(|d| wit_sync::Document {
                        id: d.id,
                        path_lower: d.path_lower,
                        rev: d.rev,
                        json: d.json,
                        file: d.file.map(|f| wit_sync::FileFacts {
                            file_id: f.file_id,
                            size: f.size,
                            content_hash: f.content_hash,
                            downloadable: f.downloadable,
                            export_as: f.export_as,
                            export_options: f.export_options,
                        }),
                    })
                    .collect(),
                deletes: r.deletes,
                cursor: r.cursor,
                has_more: r.has_more,
                tokens: r.tokens.map(tokens_out),
                stats: stats_out(r.stats),
            }),
            Err(f) => Err(wit_sync::SyncFailure {
                error: error_out(f.error),
                tokens: f.tokens.map(tokens_out),
                stats: stats_out(f.stats),
            }),
        }
    }
}

impl wit_watch::Guest for Component {
    fn wait_for_changes(req: wit_watch::WaitRequest) -> Result<wit_watch::Changes, wit::Error> {
        let req = crate::watch::WaitRequest { cursor: req.cursor, timeout_secs: req.timeout_secs, notify: req.notify };
        let c = crate::watch::wait_for_changes(&req, &mut WakiTransport).map_err(error_out)?;
        Ok(wit_watch::Changes { changes: c.changes, backoff_secs: c.backoff_secs })
    }
}

impl wit_content::Guest for Component {
    fn fetch_content(req: wit_content::ContentRequest) -> Result<wit_content::Content, wit_content::ContentFailure> {
        use crate::content::fetch::{self, ContentError, ContentLimits, FileRef};
        use crate::content::Skip;
        let req = fetch::ContentRequest {
            app: app_in(req.app),
            tokens: tokens_in(req.tokens),
            now: req.now,
            endpoints: endpoints_in(req.endpoints),
            content: req.content,
            refresh_margin_secs: req.refresh_margin_secs,
            root_info: req.root_info.map(root_in),
            file: FileRef {
                file_id: req.file_id,
                rev: req.rev,
                name: req.name,
                size: req.size,
                downloadable: req.downloadable,
                export_as: req.export_as,
                export_options: req.export_options,
            },
            limits: ContentLimits {
                max_download_bytes: req.limits.max_download_bytes,
                max_text_bytes: req.limits.max_text_bytes,
                formats: req.limits.formats,
            },
        };
        match fetch::fetch_content(&req, &mut WakiTransport) {
            Ok(c) => Ok(wit_content::Content {
                text: c.extracted.text,
                format: c.extracted.format.name().to_string(),
                truncated: c.extracted.truncated,
                bytes: c.bytes,
                exported: c.exported,
                tokens: c.tokens.map(tokens_out),
                requests: c.stats.requests,
                refreshes: c.stats.refreshes,
            }),
            Err(f) => Err(wit_content::ContentFailure {
                error: match f.error {
                    ContentError::Failed(e) => wit_content::ContentError::Failed(error_out(e)),
                    ContentError::Skipped(s) => wit_content::ContentError::Skipped(match s {
                        Skip::TooLarge { bytes, limit } => wit_content::Skip::TooLarge((bytes, limit)),
                        Skip::Unsupported(m) => wit_content::Skip::Unsupported(m),
                        Skip::Restricted(m) => wit_content::Skip::Restricted(m),
                        Skip::NotExportable(m) => wit_content::Skip::NotExportable(m),
                        Skip::Gone(m) => wit_content::Skip::Gone(m),
                        Skip::Malformed(m) => wit_content::Skip::Malformed(m),
                        Skip::Hostile(m) => wit_content::Skip::Hostile(m),
                    }),
                },
                tokens: f.tokens.map(tokens_out),
                requests: f.stats.requests,
                refreshes: f.stats.refreshes,
            }),
        }
    }
}

fn endpoints_in(e: wit::Endpoints) -> core::Endpoints {
    core::Endpoints { authorize: e.authorize, api: e.api }
}

fn app_in(a: wit::AppCredentials) -> core::AppCredentials {
    core::AppCredentials { client_id: a.client_id, client_secret: Secret::new(a.client_secret) }
}

fn tokens_in(t: wit::Tokens) -> core::Tokens {
    core::Tokens {
        access_token: Secret::new(t.access_token),
        expires_at: t.expires_at,
        refresh_token: Secret::new(t.refresh_token),
    }
}

fn tokens_out(t: core::Tokens) -> wit::Tokens {
    wit::Tokens {
        access_token: t.access_token.into_inner(),
        expires_at: t.expires_at,
        refresh_token: t.refresh_token.into_inner(),
    }
}

fn root_in(r: wit::RootInfo) -> core::RootInfo {
    core::RootInfo {
        is_team: r.is_team,
        root_namespace_id: r.root_namespace_id,
        home_namespace_id: r.home_namespace_id,
        home_path: r.home_path,
    }
}

fn root_out(r: core::RootInfo) -> wit::RootInfo {
    wit::RootInfo {
        is_team: r.is_team,
        root_namespace_id: r.root_namespace_id,
        home_namespace_id: r.home_namespace_id,
        home_path: r.home_path,
    }
}

fn profile_out(p: core::Profile) -> wit::Profile {
    wit::Profile {
        account_id: p.account_id,
        email: p.email,
        name: p.name,
        picture: p.picture,
        root_info: root_out(p.root_info),
    }
}

fn stats_out(s: core::PageStats) -> wit_sync::PageStats {
    wit_sync::PageStats { entries: s.entries, skipped: s.skipped, requests: s.requests, refreshes: s.refreshes }
}

fn error_out(e: CoreError) -> wit::Error {
    match e {
        CoreError::InvalidInput(m) => wit::Error::InvalidInput(m),
        CoreError::Denied(m) => wit::Error::Denied(m),
        CoreError::InvalidClient(m) => wit::Error::InvalidClient(m),
        CoreError::ReauthRequired(m) => wit::Error::ReauthRequired(m),
        CoreError::RateLimited(ms) => wit::Error::RateLimited(ms),
        CoreError::CursorReset(m) => wit::Error::CursorReset(m),
        CoreError::RootChanged(r) => wit::Error::RootChanged(root_out(r)),
        CoreError::PathNotFound(p) => wit::Error::PathNotFound(p),
        CoreError::Transient(m) => wit::Error::Transient(m),
        CoreError::Api(m) => wit::Error::Api(m),
    }
}

export!(Component);

/// The HTTP facade (`--features http-handler`): `wasi:http/incoming-handler` for `wasmtime serve`
/// and Spin, configured from environment variables.
#[cfg(feature = "http-handler")]
mod http_handler {
    use super::WakiTransport;
    use crate::facade;
    use crate::http::{read_body_capped, ReadCapped};

    fn method_name(m: &waki::Method) -> String {
        match m {
            waki::Method::Get => "GET".into(),
            waki::Method::Post => "POST".into(),
            waki::Method::Put => "PUT".into(),
            waki::Method::Delete => "DELETE".into(),
            waki::Method::Head => "HEAD".into(),
            waki::Method::Options => "OPTIONS".into(),
            waki::Method::Patch => "PATCH".into(),
            waki::Method::Connect => "CONNECT".into(),
            waki::Method::Trace => "TRACE".into(),
            waki::Method::Other(o) => o.to_ascii_uppercase(),
        }
    }

    /// Spin variables first (the `spin` build), then the environment.
    fn lookup(env_name: &str) -> Option<String> {
        #[cfg(feature = "spin")]
        if let Some(value) = facade::spin_variable_for(env_name).and_then(spin_vars::get) {
            return Some(value);
        }
        std::env::var(env_name).ok()
    }

    #[cfg(feature = "spin")]
    mod spin_vars {
        wit_bindgen::generate!({ path: "wit/spin", world: "spin-variables" });

        /// A defined, non-empty Spin component variable.
        pub fn get(name: &str) -> Option<String> {
            fermyon::spin::variables::get(name).ok().filter(|v| !v.is_empty())
        }
    }

    #[waki::handler]
    fn handle(req: waki::Request) -> Result<waki::Response, waki::ErrorCode> {
        let config = facade::FacadeConfig::from_lookup(lookup);
        let method = method_name(&req.method());
        let path = req.path().to_string();
        let query = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(req.query()).finish();
        let mut headers = super::header_pairs(req.headers());
        // wasi:http carries the Host header as the request's authority.
        if !headers.iter().any(|(k, _)| k == "host") {
            if let Some(a) = req.authority() {
                headers.push(("host".into(), a.to_string()));
            }
        }
        let limit = config.max_body_bytes;
        let out = match read_body_capped(&headers, limit, |n| req.chunk(n)) {
            Err(ReadCapped::TooLarge) => facade::too_large(limit),
            Err(ReadCapped::Failed(e)) => {
                facade::Outgoing::error(400, "bad-request", &format!("reading the body: {e}"))
            }
            Ok(body) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let mut random = facade::Randomness { nonce: [0; crate::oauth::NONCE_LEN], cookie: [0; 32] };
                getrandom::fill(&mut random.nonce)
                    .and_then(|()| getrandom::fill(&mut random.cookie))
                    .map_err(|e| waki::ErrorCode::InternalError(Some(e.to_string())))?;
                let incoming =
                    facade::Incoming { method: &method, path: &path, query: &query, headers: &headers, body: &body };
                facade::handle(&config, &incoming, &mut WakiTransport, now, &random)
            }
        };
        let mut builder = waki::Response::builder().status_code(out.status);
        for (name, value) in out.headers {
            builder = builder.header(name, value);
        }
        builder.body(out.body).build()
    }
}
