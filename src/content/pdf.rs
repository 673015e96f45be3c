//! PDF text with `pdf-extract` (over `lopdf`), after checks of our own that turn the known
//! hostile shapes into typed errors instead of traps: bracket nesting deeper than any real
//! file, a page tree that loops, and encryption we cannot open with the empty password.

use std::collections::HashSet;

use lopdf::{Document, Object, ObjectId};

use super::text::TextSink;
use super::Skip;

/// Deeper `[`/`<<` nesting than this is not a document (lopdf recurses on it).
pub const MAX_NESTING: usize = 256;
/// Most pages we walk.
pub const MAX_PAGES: usize = 100_000;

pub fn extract(bytes: &[u8], out: &mut TextSink) -> Result<(), Skip> {
    check_nesting(bytes)?;
    let mut doc = Document::load_mem(bytes).map_err(|e| Skip::Malformed(format!("not a readable PDF: {e}")))?;
    if doc.is_encrypted() {
        // Many "encrypted" PDFs only restrict printing and open with the empty user password.
        doc.decrypt("").map_err(|_| Skip::Malformed("the PDF is encrypted with a password".into()))?;
    }
    check_page_tree(&doc)?;
    let mut writer = Capped(out);
    let result = {
        let mut output = pdf_extract::PlainTextOutput::new(&mut writer as &mut dyn std::io::Write);
        pdf_extract::output_doc(&doc, &mut output)
    };
    match result {
        Ok(()) => Ok(()),
        // Our writer refuses text once the cap is reached: that is a finished, truncated file.
        Err(_) if writer.0.is_full() => Ok(()),
        Err(e) => Err(Skip::Malformed(format!("PDF text: {e}"))),
    }
}

/// An `io::Write` into the sink that fails once it is full, which stops pdf-extract early.
/// pdf-extract writes whole `str`s, so each write is valid UTF-8.
struct Capped<'a>(&'a mut TextSink);

impl std::io::Write for Capped<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let s = String::from_utf8_lossy(buf);
        if s == "\n" {
            self.0.newline();
        } else {
            self.0.push(&s);
        }
        if self.0.is_full() {
            Err(std::io::Error::other("text cap reached"))
        } else {
            Ok(buf.len())
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bracket depth outside strings, comments and streams.
fn check_nesting(bytes: &[u8]) -> Result<(), Skip> {
    let (mut depth, mut i) = (0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'[' => depth += 1,
            b'<' if bytes.get(i + 1) == Some(&b'<') => {
                depth += 1;
                i += 1;
            }
            b']' => depth = depth.saturating_sub(1),
            b'>' if bytes.get(i + 1) == Some(&b'>') => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'%' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'(' => {
                // A literal string: balanced parentheses, backslash escapes.
                let mut parens = 0usize;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' => i += 1,
                        b'(' => parens += 1,
                        b')' => {
                            parens -= 1;
                            if parens == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            b's' if bytes[i..].starts_with(b"stream") && !bytes[..i].ends_with(b"end") => {
                match find(&bytes[i..], b"endstream") {
                    Some(end) => i += end + b"endstream".len() - 1,
                    None => break,
                }
            }
            _ => {}
        }
        if depth > MAX_NESTING {
            return Err(Skip::Hostile(format!("the PDF nests objects more than {MAX_NESTING} deep")));
        }
        i += 1;
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Walk /Root /Pages by hand: a node seen twice is a loop.
fn check_page_tree(doc: &Document) -> Result<(), Skip> {
    let root = doc
        .catalog()
        .ok()
        .and_then(|c| c.get(b"Pages").ok())
        .and_then(|p| p.as_reference().ok())
        .ok_or_else(|| Skip::Malformed("the PDF has no page tree".into()))?;
    let mut seen: HashSet<ObjectId> = HashSet::new();
    let mut stack = vec![(root, 0usize)];
    while let Some((id, depth)) = stack.pop() {
        if !seen.insert(id) {
            return Err(Skip::Hostile("the PDF's page tree refers back to itself (a cycle)".into()));
        }
        if depth > MAX_NESTING || seen.len() > MAX_PAGES {
            return Err(Skip::Hostile("the PDF's page tree is deeper or larger than any real document".into()));
        }
        let Ok(node) = doc.get_dictionary(id) else { continue };
        if let Ok(kids) = node.get(b"Kids").and_then(Object::as_array) {
            for kid in kids {
                if let Ok(kid) = kid.as_reference() {
                    stack.push((kid, depth + 1));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-page PDF with `text` in Helvetica, xref offsets computed.
    pub(crate) fn tiny_pdf(text: &str) -> Vec<u8> {
        let content = format!("BT /F1 12 Tf 72 712 Td ({text}) Tj ET");
        let objects = [
            "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_string(),
            format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()),
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_string(),
        ];
        pdf_with(&objects)
    }

    pub(crate) fn pdf_with(objects: &[String]) -> Vec<u8> {
        let mut pdf = b"%PDF-1.4\n".to_vec();
        let mut offsets = Vec::new();
        for (i, o) in objects.iter().enumerate() {
            offsets.push(pdf.len());
            pdf.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
        }
        let xref = pdf.len();
        pdf.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
        for o in offsets {
            pdf.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
        }
        pdf.extend_from_slice(
            format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).as_bytes(),
        );
        pdf
    }

    fn run(bytes: &[u8], cap: usize) -> Result<(String, bool), Skip> {
        let mut out = TextSink::new(cap);
        extract(bytes, &mut out)?;
        Ok(out.finish())
    }

    #[test]
    fn a_simple_pdf_gives_its_text() {
        let (text, truncated) = run(&tiny_pdf("Quarterly revenue grew"), 1 << 20).unwrap();
        assert!(text.contains("Quarterly revenue grew"), "{text:?}");
        assert!(!truncated);
        let (text, truncated) = run(&tiny_pdf("Quarterly revenue grew"), 9).unwrap();
        assert!(truncated && text.len() <= 9, "{text:?}");
    }

    #[test]
    fn a_cyclic_page_tree_is_hostile() {
        let objects = [
            "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
            "<< /Type /Pages /Parent 2 0 R /Kids [2 0 R 3 0 R] /Count 1 >>".to_string(),
        ];
        assert!(matches!(run(&pdf_with(&objects), 1 << 20), Err(Skip::Hostile(_))));
    }

    #[test]
    fn deep_nesting_is_hostile_and_garbage_is_malformed() {
        let deep = format!("%PDF-1.4\n1 0 obj\n{}\nendobj\n", "[".repeat(10_000));
        assert!(matches!(run(deep.as_bytes(), 1 << 20), Err(Skip::Hostile(_))));
        assert!(matches!(run(b"%PDF-1.4\ngarbage", 1 << 20), Err(Skip::Malformed(_))));
        let good = tiny_pdf("x");
        assert!(matches!(run(&good[..good.len() / 2], 1 << 20), Err(Skip::Malformed(_)) | Ok(_)));
    }
}
