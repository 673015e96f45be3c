//! File bytes for download and export. Uploaded files serve their own bytes; generated files
//! get small, real documents of their type (text, Markdown, PDF, DOCX, XLSX, PPTX) made on
//! demand from their id, so a generated account can be content-synced end to end.

use std::io::Write;

use sha2::{Digest, Sha256};

use crate::model::Node;

const WORDS: [&str; 32] = [
    "quarterly",
    "revenue",
    "contract",
    "renewal",
    "budget",
    "forecast",
    "roadmap",
    "customer",
    "invoice",
    "meeting",
    "minutes",
    "design",
    "review",
    "launch",
    "migration",
    "security",
    "audit",
    "policy",
    "hiring",
    "onboarding",
    "vendor",
    "pricing",
    "summary",
    "analysis",
    "report",
    "timeline",
    "milestone",
    "risk",
    "compliance",
    "training",
    "support",
    "release",
];

fn extension(name: &str) -> String {
    name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default()
}

/// The words of a generated file: deterministic from its id, and a token naming the id so a
/// test can find the file by its content.
pub fn synthetic_words(node: &Node) -> Vec<String> {
    let h = Sha256::digest(node.id.as_bytes());
    let mut words: Vec<String> = h.iter().take(24).map(|b| WORDS[(*b as usize) % WORDS.len()].to_string()).collect();
    words.insert(
        0,
        format!("token-{}", node.id.trim_start_matches("id:").to_ascii_lowercase().replace(['-', '_'], "x")),
    );
    words
}

fn lines(node: &Node) -> Vec<String> {
    synthetic_words(node).chunks(6).map(|c| c.join(" ")).collect()
}

/// The bytes `files/download` serves for a downloadable file.
pub fn download(node: &Node) -> Vec<u8> {
    if let Some(bytes) = &node.content {
        return bytes.to_vec();
    }
    let lines = lines(node);
    match extension(&node.name).as_str() {
        "pdf" => pdf(&lines),
        "docx" => docx(&lines),
        "xlsx" => xlsx(&lines),
        "pptx" => pptx(&lines),
        "txt" | "md" => lines.join("\n").into_bytes(),
        // Images, archives, legacy Office: bytes that are nothing in particular.
        _ => Sha256::digest(node.id.as_bytes()).repeat(64),
    }
}

/// The bytes `files/export` serves in `format` (one of the file's `export_options`).
pub fn export(node: &Node, format: &str) -> Vec<u8> {
    if let Some(bytes) = &node.content {
        // An uploaded Paper doc holds its Markdown; other formats are rendered from it.
        return match format {
            "html" => format!("<html><body><pre>{}</pre></body></html>", String::from_utf8_lossy(bytes)).into_bytes(),
            _ => bytes.to_vec(),
        };
    }
    let lines = lines(node);
    let title = node.name.rsplit_once('.').map_or(node.name.as_str(), |(stem, _)| stem);
    match format {
        "markdown" => format!("# {title}\n\n{}\n", lines.join("\n\n")).into_bytes(),
        "html" => format!("<html><body><h1>{title}</h1><p>{}</p></body></html>", lines.join("</p><p>")).into_bytes(),
        "docx" => docx(&lines),
        "xlsx" => xlsx(&lines),
        "pptx" => pptx(&lines),
        _ => lines.join("\n").into_bytes(),
    }
}

/// A one-page PDF (Helvetica, one line per entry), with a correct xref table.
pub fn pdf(lines: &[String]) -> Vec<u8> {
    let mut content = String::from("BT /F1 11 Tf 72 740 Td 14 TL\n");
    for l in lines {
        let escaped: String = l
            .chars()
            .filter(|c| c.is_ascii() && !c.is_control())
            .flat_map(|c| match c {
                '(' | ')' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        content.push_str(&format!("({escaped}) Tj T*\n"));
    }
    content.push_str("ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_string(),
        format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_string(),
    ];
    pdf_with(&objects)
}

/// A PDF made of these objects, numbered from 1 (object 1 the catalog), with its xref table
/// computed: also how tests build malformed PDFs (cyclic page trees and the like).
pub fn pdf_with<S: AsRef<str>>(objects: &[S]) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{}\nendobj\n", i + 1, o.as_ref()).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).as_bytes(),
    );
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A zip of `(name, bytes)` parts, deflated.
pub fn zip(parts: &[(&str, String)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in parts {
        w.start_file(*name, opts).expect("in-memory zip");
        w.write_all(data.as_bytes()).expect("in-memory zip");
    }
    w.finish().expect("in-memory zip").into_inner()
}

const CT: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>"#;

pub fn docx(lines: &[String]) -> Vec<u8> {
    let paras: String = lines.iter().map(|l| format!("<w:p><w:r><w:t>{}</w:t></w:r></w:p>", xml_escape(l))).collect();
    let doc = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{paras}</w:body></w:document>"#
    );
    zip(&[("[Content_Types].xml", CT.into()), ("word/document.xml", doc)])
}

pub fn xlsx(lines: &[String]) -> Vec<u8> {
    let ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
    let shared: String = lines.iter().map(|l| format!("<si><t>{}</t></si>", xml_escape(l))).collect();
    let rows: String = (0..lines.len())
        .map(|i| format!(r#"<row r="{}"><c t="s"><v>{i}</v></c><c><v>{}</v></c></row>"#, i + 1, i * 7))
        .collect();
    zip(&[
        ("[Content_Types].xml", CT.into()),
        ("xl/workbook.xml", format!(r#"<workbook xmlns="{ns}" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>"#)),
        ("xl/_rels/workbook.xml.rels", r#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#.into()),
        ("xl/sharedStrings.xml", format!(r#"<sst xmlns="{ns}">{shared}</sst>"#)),
        ("xl/worksheets/sheet1.xml", format!(r#"<worksheet xmlns="{ns}"><sheetData>{rows}</sheetData></worksheet>"#)),
    ])
}

pub fn pptx(lines: &[String]) -> Vec<u8> {
    let a = "http://schemas.openxmlformats.org/drawingml/2006/main";
    let p = "http://schemas.openxmlformats.org/presentationml/2006/main";
    let mut parts = vec![
        ("[Content_Types].xml".to_string(), CT.to_string()),
        ("ppt/presentation.xml".to_string(), format!(r#"<p:presentation xmlns:p="{p}"/>"#)),
    ];
    for (i, l) in lines.iter().enumerate() {
        parts.push((
            format!("ppt/slides/slide{}.xml", i + 1),
            format!(r#"<p:sld xmlns:a="{a}" xmlns:p="{p}"><p:cSld><p:spTree><p:sp><p:txBody><a:p><a:r><a:t>{}</a:t></a:r></a:p></p:txBody></p:sp></p:spTree></p:cSld></p:sld>"#, xml_escape(l)),
        ));
    }
    let borrowed: Vec<(&str, String)> = parts.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    zip(&borrowed)
}
