//! The Coco datasource a connected account becomes, as the facade delivers it to its callback
//! (or answers `/oauth/exchange`) and as `coco-host serve` adopts it (`POST /api/datasources`):
//! upstream's datasource document plus the tokens and `root_info` a caller needs to sync. The
//! app secret is never in it. Server to server only; `Debug` shows no token.

use serde::{Deserialize, Serialize};

/// The delivered datasource.
#[derive(Clone, Serialize, Deserialize)]
pub struct Delivered {
    pub id: String,
    #[serde(rename = "type", default = "connector_type")]
    pub kind: String,
    pub name: String,
    #[serde(default = "default_icon")]
    pub icon: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub sync: SyncSetting,
    pub connector: Connector,
    pub tokens: Tokens,
    /// Absent from deliveries older than root tracking.
    #[serde(default)]
    pub root_info: Option<Root>,
}

/// Upstream's schedule setting (Coco re-lists every 30 s; our hosts schedule themselves).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncSetting {
    pub enabled: bool,
    pub interval: String,
}

impl Default for SyncSetting {
    fn default() -> Self {
        SyncSetting { enabled: true, interval: "30s".into() }
    }
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Connector {
    pub id: String,
    pub config: ConnectorConfig,
}

/// Upstream's `connector.config`: the app's client id, the refresh token, the account.
#[derive(Clone, Serialize, Deserialize)]
pub struct ConnectorConfig {
    pub client_id: String,
    #[serde(default)]
    pub refresh_token: String,
    pub profile: Profile,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub account_id: String,
    pub email: String,
    pub name: String,
    #[serde(default)]
    pub picture: Option<String>,
}

/// The account's tokens. Unknown fields are refused; `Debug` shows the expiry only.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tokens {
    pub access_token: String,
    pub expires_at: u64,
    pub refresh_token: String,
}

/// The account's root namespace (team spaces). Unknown fields are refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Root {
    pub is_team: bool,
    pub root_namespace_id: String,
    pub home_namespace_id: String,
    #[serde(default)]
    pub home_path: Option<String>,
}

fn connector_type() -> String {
    "connector".into()
}

fn default_icon() -> String {
    "default".into()
}

fn yes() -> bool {
    true
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Delivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivered")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("connector", &self.connector.id)
            .field("expires_at", &self.tokens.expires_at)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered() -> Delivered {
        Delivered {
            id: "ds1".into(),
            kind: connector_type(),
            name: "Ann's Dropbox".into(),
            icon: default_icon(),
            enabled: true,
            sync: SyncSetting::default(),
            connector: Connector {
                id: "dropbox".into(),
                config: ConnectorConfig {
                    client_id: "app".into(),
                    refresh_token: "REFRESH-1".into(),
                    profile: Profile {
                        account_id: "dbid:1".into(),
                        email: "a@example.com".into(),
                        name: "Ann".into(),
                        picture: None,
                    },
                },
            },
            tokens: Tokens { access_token: "ACCESS-1".into(), expires_at: 5, refresh_token: "REFRESH-1".into() },
            root_info: Some(Root {
                is_team: false,
                root_namespace_id: "1".into(),
                home_namespace_id: "1".into(),
                home_path: None,
            }),
        }
    }

    #[test]
    fn the_delivered_datasource_has_upstreams_shape_and_reads_back() {
        let v = serde_json::to_value(delivered()).unwrap();
        assert_eq!(v["type"], "connector");
        assert_eq!(v["icon"], "default");
        assert_eq!(v["sync"], serde_json::json!({ "enabled": true, "interval": "30s" }));
        assert_eq!(v["connector"]["config"]["profile"]["picture"], serde_json::Value::Null);
        assert!(v["connector"]["config"].get("client_secret").is_none());
        let back: Delivered = serde_json::from_value(v).unwrap();
        assert_eq!(back.connector.config.profile, delivered().connector.config.profile);
        // A delivery with only what the adopting host needs still reads.
        let minimal = serde_json::json!({
            "id": "ds1", "name": "n",
            "connector": { "id": "dropbox", "config": { "client_id": "app",
                "profile": { "account_id": "a", "email": "e", "name": "n" } } },
            "tokens": { "access_token": "A", "expires_at": 1, "refresh_token": "R" }
        });
        let d: Delivered = serde_json::from_value(minimal).unwrap();
        assert!(d.root_info.is_none() && d.enabled && d.kind == "connector");
        let shown = format!("{:?} {:?}", delivered(), delivered().tokens);
        assert!(!shown.contains("ACCESS") && !shown.contains("REFRESH"), "{shown}");
    }
}
