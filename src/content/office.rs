//! Office Open XML (DOCX, PPTX, XLSX) and OpenDocument (ODT, ODP, ODS): a zip of XML parts.
//! Only the parts that hold the text are read, each through [`Archive`]'s caps.

use super::archive::Archive;
use super::format::Format;
use super::text::TextSink;
use super::xml::{self, Rules};
use super::Skip;

const WORD: Rules = Rules {
    text_in: &["t"],
    // Deleted revisions, field instructions and the VML fallback copies of drawings.
    skip: &["delText", "instrText", "Fallback"],
    line_after: &["p"],
    tab_after: &["tc"],
    line_at: &["br", "cr"],
    tab_at: &["tab"],
    space_at: &[],
    no_doctype: true,
};

const SLIDES: Rules = Rules {
    text_in: &["t"],
    skip: &["Fallback"],
    line_after: &["p"],
    tab_after: &["tc"],
    line_at: &["br"],
    tab_at: &[],
    space_at: &[],
    no_doctype: true,
};

const ODF: Rules = Rules {
    // Every ODF text lives in a paragraph or heading (cells and list items hold paragraphs).
    text_in: &["p", "h"],
    // Change-tracking copies and annotation metadata (author, date) are not the text.
    skip: &["tracked-changes", "creator", "date", "notes-configuration"],
    line_after: &["p", "h", "table-row", "list-item"],
    tab_after: &["table-cell"],
    line_at: &["line-break"],
    tab_at: &["tab"],
    space_at: &["s"],
    no_doctype: true,
};

pub fn extract(format: Format, bytes: &[u8], out: &mut TextSink) -> Result<(), Skip> {
    let mut zip = Archive::open(bytes)?;
    match format {
        Format::Docx => docx(&mut zip, out),
        Format::Pptx => pptx(&mut zip, out),
        Format::Xlsx => xlsx(&mut zip, out),
        _ => odf(format, &mut zip, out),
    }
}

fn required(zip: &mut Archive<'_>, part: &str, what: &str) -> Result<Vec<u8>, Skip> {
    zip.read(part)?.ok_or_else(|| Skip::Malformed(format!("a ZIP archive without {part}: not a {what} file")))
}

fn docx(zip: &mut Archive<'_>, out: &mut TextSink) -> Result<(), Skip> {
    let body = required(zip, "word/document.xml", "Word")?;
    xml::extract(&body, &WORD, out)?;
    // Headers, footers, footnotes, endnotes and comments are searchable text too.
    let mut extra: Vec<String> = zip
        .names()
        .into_iter()
        .filter(|n| {
            n.strip_prefix("word/").is_some_and(|rest| {
                !rest.contains('/')
                    && rest.ends_with(".xml")
                    && ["header", "footer", "footnotes", "endnotes", "comments"].iter().any(|p| rest.starts_with(p))
            })
        })
        .collect();
    extra.sort_by_key(|n| natural_key(n));
    for part in extra {
        if out.is_full() {
            break;
        }
        if let Some(xml) = zip.read(&part)? {
            out.newline();
            xml::extract(&xml, &WORD, out)?;
        }
    }
    Ok(())
}

fn pptx(zip: &mut Archive<'_>, out: &mut TextSink) -> Result<(), Skip> {
    let names = zip.names();
    let numbered = |prefix: &str| {
        let mut parts: Vec<&String> = names
            .iter()
            .filter(|n| n.strip_prefix(prefix).is_some_and(|r| r.ends_with(".xml") && !r.contains('/')))
            .collect();
        parts.sort_by_key(|n| natural_key(n));
        parts
    };
    let slides = numbered("ppt/slides/slide");
    if slides.is_empty() && !zip.contains("ppt/presentation.xml") {
        return Err(Skip::Malformed("a ZIP archive without ppt/presentation.xml: not a PowerPoint file".into()));
    }
    for part in slides.into_iter().chain(numbered("ppt/notesSlides/notesSlide")) {
        if out.is_full() {
            break;
        }
        if let Some(xml) = zip.read(part)? {
            xml::extract(&xml, &SLIDES, out)?;
            out.newline();
        }
    }
    Ok(())
}

/// "sheet10.xml" after "sheet9.xml".
fn natural_key(name: &str) -> (String, u64) {
    let stem = name.trim_end_matches(".xml");
    let digits = stem.len() - stem.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (head, num) = stem.split_at(stem.len() - digits);
    (head.to_string(), num.parse().unwrap_or(0))
}

fn odf(format: Format, zip: &mut Archive<'_>, out: &mut TextSink) -> Result<(), Skip> {
    if let Some(mime) = zip.read("mimetype")? {
        let mime = String::from_utf8_lossy(&mime);
        if !mime.trim().starts_with("application/vnd.oasis.opendocument.") {
            return Err(Skip::Malformed(format!("mimetype {:?} is not OpenDocument", mime.trim())));
        }
    }
    let content = required(zip, "content.xml", format.name())?;
    xml::extract(&content, &ODF, out)
}

fn xlsx(zip: &mut Archive<'_>, out: &mut TextSink) -> Result<(), Skip> {
    let workbook = required(zip, "xl/workbook.xml", "Excel")?;
    let shared = match zip.read("xl/sharedStrings.xml")? {
        Some(xml) => shared_strings(&xml)?,
        None => Vec::new(),
    };
    let rels = zip.read("xl/_rels/workbook.xml.rels")?.map(|x| relationships(&x)).transpose()?.unwrap_or_default();
    for (name, rel) in sheets(&workbook)? {
        if out.is_full() {
            break;
        }
        let Some(target) = rels.iter().find(|(id, _)| *id == rel).map(|(_, t)| t) else { continue };
        let part = match target.strip_prefix('/') {
            Some(abs) => abs.to_string(),
            None => format!("xl/{target}"),
        };
        let Some(xml) = zip.read(&part)? else { continue };
        out.push(&name);
        out.newline();
        worksheet(&xml, &shared, out)?;
        out.newline();
    }
    Ok(())
}

fn reader(xml: &[u8]) -> quick_xml::Reader<&[u8]> {
    let mut r = quick_xml::Reader::from_reader(xml);
    r.config_mut().check_end_names = false;
    r
}

fn bad(e: impl std::fmt::Display) -> Skip {
    Skip::Malformed(format!("XML: {e}"))
}

fn attr(e: &quick_xml::events::BytesStart<'_>, local: &str) -> Option<String> {
    e.attributes().flatten().find(|a| a.key.local_name().as_ref() == local).map(|a| a.value.into_owned())
}

fn resolve(r: &quick_xml::events::BytesRef<'_>, into: &mut String) -> Result<(), Skip> {
    if let Some(c) = r.resolve_char_ref().map_err(bad)? {
        into.push(c);
    } else if let Some(s) = quick_xml::escape::resolve_predefined_entity(r) {
        into.push_str(s);
    }
    Ok(())
}

/// `xl/sharedStrings.xml`: each `<si>`'s text runs (phonetic guides left out).
fn shared_strings(xml: &[u8]) -> Result<Vec<String>, Skip> {
    use quick_xml::events::Event;
    let mut r = reader(xml);
    let (mut out, mut cur, mut in_t, mut in_phonetic) = (Vec::new(), String::new(), false, false);
    let mut buf = Vec::new();
    loop {
        match r.read_event_into(&mut buf).map_err(bad)? {
            Event::Start(e) => match e.local_name().as_ref() {
                "t" => in_t = true,
                "rPh" => in_phonetic = true,
                _ => {}
            },
            Event::End(e) => match e.local_name().as_ref() {
                "t" => in_t = false,
                "rPh" => in_phonetic = false,
                "si" => out.push(std::mem::take(&mut cur)),
                _ => {}
            },
            Event::Empty(e) if e.local_name().as_ref() == "si" => out.push(String::new()),
            Event::Text(t) if in_t && !in_phonetic => cur.push_str(&t.xml10_content()),
            Event::GeneralRef(g) if in_t && !in_phonetic => resolve(&g, &mut cur)?,
            Event::DocType(_) => return Err(Skip::Hostile("an Excel part carries a DOCTYPE".into())),
            Event::Eof => return Ok(out),
            _ => {}
        }
        buf.clear();
    }
}

/// `(relationship id, target)` pairs of a `.rels` part.
fn relationships(xml: &[u8]) -> Result<Vec<(String, String)>, Skip> {
    use quick_xml::events::Event;
    let mut r = reader(xml);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    loop {
        match r.read_event_into(&mut buf).map_err(bad)? {
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == "Relationship" => {
                if let (Some(id), Some(target)) = (attr(&e, "Id"), attr(&e, "Target")) {
                    out.push((id, target));
                }
            }
            Event::Eof => return Ok(out),
            _ => {}
        }
        buf.clear();
    }
}

/// `(sheet name, relationship id)` in workbook order.
fn sheets(xml: &[u8]) -> Result<Vec<(String, String)>, Skip> {
    use quick_xml::events::Event;
    let mut r = reader(xml);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    loop {
        match r.read_event_into(&mut buf).map_err(bad)? {
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == "sheet" => {
                if let (Some(name), Some(id)) = (attr(&e, "name"), attr(&e, "id")) {
                    out.push((name, id));
                }
            }
            Event::DocType(_) => return Err(Skip::Hostile("an Excel part carries a DOCTYPE".into())),
            Event::Eof => return Ok(out),
            _ => {}
        }
        buf.clear();
    }
}

/// One worksheet: cells tab-separated, rows on lines. Shared strings by index, inline strings,
/// booleans, numbers and formula results as written.
fn worksheet(xml: &[u8], shared: &[String], out: &mut TextSink) -> Result<(), Skip> {
    use quick_xml::events::Event;
    let mut r = reader(xml);
    let mut buf = Vec::new();
    let mut cell_type = String::new();
    let mut value = String::new();
    let (mut in_v, mut in_t) = (false, false);
    loop {
        if out.is_full() {
            return Ok(());
        }
        match r.read_event_into(&mut buf).map_err(bad)? {
            Event::Start(e) => match e.local_name().as_ref() {
                "c" => {
                    cell_type = attr(&e, "t").unwrap_or_default();
                    value.clear();
                }
                "v" => in_v = true,
                "t" => in_t = true,
                _ => {}
            },
            Event::End(e) => match e.local_name().as_ref() {
                "v" => in_v = false,
                "t" => in_t = false,
                "c" => {
                    let text = match cell_type.as_str() {
                        "s" => value.trim().parse::<usize>().ok().and_then(|i| shared.get(i)).map(String::as_str),
                        "b" => Some(if value.trim() == "1" { "TRUE" } else { "FALSE" }),
                        _ => Some(value.as_str()),
                    };
                    if let Some(text) = text.filter(|t| !t.is_empty()) {
                        out.push(text);
                        out.tab();
                    }
                }
                "row" => out.newline(),
                _ => {}
            },
            Event::Text(t) if in_v || in_t => value.push_str(&t.xml10_content()),
            Event::GeneralRef(g) if in_v || in_t => resolve(&g, &mut value)?,
            Event::DocType(_) => return Err(Skip::Hostile("an Excel part carries a DOCTYPE".into())),
            Event::Eof => return Ok(()),
            _ => {}
        }
        buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::super::archive::tests::build;
    use super::*;

    fn run(format: Format, zip: &[u8]) -> Result<String, Skip> {
        let mut out = TextSink::new(1 << 20);
        extract(format, zip, &mut out)?;
        Ok(out.finish().0)
    }

    #[test]
    fn docx_paragraphs_tabs_tables_and_deleted_text() {
        let doc = br#"<w:document xmlns:w="w"><w:body>
            <w:p><w:r><w:t>Hello</w:t></w:r><w:r><w:tab/><w:t xml:space="preserve">wor</w:t><w:t>ld</w:t></w:r></w:p>
            <w:p><w:del><w:r><w:delText>gone</w:delText></w:r></w:del><w:r><w:t>kept &amp; fine</w:t></w:r></w:p>
            <w:tbl><w:tr><w:tc><w:p><w:r><w:t>a</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>b</w:t></w:r></w:p></w:tc></w:tr></w:tbl>
            </w:body></w:document>"#;
        let z = build(
            &[
                ("word/document.xml", doc),
                ("word/footer1.xml", br#"<w:ftr xmlns:w="w"><w:p><w:r><w:t>Page foot</w:t></w:r></w:p></w:ftr>"#),
            ],
            true,
        );
        assert_eq!(run(Format::Docx, &z).unwrap(), "Hello\tworld\nkept & fine\na\nb\nPage foot");
    }

    #[test]
    fn xlsx_sheets_in_workbook_order_with_shared_and_inline_strings() {
        let z = build(
            &[
                ("xl/workbook.xml", br#"<workbook xmlns:r="r"><sheets><sheet name="Second" r:id="rId2"/><sheet name="First" r:id="rId1"/></sheets></workbook>"#),
                ("xl/_rels/workbook.xml.rels", br#"<Relationships><Relationship Id="rId1" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Target="/xl/worksheets/sheet2.xml"/></Relationships>"#),
                ("xl/sharedStrings.xml", br#"<sst><si><t>Name</t></si><si><r><t>Mi</t></r><r><t>xed</t></r><rPh><t>phon</t></rPh></si></sst>"#),
                ("xl/worksheets/sheet1.xml", br#"<worksheet><sheetData><row><c t="s"><v>0</v></c><c><v>3.5</v></c></row><row><c t="s"><v>1</v></c><c t="b"><v>1</v></c><c t="inlineStr"><is><t>inline</t></is></c></row></sheetData></worksheet>"#),
                ("xl/worksheets/sheet2.xml", br#"<worksheet><sheetData><row><c t="str"><f>A1</f><v>formula</v></c></row></sheetData></worksheet>"#),
            ],
            true,
        );
        assert_eq!(run(Format::Xlsx, &z).unwrap(), "Second\nformula\nFirst\nName\t3.5\nMixed\tTRUE\tinline");
    }

    #[test]
    fn pptx_slides_in_numeric_order() {
        let slide = |t: &str| format!(r#"<p:sld xmlns:a="a" xmlns:p="p"><a:p><a:r><a:t>{t}</a:t></a:r></a:p></p:sld>"#);
        let (s1, s2, s10) = (slide("one"), slide("two"), slide("ten"));
        let z = build(
            &[
                ("ppt/presentation.xml", b"<p:presentation xmlns:p='p'/>"),
                ("ppt/slides/slide10.xml", s10.as_bytes()),
                ("ppt/slides/slide2.xml", s2.as_bytes()),
                ("ppt/slides/slide1.xml", s1.as_bytes()),
            ],
            true,
        );
        assert_eq!(run(Format::Pptx, &z).unwrap(), "one\ntwo\nten");
    }

    #[test]
    fn odt_spaces_tabs_and_tracked_changes() {
        let content = br#"<office:document-content xmlns:office="o" xmlns:text="t"><office:body><office:text>
            <text:tracked-changes><text:changed-region><text:p>old</text:p></text:changed-region></text:tracked-changes>
            <text:h>Title</text:h><text:p>a<text:s/>b<text:tab/>c<text:line-break/>d</text:p></office:text></office:body></office:document-content>"#;
        let z = build(&[("mimetype", b"application/vnd.oasis.opendocument.text"), ("content.xml", content)], false);
        assert_eq!(run(Format::Odt, &z).unwrap(), "Title\na b\tc\nd");
    }

    #[test]
    fn a_zip_that_is_not_the_format_is_malformed() {
        let z = build(&[("hello.txt", b"hi")], true);
        for f in [Format::Docx, Format::Xlsx, Format::Pptx, Format::Odt] {
            assert!(matches!(run(f, &z), Err(Skip::Malformed(_))), "{f:?}");
        }
    }
}
