//! A page's documents as the component hands them over (the WIT `document-batch`: one text,
//! one row of spans per document), checked once and then read as borrowed `&str`s: storing
//! a 2,000-document page allocates no string per field.

use std::ops::Range;

/// A stretch of a batch's text (the WIT `span`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub len: u32,
}

/// A file's facts as spans of the batch text (the WIT `file-facts`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSpans {
    pub file_id: Span,
    pub size: u64,
    pub content_hash: Option<Span>,
    pub downloadable: bool,
    pub export_as: Option<Span>,
    pub export_options: Vec<Span>,
}

/// One document as spans of the batch text (the WIT `document`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentSpans {
    pub id: Span,
    pub path_lower: Span,
    pub rev: Option<Span>,
    pub json: Span,
    pub file: Option<FileSpans>,
}

/// Documents in Dropbox's order; every span was checked against the text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Documents {
    text: String,
    rows: Vec<Row>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Row {
    id: Range<usize>,
    path_lower: Range<usize>,
    rev: Option<Range<usize>>,
    json: Range<usize>,
    file: Option<FileRow>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct FileRow {
    file_id: Range<usize>,
    size: u64,
    content_hash: Option<Range<usize>>,
    downloadable: bool,
    export_as: Option<Range<usize>>,
    export_options: Vec<Range<usize>>,
}

/// One document, borrowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocRef<'a> {
    pub id: &'a str,
    pub path_lower: &'a str,
    pub rev: Option<&'a str>,
    pub json: &'a str,
    /// Files only.
    pub file: Option<FileFacts<'a>>,
}

/// What fetching a file's content needs (the WIT `file-facts`), borrowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileFacts<'a> {
    pub file_id: &'a str,
    pub size: u64,
    pub content_hash: Option<&'a str>,
    pub downloadable: bool,
    pub export_as: Option<&'a str>,
    pub export_options: Vec<&'a str>,
}

/// An owned document: how tests and tools build a batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Document {
    pub id: String,
    pub path_lower: String,
    pub rev: Option<String>,
    pub json: String,
    pub file: Option<OwnedFile>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnedFile {
    pub file_id: String,
    pub size: u64,
    pub content_hash: Option<String>,
    pub downloadable: bool,
    pub export_as: Option<String>,
    pub export_options: Vec<String>,
}

/// Why a batch was refused: the component broke the WIT's promise.
#[derive(Debug, thiserror::Error)]
#[error("the component returned a malformed document batch: {0}")]
pub struct Malformed(String);

/// No documents, for pages that carry none.
pub static NO_DOCUMENTS: Documents = Documents { text: String::new(), rows: Vec::new() };

impl Documents {
    /// Check every span of a batch (the WIT `document-batch`: one text, spans into it; the
    /// runtime converts each row as it is read) once: in range, on character boundaries.
    pub fn check(text: String, documents: impl ExactSizeIterator<Item = DocumentSpans>) -> Result<Self, Malformed> {
        let range = |s: Span, what: &str, doc: usize| -> Result<Range<usize>, Malformed> {
            let start = s.start as usize;
            let end =
                start.checked_add(s.len as usize).ok_or_else(|| Malformed(format!("{what} of document {doc}")))?;
            if text.get(start..end).is_none() {
                return Err(Malformed(format!(
                    "{what} of document {doc} ({start}..{end}) is outside the {}-byte text or splits a character",
                    text.len()
                )));
            }
            Ok(start..end)
        };
        let mut rows = Vec::with_capacity(documents.len());
        for (i, d) in documents.enumerate() {
            let file = match d.file {
                None => None,
                Some(f) => Some(FileRow {
                    file_id: range(f.file_id, "file-id", i)?,
                    size: f.size,
                    content_hash: f.content_hash.map(|s| range(s, "content-hash", i)).transpose()?,
                    downloadable: f.downloadable,
                    export_as: f.export_as.map(|s| range(s, "export-as", i)).transpose()?,
                    export_options: f
                        .export_options
                        .into_iter()
                        .map(|s| range(s, "export-options", i))
                        .collect::<Result<_, _>>()?,
                }),
            };
            rows.push(Row {
                id: range(d.id, "id", i)?,
                path_lower: range(d.path_lower, "path-lower", i)?,
                rev: d.rev.map(|s| range(s, "rev", i)).transpose()?,
                json: range(d.json, "json", i)?,
                file,
            });
        }
        Ok(Documents { text, rows })
    }

    /// A batch of owned documents (tests, tools).
    pub fn from_docs<'a>(docs: impl IntoIterator<Item = &'a Document>) -> Self {
        let mut out = Documents::default();
        let push = |text: &mut String, s: &str| {
            let start = text.len();
            text.push_str(s);
            start..text.len()
        };
        for d in docs {
            let t = &mut out.text;
            let file = d.file.as_ref().map(|f| FileRow {
                file_id: push(t, &f.file_id),
                size: f.size,
                content_hash: f.content_hash.as_deref().map(|h| push(t, h)),
                downloadable: f.downloadable,
                export_as: f.export_as.as_deref().map(|x| push(t, x)),
                export_options: f.export_options.iter().map(|o| push(t, o)).collect(),
            });
            let row = Row {
                id: push(t, &d.id),
                path_lower: push(t, &d.path_lower),
                rev: d.rev.as_deref().map(|r| push(t, r)),
                json: push(t, &d.json),
                file,
            };
            out.rows.push(row);
        }
        out
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = DocRef<'_>> + '_ {
        self.rows.iter().map(|r| self.view(r))
    }

    fn view<'a>(&'a self, r: &'a Row) -> DocRef<'a> {
        // Every range was checked in `check` (or built in `from_docs`).
        let s = |range: &Range<usize>| &self.text[range.clone()];
        DocRef {
            id: s(&r.id),
            path_lower: s(&r.path_lower),
            rev: r.rev.as_ref().map(s),
            json: s(&r.json),
            file: r.file.as_ref().map(|f| FileFacts {
                file_id: s(&f.file_id),
                size: f.size,
                content_hash: f.content_hash.as_ref().map(s),
                downloadable: f.downloadable,
                export_as: f.export_as.as_ref().map(s),
                export_options: f.export_options.iter().map(s).collect(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: u32, len: u32) -> Span {
        Span { start, len }
    }

    fn check(text: &str, id: Span) -> Result<Documents, Malformed> {
        let row = DocumentSpans { id, path_lower: span(0, 1), rev: None, json: span(0, 1), file: None };
        Documents::check(text.into(), std::iter::once(row))
    }

    #[test]
    fn spans_outside_the_text_or_inside_a_character_are_refused() {
        assert_eq!(check("aé", span(0, 1)).unwrap().iter().next().unwrap().id, "a");
        assert!(check("aé", span(0, 2)).is_err(), "splits é");
        assert!(check("aé", span(2, 9)).is_err(), "past the end");
        assert!(check("aé", span(u32::MAX, u32::MAX)).is_err(), "overflow");
    }

    #[test]
    fn owned_documents_read_back_the_same() {
        let d = Document {
            id: "x".into(),
            path_lower: "/p".into(),
            rev: Some("r".into()),
            json: "{}".into(),
            file: Some(OwnedFile { file_id: "id:1".into(), export_options: vec!["md".into()], ..Default::default() }),
        };
        let docs = Documents::from_docs([&d]);
        let r = docs.iter().next().unwrap();
        assert_eq!((r.id, r.path_lower, r.rev, r.json), ("x", "/p", Some("r"), "{}"));
        assert_eq!(r.file.unwrap().export_options, ["md"]);
    }
}
