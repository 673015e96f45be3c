//! Plain-Rust request and result types, one-to-one with the WIT records.
//!
//! The core works on these so it can be unit-tested and benchmarked natively; the wasm glue
//! (`component.rs`) only converts between them and the generated bindings.

use crate::secret::{Secret, SecretBytes};

/// Upstream's OAuth scopes, in upstream's order.
pub const DEFAULT_SCOPES: [&str; 5] =
    ["files.content.read", "files.metadata.read", "sharing.read", "account_info.read", "team_data.member"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppCredentials {
    pub client_id: String,
    pub client_secret: Secret,
}

/// The service URLs calls use: the WIT `endpoints` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub authorize: String,
    pub api: String,
}

impl Endpoints {
    /// Real Dropbox, as `wit/connector-info.json` publishes it for hosts.
    pub fn dropbox() -> Self {
        Endpoints { authorize: "https://www.dropbox.com".into(), api: "https://api.dropboxapi.com".into() }
    }

    /// Every service behind one base URL (the local emulator).
    pub fn single(base: &str) -> Self {
        let base = base.trim_end_matches('/').to_string();
        Endpoints { authorize: base.clone(), api: base }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    pub access_token: Secret,
    /// Unix seconds.
    pub expires_at: u64,
    pub refresh_token: Secret,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RootInfo {
    pub is_team: bool,
    pub root_namespace_id: String,
    pub home_namespace_id: String,
    pub home_path: Option<String>,
}

impl RootInfo {
    /// A team space whose root differs from the member's home: file calls must carry
    /// `Dropbox-API-Path-Root` to see team folders.
    pub fn needs_path_root(&self) -> bool {
        self.is_team && !self.root_namespace_id.is_empty() && self.root_namespace_id != self.home_namespace_id
    }

    /// The namespace file calls are rooted at, when they need a `Dropbox-API-Path-Root`.
    pub fn path_root(&self) -> Option<&str> {
        self.needs_path_root().then_some(self.root_namespace_id.as_str())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    pub account_id: String,
    pub email: String,
    pub name: String,
    pub picture: Option<String>,
    pub root_info: RootInfo,
}

#[derive(Clone, Debug)]
pub struct ConnectRequest {
    pub connector_id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub state_secret: SecretBytes,
    pub now: u64,
    /// None: [`crate::oauth::DEFAULT_STATE_TTL_SECS`].
    pub state_ttl_secs: Option<u32>,
    pub scopes: Option<Vec<String>>,
    pub endpoints: Endpoints,
    /// A value only the starting browser holds (e.g. a cookie); the redirect must present it.
    pub session_binding: Option<SecretBytes>,
}

#[derive(Clone, Debug)]
pub struct RedirectRequest {
    pub connector_id: String,
    pub app: AppCredentials,
    pub redirect_uri: String,
    pub redirect_query: String,
    pub state_secret: SecretBytes,
    pub now: u64,
    pub endpoints: Endpoints,
    /// The same binding the connect step used, from the browser that came back.
    pub session_binding: Option<SecretBytes>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasourceConfig {
    pub client_id: String,
    pub refresh_token: Secret,
    pub profile: Profile,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datasource {
    pub id: String,
    pub name: String,
    pub connector_id: String,
    pub config: DatasourceConfig,
    pub tokens: Tokens,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncOptions {
    pub path: String,
    /// None: [`crate::page::MAX_PAGE_LIMIT`].
    pub page_limit: Option<u32>,
    /// None: [`crate::session::DEFAULT_REFRESH_MARGIN_SECS`].
    pub refresh_margin_secs: Option<u32>,
    /// The account's root as connect reported it; decides `Dropbox-API-Path-Root`.
    pub root_info: Option<RootInfo>,
    /// None: [`crate::http::DEFAULT_MAX_PAGE_BYTES`].
    pub max_page_bytes: Option<u32>,
    /// False: only the folder's direct children (finding a parallel listing's subtrees).
    pub recursive: bool,
}

impl Default for SyncOptions {
    /// The whole account, recursively, with every other option at its default.
    fn default() -> Self {
        SyncOptions {
            path: String::new(),
            page_limit: None,
            refresh_margin_secs: None,
            root_info: None,
            max_page_bytes: None,
            recursive: true,
        }
    }
}

#[derive(Clone, Debug)]
pub struct PageRequest {
    pub datasource_id: String,
    pub datasource_name: String,
    pub owner_id: Option<String>,
    pub app: AppCredentials,
    pub tokens: Tokens,
    pub cursor: Option<String>,
    pub options: SyncOptions,
    pub batch_number: String,
    pub now: u64,
    pub endpoints: Endpoints,
}

#[derive(Clone, Debug, PartialEq, Eq)]
/// One document, owned: `Document::from(doc_ref)`.
pub struct Document {
    pub id: String,
    pub path_lower: String,
    pub rev: Option<String>,
    pub json: String,
    /// Files only.
    pub file: Option<FileFacts>,
}

impl From<crate::batch::DocRef<'_>> for Document {
    /// An owned copy (tests, tools; the hot path stays borrowed).
    fn from(d: crate::batch::DocRef<'_>) -> Self {
        Document {
            id: d.id.to_string(),
            path_lower: d.path_lower.to_string(),
            rev: d.rev.map(str::to_string),
            json: d.json.to_string(),
            file: d.file.map(|f| FileFacts {
                file_id: f.file_id.to_string(),
                size: f.size,
                content_hash: f.content_hash.map(str::to_string),
                downloadable: f.downloadable,
                export_as: f.export_as.map(str::to_string),
                export_options: f.export_options().map(str::to_string).collect(),
            }),
        }
    }
}

/// The WIT `file-facts`: what fetching the file's content later needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileFacts {
    pub file_id: String,
    pub size: u64,
    pub content_hash: Option<String>,
    pub downloadable: bool,
    pub export_as: Option<String>,
    pub export_options: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageStats {
    pub entries: u32,
    pub skipped: u32,
    pub requests: u32,
    pub refreshes: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageResult {
    pub documents: crate::batch::DocumentBatch,
    pub deletes: Vec<String>,
    pub cursor: String,
    pub has_more: bool,
    pub tokens: Option<Tokens>,
    pub stats: PageStats,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncFailure {
    pub error: crate::Error,
    pub tokens: Option<Tokens>,
    pub stats: PageStats,
}

#[derive(Clone, Debug)]
pub struct RevokeRequest {
    pub app: AppCredentials,
    pub tokens: Tokens,
    pub now: u64,
    pub endpoints: Endpoints,
}
