//! The wasm glue: WIT exports → core, core → WIT, and the waki transport. Nothing else.

use crate::transport::WakiTransport;
use crate::{connect, oauth, page, types as core, SecretBytes};

wit_bindgen::generate!({ path: "wit", world: "connector" });

use coco::dropbox::types as wit;
use exports::coco::dropbox::oauth_redirect as wit_oauth;
use exports::coco::dropbox::sync_page as wit_sync;
use exports::coco::dropbox::watch as wit_watch;

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
        page_out(page::sync_page(&page_request_in(req), &mut WakiTransport))
    }

    fn latest_cursor(req: wit_sync::PageRequest) -> Result<wit_sync::PageResult, wit_sync::SyncFailure> {
        page_out(page::latest_cursor(&page_request_in(req), &mut WakiTransport))
    }
}

fn page_request_in(req: wit_sync::PageRequest) -> core::PageRequest {
    core::PageRequest {
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
            recursive: req.options.recursive,
        },
        batch_number: req.batch_number,
        now: req.now,
        endpoints: endpoints_in(req.endpoints),
    }
}

fn span_out(s: crate::batch::Span) -> wit_sync::Span {
    wit_sync::Span { start: s.start, len: s.len }
}

fn page_out(
    r: Result<core::PageResult, Box<core::SyncFailure>>,
) -> Result<wit_sync::PageResult, wit_sync::SyncFailure> {
    match r {
        Ok(r) => Ok(wit_sync::PageResult {
            documents: wit_sync::DocumentBatch {
                text: r.documents.text,
                documents: r
                    .documents
                    .rows
                    .into_iter()
                    .map(|d| wit_sync::Document {
                        id: span_out(d.id),
                        path_lower: span_out(d.path_lower),
                        rev: d.rev.map(span_out),
                        json: span_out(d.json),
                        file: d.file.map(|f| wit_sync::FileFacts {
                            file_id: span_out(f.file_id),
                            size: f.size,
                            content_hash: f.content_hash.map(span_out),
                            downloadable: f.downloadable,
                            export_as: f.export_as.map(span_out),
                            export_options: f.export_options.into_iter().map(span_out).collect(),
                        }),
                    })
                    .collect(),
            },
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

impl wit_watch::Guest for Component {
    fn wait_for_changes(req: wit_watch::WaitRequest) -> Result<wit_watch::Changes, wit::Error> {
        let req = crate::watch::WaitRequest { cursor: req.cursor, timeout_secs: req.timeout_secs, notify: req.notify };
        let c = crate::watch::wait_for_changes(&req, &mut WakiTransport).map_err(error_out)?;
        Ok(wit_watch::Changes { changes: c.changes, backoff_secs: c.backoff_secs })
    }
}

crate::wit_convert::conversions!();

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

export!(Component);

/// The HTTP facade (`--features http-handler`): `wasi:http/incoming-handler` for `wasmtime serve`
/// and Spin, configured from environment variables.
#[cfg(feature = "http-handler")]
pub(crate) mod http_handler {
    use crate::facade;
    use crate::http::{read_body_capped, ReadCapped};
    use crate::transport::WakiTransport;

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

    /// One request: with the runtime's store in the key-value build (opened once per
    /// instance), without one otherwise.
    fn serve(
        config: &facade::FacadeConfig,
        req: &facade::Incoming<'_>,
        now: u64,
        random: &facade::Randomness,
    ) -> facade::Outgoing {
        #[cfg(feature = "keyvalue")]
        return super::kv_glue::with_store(config.kv_store.as_deref(), |kv| {
            facade::handle(config, req, &mut WakiTransport, now, random, Some(kv))
        })
        .unwrap_or_else(|e| facade::Outgoing::error(coco_web::envelope::Kind::StoreUnavailable, &e.to_string()));
        #[cfg(not(feature = "keyvalue"))]
        facade::handle(config, req, &mut WakiTransport, now, random, None)
    }

    /// The facade's settings for this request (or cron tick).
    pub(super) fn config() -> facade::FacadeConfig {
        facade::FacadeConfig::from_lookup(lookup)
    }

    pub(super) fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }

    pub(super) fn randomness() -> Result<facade::Randomness, getrandom::Error> {
        let mut random = facade::Randomness {
            nonce: [0; crate::oauth::NONCE_LEN],
            cookie: [0; 32],
            seal_nonce: [0; facade::serverless::seal::NONCE_LEN],
            holder: [0; 16],
        };
        getrandom::fill(&mut random.nonce)?;
        getrandom::fill(&mut random.cookie)?;
        getrandom::fill(&mut random.seal_nonce)?;
        getrandom::fill(&mut random.holder)?;
        Ok(random)
    }

    #[waki::handler]
    fn handle(req: waki::Request) -> Result<waki::Response, waki::ErrorCode> {
        let config = config();
        let method = method_name(&req.method());
        let path = req.path().to_string();
        let query = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(req.query()).finish();
        let mut headers = crate::transport::header_pairs(req.headers());
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
                facade::Outgoing::error(coco_web::envelope::Kind::InvalidInput, &format!("reading the body: {e}"))
            }
            Ok(body) => {
                let random = randomness().map_err(|e| waki::ErrorCode::InternalError(Some(e.to_string())))?;
                let incoming =
                    facade::Incoming { method: &method, path: &path, query: &query, headers: &headers, body: &body };
                serve(&config, &incoming, now(), &random)
            }
        };
        let mut builder = waki::Response::builder().status_code(out.status);
        for (name, value) in out.headers {
            builder = builder.header(name, value);
        }
        builder.body(out.body).build()
    }
}

/// The runtime's key-value store behind the facade's [`crate::facade::serverless::kv::KvStore`]:
/// `wasi:keyvalue@0.2.0-draft` (wasmtime) or Spin's key-value store plus draft2 atomics (Spin).
#[cfg(feature = "keyvalue")]
mod kv_glue {
    use std::cell::RefCell;

    use crate::facade::serverless::kv::{KvError, KvStore};

    #[cfg(not(feature = "spin"))]
    mod wit {
        wit_bindgen::generate!({ path: "wit/keyvalue", world: "facade-store" });
    }

    #[cfg(feature = "spin")]
    mod wit {
        wit_bindgen::generate!({ path: "wit/spin", world: "spin-key-value", generate_all });
    }

    /// The store opened when `COCO_KV_STORE` is unset: wasmtime's in-memory provider is the
    /// empty name, Spin's store is `default`.
    const DEFAULT_STORE: &str = if cfg!(feature = "spin") { "default" } else { "" };

    // wasmtime's in-memory provider gives each `open` its own copy of the data: the bucket
    // stays open for the life of the instance, so a reused instance keeps what it wrote.
    thread_local! {
        static OPEN: RefCell<Option<(String, Store)>> = const { RefCell::new(None) };
    }

    /// Run `f` with the named store (opened on first use).
    pub fn with_store<R>(name: Option<&str>, f: impl FnOnce(&mut dyn KvStore) -> R) -> Result<R, KvError> {
        let name = name.unwrap_or(DEFAULT_STORE);
        OPEN.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.as_ref().is_none_or(|(n, _)| n != name) {
                *slot = Some((name.to_string(), Store::open(name)?));
            }
            let (_, store) = slot.as_mut().expect("opened above");
            Ok(f(store))
        })
    }

    #[cfg(not(feature = "spin"))]
    struct Store(wit::wasi::keyvalue::store::Bucket);

    #[cfg(not(feature = "spin"))]
    fn error(e: wit::wasi::keyvalue::store::Error) -> KvError {
        use wit::wasi::keyvalue::store::Error as E;
        KvError(match e {
            E::NoSuchStore => "no such store".into(),
            E::AccessDenied => "access denied".into(),
            E::Other(m) => m,
        })
    }

    #[cfg(not(feature = "spin"))]
    impl Store {
        fn open(name: &str) -> Result<Store, KvError> {
            wit::wasi::keyvalue::store::open(name).map(Store).map_err(error)
        }
    }

    #[cfg(not(feature = "spin"))]
    impl KvStore for Store {
        fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
            self.0.get(key).map_err(error)
        }

        fn set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
            self.0.set(key, value).map_err(error)
        }

        fn delete(&mut self, key: &str) -> Result<(), KvError> {
            self.0.delete(key).map_err(error)
        }

        fn keys_with_prefix(&mut self, prefix: &str) -> Result<Vec<String>, KvError> {
            let mut out = Vec::new();
            let mut cursor = None;
            loop {
                let page = self.0.list_keys(cursor).map_err(error)?;
                out.extend(page.keys.into_iter().filter(|k| k.starts_with(prefix)));
                match page.cursor {
                    Some(next) if Some(next) != cursor => cursor = Some(next),
                    _ => return Ok(out),
                }
            }
        }

        fn increment(&mut self, key: &str, delta: u64) -> Result<u64, KvError> {
            wit::wasi::keyvalue::atomics::increment(&self.0, key, delta).map_err(error)
        }
    }

    /// Spin: data through fermyon:spin/key-value, the counter through wasi:keyvalue atomics.
    #[cfg(feature = "spin")]
    struct Store {
        data: wit::fermyon::spin::key_value::Store,
        atomics: wit::wasi::keyvalue::store::Bucket,
    }

    #[cfg(feature = "spin")]
    fn error(e: wit::fermyon::spin::key_value::Error) -> KvError {
        use wit::fermyon::spin::key_value::Error as E;
        KvError(match e {
            E::StoreTableFull => "too many stores open".into(),
            E::NoSuchStore => "no such store (key_value_stores in spin.toml?)".into(),
            E::AccessDenied => "access denied".into(),
            E::Other(m) => m,
        })
    }

    #[cfg(feature = "spin")]
    fn atomics_error(e: wit::wasi::keyvalue::store::Error) -> KvError {
        use wit::wasi::keyvalue::store::Error as E;
        KvError(match e {
            E::NoSuchStore => "no such store".into(),
            E::AccessDenied => "access denied".into(),
            E::Other(m) => m,
        })
    }

    #[cfg(feature = "spin")]
    impl Store {
        fn open(name: &str) -> Result<Store, KvError> {
            Ok(Store {
                data: wit::fermyon::spin::key_value::Store::open(name).map_err(error)?,
                atomics: wit::wasi::keyvalue::store::open(name).map_err(atomics_error)?,
            })
        }
    }

    #[cfg(feature = "spin")]
    impl KvStore for Store {
        fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
            self.data.get(key).map_err(error)
        }

        fn set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
            self.data.set(key, value).map_err(error)
        }

        fn delete(&mut self, key: &str) -> Result<(), KvError> {
            self.data.delete(key).map_err(error)
        }

        fn keys_with_prefix(&mut self, prefix: &str) -> Result<Vec<String>, KvError> {
            Ok(self.data.get_keys().map_err(error)?.into_iter().filter(|k| k.starts_with(prefix)).collect())
        }

        fn increment(&mut self, key: &str, delta: u64) -> Result<u64, KvError> {
            let delta = i64::try_from(delta).map_err(|_| KvError("increment too large".into()))?;
            let n = wit::wasi::keyvalue::atomics::increment(&self.atomics, key, delta).map_err(atomics_error)?;
            u64::try_from(n).map_err(|_| KvError("a counter went negative".into()))
        }
    }
}

/// Spin's cron trigger (`spin-cron.toml`): each tick moves one page of every datasource.
#[cfg(all(feature = "spin", feature = "keyvalue"))]
mod cron {
    use super::http_handler::{config, now, randomness};
    use crate::facade::serverless;
    use crate::transport::WakiTransport;

    wit_bindgen::generate!({ path: "wit/spin-cron", world: "spin-cron" });

    struct Cron;

    impl Guest for Cron {
        fn handle_cron_event(_metadata: Metadata) -> Result<(), Error> {
            let config = config();
            let outcome = super::kv_glue::with_store(config.kv_store.as_deref(), |kv| {
                let fresh = || randomness().map_err(|e| format!("no randomness: {e}"));
                serverless::tick(&config, kv, &mut WakiTransport, now(), fresh)
            });
            match outcome {
                Ok(Ok(steps)) => {
                    for (id, out) in &steps {
                        // Ids and statuses only: answers carry no secret, but keep logs small.
                        eprintln!("coco-dropbox cron: datasource {id}: {}", out.status);
                    }
                    Ok(())
                }
                Ok(Err(why)) => Err(Error::Other(why)),
                Err(e) => Err(Error::Other(e.to_string())),
            }
        }
    }

    export!(Cron);
}
