//! Dropbox HTTP calls as data: how to build each request and how to classify each response.
//! No I/O here; `session.rs` sends what this builds.

use serde::Deserialize;

use crate::error::Error;
use crate::http::{HttpRequest, HttpResponse, TransportError};
use crate::types::RootInfo;

/// Default wait when a 429 carries neither `Retry-After` nor `retry_after` (the spec's default).
pub const DEFAULT_RETRY_AFTER_MS: u64 = 1_000;
/// Longest error text we quote from a response body.
const QUOTE_LIMIT: usize = 200;

/// Which call a response answers: error classes depend on it (a `path/not_found` on
/// `continue` means the cursor is dead; on `list_folder` it means the folder is missing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    ListFolder,
    ListFolderContinue,
    /// `files/list_folder/get_latest_cursor`: the cursor of "now", without entries.
    GetLatestCursor,
    GetCurrentAccount,
    Token,
    Revoke,
    /// `files/list_folder/longpoll`, on the notify endpoint, without a bearer token.
    Longpoll,
    /// `files/download` and `files/export`, on the content endpoint: the argument in the
    /// `Dropbox-API-Arg` header, the file's bytes in the body.
    Download,
    Export,
}

impl Route {
    pub fn path(self) -> &'static str {
        match self {
            Route::ListFolder => "/2/files/list_folder",
            Route::ListFolderContinue => "/2/files/list_folder/continue",
            Route::GetLatestCursor => "/2/files/list_folder/get_latest_cursor",
            Route::GetCurrentAccount => "/2/users/get_current_account",
            Route::Token => "/oauth2/token",
            Route::Revoke => "/2/auth/token/revoke",
            Route::Longpoll => "/2/files/list_folder/longpoll",
            Route::Download => "/2/files/download",
            Route::Export => "/2/files/export",
        }
    }

    pub fn name(self) -> &'static str {
        &self.path()[1..]
    }
}

/// An RPC call: JSON in, JSON out, bearer token, optional team-space root.
pub fn rpc_request(
    api_base: &str,
    route: Route,
    access_token: &str,
    json_body: String,
    path_root: Option<&str>,
) -> HttpRequest {
    let mut req = HttpRequest::post(format!("{api_base}{}", route.path()))
        .header("authorization", format!("Bearer {access_token}"))
        .header("content-type", "application/json")
        .body(json_body);
    if let Some(root) = path_root {
        let value = serde_json::json!({ ".tag": "root", "root": root }).to_string();
        req = req.header("dropbox-api-path-root", value);
    }
    req
}

/// What a failed Dropbox response means, before route-specific mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// 401 `expired_access_token`: refresh and replay once.
    ExpiredToken,
    /// Anything else, already classified.
    Error(Error),
}

/// Classify a transport failure.
pub fn transport_error(route: Route, e: TransportError) -> Error {
    match e {
        TransportError::Denied(m) => Error::InvalidInput(format!(
            "the host refused the request to {} ({m}); check the datasource's endpoints",
            route.name()
        )),
        TransportError::Failed(m) => Error::Transient(format!("{}: {m}", route.name())),
        // Retrying would read the same oversized answer again.
        TransportError::TooLarge { limit } => {
            Error::Api(format!("{}: the response is larger than the {limit}-byte limit", route.name()))
        }
    }
}

/// Check an RPC response: the body on 200, a classified failure otherwise.
pub fn check_rpc(route: Route, resp: &HttpResponse) -> Result<&[u8], Failure> {
    let status = resp.status;
    let body = resp.body.as_slice();
    let err = |e| Err(Failure::Error(e));
    match status {
        200 => Ok(body),
        400 => {
            err(Error::InvalidInput(format!("Dropbox rejected the {} request (400): {}", route.name(), quote(body))))
        }
        401 => {
            let tag = error_tags(body);
            if tag.starts_with("expired_access_token") {
                Err(Failure::ExpiredToken)
            } else {
                err(Error::ReauthRequired(format!(
                    "Dropbox refused the access token for {} (401 {})",
                    route.name(),
                    if tag.is_empty() { "unauthorized" } else { &tag }
                )))
            }
        }
        409 => err(route_conflict(route, body)),
        422 => match invalid_root(body) {
            Some(root) => err(Error::RootChanged(root)),
            None => err(Error::Api(format!("{}: 422 path root error {}", route.name(), tag_or_quote(body)))),
        },
        429 => err(Error::RateLimited(retry_after_ms(resp).unwrap_or(DEFAULT_RETRY_AFTER_MS))),
        503 if resp.header("retry-after").is_some() => {
            err(Error::RateLimited(retry_after_ms(resp).unwrap_or(DEFAULT_RETRY_AFTER_MS)))
        }
        500..=599 => err(Error::Transient(format!("{}: Dropbox answered {status}", route.name()))),
        _ => err(Error::Api(format!("{}: HTTP {status} {}", route.name(), tag_or_quote(body)))),
    }
}

/// 409: the route's own error union.
fn route_conflict(route: Route, body: &[u8]) -> Error {
    let tags = error_tags(body);
    match route {
        Route::ListFolderContinue | Route::Longpoll if tags == "reset" => {
            Error::CursorReset("Dropbox reset the cursor (409 reset)".into())
        }
        Route::ListFolderContinue if tags.starts_with("path/not_found") => {
            Error::CursorReset("the folder the cursor lists no longer exists (409 path/not_found)".into())
        }
        // The caller knows which path it asked for and fills it in.
        Route::ListFolder | Route::GetLatestCursor if tags.starts_with("path/not_found") => {
            Error::PathNotFound(String::new())
        }
        _ if tags.is_empty() => Error::Api(format!("{}: 409 {}", route.name(), quote(body))),
        _ => Error::Api(format!("{}: 409 {tags}", route.name())),
    }
}

/// The `.tag` chain of a Dropbox error envelope, e.g. `path/not_found`. Read from `error`,
/// never from `error_summary` (which carries random trailing dots).
pub fn error_tags(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Envelope {
        error: Option<serde_json::Value>,
    }
    let Ok(Envelope { error: Some(mut v) }) = serde_json::from_slice::<Envelope>(body) else {
        return String::new();
    };
    let mut tags = Vec::new();
    // A union nests its payload under the member named like its tag.
    for _ in 0..8 {
        let Some(tag) = v.get(".tag").and_then(|t| t.as_str()).map(str::to_owned) else {
            // `too_many_requests` nests under "reason" without a top-level tag.
            if let Some(reason) = v.get("reason") {
                v = reason.clone();
                continue;
            }
            break;
        };
        let next = v.get(&tag).cloned();
        tags.push(tag);
        match next {
            Some(n) if n.is_object() => v = n,
            _ => break,
        }
    }
    tags.join("/")
}

fn tag_or_quote(body: &[u8]) -> String {
    let tags = error_tags(body);
    if tags.is_empty() {
        quote(body)
    } else {
        tags
    }
}

/// A short, printable excerpt of a response body for error messages.
pub fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(QUOTE_LIMIT).collect();
    if text.chars().count() > QUOTE_LIMIT {
        out.push('…');
    }
    if out.trim().is_empty() {
        "(empty body)".into()
    } else {
        out
    }
}

/// `Retry-After` in decimal seconds (seen as "60.0"), else the JSON `retry_after`.
pub fn retry_after_ms(resp: &HttpResponse) -> Option<u64> {
    if let Some(secs) =
        resp.header("retry-after").and_then(|v| v.trim().parse::<f64>().ok()).filter(|s| s.is_finite() && *s >= 0.0)
    {
        return Some((secs * 1000.0).round() as u64);
    }
    let v: serde_json::Value = serde_json::from_slice(&resp.body).ok()?;
    let secs = v.get("error")?.get("retry_after")?.as_f64()?;
    (secs.is_finite() && secs >= 0.0).then(|| (secs * 1000.0).round() as u64)
}

/// 422 `invalid_root` carries the user's current `root_info`.
fn invalid_root(body: &[u8]) -> Option<RootInfo> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let err = v.get("error")?;
    if err.get(".tag")?.as_str()? != "invalid_root" {
        return None;
    }
    let root: RootInfoJson = serde_json::from_value(err.get("invalid_root")?.clone()).ok()?;
    Some(root.into())
}

/// Dropbox's `root_info` union.
#[derive(Deserialize)]
pub struct RootInfoJson {
    #[serde(rename = ".tag")]
    pub tag: String,
    pub root_namespace_id: String,
    pub home_namespace_id: String,
    #[serde(default)]
    pub home_path: Option<String>,
}

impl From<RootInfoJson> for RootInfo {
    fn from(r: RootInfoJson) -> Self {
        RootInfo {
            is_team: r.tag == "team",
            root_namespace_id: r.root_namespace_id,
            home_namespace_id: r.home_namespace_id,
            home_path: r.home_path,
        }
    }
}

/// Parse a 200 body, calling unreadable JSON transient (a truncated or garbled response). The
/// error names where parsing stopped, never the body's bytes or serde's quote of a value: a
/// token response carries the access token.
pub fn parse_json<'a, T: Deserialize<'a>>(route: Route, body: &'a [u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| unreadable(route, &e, body.len()))
}

/// Parse a large body with `parse`: the UTF-8 check runs once over the whole body instead of
/// once per string (serde_json's `from_str` trusts a `&str`).
pub fn parse_json_with<'a, T>(
    route: Route,
    body: &'a [u8],
    parse: impl FnOnce(&'a str) -> serde_json::Result<T>,
) -> Result<T, Error> {
    match std::str::from_utf8(body) {
        Ok(text) => parse(text).map_err(|e| unreadable(route, &e, body.len())),
        Err(e) => Err(Error::Transient(format!(
            "{}: unreadable response (not UTF-8 at byte {} of {})",
            route.name(),
            e.valid_up_to(),
            body.len()
        ))),
    }
}

fn unreadable(route: Route, e: &serde_json::Error, len: usize) -> Error {
    Error::Transient(format!(
        "{}: unreadable response ({:?} JSON error at line {} column {} of {} bytes)",
        route.name(),
        e.classify(),
        e.line(),
        e.column(),
        len
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn classify(route: Route, status: u16, headers: &[(&str, &str)], body: &str) -> Failure {
        check_rpc(route, &resp(status, headers, body)).unwrap_err()
    }

    #[test]
    fn nested_tags_are_read_from_error_not_summary() {
        let body = r#"{"error_summary":"path/not_found/..","error":{".tag":"path","path":{".tag":"not_found"}}}"#;
        assert_eq!(error_tags(body.as_bytes()), "path/not_found");
        assert_eq!(error_tags(b"not json"), "");
    }

    #[test]
    fn expired_token_asks_for_replay_other_401s_need_reauth() {
        let expired = r#"{"error_summary":"expired_access_token/","error":{".tag":"expired_access_token"}}"#;
        assert_eq!(classify(Route::ListFolder, 401, &[], expired), Failure::ExpiredToken);
        let invalid = r#"{"error":{".tag":"invalid_access_token"}}"#;
        assert!(matches!(
            classify(Route::ListFolder, 401, &[], invalid),
            Failure::Error(Error::ReauthRequired(m)) if m.contains("invalid_access_token")
        ));
    }

    #[test]
    fn continue_409_reset_and_not_found_reset_the_cursor() {
        let reset = r#"{"error_summary":"reset/...","error":{".tag":"reset"}}"#;
        assert!(matches!(classify(Route::ListFolderContinue, 409, &[], reset), Failure::Error(Error::CursorReset(_))));
        let gone = r#"{"error":{".tag":"path","path":{".tag":"not_found"}}}"#;
        assert!(matches!(classify(Route::ListFolderContinue, 409, &[], gone), Failure::Error(Error::CursorReset(_))));
        assert!(matches!(classify(Route::ListFolder, 409, &[], gone), Failure::Error(Error::PathNotFound(_))));
        let malformed = r#"{"error":{".tag":"path","path":{".tag":"malformed_path"}}}"#;
        assert!(matches!(
            classify(Route::ListFolder, 409, &[], malformed),
            Failure::Error(Error::Api(m)) if m.contains("path/malformed_path")
        ));
    }

    #[test]
    fn rate_limits_read_decimal_retry_after_then_json_then_default() {
        let f = classify(Route::ListFolder, 429, &[("Retry-After", "1.5")], "too_many_requests");
        assert_eq!(f, Failure::Error(Error::RateLimited(1500)));
        let json = r#"{"error":{"reason":{".tag":"too_many_requests"},"retry_after":300}}"#;
        assert_eq!(classify(Route::ListFolder, 429, &[], json), Failure::Error(Error::RateLimited(300_000)));
        assert_eq!(
            classify(Route::ListFolder, 429, &[("retry-after", "soon")], "plain text"),
            Failure::Error(Error::RateLimited(DEFAULT_RETRY_AFTER_MS))
        );
        assert_eq!(
            classify(Route::ListFolder, 503, &[("retry-after", "2")], ""),
            Failure::Error(Error::RateLimited(2000))
        );
    }

    #[test]
    fn server_errors_are_transient_bad_requests_are_not() {
        assert!(matches!(classify(Route::ListFolder, 502, &[], "<html>"), Failure::Error(Error::Transient(_))));
        assert!(matches!(
            classify(Route::ListFolderContinue, 400, &[], "Error in call to API function \"files/list_folder/continue\": Invalid \"cursor\" parameter"),
            Failure::Error(Error::InvalidInput(m)) if m.contains("Invalid \"cursor\"")
        ));
    }

    #[test]
    fn invalid_root_carries_the_current_root() {
        let body = r#"{"error_summary":"invalid_root/..","error":{".tag":"invalid_root","invalid_root":{".tag":"team","root_namespace_id":"77","home_namespace_id":"5","home_path":"/Franz"}}}"#;
        let Failure::Error(Error::RootChanged(root)) = classify(Route::ListFolder, 422, &[], body) else {
            panic!("expected root-changed");
        };
        assert!(root.is_team && root.needs_path_root());
        assert_eq!(root.root_namespace_id, "77");
        assert_eq!(root.home_path.as_deref(), Some("/Franz"));
    }

    #[test]
    fn quotes_are_short_and_printable() {
        let long = "x".repeat(500) + "\n\u{0}";
        let q = quote(long.as_bytes());
        assert_eq!(q.chars().count(), QUOTE_LIMIT + 1);
        assert_eq!(quote(b"  "), "(empty body)");
    }

    #[test]
    fn path_root_header_is_json() {
        let r = rpc_request("http://x", Route::ListFolder, "t", "{}".into(), Some("123"));
        let h = r.headers.iter().find(|(k, _)| *k == "dropbox-api-path-root").unwrap();
        assert_eq!(h.1, r#"{".tag":"root","root":"123"}"#);
    }
}
