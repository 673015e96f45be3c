//! Registering the connector with a Coco Server: the seed document's connector JSON, with an
//! icon asset for every icon key the mapping emits for files.

/// Upstream's datasource id: `md5_hex("dropbox,{connector_id},{account_id},{email}")`.
pub fn datasource_id(connector_id: &str, account_id: &str, email: &str) -> String {
    use md5::Digest as _;
    let digest = md5::Md5::digest(format!("dropbox,{connector_id},{account_id},{email}"));
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

const ICON_BASE: &str = "/assets/icons/connector/dropbox";

/// The connector object (upstream's seed `connector.tpl`, id `dropbox`). Folders use the
/// front-end font icon `font_filetype-folder`, which Coco renders itself: it has no asset.
pub fn connector_json(id: &str) -> serde_json::Value {
    let icons: serde_json::Map<String, serde_json::Value> = crate::info::connector_info()
        .file_icon_keys
        .iter()
        .map(|key| {
            let file = if key == "default" { "icon".to_string() } else { key.to_string() };
            (key.to_string(), serde_json::Value::String(format!("{ICON_BASE}/{file}.png")))
        })
        .collect();
    serde_json::json!({
        "id": id,
        "name": "Dropbox Connector",
        "description": "Index files from Dropbox.",
        "category": "cloud_storage",
        "path_hierarchy": false,
        "icon": format!("{ICON_BASE}/icon.png"),
        "tags": ["dropbox", "cloud_storage", "file_sharing"],
        "url": "http://coco.rs/connectors/dropbox",
        "assets": { "icons": icons },
        "oauth_connect_implemented": true,
        "processor": { "enabled": true, "name": "dropbox" }
    })
}

/// `POST {coco}/connector/` with the connector JSON; returns Coco's answer.
pub fn register(coco_url: &str, api_token: Option<&str>, id: &str) -> anyhow::Result<String> {
    let url = format!("{}/connector/", coco_url.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into();
    let mut req = agent.post(&url).header("content-type", "application/json");
    if let Some(t) = api_token {
        req = req.header("X-API-TOKEN", t);
    }
    let resp = req.send(connector_json(id).to_string()).map_err(|e| anyhow::anyhow!("POST {url}: {e}"))?;
    let status = resp.status();
    let body = resp.into_body().read_to_string().unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!("Coco Server answered {status} to POST {url}: {}", body.chars().take(200).collect::<String>());
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datasource_ids_are_upstreams() {
        // coco-upstream.md's worked example.
        let id = datasource_id("dropbox", "dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc", "franz@dropbox.com");
        assert_eq!(id, "0335b4e59c687f2666f7d7e5d5d17686");
    }

    #[test]
    fn every_file_icon_key_has_an_asset_and_the_seed_fields_are_there() {
        let c = connector_json("dropbox");
        for key in &crate::info::connector_info().file_icon_keys {
            assert!(c["assets"]["icons"][key.as_str()].as_str().unwrap().ends_with(".png"), "{key}");
        }
        assert_eq!(c["assets"]["icons"]["default"], "/assets/icons/connector/dropbox/icon.png");
        assert_eq!(c["processor"], serde_json::json!({"enabled": true, "name": "dropbox"}));
        assert_eq!(c["category"], "cloud_storage");
        assert_eq!(c["path_hierarchy"], false);
    }
}
