//! Registering the connector with a Coco Server: the seed document's connector JSON, with an
//! icon asset for every icon key the mapping emits for files.

/// Upstream's datasource id: `md5_hex("dropbox,{connector_id},{account_id},{email}")`.
pub fn datasource_id(connector_id: &str, account_id: &str, email: &str) -> String {
    use md5::Digest as _;
    let digest = md5::Md5::digest(format!("dropbox,{connector_id},{account_id},{email}"));
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The connector object (upstream's seed `connector.tpl`, id `dropbox`), with an icon asset for
/// every icon key `wit/connector-info.json` lists for files.
pub fn connector_json(id: &str) -> serde_json::Value {
    coco_api::connector_json(id, &icon_keys())
}

fn icon_keys() -> Vec<&'static str> {
    crate::info::connector_info().file_icon_keys.iter().map(String::as_str).collect()
}

/// Make sure Coco Server knows connector `id`: `GET /connector/:id`, and `POST /connector/`
/// with the connector JSON on a 404 (Coco's create route is create-only: posting an existing
/// id is a 500). A set-up server ships `dropbox`, which is then left as it is.
pub fn register(coco_url: &str, api_token: &str, id: &str) -> anyhow::Result<coco_api::Ensured> {
    let client = crate::net::HttpClient::shared()?;
    let coco = coco_api::Coco { base: coco_url, token: api_token, in_flight: 1, route: coco_api::UpsertRoute::Save };
    let mut transport = crate::deliver::HttpTransport::new(&client, std::time::Duration::from_secs(30));
    let ensured = coco.ensure_connector(&mut transport, id, &icon_keys());
    match (ensured, transport.permanent) {
        (Ok(e), _) => Ok(e),
        (Err(_), Some(why)) => Err(anyhow::anyhow!("{why}")),
        (Err(f), None) => Err(anyhow::anyhow!("{f}")),
    }
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
