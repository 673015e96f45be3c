//! HTML to text with `html2text` (html5ever's parser): no wrapping, no decorations, links
//! without footnotes. Scripts and styles are not text.

use super::text::TextSink;
use super::Skip;

/// Deeper element nesting than this is refused before parsing (html5ever's tree builder and
/// html2text's renderer recurse on it).
pub const MAX_NESTING: usize = 512;
/// Wide enough that paragraphs are not wrapped into lines.
const LINE_WIDTH: usize = 10_000;

pub fn extract(html: &str, out: &mut TextSink) -> Result<(), Skip> {
    check_nesting(html)?;
    let text = html2text::config::with_decorator(html2text::render::TrivialDecorator::new())
        .string_from_read(html.as_bytes(), LINE_WIDTH)
        .map_err(|e| Skip::Malformed(format!("HTML: {e}")))?;
    for line in text.lines() {
        let line = line.trim_end();
        if !line.is_empty() {
            out.push(line);
            out.newline();
        }
        if out.is_full() {
            break;
        }
    }
    Ok(())
}

/// Open tags minus close tags, roughly: void and self-closed elements do not nest.
fn check_nesting(html: &str) -> Result<(), Skip> {
    const VOID: [&str; 14] =
        ["area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"];
    let mut depth = 0usize;
    let bytes = html.as_bytes();
    let mut i = 0;
    while let Some(off) = bytes[i..].iter().position(|&b| b == b'<') {
        i += off + 1;
        let Some(&next) = bytes.get(i) else { break };
        if next == b'/' {
            depth = depth.saturating_sub(1);
            continue;
        }
        if !next.is_ascii_alphabetic() {
            continue;
        }
        let name_end = bytes[i..].iter().position(|b| !b.is_ascii_alphanumeric()).map_or(bytes.len(), |p| i + p);
        let name = html[i..name_end].to_ascii_lowercase();
        let tag_end = bytes[i..].iter().position(|&b| b == b'>').map_or(bytes.len(), |p| i + p);
        let self_closed = tag_end > 0 && bytes.get(tag_end - 1) == Some(&b'/');
        if !VOID.contains(&name.as_str()) && !self_closed {
            depth += 1;
            if depth > MAX_NESTING {
                return Err(Skip::Hostile(format!("the HTML nests elements more than {MAX_NESTING} deep")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(html: &str) -> Result<String, Skip> {
        let mut out = TextSink::new(1 << 20);
        extract(html, &mut out)?;
        Ok(out.finish().0)
    }

    #[test]
    fn markup_scripts_and_styles_go() {
        let got = run("<html><head><title>T</title><style>p{color:red}</style><script>var x=1;</script></head>\
            <body><h1>Heading</h1><p>First <b>bold</b> &amp; <a href='https://x'>link</a>.</p><ul><li>item</li></ul></body></html>")
        .unwrap();
        assert!(got.contains("Heading") && got.contains("First bold & link.") && got.contains("item"), "{got:?}");
        assert!(!got.contains("color") && !got.contains("var x"), "{got:?}");
    }

    #[test]
    fn absurd_nesting_is_hostile() {
        assert!(matches!(run(&"<div>".repeat(100_000)), Err(Skip::Hostile(_))));
        assert!(run(&"<br><img src=x>".repeat(10_000)).is_ok());
    }
}
