//! What the host knows about the connector without calling it: `wit/connector-info.json`,
//! published next to the WIT (real Dropbox's endpoints, the icon keys documents use).

use std::sync::OnceLock;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct ConnectorInfo {
    pub dropbox_endpoints: DropboxEndpoints,
    pub file_icon_keys: Vec<String>,
    pub folder_icon: String,
}

#[derive(Debug, Deserialize)]
pub struct DropboxEndpoints {
    pub authorize: String,
    pub api: String,
    pub notify: String,
}

/// The data file, parsed once (it is compiled in, so a bad edit fails the host's tests).
pub fn connector_info() -> &'static ConnectorInfo {
    static INFO: OnceLock<ConnectorInfo> = OnceLock::new();
    INFO.get_or_init(|| {
        serde_json::from_str(include_str!("../../wit/connector-info.json"))
            .expect("wit/connector-info.json is valid (checked by the host's unit tests)")
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_data_file_parses_and_names_real_dropbox() {
        let info = super::connector_info();
        assert_eq!(info.dropbox_endpoints.api, "https://api.dropboxapi.com");
        assert!(info.file_icon_keys.iter().any(|k| k == "default"));
        assert_eq!(info.folder_icon, "font_filetype-folder");
    }
}
