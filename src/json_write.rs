//! Writing JSON by hand for the one hot shape we emit (a Coco document): strings escaped
//! exactly as serde_json escapes them, eight bytes at a time when nothing needs escaping,
//! and web URLs percent-encoded straight into the output.

const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Index of the first byte at or after `from` that JSON must escape (`"`, `\`, or below
/// 0x20), or `bytes.len()`. Word at a time: a string with nothing to escape is one pass.
fn next_escape(bytes: &[u8], from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let needs = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
    let mut i = from;
    while i + 8 <= bytes.len() {
        let w = u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        // A byte is flagged when it is below 0x20 or equals '"' or '\' (exact: no false
        // negatives; a flagged word is rescanned bytewise).
        let below = w.wrapping_sub(ONES * 0x20) & !w;
        let quote = (w ^ (ONES * u64::from(b'"'))).wrapping_sub(ONES) & !(w ^ (ONES * u64::from(b'"')));
        let slash = (w ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES) & !(w ^ (ONES * u64::from(b'\\')));
        if (below | quote | slash) & HIGH != 0 {
            break;
        }
        i += 8;
    }
    while i < bytes.len() && !needs(bytes[i]) {
        i += 1;
    }
    i
}

/// Append `s` as a JSON string, quotes included. Returns whether it was copied verbatim
/// (nothing escaped), so a caller can point at the copy instead of storing `s` again.
pub fn push_str(out: &mut String, s: &str) -> bool {
    out.push('"');
    let verbatim = push_escaped(out, s);
    out.push('"');
    verbatim
}

/// Append the inside of `s` as a JSON string (no quotes): pieces of one string can be
/// escaped one by one. Returns whether nothing needed escaping.
pub fn push_escaped(out: &mut String, s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = next_escape(bytes, 0);
    let verbatim = i == bytes.len();
    while i < bytes.len() {
        // `i` is at an ASCII byte, so both slices end on character boundaries.
        out.push_str(&s[start..i]);
        let b = bytes[i];
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            _ => {
                out.push_str("\\u00");
                out.push(HEX_LOWER[usize::from(b >> 4)] as char);
                out.push(HEX_LOWER[usize::from(b & 0xf)] as char);
            }
        }
        start = i + 1;
        i = next_escape(bytes, start);
    }
    out.push_str(&s[start..]);
    verbatim
}

/// Append `"key":` (the key is a literal that needs no escaping).
pub fn push_key(out: &mut String, key: &str) {
    out.push('"');
    out.push_str(key);
    out.push_str("\":");
}

pub fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[i..]).expect("ASCII digits"));
}

/// ASCII bytes kept as they are in a web path segment: unreserved and most sub-delims.
/// Everything else (controls, space, `"#%<>?\`{}|\^[]/`, DEL, non-ASCII) is `%XX`.
const fn segment_keeps() -> [bool; 128] {
    let mut keep = [false; 128];
    let mut b = 0x21;
    while b < 0x7f {
        keep[b] = true;
        b += 1;
    }
    let escaped = b"\"#%<>?`{}|\\^[]/";
    let mut i = 0;
    while i < escaped.len() {
        keep[escaped[i] as usize] = false;
        i += 1;
    }
    keep
}

static SEGMENT_KEEPS: [bool; 128] = segment_keeps();

/// Append one path segment, percent-encoded (uppercase hex, as `percent-encoding` writes).
/// The result never needs JSON escaping: quotes, backslashes and controls are encoded.
pub fn push_segment(out: &mut String, segment: &str) {
    let bytes = segment.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b < 0x80 && SEGMENT_KEEPS[usize::from(b)] {
            continue;
        }
        // A non-empty run of kept bytes is ASCII that starts after a whole encoded character
        // (continuation bytes are encoded too), so it lies on character boundaries.
        if start < i {
            out.push_str(&segment[start..i]);
        }
        out.push('%');
        out.push(HEX_UPPER[usize::from(b >> 4)] as char);
        out.push(HEX_UPPER[usize::from(b & 0xf)] as char);
        start = i + 1;
    }
    if start < bytes.len() {
        out.push_str(&segment[start..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_byte_class() -> Vec<String> {
        let mut cases: Vec<String> = (0u8..0x80).map(|b| format!("a{}b", b as char)).collect();
        cases.extend(
            ["", "plain ascii path", "tab\there", "long string with a \" quote after eight", "ü文件🦀", "\u{7f}\u{80}"]
                .map(String::from),
        );
        for len in 0..20 {
            cases.push("x".repeat(len) + "\"" + &"y".repeat(len));
            cases.push("é".repeat(len) + "\u{1}");
        }
        cases
    }

    #[test]
    fn strings_escape_exactly_as_serde_json() {
        for s in every_byte_class() {
            let mut out = String::new();
            let verbatim = push_str(&mut out, &s);
            let expected = serde_json::to_string(&s).unwrap();
            assert_eq!(out, expected, "{s:?}");
            assert_eq!(verbatim, expected.len() == s.len() + 2, "{s:?}");
        }
    }

    #[test]
    fn segments_encode_exactly_as_percent_encoding() {
        use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
        const SET: &AsciiSet = &CONTROLS
            .add(b' ')
            .add(b'"')
            .add(b'#')
            .add(b'%')
            .add(b'<')
            .add(b'>')
            .add(b'?')
            .add(b'`')
            .add(b'{')
            .add(b'}')
            .add(b'|')
            .add(b'\\')
            .add(b'^')
            .add(b'[')
            .add(b']')
            .add(b'/');
        for s in every_byte_class() {
            let mut out = String::new();
            push_segment(&mut out, &s);
            assert_eq!(out, utf8_percent_encode(&s, SET).to_string(), "{s:?}");
            assert_eq!(serde_json::to_string(&out).unwrap().len(), out.len() + 2, "never needs escaping");
        }
    }

    #[test]
    fn numbers() {
        for n in [0, 7, 10, 12345, u64::MAX] {
            let mut out = String::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string());
        }
    }
}
