//! Which extractor reads a file: by extension (or export format), checked against the bytes.

/// A format we extract text from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    PlainText,
    Markdown,
    Csv,
    Json,
    Xml,
    Html,
    Docx,
    Pptx,
    Xlsx,
    Odt,
    Odp,
    Ods,
    Pdf,
}

/// Every format, with its name (the allow-list's vocabulary) and the extensions that select it.
/// Hosts read the same table from `wit/connector-info.json` (`content_formats`); a test keeps
/// the two equal.
pub const FORMATS: [(Format, &str, &[&str]); 13] = [
    (Format::PlainText, "text", &["txt", "text", "log"]),
    (Format::Markdown, "markdown", &["md", "markdown"]),
    (Format::Csv, "csv", &["csv", "tsv"]),
    (Format::Json, "json", &["json"]),
    (Format::Xml, "xml", &["xml"]),
    (Format::Html, "html", &["html", "htm", "xhtml"]),
    (Format::Docx, "docx", &["docx", "docm", "dotx"]),
    (Format::Pptx, "pptx", &["pptx", "pptm", "ppsx"]),
    (Format::Xlsx, "xlsx", &["xlsx", "xlsm"]),
    (Format::Odt, "odt", &["odt"]),
    (Format::Odp, "odp", &["odp"]),
    (Format::Ods, "ods", &["ods"]),
    (Format::Pdf, "pdf", &["pdf"]),
];

impl Format {
    pub fn name(self) -> &'static str {
        FORMATS.iter().find(|(f, _, _)| *f == self).map(|(_, n, _)| *n).unwrap_or("text")
    }

    pub fn from_name(name: &str) -> Option<Format> {
        FORMATS.iter().find(|(_, n, _)| n.eq_ignore_ascii_case(name)).map(|(f, _, _)| *f)
    }

    /// By the file name's extension (case-insensitive).
    pub fn from_file_name(name: &str) -> Option<Format> {
        let ext = extension(name)?;
        FORMATS.iter().find(|(_, _, exts)| exts.iter().any(|e| e.eq_ignore_ascii_case(ext))).map(|(f, _, _)| *f)
    }

    /// What `files/export` produces for an `export_format` (Paper → markdown, Google Docs →
    /// docx, Sheets → xlsx, Slides → pptx).
    pub fn from_export_format(format: &str) -> Option<Format> {
        match format.to_ascii_lowercase().as_str() {
            "markdown" | "md" => Some(Format::Markdown),
            "html" => Some(Format::Html),
            "plain_text" | "txt" | "text" => Some(Format::PlainText),
            "csv" => Some(Format::Csv),
            other => Format::from_name(other),
        }
    }

    /// A zip container (OOXML and OpenDocument).
    pub fn is_zip(self) -> bool {
        matches!(self, Format::Docx | Format::Pptx | Format::Xlsx | Format::Odt | Format::Odp | Format::Ods)
    }

    /// Read as decoded text (possibly with markup stripped).
    pub fn is_text(self) -> bool {
        matches!(self, Format::PlainText | Format::Markdown | Format::Csv | Format::Json | Format::Xml | Format::Html)
    }
}

/// The text after the last '.' of the last path component, if any.
pub fn extension(name: &str) -> Option<&str> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let dot = base.rfind('.')?;
    let ext = &base[dot + 1..];
    (dot > 0 && !ext.is_empty()).then_some(ext)
}

/// What the first bytes say a file is, for the formats whose bytes say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Magic {
    Zip,
    Pdf,
    /// OLE2 compound file: legacy .doc/.xls/.ppt, or an encrypted OOXML file.
    Ole2,
    Other,
}

pub fn sniff(bytes: &[u8]) -> Magic {
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        Magic::Zip
    } else if bytes.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        Magic::Ole2
    } else if bytes[..bytes.len().min(1024)].windows(5).any(|w| w == b"%PDF-") {
        // PDF readers accept the header anywhere in the first KiB.
        Magic::Pdf
    } else {
        Magic::Other
    }
}

/// A name for what the bytes look like, for "mislabelled" errors.
pub fn describe(magic: Magic) -> &'static str {
    match magic {
        Magic::Zip => "a ZIP archive",
        Magic::Pdf => "a PDF",
        Magic::Ole2 => "an OLE2 compound file (legacy Office, or an encrypted Office document)",
        Magic::Other => "neither",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_pick_formats_case_insensitively() {
        assert_eq!(Format::from_file_name("Report.PDF"), Some(Format::Pdf));
        assert_eq!(Format::from_file_name("/a.b/notes.md"), Some(Format::Markdown));
        assert_eq!(Format::from_file_name("deck.pptx"), Some(Format::Pptx));
        assert_eq!(Format::from_file_name("photo.jpg"), None);
        assert_eq!(Format::from_file_name(".bashrc"), None);
        assert_eq!(Format::from_file_name("README"), None);
        assert_eq!(Format::from_export_format("markdown"), Some(Format::Markdown));
        assert_eq!(Format::from_export_format("xlsx"), Some(Format::Xlsx));
        for (f, name, _) in FORMATS {
            assert_eq!(Format::from_name(name), Some(f));
            assert_eq!(f.name(), name);
        }
    }

    #[test]
    fn connector_info_publishes_the_same_table() {
        let info: serde_json::Value = serde_json::from_str(include_str!("../../wit/connector-info.json")).unwrap();
        let published = info["content_formats"].as_object().unwrap();
        assert_eq!(published.len(), FORMATS.len());
        for (_, name, exts) in FORMATS {
            let listed: Vec<&str> = published[name].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
            assert_eq!(listed, exts, "{name}");
        }
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff(b"PK\x03\x04rest"), Magic::Zip);
        assert_eq!(sniff(b"junk\n%PDF-1.7"), Magic::Pdf);
        assert_eq!(sniff(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 0]), Magic::Ole2);
        assert_eq!(sniff(b"hello"), Magic::Other);
    }
}
