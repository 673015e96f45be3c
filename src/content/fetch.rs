//! One `fetch-content` call: refresh the token if due, download the file at its listed
//! revision (or export it when Dropbox cannot download it), then extract its text. Everything
//! that can be decided from the listing (type, size) is decided before any request.

use serde::Deserialize;

use super::format::Format;
use super::{extract_guarded, Extracted, Skip, DEFAULT_MAX_DOWNLOAD_BYTES, DEFAULT_MAX_TEXT_BYTES};
use crate::api::{self, Failure, Route};
use crate::error::Error;
use crate::http::HttpRequest;
use crate::session::{Sent, Session, DEFAULT_REFRESH_MARGIN_SECS};
use crate::types::{AppCredentials, Endpoints, PageStats, RootInfo, Tokens};

/// Real Dropbox's content service (`wit/connector-info.json` publishes it for hosts).
pub const DROPBOX_CONTENT: &str = "https://content.dropboxapi.com";
/// Largest text cap a caller may ask for.
pub const MAX_TEXT_CAP: u32 = 64 << 20;
/// Largest download cap a caller may ask for (the component holds the file in memory).
pub const MAX_DOWNLOAD_CAP: u64 = 1 << 30;

/// The file, as the listing reported it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileRef {
    /// `id:…`: ASCII and rename-proof.
    pub file_id: String,
    /// Downloads pin this revision when given.
    pub rev: Option<String>,
    /// Its name; the extension picks the format of a download.
    pub name: String,
    pub size: u64,
    pub downloadable: bool,
    pub export_as: Option<String>,
    pub export_options: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContentLimits {
    /// None: [`DEFAULT_MAX_DOWNLOAD_BYTES`].
    pub max_download_bytes: Option<u64>,
    /// None: [`DEFAULT_MAX_TEXT_BYTES`].
    pub max_text_bytes: Option<u32>,
    /// Format names to extract (`format::FORMATS`); None: all.
    pub formats: Option<Vec<String>>,
}

#[derive(Clone, Debug)]
pub struct ContentRequest {
    pub app: AppCredentials,
    pub tokens: Tokens,
    pub now: u64,
    /// `api` serves token refreshes.
    pub endpoints: Endpoints,
    /// Base URL of the content service (download, export).
    pub content: String,
    pub refresh_margin_secs: Option<u32>,
    pub root_info: Option<RootInfo>,
    pub file: FileRef,
    pub limits: ContentLimits,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Content {
    pub extracted: Extracted,
    /// Bytes received from Dropbox.
    pub bytes: u64,
    pub exported: bool,
    pub tokens: Option<Tokens>,
    pub stats: PageStats,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContentError {
    /// Nothing to retry until the file changes.
    Skipped(Skip),
    /// Dropbox or the network failed: the usual error classes (retry, re-auth, …).
    Failed(Error),
}

impl From<Error> for ContentError {
    fn from(e: Error) -> Self {
        ContentError::Failed(e)
    }
}

impl From<Skip> for ContentError {
    fn from(s: Skip) -> Self {
        ContentError::Skipped(s)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentFailure {
    pub error: ContentError,
    pub tokens: Option<Tokens>,
    pub stats: PageStats,
}

/// How the bytes will be obtained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    Download { format: Format, limit: u64 },
    Export { export_format: String, format: Format, limit: u64 },
}

fn invalid(m: impl Into<String>) -> ContentError {
    ContentError::Failed(Error::InvalidInput(m.into()))
}

/// Everything decided before any request: input checks, format, allow-list, size cap.
pub fn plan(req: &ContentRequest) -> Result<Plan, ContentError> {
    let f = &req.file;
    if f.file_id.is_empty() || f.file_id.chars().any(char::is_control) {
        return Err(invalid("file id is empty or has control characters"));
    }
    for (name, value) in [("api", &req.endpoints.api), ("content", &req.content)] {
        match url::Url::parse(value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => return Err(invalid(format!("{name} endpoint {value:?} is not an http(s) URL"))),
        }
    }
    if req.app.client_id.is_empty() || req.app.client_secret.is_empty() || req.tokens.refresh_token.is_empty() {
        return Err(invalid("app credentials or refresh token are empty"));
    }
    let limit = req.limits.max_download_bytes.unwrap_or(DEFAULT_MAX_DOWNLOAD_BYTES);
    if limit == 0 || limit > MAX_DOWNLOAD_CAP {
        return Err(invalid(format!("download cap {limit} is outside 1..={MAX_DOWNLOAD_CAP}")));
    }
    match req.limits.max_text_bytes {
        Some(n) if n == 0 || n > MAX_TEXT_CAP => {
            return Err(invalid(format!("text cap {n} is outside 1..={MAX_TEXT_CAP}")))
        }
        _ => {}
    }
    if let Some(names) = &req.limits.formats {
        if let Some(bad) = names.iter().find(|n| Format::from_name(n).is_none()) {
            return Err(invalid(format!("unknown format {bad:?} in the allow-list")));
        }
    }
    let allowed = |format: Format| match &req.limits.formats {
        None => true,
        Some(names) => names.iter().any(|n| n.eq_ignore_ascii_case(format.name())),
    };
    let plan = if f.downloadable {
        let format = Format::from_file_name(&f.name).ok_or_else(|| {
            Skip::Unsupported(match super::format::extension(&f.name) {
                Some(ext) => format!(".{ext} files are not a format we extract"),
                None => "a file without an extension is not a format we extract".into(),
            })
        })?;
        if f.size > limit {
            return Err(Skip::TooLarge { bytes: f.size, limit }.into());
        }
        Plan::Download { format, limit }
    } else {
        // Paper exports as markdown when asked; Google files as their Office format.
        let options = || f.export_options.iter().chain(f.export_as.iter());
        let export_format = options()
            .find(|o| o.eq_ignore_ascii_case("markdown"))
            .or_else(|| options().find(|o| Format::from_export_format(o).is_some()))
            .cloned()
            .ok_or_else(|| {
                Skip::NotExportable(match &f.export_as {
                    Some(a) => format!("Dropbox exports it only as {a:?}, which is not a format we extract"),
                    None => "Dropbox can neither download nor export it".into(),
                })
            })?;
        let format = Format::from_export_format(&export_format).expect("chosen among known formats");
        Plan::Export { export_format, format, limit }
    };
    let format = match &plan {
        Plan::Download { format, .. } | Plan::Export { format, .. } => *format,
    };
    if !allowed(format) {
        return Err(
            Skip::Unsupported(format!("{} is not on this datasource's content allow-list", format.name())).into()
        );
    }
    Ok(plan)
}

/// JSON for the `Dropbox-API-Arg` header: every character from 0x7F up escaped as `\uXXXX`
/// (surrogate pairs above the BMP), as Dropbox requires of header values.
pub fn header_safe_json(value: &serde_json::Value) -> String {
    let json = value.to_string();
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if (c as u32) < 0x7F {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// The download or export request.
pub fn content_request(base: &str, plan: &Plan, file: &FileRef, token: &str, path_root: Option<&str>) -> HttpRequest {
    let (route, arg, limit) = match plan {
        Plan::Download { limit, .. } => {
            let path = match &file.rev {
                Some(rev) if !rev.is_empty() => format!("rev:{rev}"),
                _ => file.file_id.clone(),
            };
            (Route::Download, serde_json::json!({ "path": path }), *limit)
        }
        Plan::Export { export_format, limit, .. } => {
            (Route::Export, serde_json::json!({ "path": file.file_id, "export_format": export_format }), *limit)
        }
    };
    let mut req = HttpRequest::post(format!("{}{}", base.trim_end_matches('/'), route.path()))
        .header("authorization", format!("Bearer {token}"))
        .header("dropbox-api-arg", header_safe_json(&arg))
        .max_response_bytes(usize::try_from(limit).unwrap_or(usize::MAX));
    if let Some(root) = path_root {
        req = req.header("dropbox-api-path-root", serde_json::json!({ ".tag": "root", "root": root }).to_string());
    }
    req
}

/// 409 on download/export: the file's own reasons (skip) or Dropbox's "try later" (transient).
pub fn classify_conflict(route: Route, body: &[u8]) -> ContentError {
    let tags = api::error_tags(body);
    let t = tags.as_str();
    if t.contains("restricted_content") {
        Skip::Restricted("Dropbox restricts this file (restricted_content)".into()).into()
    } else if t.contains("not_found") {
        Skip::Gone("this revision no longer exists (changed or deleted since it was listed)".into()).into()
    } else if t.starts_with("unsupported_file")
        || t.starts_with("non_exportable")
        || t.contains("invalid_export_format")
    {
        Skip::NotExportable(format!("Dropbox refused the {} ({t})", route.name())).into()
    } else if t.starts_with("retry_error") {
        Error::Transient("Dropbox's export is not ready yet (retry_error)".into()).into()
    } else if t.contains("not_file") || t.contains("unsupported_content_type") {
        Skip::Unsupported(format!("Dropbox refused the {} ({t})", route.name())).into()
    } else {
        Error::Api(format!("{}: 409 {}", route.name(), if t.is_empty() { api::quote(body) } else { tags.clone() }))
            .into()
    }
}

#[derive(Deserialize)]
struct ResultHeader {
    size: Option<u64>,
}

/// Fetch one file's bytes and extract its text.
pub fn fetch_content<T: crate::http::Transport>(
    req: &ContentRequest,
    transport: &mut T,
) -> Result<Content, Box<ContentFailure>> {
    let fail_early = |error| Box::new(ContentFailure { error, tokens: None, stats: PageStats::default() });
    let plan = plan(req).map_err(fail_early)?;
    let mut session = Session::new(transport, &req.endpoints, &req.app, req.tokens.clone(), req.now);
    let outcome = fetch_and_extract(req, &plan, &mut session);
    let tokens = session.refreshed_tokens();
    let stats = session.stats;
    match outcome {
        Ok((extracted, bytes)) => {
            Ok(Content { extracted, bytes, exported: matches!(plan, Plan::Export { .. }), tokens, stats })
        }
        Err(error) => Err(Box::new(ContentFailure { error, tokens, stats })),
    }
}

fn fetch_and_extract<T: crate::http::Transport>(
    req: &ContentRequest,
    plan: &Plan,
    session: &mut Session<'_, T>,
) -> Result<(Extracted, u64), ContentError> {
    let margin = req.refresh_margin_secs.map_or(DEFAULT_REFRESH_MARGIN_SECS, u64::from);
    session.ensure_fresh(margin)?;
    let path_root = req.root_info.as_ref().and_then(|r| r.path_root());
    let (route, format, limit) = match plan {
        Plan::Download { format, limit } => (Route::Download, *format, *limit),
        Plan::Export { format, limit, .. } => (Route::Export, *format, *limit),
    };
    let sent = session.authorized(route, |token| content_request(&req.content, plan, &req.file, token, path_root))?;
    let resp = match sent {
        Sent::Response(r) => r,
        Sent::TooLarge { .. } => {
            // Larger than listed (or an export of unknown size): stopped at the cap.
            return Err(Skip::TooLarge { bytes: limit + 1, limit }.into());
        }
    };
    if resp.status == 409 {
        return Err(classify_conflict(route, &resp.body));
    }
    match api::check_rpc(route, &resp) {
        Ok(_) => {}
        Err(Failure::Error(e)) => return Err(e.into()),
        Err(Failure::ExpiredToken) => {
            return Err(Error::Transient("Dropbox called a just-refreshed access token expired".into()).into())
        }
    }
    // A body shorter than Dropbox says the file is: the transfer broke off.
    let declared = resp.header("dropbox-api-result").and_then(|h| serde_json::from_str::<ResultHeader>(h).ok());
    if route == Route::Download {
        if let Some(size) = declared.and_then(|d| d.size) {
            if size != resp.body.len() as u64 {
                return Err(
                    Error::Transient(format!("files/download: received {} of {size} bytes", resp.body.len())).into()
                );
            }
        }
    }
    let bytes = resp.body.len() as u64;
    let max_text = req.limits.max_text_bytes.unwrap_or(DEFAULT_MAX_TEXT_BYTES) as usize;
    let extracted = extract_guarded(format, &resp.body, max_text)?;
    Ok((extracted, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::fake::{reply, Scripted};
    use crate::http::HttpResponse;
    use crate::Secret;

    fn request(name: &str, size: u64) -> ContentRequest {
        ContentRequest {
            app: AppCredentials { client_id: "app".into(), client_secret: Secret::new("shh") },
            tokens: Tokens { access_token: Secret::new("at"), expires_at: 10_000, refresh_token: Secret::new("rt") },
            now: 1_000,
            endpoints: Endpoints { authorize: "http://127.0.0.1:1".into(), api: "http://127.0.0.1:1".into() },
            content: "http://127.0.0.1:2".into(),
            refresh_margin_secs: None,
            root_info: None,
            file: FileRef {
                file_id: "id:abc".into(),
                rev: Some("015f00000001".into()),
                name: name.into(),
                size,
                downloadable: true,
                export_as: None,
                export_options: vec![],
            },
            limits: ContentLimits::default(),
        }
    }

    fn file(status: u16, body: &[u8], size: Option<usize>) -> Result<HttpResponse, crate::http::TransportError> {
        let mut headers = vec![];
        if let Some(s) = size {
            headers.push(("dropbox-api-result".to_string(), format!(r#"{{"size":{s},"name":"x"}}"#)));
        }
        Ok(HttpResponse { status, headers, body: body.to_vec() })
    }

    fn header<'a>(r: &'a HttpRequest, name: &str) -> Option<&'a str> {
        r.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn downloads_the_listed_revision_with_a_header_argument_and_no_body() {
        let mut t = Scripted::new([file(200, b"hello world", Some(11))]);
        let c = fetch_content(&request("notes.txt", 11), &mut t).unwrap();
        assert_eq!(c.extracted.text, "hello world");
        assert_eq!((c.bytes, c.exported, c.stats.requests), (11, false, 1));
        let r = &t.seen[0];
        assert_eq!(r.url, "http://127.0.0.1:2/2/files/download");
        assert_eq!(header(r, "dropbox-api-arg"), Some(r#"{"path":"rev:015f00000001"}"#));
        assert!(header(r, "content-type").is_none() && r.body.is_empty());
        assert_eq!(header(r, "authorization"), Some("Bearer at"));
    }

    #[test]
    fn header_safe_json_escapes_everything_from_0x7f() {
        let v = serde_json::json!({ "path": "/文件/café 🚀\u{7f}" });
        let s = header_safe_json(&v);
        assert!(s.is_ascii(), "{s}");
        assert_eq!(s, r#"{"path":"/\u6587\u4ef6/caf\u00e9 \ud83d\ude80\u007f"}"#);
        assert_eq!(serde_json::from_str::<serde_json::Value>(&s).unwrap(), v);
    }

    #[test]
    fn decisions_before_any_request() {
        let mut t = Scripted::offline();
        let skip = |r: &ContentRequest, t: &mut Scripted| match fetch_content(r, t).unwrap_err().error {
            ContentError::Skipped(s) => s,
            e => panic!("{e:?}"),
        };
        assert!(matches!(skip(&request("photo.jpg", 10), &mut t), Skip::Unsupported(_)));
        assert_eq!(
            skip(&request("big.pdf", 100 << 20), &mut t),
            Skip::TooLarge { bytes: 100 << 20, limit: DEFAULT_MAX_DOWNLOAD_BYTES }
        );
        let mut r = request("a.pdf", 10);
        r.limits.formats = Some(vec!["docx".into()]);
        assert!(matches!(skip(&r, &mut t), Skip::Unsupported(m) if m.contains("allow-list")));
        r.limits.formats = Some(vec!["nonsense".into()]);
        assert!(matches!(fetch_content(&r, &mut t).unwrap_err().error, ContentError::Failed(Error::InvalidInput(_))));
        assert!(t.seen.is_empty(), "no request was needed");
    }

    #[test]
    fn paper_is_exported_as_markdown() {
        let mut r = request("Plan.paper", 0);
        r.file.downloadable = false;
        r.file.export_as = Some("html".into());
        r.file.export_options = vec!["html".into(), "markdown".into()];
        let mut t = Scripted::new([file(200, b"# Plan\n\n- ship it", None)]);
        let c = fetch_content(&r, &mut t).unwrap();
        assert!(c.exported && c.extracted.format == Format::Markdown && c.extracted.text.contains("ship it"));
        let arg = header(&t.seen[0], "dropbox-api-arg").unwrap();
        assert_eq!(t.seen[0].url, "http://127.0.0.1:2/2/files/export");
        let arg: serde_json::Value = serde_json::from_str(arg).unwrap();
        assert_eq!(arg, serde_json::json!({ "path": "id:abc", "export_format": "markdown" }));
    }

    #[test]
    fn dropbox_errors_become_skips_or_failures() {
        let conflict = |tags: &str| reply(409, &format!(r#"{{"error_summary":"x/..","error":{tags}}}"#));
        let cases: Vec<(Result<HttpResponse, _>, &str)> = vec![
            (conflict(r#"{".tag":"path","path":{".tag":"restricted_content"}}"#), "restricted"),
            (conflict(r#"{".tag":"path","path":{".tag":"not_found"}}"#), "gone"),
            (conflict(r#"{".tag":"unsupported_file"}"#), "not_exportable"),
            (conflict(r#"{".tag":"retry_error"}"#), "transient"),
            (reply(429, r#"{"error":{"reason":{".tag":"too_many_requests"},"retry_after":7}}"#), "rate"),
            (reply(500, "oops"), "transient"),
        ];
        for (answer, want) in cases {
            let mut t = Scripted::new([answer]);
            let got = fetch_content(&request("a.txt", 5), &mut t).unwrap_err().error;
            let ok = match (&got, want) {
                (ContentError::Skipped(s), w) => s.reason() == w,
                (ContentError::Failed(Error::Transient(_)), "transient") => true,
                (ContentError::Failed(Error::RateLimited(7000)), "rate") => true,
                _ => false,
            };
            assert!(ok, "{want}: {got:?}");
        }
    }

    #[test]
    fn an_expired_token_is_refreshed_and_the_download_replayed() {
        let mut t = Scripted::new([
            reply(401, r#"{"error":{".tag":"expired_access_token"}}"#),
            reply(200, r#"{"access_token":"at2","expires_in":14400,"token_type":"bearer"}"#),
            file(200, b"fine", Some(4)),
        ]);
        let c = fetch_content(&request("a.md", 4), &mut t).unwrap();
        assert_eq!(c.extracted.text, "fine");
        assert_eq!(c.tokens.unwrap().access_token.expose(), "at2");
        assert_eq!(header(&t.seen[2], "authorization"), Some("Bearer at2"));
    }

    #[test]
    fn a_short_body_is_transient_and_a_long_one_too_large() {
        let mut t = Scripted::new([file(200, b"half", Some(8))]);
        let e = fetch_content(&request("a.txt", 8), &mut t).unwrap_err().error;
        assert!(matches!(e, ContentError::Failed(Error::Transient(_))), "{e:?}");
        let mut t = Scripted::new([Err(crate::http::TransportError::TooLarge { limit: 10 })]);
        let mut r = request("a.txt", 8);
        r.limits.max_download_bytes = Some(10);
        let e = fetch_content(&r, &mut t).unwrap_err().error;
        assert!(matches!(e, ContentError::Skipped(Skip::TooLarge { limit: 10, .. })), "{e:?}");
    }
}
