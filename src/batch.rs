//! A page's documents packed as one text and one row of spans per document: the WIT
//! `document-batch`. Mapping writes every document straight into the text, and the boundary
//! carries two values instead of ~10,000 strings; readers borrow `&str`s from it.

/// A byte range of [`DocumentBatch::text`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub len: u32,
}

impl Span {
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.start as usize + self.len as usize
    }
}

/// The WIT `file-facts`, as spans.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileRow {
    pub file_id: Span,
    pub size: u64,
    pub content_hash: Option<Span>,
    pub downloadable: bool,
    pub export_as: Option<Span>,
    pub export_options: Vec<Span>,
}

/// The WIT `document`, as spans.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocRow {
    pub id: Span,
    pub path_lower: Span,
    pub rev: Option<Span>,
    pub json: Span,
    pub file: Option<FileRow>,
}

/// Documents in Dropbox's order. Built only by mapping, so every span is in range and on
/// character boundaries; a host reading one from a component must check (see its own type).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocumentBatch {
    pub text: String,
    pub rows: Vec<DocRow>,
}

/// One document, borrowed from a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DocRef<'a> {
    pub id: &'a str,
    pub path_lower: &'a str,
    pub rev: Option<&'a str>,
    pub json: &'a str,
    pub file: Option<FileRef<'a>>,
}

/// A file's facts, borrowed from a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileRef<'a> {
    pub file_id: &'a str,
    pub size: u64,
    pub content_hash: Option<&'a str>,
    pub downloadable: bool,
    pub export_as: Option<&'a str>,
    text: &'a str,
    export_options: &'a [Span],
}

impl<'a> FileRef<'a> {
    pub fn export_options(&self) -> impl Iterator<Item = &'a str> + 'a {
        let text = self.text;
        self.export_options.iter().map(move |s| &text[s.range()])
    }
}

impl DocumentBatch {
    pub fn with_capacity(documents: usize, text_bytes: usize) -> Self {
        DocumentBatch { text: String::with_capacity(text_bytes), rows: Vec::with_capacity(documents) }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Append `s` to the text as it is.
    pub fn push_raw(&mut self, s: &str) -> Span {
        let start = self.text.len() as u32;
        self.text.push_str(s);
        Span { start, len: s.len() as u32 }
    }

    pub fn str(&self, span: Span) -> &str {
        &self.text[span.range()]
    }

    pub fn get(&self, i: usize) -> Option<DocRef<'_>> {
        self.rows.get(i).map(|r| self.view(r))
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = DocRef<'_>> + '_ {
        self.rows.iter().map(|r| self.view(r))
    }

    fn view<'a>(&'a self, r: &'a DocRow) -> DocRef<'a> {
        let text = self.text.as_str();
        let s = |span: Span| &text[span.range()];
        DocRef {
            id: s(r.id),
            path_lower: s(r.path_lower),
            rev: r.rev.map(s),
            json: s(r.json),
            file: r.file.as_ref().map(|f| FileRef {
                file_id: s(f.file_id),
                size: f.size,
                content_hash: f.content_hash.map(s),
                downloadable: f.downloadable,
                export_as: f.export_as.map(s),
                text,
                export_options: &f.export_options,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_borrow_their_strings_from_the_text() {
        let mut b = DocumentBatch::default();
        let id = b.push_raw("abc");
        let json = b.push_raw(r#"{"id":"abc"}"#);
        let path = b.push_raw("/ü/x");
        let opt = b.push_raw("markdown");
        b.rows.push(DocRow {
            id,
            path_lower: path,
            rev: None,
            json,
            file: Some(FileRow { file_id: id, size: 3, export_options: vec![opt], ..Default::default() }),
        });
        let d = b.get(0).unwrap();
        assert_eq!((d.id, d.path_lower, d.json), ("abc", "/ü/x", r#"{"id":"abc"}"#));
        let f = d.file.unwrap();
        assert_eq!(f.export_options().collect::<Vec<_>>(), ["markdown"]);
        assert_eq!(b.iter().len(), 1);
        assert!(b.get(1).is_none());
    }
}
