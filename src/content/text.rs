//! Where extracted text goes: one buffer with a byte cap. Extractors push pieces; once the cap
//! is reached the rest is dropped at a character boundary and the extractor may stop early.

/// Extracted text, capped.
#[derive(Debug)]
pub struct TextSink {
    buf: String,
    max: usize,
    truncated: bool,
    /// A separator is owed before the next text (collapsed: never two blank lines, no
    /// separator at the start).
    pending: Option<char>,
}

impl TextSink {
    pub fn new(max_bytes: usize) -> Self {
        TextSink {
            buf: String::with_capacity(max_bytes.min(64 << 10)),
            max: max_bytes,
            truncated: false,
            pending: None,
        }
    }

    /// True once the cap is reached: further text is dropped.
    pub fn is_full(&self) -> bool {
        self.truncated
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Append text; whitespace inside is kept as is.
    pub fn push(&mut self, s: &str) {
        if self.truncated || s.is_empty() {
            return;
        }
        if let Some(sep) = self.pending.take() {
            if !self.buf.is_empty() {
                self.append(sep.encode_utf8(&mut [0; 4]));
            }
        }
        self.append(s);
    }

    fn append(&mut self, s: &str) {
        let room = self.max - self.buf.len();
        if s.len() <= room {
            self.buf.push_str(s);
        } else {
            let mut cut = room;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            self.buf.push_str(&s[..cut]);
            self.truncated = true;
        }
    }

    /// End a line (paragraph, row): owed, so trailing and repeated breaks collapse.
    pub fn newline(&mut self) {
        self.pending = Some('\n');
    }

    /// Separate cells or tabbed text; a pending newline wins.
    pub fn tab(&mut self) {
        if self.pending.is_none() && !self.buf.is_empty() && !self.buf.ends_with(['\n', '\t']) {
            self.pending = Some('\t');
        }
    }

    pub fn finish(self) -> (String, bool) {
        (self.buf, self.truncated)
    }
}

/// Decode a text file: UTF-8 (with or without BOM), or UTF-16 with a BOM. Anything else that
/// is not valid UTF-8 is read as Windows-1252, which maps every byte. NUL bytes in the first
/// 8 KiB mean the file is binary, whatever its name says.
pub fn decode(bytes: &[u8]) -> Result<std::borrow::Cow<'_, str>, &'static str> {
    use std::borrow::Cow;
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return Ok(String::from_utf8_lossy(rest));
    }
    for (bom, enc) in [(&[0xFF, 0xFE][..], encoding_rs::UTF_16LE), (&[0xFE, 0xFF][..], encoding_rs::UTF_16BE)] {
        if bytes.starts_with(bom) {
            let (text, _) = enc.decode_without_bom_handling(&bytes[2..]);
            return Ok(Cow::Owned(text.into_owned()));
        }
    }
    if bytes[..bytes.len().min(8 << 10)].contains(&0) {
        return Err("the file is binary (it contains NUL bytes)");
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(Cow::Borrowed(s)),
        Err(_) => Ok(encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes).0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_cuts_at_a_character_boundary() {
        let mut t = TextSink::new(5);
        t.push("ab");
        t.push("cé€");
        assert!(t.is_full());
        let (s, truncated) = t.finish();
        assert_eq!(s, "abcé");
        assert!(truncated);
    }

    #[test]
    fn separators_collapse_and_never_lead() {
        let mut t = TextSink::new(100);
        t.newline();
        t.tab();
        t.push("a");
        t.tab();
        t.tab();
        t.push("b");
        t.newline();
        t.newline();
        t.push("c");
        t.newline();
        assert_eq!(t.finish().0, "a\tb\nc");
    }

    #[test]
    fn decoding_boms_legacy_bytes_and_binary() {
        assert_eq!(decode(b"\xEF\xBB\xBFhi").unwrap(), "hi");
        assert_eq!(decode(b"\xFF\xFEh\0i\0").unwrap(), "hi");
        assert_eq!(decode(b"\xFE\xFF\0h\0i").unwrap(), "hi");
        assert_eq!(decode(b"caf\xE9").unwrap(), "café");
        assert!(decode(b"PK\x03\x04\0\0").is_err());
    }
}
