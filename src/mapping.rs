//! Dropbox `list_folder` entries → Coco documents, field for field as the upstream Go connector
//! (`coco-upstream.md` §5), so a server switching to us keeps every document id. Two deliberate
//! differences: `_system` is a per-document copy (upstream aliases one map, leaking a stale
//! `parent_path` into root-level entries), and documents carry a web `url`.

use std::borrow::Cow;

use md5::{Digest, Md5};
use serde::Deserialize;

use crate::batch::{DocRow, DocumentBatch, FileRow, Span};
use crate::json_write;
use crate::types::Document;

/// `list_folder` / `list_folder/continue` response. Strings borrow from the body when they
/// contain no escapes.
#[derive(Deserialize)]
pub struct ListFolderResult<'a> {
    #[serde(borrow)]
    pub entries: Vec<Entry<'a>>,
    #[serde(borrow)]
    pub cursor: Cow<'a, str>,
    pub has_more: bool,
}

/// One `Metadata` union member; only the fields upstream reads.
#[derive(Deserialize, Default)]
pub struct Entry<'a> {
    #[serde(rename = ".tag", borrow)]
    pub tag: Cow<'a, str>,
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub path_lower: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub path_display: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub client_modified: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub server_modified: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub rev: Option<Cow<'a, str>>,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(borrow, default)]
    pub content_hash: Option<Cow<'a, str>>,
    /// Absent means true (Dropbox's default).
    #[serde(default)]
    pub is_downloadable: Option<bool>,
    #[serde(borrow, default)]
    pub export_info: Option<ExportInfo<'a>>,
}

/// `export_info` of a file that must be exported (Paper, Google Docs).
#[derive(Deserialize, Default)]
pub struct ExportInfo<'a> {
    #[serde(borrow, default)]
    pub export_as: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub export_options: Vec<Cow<'a, str>>,
}

/// What every document of a page shares.
pub struct MapContext<'a> {
    pub datasource_id: &'a str,
    pub datasource_name: &'a str,
    pub owner_id: Option<&'a str>,
    pub batch_number: &'a str,
    /// Web UI base, e.g. `https://www.dropbox.com`; document urls are `{base}/home{path}`.
    pub web_base: &'a str,
}

/// A page turned into index operations, in Dropbox's order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MappedPage {
    pub documents: DocumentBatch,
    pub deletes: Vec<String>,
    pub skipped: u32,
}

/// Upstream's only skip rule: exact, case-sensitive name.
pub fn is_skipped(name: &str) -> bool {
    name == ".DS_Store"
}

pub fn md5_hex(input: &str) -> String {
    let mut out = String::with_capacity(32);
    push_hex(&mut out, &Md5::digest(input.as_bytes()));
    out
}

/// Append `bytes` as lowercase hex.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0xf) as usize] as char);
    }
}

/// `md5_hex("{datasource_id}_{dropbox id}")`; the Dropbox id keeps its `id:` prefix.
pub fn document_id(datasource_id: &str, entry_id: &str) -> String {
    let mut key = String::with_capacity(datasource_id.len() + 1 + entry_id.len());
    key.push_str(datasource_id);
    key.push('_');
    key.push_str(entry_id);
    md5_hex(&key)
}

/// `md5_hex("dropbox,{connector_id},{account_id},{email}")`.
pub fn datasource_id(connector_id: &str, account_id: &str, email: &str) -> String {
    md5_hex(&format!("dropbox,{connector_id},{account_id},{email}"))
}

/// Upstream's name rule.
pub fn datasource_name(display_name: &str) -> String {
    if display_name.is_empty() {
        "My Dropbox".into()
    } else {
        format!("{display_name}'s Dropbox")
    }
}

/// Upstream's icon table: by lower-cased extension (text after the last '.').
pub fn icon_for(name: &str, is_folder: bool) -> &'static str {
    if is_folder {
        return "font_filetype-folder";
    }
    let ext = match name.rfind('.') {
        Some(i) => &name[i + 1..],
        None => return "default",
    };
    // Longest extension in the table is 7 bytes; avoid allocating for the common case.
    if ext.len() > 7 {
        return "default";
    }
    match ext.to_ascii_lowercase().as_str() {
        "docx" | "doc" => "docx",
        "xlsx" | "xls" => "xlsx",
        "pptx" | "ppt" => "pptx",
        "pdf" => "pdf",
        "paper" => "paper",
        "gdoc" => "gdoc",
        "gsheet" => "gexcel",
        "gslides" => "gppt",
        _ => "default",
    }
}

/// Every icon key `icon_for` can return for a file (folders use a font icon). Hosts read the
/// same list from `wit/connector-info.json`; a test keeps the two equal.
pub const FILE_ICON_KEYS: [&str; 9] = ["default", "docx", "xlsx", "pptx", "pdf", "paper", "gdoc", "gexcel", "gppt"];

/// The directory components of `path_display`, as upstream derives categories:
/// `filepath.Dir`, then nothing for the root, else the parts without the leading '/'.
pub fn parent_parts(path_display: &str) -> Vec<&str> {
    parent_dir(path_display).split('/').filter(|p| !p.is_empty()).collect()
}

/// The directory of `path_display` without its leading and trailing slashes ("" at the
/// root): [`parent_parts`] are its non-empty `/`-separated pieces.
fn parent_dir(path_display: &str) -> &str {
    let Some(slash) = path_display.rfind('/') else {
        return "";
    };
    let dir = path_display[..slash].trim_end_matches('/');
    dir.strip_prefix('/').unwrap_or(dir)
}

/// RFC 3339 as Go's `time.Parse(time.RFC3339, …)` accepts it; upstream leaves a field unset
/// when parsing fails. A valid value is kept byte for byte (Dropbox sends `…Z`, no fraction,
/// which is also how Go prints it back).
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let num = |r: std::ops::Range<usize>| b[r].iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    if !(digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10)) {
        return false;
    }
    if !(matches!(b[10], b'T' | b't') && digits(11..13) && b[13] == b':' && digits(14..16)) {
        return false;
    }
    if !(b[16] == b':' && digits(17..19)) {
        return false;
    }
    let (year, month, day) = (num(0..4), num(5..7), num(8..10));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month) || day == 0 || day > days[month as usize - 1] {
        return false;
    }
    if num(11..13) > 23 || num(14..16) > 59 || num(17..19) > 59 {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            let zone = [*h1, *h2, *m1, *m2];
            zone.iter().all(u8::is_ascii_digit)
                && (h1 - b'0') * 10 + (h2 - b'0') <= 23
                && (m1 - b'0') * 10 + (m2 - b'0') <= 59
        }
        _ => false,
    }
}

/// `{web_base}/home` + the percent-encoded display path (Fess does the same).
pub fn web_url(web_base: &str, path_display: &str) -> String {
    let mut url = String::with_capacity(web_base.len() + 5 + path_display.len() + 16);
    url.push_str(web_base);
    push_home_path(&mut url, path_display);
    url
}

/// `/home` and each non-empty segment of `path_display`, percent-encoded.
fn push_home_path(out: &mut String, path_display: &str) {
    out.push_str("/home");
    for segment in path_display.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        json_write::push_segment(out, segment);
    }
}

fn opt<'a>(v: &'a Option<Cow<'a, str>>) -> &'a str {
    v.as_deref().unwrap_or("")
}

/// Maps a page's entries into one [`DocumentBatch`]. What every document shares is worked
/// out once per page: the id hash's prefix state and the escaped constant fields.
pub struct PageMapper {
    /// md5 state after `"{datasource_id}_"`: each id hashes only the entry's own id.
    id_prefix: Md5,
    /// `"_system":{"owner_id":…` opening, when there is an owner.
    owner: Option<String>,
    /// `"metadata":{"batch_number":…,"file_id":`.
    metadata_head: String,
    /// `,"source":{…}`.
    source: String,
    /// The web base, JSON-escaped without its quotes (URLs are written unescaped after it).
    web_base: String,
    /// The entry's category as a JSON string, written once and copied where it recurs.
    category: String,
}

impl PageMapper {
    pub fn new(ctx: &MapContext<'_>) -> Self {
        let mut id_prefix = Md5::new();
        id_prefix.update(ctx.datasource_id.as_bytes());
        id_prefix.update(b"_");
        let owner = ctx.owner_id.map(|o| {
            let mut s = String::from("\"_system\":{\"owner_id\":");
            json_write::push_str(&mut s, o);
            s
        });
        let mut metadata_head = String::from("\"metadata\":{\"batch_number\":");
        json_write::push_str(&mut metadata_head, ctx.batch_number);
        metadata_head.push_str(",\"file_id\":");
        let mut source = String::from(",\"source\":{\"type\":\"connector\",\"name\":");
        json_write::push_str(&mut source, ctx.datasource_name);
        source.push_str(",\"id\":");
        json_write::push_str(&mut source, ctx.datasource_id);
        source.push('}');
        let mut web_base = String::new();
        json_write::push_escaped(&mut web_base, ctx.web_base);
        PageMapper { id_prefix, owner, metadata_head, source, web_base, category: String::with_capacity(256) }
    }

    /// The Coco id of a Dropbox id, as lowercase hex.
    fn push_id(&self, out: &mut String, entry_id: &str) {
        let mut h = self.id_prefix.clone();
        h.update(entry_id.as_bytes());
        push_hex(out, &h.finalize());
    }

    /// Map one file or folder entry into `batch`. False for entries that are not indexed
    /// (no id).
    pub fn map_into<'e>(&mut self, e: &'e Entry<'_>, batch: &mut DocumentBatch) -> bool {
        let Some(entry_id) = e.id.as_deref() else {
            return false;
        };
        let is_folder = e.tag == "folder";
        let kind = if is_folder { "folder" } else { "file" };
        let path_display = opt(&e.path_display);
        let path_lower = opt(&e.path_lower);
        let dir = parent_dir(path_display);
        let parts = || dir.split('/').filter(|p| !p.is_empty());
        // `"/A/B/"`: the pieces escaped one by one ('/' never needs it).
        // Taken for the entry and given back at the end: its buffer is reused page-long.
        let mut category_buf = std::mem::take(&mut self.category);
        let category = &mut category_buf;
        category.clear();
        let has_category = parts().next().is_some();
        if has_category {
            category.push_str("\"/");
            for p in parts() {
                json_write::push_escaped(category, p);
                category.push('/');
            }
            category.push('"');
        }
        let category = category.as_str();
        let out = &mut batch.text;
        let start = out.len();
        out.reserve(700 + 4 * path_display.len() + e.name.len());

        out.push_str("{\"id\":\"");
        let id = Span { start: out.len() as u32, len: 32 };
        self.push_id(out, entry_id);
        out.push('"');
        fn valid_time<'t>(t: &'t Option<Cow<'_, str>>) -> Option<&'t str> {
            t.as_deref().filter(|t| is_rfc3339(t))
        }
        if let Some(t) = valid_time(&e.client_modified) {
            out.push(',');
            json_write::push_key(out, "created");
            json_write::push_str(out, t);
        }
        if let Some(t) = valid_time(&e.server_modified) {
            out.push(',');
            json_write::push_key(out, "updated");
            json_write::push_str(out, t);
        }
        // `_system`: owner_id and parent_path (= category), each only when present.
        match (&self.owner, !has_category) {
            (Some(owner), true) => {
                out.push(',');
                out.push_str(owner);
                out.push('}');
            }
            (Some(owner), false) => {
                out.push(',');
                out.push_str(owner);
                out.push(',');
                json_write::push_key(out, "parent_path");
                out.push_str(category);
                out.push('}');
            }
            (None, false) => {
                out.push_str(",\"_system\":{\"parent_path\":");
                out.push_str(category);
                out.push('}');
            }
            (None, true) => {}
        }
        out.push(',');
        out.push_str(&self.metadata_head);
        let mut raw: [Option<&str>; 4] = [None; 4];
        let mut field = |out: &mut String, slot: usize, s: &'e str| {
            let at = out.len() + 1;
            if json_write::push_str(out, s) {
                Span { start: at as u32, len: s.len() as u32 }
            } else {
                raw[slot] = Some(s);
                Span::default()
            }
        };
        let file_id = field(out, 0, entry_id);
        out.push(',');
        json_write::push_key(out, "path_display");
        json_write::push_str(out, path_display);
        out.push(',');
        json_write::push_key(out, "path_lower");
        let path_lower_span = field(out, 1, path_lower);
        out.push(',');
        json_write::push_key(out, "content_hash");
        let hash = opt(&e.content_hash);
        let hash_span = field(out, 2, hash);
        out.push(',');
        json_write::push_key(out, "rev");
        let rev = opt(&e.rev);
        let rev_span = field(out, 3, rev);
        out.push(',');
        json_write::push_key(out, "server_modified");
        json_write::push_str(out, opt(&e.server_modified));
        out.push(',');
        json_write::push_key(out, "client_modified");
        json_write::push_str(out, opt(&e.client_modified));
        out.push_str(",\"tag\":\"");
        out.push_str(kind);
        out.push_str("\"}");
        out.push_str(&self.source);
        out.push_str(",\"type\":\"");
        out.push_str(kind);
        out.push('"');
        if has_category {
            out.push(',');
            json_write::push_key(out, "category");
            out.push_str(category);
            out.push_str(",\"categories\":[");
            for (i, p) in parts().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_write::push_str(out, p);
            }
            out.push(']');
        }
        out.push(',');
        json_write::push_key(out, "title");
        json_write::push_str(out, &e.name);
        out.push_str(",\"icon\":\"");
        out.push_str(icon_for(&e.name, is_folder));
        out.push('"');
        if let Some(size) = e.size.filter(|s| *s != 0) {
            out.push_str(",\"size\":");
            json_write::push_u64(out, size);
        }
        if let Some(p) = e.path_display.as_deref() {
            out.push_str(",\"url\":\"");
            out.push_str(&self.web_base);
            push_home_path(out, p);
            out.push('"');
        }
        out.push_str(",\"processed\":false}");
        let json = Span { start: start as u32, len: (out.len() - start) as u32 };

        // Strings that needed escaping in the JSON are stored once more as they are.
        let mut span_of = |slot: usize, verbatim: Span| match raw[slot] {
            Some(s) => batch.push_raw(s),
            None => verbatim,
        };
        let file_id = span_of(0, file_id);
        let path_lower = span_of(1, path_lower_span);
        let hash_span = span_of(2, hash_span);
        let rev_span = span_of(3, rev_span);
        let file = (!is_folder).then(|| FileRow {
            file_id,
            size: e.size.unwrap_or(0),
            content_hash: (!hash.is_empty()).then_some(hash_span),
            downloadable: e.is_downloadable.unwrap_or(true),
            export_as: e.export_info.as_ref().and_then(|x| x.export_as.as_deref()).map(|s| batch.push_raw(s)),
            export_options: e
                .export_info
                .as_ref()
                .map(|x| x.export_options.iter().map(|o| batch.push_raw(o)).collect())
                .unwrap_or_default(),
        });
        batch.rows.push(DocRow { id, path_lower, rev: e.rev.is_some().then_some(rev_span), json, file });
        self.category = category_buf;
        true
    }
}

/// Map one entry on its own (tests, tools): a one-document batch, or None when it has no id.
pub fn map_entry(ctx: &MapContext<'_>, e: &Entry<'_>) -> Option<Document> {
    let mut batch = DocumentBatch::default();
    PageMapper::new(ctx).map_into(e, &mut batch).then(|| crate::types::Document::from(batch.get(0).expect("one row")))
}

/// `path` is `prefix` or inside it (`path_lower`s compare byte-wise).
pub fn is_at_or_below(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Builds a page's index operations entry by entry, in Dropbox's order: files and folders
/// become documents, `deleted` entries become path deletes, `.DS_Store` and unmountable
/// entries are skipped.
pub struct PageBuilder {
    mapper: PageMapper,
    page: MappedPage,
    entries: u32,
}

impl PageBuilder {
    /// `body_bytes`: the answer's size, to size the batch's text once.
    pub fn new(ctx: &MapContext<'_>, body_bytes: usize) -> Self {
        // Each entry's ~450 bytes of listing JSON become ~800 bytes of document JSON.
        let documents = DocumentBatch::with_capacity(body_bytes / 450 + 1, body_bytes * 2);
        PageBuilder { mapper: PageMapper::new(ctx), page: MappedPage { documents, ..Default::default() }, entries: 0 }
    }

    pub fn push(&mut self, e: &Entry<'_>) {
        self.entries += 1;
        let page = &mut self.page;
        match e.tag.as_ref() {
            "deleted" => match e.path_lower.as_deref() {
                Some(p) if !p.is_empty() => {
                    // Earlier upserts in this page at or below the deleted path are void, so
                    // the host may apply all deletes first and all upserts after. (Their
                    // bytes stay in the text; such pages are rare and small.)
                    let documents = &mut page.documents;
                    if !documents.rows.is_empty() {
                        let text = &documents.text;
                        documents.rows.retain(|d| !is_at_or_below(&text[d.path_lower.range()], p));
                    }
                    page.deletes.push(p.to_string());
                }
                _ => page.skipped += 1,
            },
            "file" | "folder" if !is_skipped(&e.name) => {
                if !self.mapper.map_into(e, &mut page.documents) {
                    page.skipped += 1;
                }
            }
            _ => page.skipped += 1,
        }
    }

    /// Entries seen so far.
    pub fn entries(&self) -> u32 {
        self.entries
    }

    pub fn finish(self) -> MappedPage {
        self.page
    }
}

/// Map a page's entries in order (see [`PageBuilder`]).
pub fn map_entries(ctx: &MapContext<'_>, entries: &[Entry<'_>]) -> MappedPage {
    let mut b = PageBuilder::new(ctx, entries.len() * 450);
    for e in entries {
        b.push(e);
    }
    b.finish()
}

/// A `list_folder` answer read and mapped in one pass.
pub struct MappedListing<'a> {
    pub page: MappedPage,
    pub entries: u32,
    pub cursor: Cow<'a, str>,
    pub has_more: bool,
}

/// Parse a `list_folder` answer and map each entry as soon as it is read: no list of parsed
/// entries is ever built, so a 2,000-entry page needs a fraction of the memory.
pub fn map_listing<'a>(ctx: &MapContext<'_>, body: &'a str) -> serde_json::Result<MappedListing<'a>> {
    let mut builder = PageBuilder::new(ctx, body.len());
    let mut de = serde_json::Deserializer::from_str(body);
    let (cursor, has_more) =
        serde::de::DeserializeSeed::deserialize(stream::PageSeed { builder: &mut builder }, &mut de)?;
    de.end()?;
    let entries = builder.entries();
    Ok(MappedListing { page: builder.finish(), entries, cursor, has_more })
}

/// The serde plumbing of [`map_listing`]: the page object, then its `entries` array element
/// by element.
mod stream {
    use std::borrow::Cow;
    use std::fmt;

    use serde::de::{DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde::Deserialize;

    use super::{Entry, PageBuilder};

    #[derive(Deserialize)]
    #[serde(field_identifier, rename_all = "snake_case")]
    enum Key {
        Entries,
        Cursor,
        HasMore,
        #[serde(other)]
        Other,
    }

    /// A borrowed string when it has no escapes.
    struct CowStr<'a>(Cow<'a, str>);

    impl<'de> Deserialize<'de> for CowStr<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            #[derive(Deserialize)]
            struct Wrap<'a>(#[serde(borrow)] Cow<'a, str>);
            Wrap::deserialize(d).map(|w| CowStr(w.0))
        }
    }

    pub struct PageSeed<'b> {
        pub builder: &'b mut PageBuilder,
    }

    impl<'de> DeserializeSeed<'de> for PageSeed<'_> {
        type Value = (Cow<'de, str>, bool);

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for PageSeed<'_> {
        type Value = (Cow<'de, str>, bool);

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list_folder result")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let (mut cursor, mut has_more, mut entries) = (None, None, false);
            while let Some(key) = map.next_key::<Key>()? {
                match key {
                    Key::Entries => {
                        map.next_value_seed(EntriesSeed { builder: &mut *self.builder })?;
                        entries = true;
                    }
                    Key::Cursor => cursor = Some(map.next_value::<CowStr<'de>>()?.0),
                    Key::HasMore => has_more = Some(map.next_value::<bool>()?),
                    Key::Other => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            if !entries {
                return Err(A::Error::missing_field("entries"));
            }
            let cursor = cursor.ok_or_else(|| A::Error::missing_field("cursor"))?;
            let has_more = has_more.ok_or_else(|| A::Error::missing_field("has_more"))?;
            Ok((cursor, has_more))
        }
    }

    struct EntriesSeed<'b> {
        builder: &'b mut PageBuilder,
    }

    impl<'de> DeserializeSeed<'de> for EntriesSeed<'_> {
        type Value = ();

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }

    impl<'de> Visitor<'de> for EntriesSeed<'_> {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of entries")
        }

        fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
            while let Some(e) = seq.next_element::<Entry<'de>>()? {
                self.builder.push(&e);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DS: &str = "0335b4e59c687f2666f7d7e5d5d17686";

    /// The data file hosts read instead of this crate must say what the code does.
    #[test]
    fn connector_info_json_matches_the_code() {
        let info: serde_json::Value = serde_json::from_str(include_str!("../wit/connector-info.json")).unwrap();
        let keys: Vec<&str> = info["file_icon_keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
        assert_eq!(keys, FILE_ICON_KEYS);
        for name in ["a.docx", "a.XLS", "a.pptx", "a.pdf", "a.paper", "a.gdoc", "a.gsheet", "a.gslides", "a.txt", "a"] {
            assert!(keys.contains(&icon_for(name, false)), "{name}");
        }
        assert_eq!(info["folder_icon"], icon_for("x", true));
        let dropbox = crate::types::Endpoints::dropbox();
        assert_eq!(info["dropbox_endpoints"]["authorize"], dropbox.authorize.as_str());
        assert_eq!(info["dropbox_endpoints"]["api"], dropbox.api.as_str());
        assert_eq!(info["dropbox_endpoints"]["notify"], crate::watch::DROPBOX_NOTIFY);
    }

    fn ctx() -> MapContext<'static> {
        MapContext {
            datasource_id: DS,
            datasource_name: "Franz's Dropbox",
            owner_id: Some("user-1"),
            batch_number: "batch-1",
            web_base: "https://www.dropbox.com",
        }
    }

    fn entry(tag: &'static str, id: &'static str, path: &'static str) -> Entry<'static> {
        let name = path.rsplit('/').next().unwrap();
        Entry {
            tag: tag.into(),
            name: name.into(),
            id: Some(id.into()),
            path_lower: Some(path.to_lowercase().into()),
            path_display: Some(path.into()),
            ..Default::default()
        }
    }

    fn json(doc: &Document) -> serde_json::Value {
        serde_json::from_str(&doc.json).unwrap()
    }

    #[test]
    fn ids_match_upstream_vectors() {
        assert_eq!(datasource_id("dropbox", "dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc", "franz@dropbox.com"), DS);
        assert_eq!(document_id(DS, "id:a4ayc_80_OEAAAAAAAAAXw"), "d7ddcff8df5f174a7f18b237b37a0582");
        assert_eq!(datasource_name("Franz"), "Franz's Dropbox");
        assert_eq!(datasource_name(""), "My Dropbox");
    }

    #[test]
    fn upstream_example_document() {
        let mut e = entry("file", "id:a4ayc_80_OEAAAAAAAAAXw", "/Docs/2024/report.pdf");
        e.size = Some(12345);
        e.client_modified = Some("2024-01-02T03:04:05Z".into());
        e.server_modified = Some("2024-01-03T00:00:00Z".into());
        e.rev = Some("015f0b8a0e3b0c8000000012a5c3f40".into());
        e.content_hash = Some("e3b0c442".into());
        let doc = map_entry(&ctx(), &e).unwrap();
        let expected = serde_json::json!({
            "id": "d7ddcff8df5f174a7f18b237b37a0582",
            "created": "2024-01-02T03:04:05Z",
            "updated": "2024-01-03T00:00:00Z",
            "_system": {"owner_id": "user-1", "parent_path": "/Docs/2024/"},
            "metadata": {
                "batch_number": "batch-1", "file_id": "id:a4ayc_80_OEAAAAAAAAAXw",
                "path_display": "/Docs/2024/report.pdf", "path_lower": "/docs/2024/report.pdf",
                "content_hash": "e3b0c442", "rev": "015f0b8a0e3b0c8000000012a5c3f40",
                "server_modified": "2024-01-03T00:00:00Z", "client_modified": "2024-01-02T03:04:05Z",
                "tag": "file"
            },
            "source": {"type": "connector", "name": "Franz's Dropbox", "id": DS},
            "type": "file", "category": "/Docs/2024/", "categories": ["Docs", "2024"],
            "title": "report.pdf", "icon": "pdf", "size": 12345,
            "url": "https://www.dropbox.com/home/Docs/2024/report.pdf",
            "processed": false
        });
        assert_eq!(json(&doc), expected);
        assert_eq!(doc.path_lower, "/docs/2024/report.pdf");
        assert_eq!(doc.rev.as_deref(), Some("015f0b8a0e3b0c8000000012a5c3f40"));
    }

    #[test]
    fn root_level_entries_have_no_category_even_after_nested_ones() {
        // Upstream's aliased `_system` leaks the previous parent_path here; we do not.
        let nested = map_entry(&ctx(), &entry("file", "id:1", "/A/B/x.txt")).unwrap();
        let root = map_entry(&ctx(), &entry("file", "id:2", "/y.txt")).unwrap();
        assert_eq!(json(&nested)["_system"]["parent_path"], "/A/B/");
        let r = json(&root);
        assert_eq!(r["_system"], serde_json::json!({"owner_id": "user-1"}));
        assert!(r.get("category").is_none() && r.get("categories").is_none());
    }

    #[test]
    fn folders_have_font_icon_no_size_no_times_and_empty_file_fields() {
        let folder = json(&map_entry(&ctx(), &entry("folder", "id:f", "/Docs/2024")).unwrap());
        assert_eq!(folder["type"], "folder");
        assert_eq!(folder["icon"], "font_filetype-folder");
        assert_eq!(folder["categories"], serde_json::json!(["Docs"]));
        assert_eq!(folder["category"], "/Docs/");
        assert!(folder.get("size").is_none() && folder.get("created").is_none());
        assert_eq!(folder["metadata"]["rev"], "");
        assert_eq!(folder["metadata"]["tag"], "folder");
        let top = json(&map_entry(&ctx(), &entry("folder", "id:t", "/Docs")).unwrap());
        assert!(top.get("category").is_none());
    }

    #[test]
    fn icon_table() {
        let cases = [
            ("a.DOCX", "docx"),
            ("a.doc", "docx"),
            ("a.xlsx", "xlsx"),
            ("a.xls", "xlsx"),
            ("a.pptx", "pptx"),
            ("a.PPT", "pptx"),
            ("a.pdf", "pdf"),
            ("a.paper", "paper"),
            ("a.gdoc", "gdoc"),
            ("a.gsheet", "gexcel"),
            ("a.gslides", "gppt"),
            ("a.txt", "default"),
            ("README", "default"),
            ("archive.tar.gz", "default"),
            (".pdf", "pdf"),
            ("a.", "default"),
            ("x.verylongextension", "default"),
        ];
        for (name, icon) in cases {
            assert_eq!(icon_for(name, false), icon, "{name}");
        }
        assert_eq!(icon_for("x.pdf", true), "font_filetype-folder");
    }

    #[test]
    fn zero_size_and_bad_times_are_omitted() {
        let mut e = entry("file", "id:z", "/empty.txt");
        e.size = Some(0);
        e.client_modified = Some("yesterday".into());
        e.server_modified = Some("2024-02-30T00:00:00Z".into());
        let d = json(&map_entry(&ctx(), &e).unwrap());
        assert!(d.get("size").is_none() && d.get("created").is_none() && d.get("updated").is_none());
        assert_eq!(d["metadata"]["client_modified"], "yesterday");
    }

    #[test]
    fn rfc3339_validation() {
        for ok in
            ["2024-01-02T03:04:05Z", "2024-02-29T23:59:59.123Z", "2024-01-02T03:04:05+05:30", "2000-02-29t00:00:00z"]
        {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "",
            "2024-01-02",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-02T24:00:00Z",
            "2024-01-02T03:04:05",
            "2024-01-02T03:04:05.Z",
            "2024-01-02 03:04:05Z",
            "2024-01-02T03:04:05+0530",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }

    #[test]
    fn web_urls_escape_what_a_path_segment_cannot_hold() {
        assert_eq!(
            web_url("https://www.dropbox.com", "/Q1 #2/100% done?/Ünïcode 文件.txt"),
            "https://www.dropbox.com/home/Q1%20%232/100%25%20done%3F/%C3%9Cn%C3%AFcode%20%E6%96%87%E4%BB%B6.txt"
        );
    }

    fn page(entries: &str) -> MappedPage {
        let body = format!(r#"{{"entries":[{entries}],"cursor":"c","has_more":false}}"#);
        let page: ListFolderResult = serde_json::from_str(&body).unwrap();
        map_entries(&ctx(), &page.entries)
    }

    #[test]
    fn deletes_void_earlier_upserts_so_deletes_can_be_applied_first() {
        // Created then deleted within one page: nothing to upsert.
        let m = page(
            r#"{".tag":"file","name":"x","id":"id:A","path_lower":"/d/x","path_display":"/d/x"},
                       {".tag":"deleted","name":"d","path_lower":"/d","path_display":"/d"}"#,
        );
        assert!(m.documents.is_empty());
        assert_eq!(m.deletes, ["/d"]);
        // Deleted then re-created, and a move (delete old + same id at new path): kept.
        let m = page(
            r#"{".tag":"deleted","name":"x","path_lower":"/x","path_display":"/x"},
                       {".tag":"file","name":"x","id":"id:B","path_lower":"/x","path_display":"/x"},
                       {".tag":"file","name":"y","id":"id:M","path_lower":"/new/y","path_display":"/new/y"},
                       {".tag":"deleted","name":"old","path_lower":"/old","path_display":"/old"},
                       {".tag":"file","name":"keep","id":"id:K","path_lower":"/dx","path_display":"/dx"},
                       {".tag":"deleted","name":"d","path_lower":"/d","path_display":"/d"}"#,
        );
        let ids: Vec<_> = m.documents.iter().map(|d| d.path_lower).collect();
        assert_eq!(ids, ["/x", "/new/y", "/dx"], "a sibling sharing the prefix text survives");
        assert!(is_at_or_below("/a/b", "/a") && is_at_or_below("/a", "/a") && !is_at_or_below("/ab", "/a"));
    }

    #[test]
    fn page_mapping_skips_ds_store_and_turns_deleted_into_path_deletes() {
        let body = r#"{"entries":[
            {".tag":"folder","name":"A","id":"id:A","path_lower":"/a","path_display":"/A"},
            {".tag":"file","name":".DS_Store","id":"id:ds","path_lower":"/a/.ds_store","path_display":"/A/.DS_Store","size":6148},
            {".tag":"file","name":".ds_store","id":"id:lc","path_lower":"/a/.ds_store2","path_display":"/A/.ds_store"},
            {".tag":"deleted","name":"Old","path_lower":"/old","path_display":"/Old"},
            {".tag":"file","name":"caf\u00e9.pdf","id":"id:c","path_lower":"/a/caf\u00e9.pdf","path_display":"/A/caf\u00e9.pdf","size":3}
        ],"cursor":"CUR","has_more":true}"#;
        let page: ListFolderResult = serde_json::from_str(body).unwrap();
        let m = map_entries(&ctx(), &page.entries);
        assert_eq!(m.deletes, vec!["/old".to_string()]);
        assert_eq!(m.skipped, 1);
        let titles: Vec<_> =
            m.documents.iter().map(|d| json(&crate::types::Document::from(d))["title"].clone()).collect();
        assert_eq!(titles, ["A", ".ds_store", "café.pdf"]);
        assert_eq!(page.cursor, "CUR");
    }
    /// The document shape as serde derived it before the hand-written writer: the oracle
    /// the writer must match byte for byte.
    mod serde_oracle {
        use super::super::*;
        use serde::Serialize;

        #[derive(Serialize)]
        struct Source<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            name: &'a str,
            id: &'a str,
        }

        #[derive(Serialize)]
        struct System<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            owner_id: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            parent_path: Option<&'a str>,
        }

        #[derive(Serialize)]
        struct Metadata<'a> {
            batch_number: &'a str,
            file_id: &'a str,
            path_display: &'a str,
            path_lower: &'a str,
            content_hash: &'a str,
            rev: &'a str,
            server_modified: &'a str,
            client_modified: &'a str,
            tag: &'a str,
        }

        #[derive(Serialize)]
        struct CocoDocument<'a> {
            id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            created: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            updated: Option<&'a str>,
            #[serde(rename = "_system", skip_serializing_if = "Option::is_none")]
            system: Option<System<'a>>,
            metadata: Metadata<'a>,
            source: Source<'a>,
            #[serde(rename = "type")]
            kind: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            category: Option<&'a str>,
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            categories: &'a [&'a str],
            title: &'a str,
            icon: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            size: Option<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            url: Option<&'a str>,
            processed: bool,
        }

        pub fn json(ctx: &MapContext<'_>, e: &Entry<'_>) -> String {
            let entry_id = e.id.as_deref().unwrap();
            let is_folder = e.tag == "folder";
            let path_display = opt(&e.path_display);
            let parts = parent_parts(path_display);
            let category = (!parts.is_empty()).then(|| format!("/{}/", parts.join("/")));
            let id = document_id(ctx.datasource_id, entry_id);
            let url = e.path_display.as_deref().map(|p| web_url(ctx.web_base, p));
            let time = |t: &Option<Cow<'_, str>>| t.as_deref().filter(|t| is_rfc3339(t)).map(str::to_string);
            let (created, updated) = (time(&e.client_modified), time(&e.server_modified));
            let system = (ctx.owner_id.is_some() || category.is_some())
                .then_some(System { owner_id: ctx.owner_id, parent_path: category.as_deref() });
            let doc = CocoDocument {
                id: &id,
                created: created.as_deref(),
                updated: updated.as_deref(),
                system,
                metadata: Metadata {
                    batch_number: ctx.batch_number,
                    file_id: entry_id,
                    path_display,
                    path_lower: opt(&e.path_lower),
                    content_hash: opt(&e.content_hash),
                    rev: opt(&e.rev),
                    server_modified: opt(&e.server_modified),
                    client_modified: opt(&e.client_modified),
                    tag: if is_folder { "folder" } else { "file" },
                },
                source: Source { kind: "connector", name: ctx.datasource_name, id: ctx.datasource_id },
                kind: if is_folder { "folder" } else { "file" },
                category: category.as_deref(),
                categories: &parts,
                title: &e.name,
                icon: icon_for(&e.name, is_folder),
                size: e.size.filter(|s| *s != 0),
                url: url.as_deref(),
                processed: false,
            };
            serde_json::to_string(&doc).unwrap()
        }
    }

    #[test]
    fn the_writer_matches_serde_byte_for_byte_and_spans_hold_the_raw_fields() {
        let names = ["a.pdf", "q\"uote\\d.docx", "tab\tnew\nline.txt", "Ünïcode 文件 🦀.xlsx", "100% done?.paper", "x"];
        let contexts = [
            ctx(),
            MapContext {
                datasource_id: DS,
                datasource_name: "Quote \" and \\ Dropbox",
                owner_id: None,
                batch_number: "b\u{1}",
                web_base: "http://127.0.0.1:8788",
            },
        ];
        let mut n = 0;
        for c in &contexts {
            for (i, name) in names.iter().enumerate() {
                for dir in ["", "/A", "/Ä \"q\"/B\\c"] {
                    for tag in ["file", "folder"] {
                        let path = format!("{dir}/{name}");
                        let mut e = entry(tag, "id:x\"y", "/");
                        e.name = (*name).into();
                        e.path_display = Some(path.clone().into());
                        e.path_lower = Some(path.to_lowercase().into());
                        e.size = [None, Some(0), Some(42)][i % 3];
                        e.rev = (i % 2 == 0).then(|| "015f0b8a0e3b0c8000000012a5c3f40".into());
                        e.content_hash = (i % 2 == 1).then(|| "e3\"b0".into());
                        e.client_modified = Some(["2024-01-02T03:04:05Z", "not a time"][i % 2].into());
                        e.server_modified = (i != 3).then(|| "2024-01-03T00:00:00Z".into());
                        if i == 4 {
                            e.is_downloadable = Some(false);
                            e.export_info =
                                Some(ExportInfo { export_as: Some("md".into()), export_options: vec!["md".into()] });
                        }
                        let d = map_entry(c, &e).unwrap();
                        assert_eq!(d.json, serde_oracle::json(c, &e), "{path} {tag}");
                        assert_eq!(d.path_lower, path.to_lowercase());
                        assert_eq!(d.rev.as_deref(), e.rev.as_deref());
                        assert_eq!(d.id, document_id(DS, "id:x\"y"));
                        match d.file {
                            Some(f) => {
                                assert_eq!(tag, "file");
                                assert_eq!(f.file_id, "id:x\"y");
                                assert_eq!(f.content_hash.as_deref(), e.content_hash.as_deref());
                                assert_eq!(f.size, e.size.unwrap_or(0));
                                assert_eq!(f.downloadable, i != 4);
                                assert_eq!(f.export_as.is_some(), i == 4);
                                assert_eq!(f.export_options.len(), usize::from(i == 4));
                            }
                            None => assert_eq!(tag, "folder"),
                        }
                        n += 1;
                    }
                }
            }
        }
        assert_eq!(n, 72);
    }

    #[test]
    fn mapping_while_parsing_gives_the_same_page_as_parsing_first() {
        let body = r#"{"entries":[
            {".tag":"folder","name":"A","id":"id:A","path_lower":"/a","path_display":"/A","extra":[1,{"x":2}]},
            {".tag":"file","name":"caf\u00e9 \"q\".pdf","id":"id:c","path_lower":"/a/caf\u00e9 \"q\".pdf","path_display":"/A/caf\u00e9 \"q\".pdf","size":3,"rev":"0123456789"},
            {".tag":"deleted","name":"A","path_lower":"/a","path_display":"/A"},
            {".tag":"file","name":".DS_Store","id":"id:ds","path_lower":"/.ds_store","path_display":"/.DS_Store"},
            {".tag":"file","name":"b.docx","id":"id:b","path_lower":"/b.docx","path_display":"/b.docx"}
        ],"unknown":{"nested":true},"cursor":"CUR\u0041","has_more":true}"#;
        let parsed: ListFolderResult = serde_json::from_str(body).unwrap();
        let whole = map_entries(&ctx(), &parsed.entries);
        let streamed = map_listing(&ctx(), body).unwrap();
        assert_eq!(streamed.page, whole);
        assert_eq!((streamed.cursor.as_ref(), streamed.has_more, streamed.entries), ("CURA", true, 5));
        assert_eq!(streamed.page.documents.len(), 1, "the deleted folder voided its earlier upserts");
        for broken in [
            r#"{"entries":[],"has_more":false}"#,
            r#"{"cursor":"c","has_more":false}"#,
            r#"{"entries":[{".tag":"file","name":1}],"cursor":"c","has_more":false}"#,
            r#"{"entries":[],"cursor":"c","has_more":false} trailing"#,
            r#"[]"#,
        ] {
            assert!(map_listing(&ctx(), broken).is_err(), "{broken}");
        }
    }
}
