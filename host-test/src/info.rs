//! What the host knows about the connector without calling it: `wit/connector-info.json`,
//! published next to the WIT (real Dropbox's endpoints, the icon keys documents use).

use std::sync::OnceLock;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct ConnectorInfo {
    pub dropbox_endpoints: DropboxEndpoints,
    pub file_icon_keys: Vec<String>,
    pub folder_icon: String,
    /// Format name → the extensions the component extracts it from.
    pub content_formats: std::collections::BTreeMap<String, Vec<String>>,
}

impl ConnectorInfo {
    /// The format the component reads a file of this name as, by extension.
    pub fn content_format(&self, name: &str) -> Option<&str> {
        let base = name.rsplit('/').next().unwrap_or(name);
        let (stem, ext) = base.rsplit_once('.')?;
        if stem.is_empty() {
            return None;
        }
        self.content_formats
            .iter()
            .find(|(_, exts)| exts.iter().any(|e| e.eq_ignore_ascii_case(ext)))
            .map(|(f, _)| f.as_str())
    }
}

#[derive(Debug, Deserialize)]
pub struct DropboxEndpoints {
    pub authorize: String,
    pub api: String,
    pub notify: String,
    pub content: String,
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
        assert_eq!(info.dropbox_endpoints.content, "https://content.dropboxapi.com");
        assert_eq!(info.content_format("/a/Report.PDF"), Some("pdf"));
        assert_eq!(info.content_format("/a/notes.md"), Some("markdown"));
        assert_eq!(info.content_format("/a/photo.jpg"), None);
        assert_eq!(info.content_format("/a/.docx"), None);
    }
}
