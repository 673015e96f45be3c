//! Reading parts out of a zip container (OOXML, OpenDocument) without trusting its numbers:
//! every part is inflated through a cap, and the archive as a whole has an inflation budget,
//! so a zip bomb ends as [`Skip::Hostile`] after at most the budget's worth of work.

use std::io::{Cursor, Read};

use super::Skip;

/// Most entries an Office file may list (real ones have tens to a few thousand).
pub const MAX_ENTRIES: usize = 50_000;
/// Largest inflated part we read (a worksheet or a document body).
pub const MAX_PART_BYTES: u64 = 64 << 20;
/// Inflated bytes one file may cost in total, across parts.
pub const MAX_TOTAL_BYTES: u64 = 160 << 20;
/// Declared compression ratio beyond which a large part is a bomb, not a document: XML
/// compresses ~5-30×, a sheet of repeated cells perhaps 200×.
pub const MAX_RATIO: u64 = 1_000;

pub struct Archive<'a> {
    zip: zip::ZipArchive<Cursor<&'a [u8]>>,
    inflated: u64,
}

impl<'a> Archive<'a> {
    pub fn open(bytes: &'a [u8]) -> Result<Self, Skip> {
        let zip = zip::ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| Skip::Malformed(format!("not a readable ZIP container: {e}")))?;
        if zip.len() > MAX_ENTRIES {
            return Err(Skip::Hostile(format!("the archive lists {} entries (limit {MAX_ENTRIES})", zip.len())));
        }
        Ok(Archive { zip, inflated: 0 })
    }

    /// Every entry name, in the archive's order.
    pub fn names(&self) -> Vec<String> {
        self.zip.file_names().filter_map(Result::ok).map(|n| n.into_owned()).collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.zip.index_for_name(name).is_some()
    }

    /// One part, inflated under the caps; `Ok(None)` when it does not exist.
    pub fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>, Skip> {
        let Some(index) = self.zip.index_for_name(name) else { return Ok(None) };
        let budget = MAX_TOTAL_BYTES.saturating_sub(self.inflated);
        let mut file = self.zip.by_index(index).map_err(|e| match e {
            zip::result::ZipError::UnsupportedArchive(m) if m.contains("assword") => {
                Skip::Malformed(format!("{name} is encrypted"))
            }
            e => Skip::Malformed(format!("{name}: {e}")),
        })?;
        let declared = file.size();
        let compressed = file.compressed_size().max(1);
        if declared > MAX_PART_BYTES.min(budget) {
            return Err(Skip::Hostile(format!(
                "{name} inflates to {declared} bytes (limit {})",
                MAX_PART_BYTES.min(budget)
            )));
        }
        if declared > (4 << 20) && declared / compressed > MAX_RATIO {
            return Err(Skip::Hostile(format!(
                "{name} claims a {}:1 compression ratio (zip bomb)",
                declared / compressed
            )));
        }
        // The declared size may lie: read one byte past it to find out, never more.
        let mut out = Vec::with_capacity(declared.min(16 << 20) as usize);
        (&mut file)
            .take(declared + 1)
            .read_to_end(&mut out)
            .map_err(|e| Skip::Malformed(format!("{name} does not inflate: {e}")))?;
        if out.len() as u64 > declared {
            return Err(Skip::Hostile(format!("{name} inflates past its declared {declared} bytes")));
        }
        self.inflated += out.len() as u64;
        Ok(Some(out))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A zip whose entries are stored or deflated, built in memory.
    pub(crate) fn build(entries: &[(&str, &[u8])], deflate: bool) -> Vec<u8> {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let method = if deflate { zip::CompressionMethod::Deflated } else { zip::CompressionMethod::Stored };
        let opts = zip::write::SimpleFileOptions::default().compression_method(method);
        for (name, data) in entries {
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn parts_are_read_and_missing_parts_are_none() {
        let z = build(&[("a.xml", b"<a/>"), ("b/c.xml", b"hello")], true);
        let mut a = Archive::open(&z).unwrap();
        assert_eq!(a.read("b/c.xml").unwrap().unwrap(), b"hello");
        assert_eq!(a.read("nope").unwrap(), None);
        assert_eq!(a.names(), ["a.xml", "b/c.xml"]);
    }

    #[test]
    fn a_bomb_is_hostile_before_it_is_inflated() {
        let zeros = vec![0u8; 80 << 20];
        let z = build(&[("word/document.xml", &zeros)], true);
        assert!(z.len() < 200 << 10, "80 MiB of zeros deflates to {} bytes", z.len());
        let mut a = Archive::open(&z).unwrap();
        assert!(matches!(a.read("word/document.xml"), Err(Skip::Hostile(_))));
    }

    #[test]
    fn a_part_that_inflates_past_its_declared_size_is_hostile() {
        let mut z = build(&[("x.xml", &[b'a'; 4096])], true);
        // Lower the declared uncompressed size in the central directory (and local header).
        let patch = |z: &mut Vec<u8>, sig: &[u8], off: usize| {
            let at = z.windows(4).position(|w| w == sig).unwrap();
            z[at + off..at + off + 4].copy_from_slice(&16u32.to_le_bytes());
        };
        patch(&mut z, b"PK\x01\x02", 24);
        patch(&mut z, b"PK\x03\x04", 22);
        let mut a = Archive::open(&z).unwrap();
        assert!(matches!(a.read("x.xml"), Err(Skip::Hostile(_)) | Err(Skip::Malformed(_))));
    }

    #[test]
    fn garbage_and_truncation_are_malformed() {
        assert!(matches!(Archive::open(b"PK\x03\x04 not really"), Err(Skip::Malformed(_))));
        let z = build(&[("a.xml", &[b'x'; 10_000])], true);
        assert!(matches!(Archive::open(&z[..z.len() / 2]), Err(Skip::Malformed(_))));
    }
}
