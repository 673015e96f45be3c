//! The facade's JSON: what it accepts (unknown fields refused) and what it answers. The same
//! shapes are written down as JSON Schema in `wit/facade.schema.json`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::types::{Datasource, PageStats, RootInfo, Tokens};

/// The account's root namespace and its tokens as JSON: the web kit's shapes, which
/// `coco-host serve` reads too.
pub use coco_web::datasource::{Root as RootJson, Tokens as TokensJson};

impl From<RootJson> for RootInfo {
    fn from(r: RootJson) -> Self {
        RootInfo {
            is_team: r.is_team,
            root_namespace_id: r.root_namespace_id,
            home_namespace_id: r.home_namespace_id,
            home_path: r.home_path,
        }
    }
}

impl From<RootInfo> for RootJson {
    fn from(r: RootInfo) -> Self {
        RootJson {
            is_team: r.is_team,
            root_namespace_id: r.root_namespace_id,
            home_namespace_id: r.home_namespace_id,
            home_path: r.home_path,
        }
    }
}

impl From<Tokens> for TokensJson {
    fn from(t: Tokens) -> Self {
        TokensJson {
            access_token: t.access_token.into_inner(),
            expires_at: t.expires_at,
            refresh_token: t.refresh_token.into_inner(),
        }
    }
}

/// `POST /sync` request body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncBody {
    pub datasource: DatasourceRef,
    pub tokens: TokensJson,
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub options: SyncOptionsJson,
    #[serde(default)]
    pub batch_number: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasourceRef {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub owner_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SyncOptionsJson {
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub page_limit: Option<u32>,
    #[serde(default)]
    pub refresh_margin_secs: Option<u32>,
    /// The account's `root_info` (from the datasource JSON); decides team-space rooting.
    #[serde(default)]
    pub root_info: Option<RootJson>,
    #[serde(default)]
    pub max_page_bytes: Option<u32>,
}

/// `POST /oauth/exchange` request body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeBody {
    pub connector_id: String,
    /// The query the browser came back with (or the whole redirected URL).
    pub redirect_query: String,
    /// The session cookie `/connect` set in that browser, when the flow started there.
    #[serde(default)]
    pub session_cookie: Option<String>,
    /// The redirect URI of the connect step; default `COCO_REDIRECT_URI`.
    #[serde(default)]
    pub redirect_uri: Option<String>,
}

#[derive(Serialize)]
pub struct SyncOut<'a> {
    pub deletes: &'a [String],
    pub documents: Vec<&'a RawValue>,
    pub cursor: &'a str,
    pub has_more: bool,
    pub tokens: Option<TokensJson>,
    pub stats: StatsJson,
}

#[derive(Serialize)]
pub struct StatsJson {
    pub entries: u32,
    pub skipped: u32,
    pub requests: u32,
    pub refreshes: u32,
}

impl From<PageStats> for StatsJson {
    fn from(s: PageStats) -> Self {
        StatsJson { entries: s.entries, skipped: s.skipped, requests: s.requests, refreshes: s.refreshes }
    }
}

/// Upstream's datasource document plus the tokens and `root_info` a caller needs to sync;
/// `client_secret` is left out (the operator configured it). Only ever sent server to server.
/// The shape is the web kit's, which `coco-host serve` adopts.
pub fn datasource_json(ds: Datasource) -> serde_json::Value {
    use coco_web::datasource::{Connector, ConnectorConfig, Delivered, Profile, SyncSetting};
    let p = ds.config.profile;
    let delivered = Delivered {
        id: ds.id,
        kind: "connector".into(),
        name: ds.name,
        icon: "default".into(),
        enabled: true,
        sync: SyncSetting::default(),
        connector: Connector {
            id: ds.connector_id,
            config: ConnectorConfig {
                client_id: ds.config.client_id,
                refresh_token: ds.config.refresh_token.expose().to_string(),
                profile: Profile { account_id: p.account_id, email: p.email, name: p.name, picture: p.picture },
            },
        },
        tokens: TokensJson::from(ds.tokens),
        root_info: Some(RootJson::from(p.root_info)),
    };
    serde_json::to_value(delivered).unwrap_or_default()
}
