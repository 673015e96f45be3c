//! Text out of XML, streaming (quick-xml), with per-format rules for where text lives and where
//! lines break. Entities are never expanded beyond XML's five and character references: a
//! document that declares its own (the "billion laughs" shape) is refused, not expanded.

use quick_xml::events::Event;
use quick_xml::Reader;

use super::text::TextSink;
use super::Skip;

/// Where a format keeps its text and where it breaks lines, by element local name.
pub struct Rules {
    /// Text counts only inside these elements (e.g. `w:t`); empty: everywhere.
    pub text_in: &'static [&'static str],
    /// Text inside these is never kept (deleted text, field codes, phonetic runs).
    pub skip: &'static [&'static str],
    /// A line ends after these elements (paragraphs, rows).
    pub line_after: &'static [&'static str],
    /// A tab after these (cells).
    pub tab_after: &'static [&'static str],
    /// These empty elements are a line break / a tab.
    pub line_at: &'static [&'static str],
    pub tab_at: &'static [&'static str],
    /// These empty elements are a space (ODF's `<text:s/>`).
    pub space_at: &'static [&'static str],
    /// A DOCTYPE at all is refused (OOXML and ODF parts never have one).
    pub no_doctype: bool,
}

/// Plain XML files: every text node, a line after each element that held text.
pub const GENERIC: Rules = Rules {
    text_in: &[],
    skip: &[],
    line_after: &[],
    tab_after: &[],
    line_at: &[],
    tab_at: &[],
    space_at: &[],
    no_doctype: false,
};

/// Refuse DTDs that declare entities: expanding them is how "billion laughs" works.
fn check_doctype(doctype: &[u8], rules: &Rules) -> Result<(), Skip> {
    if rules.no_doctype {
        return Err(Skip::Hostile("an Office/OpenDocument part carries a DOCTYPE, which the format forbids".into()));
    }
    if doctype.windows(8).any(|w| w.eq_ignore_ascii_case(b"<!ENTITY")) {
        return Err(Skip::Hostile(
            "the XML declares entities; expanding them is refused (entity-expansion attack)".into(),
        ));
    }
    Ok(())
}

fn malformed(e: impl std::fmt::Display) -> Skip {
    Skip::Malformed(format!("XML: {e}"))
}

/// Stream `xml` into `out` under `rules`. Stops early once `out` is full.
pub fn extract(xml: &[u8], rules: &Rules, out: &mut TextSink) -> Result<(), Skip> {
    let mut reader = Reader::from_reader(xml);
    reader.config_mut().check_end_names = false;
    let generic = rules.text_in.is_empty() && rules.line_after.is_empty();
    let mut inside_text = 0usize;
    let mut inside_skip = 0usize;
    let mut saw_text_since_open = false;
    let mut buf = Vec::new();
    loop {
        if out.is_full() {
            return Ok(());
        }
        let event = reader.read_event_into(&mut buf).map_err(malformed)?;
        match event {
            Event::Start(e) => {
                let name = e.local_name();
                let name = name.as_ref();
                if rules.skip.contains(&name) {
                    inside_skip += 1;
                } else if rules.text_in.contains(&name) {
                    inside_text += 1;
                }
                if generic && saw_text_since_open {
                    out.newline();
                    saw_text_since_open = false;
                }
            }
            Event::End(e) => {
                let name = e.local_name();
                let name = name.as_ref();
                if rules.skip.contains(&name) {
                    inside_skip = inside_skip.saturating_sub(1);
                } else if rules.text_in.contains(&name) {
                    inside_text = inside_text.saturating_sub(1);
                }
                if rules.line_after.contains(&name) || (generic && saw_text_since_open) {
                    out.newline();
                    saw_text_since_open = false;
                } else if rules.tab_after.contains(&name) {
                    out.tab();
                }
            }
            Event::Empty(e) => {
                let name = e.local_name();
                let name = name.as_ref();
                if inside_skip == 0 {
                    if rules.line_at.contains(&name) || rules.line_after.contains(&name) {
                        out.newline();
                    } else if rules.tab_at.contains(&name) || rules.tab_after.contains(&name) {
                        out.tab();
                    } else if rules.space_at.contains(&name) {
                        out.push(" ");
                    }
                }
            }
            Event::Text(t) if keep(rules, inside_text, inside_skip) => {
                let text = t.xml10_content();
                // Indentation between elements is not text.
                if !(generic && text.trim().is_empty()) {
                    out.push(&text);
                    saw_text_since_open = true;
                }
            }
            Event::CData(t) if keep(rules, inside_text, inside_skip) => {
                out.push(&t);
                saw_text_since_open = true;
            }
            Event::GeneralRef(r) if keep(rules, inside_text, inside_skip) => {
                if let Some(c) = r.resolve_char_ref().map_err(malformed)? {
                    out.push(c.encode_utf8(&mut [0; 4]));
                } else {
                    if let Some(s) = quick_xml::escape::resolve_predefined_entity(&r) {
                        out.push(s);
                    }
                    // An undeclared entity: nothing to expand (and nothing declared is expanded).
                }
            }
            Event::DocType(d) => check_doctype(d.as_bytes(), rules)?,
            Event::Eof => return Ok(()),
            _ => {}
        }
        buf.clear();
    }
}

fn keep(rules: &Rules, inside_text: usize, inside_skip: usize) -> bool {
    inside_skip == 0 && (rules.text_in.is_empty() || inside_text > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(xml: &str, rules: &Rules) -> Result<String, Skip> {
        let mut out = TextSink::new(1 << 20);
        extract(xml.as_bytes(), rules, &mut out)?;
        Ok(out.finish().0)
    }

    #[test]
    fn generic_xml_keeps_every_text_node_on_its_own_line() {
        let got = text("<?xml version='1.0'?><a><b>one &amp; two</b><c>three&#x20;<![CDATA[<4>]]></c></a>", &GENERIC);
        assert_eq!(got.unwrap(), "one & two\nthree <4>");
    }

    #[test]
    fn billion_laughs_is_refused_not_expanded() {
        let bomb = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<lolz>&lol3;</lolz>"#;
        assert!(matches!(text(bomb, &GENERIC), Err(Skip::Hostile(_))));
        // A DOCTYPE without entities is fine in plain XML.
        assert_eq!(text("<!DOCTYPE note SYSTEM \"n.dtd\"><note>hi</note>", &GENERIC).unwrap(), "hi");
    }

    #[test]
    fn broken_xml_is_malformed() {
        assert!(matches!(text("<a><b>text</a", &GENERIC), Err(Skip::Malformed(_)) | Ok(_)));
        assert!(matches!(text("<a attr='1' attr='2'>&#0;</a>", &GENERIC), Err(Skip::Malformed(_))));
    }
}
