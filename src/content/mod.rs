//! File content: one file per call, fetched from Dropbox (download, or export for Paper and
//! Google files) and turned into text inside the component, so a hostile file can at worst
//! fail its own call. Extraction is pure (bytes in, text out) and unit-tested natively.

pub mod archive;
pub mod fetch;
pub mod format;
pub mod html;
pub mod office;
pub mod pdf;
pub mod text;
pub mod xml;

use format::{describe, sniff, Format, Magic};
use text::TextSink;

/// Default cap on what one file may download (Elastic's and Fess's default).
pub const DEFAULT_MAX_DOWNLOAD_BYTES: u64 = 10 << 20;
/// Default cap on the text kept per file.
pub const DEFAULT_MAX_TEXT_BYTES: u32 = 1 << 20;

/// Why a file has no content, for reasons that retrying cannot change until the file does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// The file (as listed, or as it arrived) is larger than the download cap.
    TooLarge { bytes: u64, limit: u64 },
    /// Not a format we extract, or not on the datasource's allow-list.
    Unsupported(String),
    /// Dropbox blocks it (`restricted_content`: copyright or legal hold).
    Restricted(String),
    /// Neither downloadable nor exportable in a format we read.
    NotExportable(String),
    /// This revision is gone (changed or deleted since the listing); the listing catches up.
    Gone(String),
    /// Corrupt, truncated, mislabelled or password-protected.
    Malformed(String),
    /// Built to hurt a parser: zip bomb, entity expansion, absurd nesting, cyclic structure.
    Hostile(String),
}

impl Skip {
    /// A stable short name (`metadata.content_error`'s prefix, status counts).
    pub fn reason(&self) -> &'static str {
        match self {
            Skip::TooLarge { .. } => "too_large",
            Skip::Unsupported(_) => "unsupported",
            Skip::Restricted(_) => "restricted",
            Skip::NotExportable(_) => "not_exportable",
            Skip::Gone(_) => "gone",
            Skip::Malformed(_) => "malformed",
            Skip::Hostile(_) => "hostile",
        }
    }

    pub fn detail(&self) -> String {
        match self {
            Skip::TooLarge { bytes, limit } => format!("{bytes} bytes is over the {limit}-byte download cap"),
            Skip::Unsupported(m)
            | Skip::Restricted(m)
            | Skip::NotExportable(m)
            | Skip::Gone(m)
            | Skip::Malformed(m)
            | Skip::Hostile(m) => m.clone(),
        }
    }
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason(), self.detail())
    }
}

/// Text out of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extracted {
    pub text: String,
    pub format: Format,
    pub truncated: bool,
}

/// The format to read `bytes` as: the claimed one, if the bytes agree. Text formats must not
/// be binary; container formats must carry their signature.
pub fn check_format(claimed: Format, bytes: &[u8]) -> Result<Format, Skip> {
    let magic = sniff(bytes);
    let expected = if claimed.is_zip() {
        Magic::Zip
    } else if claimed == Format::Pdf {
        Magic::Pdf
    } else {
        return match magic {
            Magic::Zip | Magic::Pdf | Magic::Ole2 => {
                Err(Skip::Malformed(format!("named as {} but the bytes are {}", claimed.name(), describe(magic))))
            }
            Magic::Other => Ok(claimed),
        };
    };
    if magic == expected {
        Ok(claimed)
    } else if bytes.is_empty() {
        Err(Skip::Malformed(format!("an empty file is not a valid {}", claimed.name())))
    } else {
        Err(Skip::Malformed(format!("named as {} but the bytes are {}", claimed.name(), describe(magic))))
    }
}

/// Extract up to `max_text` bytes of text from `bytes`, read as `format`.
pub fn extract(format: Format, bytes: &[u8], max_text: usize) -> Result<Extracted, Skip> {
    let format = check_format(format, bytes)?;
    let mut out = TextSink::new(max_text);
    match format {
        Format::Pdf => pdf::extract(bytes, &mut out)?,
        f if f.is_zip() => office::extract(f, bytes, &mut out)?,
        f => {
            let text = text::decode(bytes).map_err(|m| Skip::Malformed(format!("named as {} but {m}", f.name())))?;
            match f {
                Format::Html => html::extract(&text, &mut out)?,
                Format::Xml => xml::extract(text.as_bytes(), &xml::GENERIC, &mut out)?,
                _ => out.push(text.trim_start_matches('\u{feff}')),
            }
        }
    }
    let (text, truncated) = out.finish();
    Ok(Extracted { text, format, truncated })
}

/// [`extract`], with a panic inside a parser turned into [`Skip::Malformed`] where the target
/// unwinds (native builds); in the component a panic traps the call, which the host reports.
pub fn extract_guarded(format: Format, bytes: &[u8], max_text: usize) -> Result<Extracted, Skip> {
    std::panic::catch_unwind(|| extract(format, bytes, max_text)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(Skip::Malformed(format!("the {} parser gave up: {why}", format.name())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_formats_pass_through_and_decode() {
        let e = extract(Format::Markdown, "# Title\n\nSome *text* — ok".as_bytes(), 1000).unwrap();
        assert_eq!(e.text, "# Title\n\nSome *text* — ok");
        assert_eq!(e.format, Format::Markdown);
        let e = extract(Format::Csv, b"a,b\n1,2\n", 3).unwrap();
        assert_eq!((e.text.as_str(), e.truncated), ("a,b", true));
        let e = extract(Format::Json, br#"{"k": "v"}"#, 100).unwrap();
        assert_eq!(e.text, r#"{"k": "v"}"#);
    }

    #[test]
    fn mislabelled_files_are_malformed() {
        let pdf = b"%PDF-1.4\n...";
        assert!(matches!(extract(Format::Docx, pdf, 100), Err(Skip::Malformed(m)) if m.contains("PDF")));
        assert!(matches!(extract(Format::PlainText, pdf, 100), Err(Skip::Malformed(_))));
        assert!(matches!(extract(Format::Pdf, b"just text", 100), Err(Skip::Malformed(_))));
        assert!(matches!(extract(Format::Docx, b"", 100), Err(Skip::Malformed(_))));
        assert!(matches!(extract(Format::PlainText, b"\x00\x01\x02binary", 100), Err(Skip::Malformed(_))));
    }
}

/// The vendored corpus of real files (`tests/corpus/`), extracted natively. The e2e suite runs
/// the same manifest through the compiled component.
#[cfg(test)]
mod corpus {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Manifest {
        files: Vec<Entry>,
    }

    #[derive(serde::Deserialize)]
    struct Entry {
        file: String,
        format: String,
        phrases: Vec<String>,
    }

    #[test]
    fn every_corpus_file_gives_its_key_phrases() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
        let manifest: Manifest = serde_json::from_slice(&std::fs::read(dir.join("corpus.json")).unwrap()).unwrap();
        let mut failures = Vec::new();
        for e in &manifest.files {
            let bytes = std::fs::read(dir.join(&e.file)).unwrap();
            let by_name = format::Format::from_file_name(&e.file).unwrap();
            assert_eq!(by_name.name(), e.format, "{}", e.file);
            match extract_guarded(by_name, &bytes, DEFAULT_MAX_TEXT_BYTES as usize) {
                Ok(x) => {
                    let flat = x.text.split_whitespace().collect::<Vec<_>>().join(" ");
                    for p in &e.phrases {
                        if !flat.contains(p.as_str()) {
                            failures.push(format!("{}: {p:?} not in {:?}", e.file, &flat[..flat.len().min(400)]));
                        }
                    }
                }
                Err(s) => failures.push(format!("{}: {s}", e.file)),
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }
}
