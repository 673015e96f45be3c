//! The routes, as data: which request each step is, and the JSON objects Coco keeps.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

/// One call to Coco Server. `headers` carry the API token, so `Debug` shows only the route.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// The route without the base URL (`PUT /document/{id}`), for messages: the base may carry
    /// credentials, the headers a token.
    pub route: String,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.route)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A path segment as Coco's router reads it: ids are md5 hex or a connector id, but an id
/// with `/`, `?` or spaces must not change the route.
pub(crate) fn segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn request(base: &str, token: &str, method: Method, path: String, body: Vec<u8>) -> Request {
    Request {
        method,
        url: format!("{}{path}", base.trim_end_matches('/')),
        headers: vec![("content-type", "application/json".into()), ("x-api-token", token.into())],
        body,
        route: format!("{} {path}", method.as_str()),
    }
}

/// Coco's datasource object for one of ours: upstream's id and name, so a Coco that ran the Go
/// connector finds the same datasource. `sync.enabled` is false and no credential is sent:
/// this connector syncs it, Coco only stores what it is given.
pub fn datasource_json(id: &str, name: &str, connector_id: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "type": "connector",
        "name": name,
        "icon": "default",
        "enabled": true,
        "sync": { "enabled": false, "interval": "30s" },
        "connector": { "id": connector_id, "config": {} },
    })
}

const ICON_BASE: &str = "/assets/icons/connector/dropbox";

/// The connector object (upstream's seed `connector.tpl`, id `dropbox` on a set-up server),
/// with an icon asset for every icon key a file document can carry. Folders use the front
/// end's font icon `font_filetype-folder`, which has no asset.
pub fn connector_json(id: &str, file_icon_keys: &[&str]) -> serde_json::Value {
    let icons: serde_json::Map<String, serde_json::Value> = file_icon_keys
        .iter()
        .map(|key| {
            let file = if *key == "default" { "icon" } else { key };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_the_token_but_debug_shows_the_route_only() {
        let r = request("http://u:pw@coco:9000/", "T0KEN", Method::Put, "/document/abc".into(), b"{}".to_vec());
        assert_eq!(r.url, "http://u:pw@coco:9000/document/abc");
        assert_eq!(format!("{r:?}"), "PUT /document/abc");
        assert!(r.headers.contains(&("x-api-token", "T0KEN".into())));
    }

    #[test]
    fn odd_ids_cannot_change_the_route() {
        assert_eq!(segment("0335b4e59c687f2666f7d7e5d5d17686"), "0335b4e59c687f2666f7d7e5d5d17686");
        assert_eq!(segment("a/b?c d"), "a%2Fb%3Fc%20d");
    }

    #[test]
    fn datasource_and_connector_objects_have_upstreams_fields() {
        let ds = datasource_json("ds1", "Franz's Dropbox", "dropbox");
        assert_eq!(ds["type"], "connector");
        assert_eq!(ds["sync"]["enabled"], false, "Coco must not try to sync it itself");
        assert_eq!(ds["connector"], serde_json::json!({"id": "dropbox", "config": {}}));
        let c = connector_json("dropbox", &["default", "pdf"]);
        assert_eq!(c["assets"]["icons"]["default"], "/assets/icons/connector/dropbox/icon.png");
        assert_eq!(c["assets"]["icons"]["pdf"], "/assets/icons/connector/dropbox/pdf.png");
        assert_eq!(c["processor"], serde_json::json!({"enabled": true, "name": "dropbox"}));
    }
}
