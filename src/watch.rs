//! One `watch` step: a `files/list_folder/longpoll` on the notify endpoint, which blocks until
//! the cursor has changes or the timeout passes. The cursor is the credential (Dropbox's route is
//! `noauth`), so no token is sent or needed; the host calls `sync-page` when changes are reported.

use serde::Deserialize;

use crate::api::{self, Route};
use crate::error::Error;
use crate::http::{HttpRequest, Transport, MAX_ERROR_BODY_BYTES};

/// Real Dropbox's notify service (`wit/connector-info.json` publishes it for hosts).
pub const DROPBOX_NOTIFY: &str = "https://notify.dropboxapi.com";
/// Dropbox's bounds for `timeout` (seconds); it adds up to 90 s of jitter on top.
pub const MIN_TIMEOUT_SECS: u32 = 30;
pub const MAX_TIMEOUT_SECS: u32 = 480;
/// Dropbox's own default.
pub const DEFAULT_TIMEOUT_SECS: u32 = 30;
/// Jitter Dropbox may add to the timeout: a host should wait this much longer before giving up.
pub const DROPBOX_JITTER_SECS: u32 = 90;

/// The WIT `wait-request`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitRequest {
    /// A `list_folder` cursor whose listing has finished (`has_more = false`).
    pub cursor: String,
    /// 30..=480; none means 30.
    pub timeout_secs: Option<u32>,
    /// Base URL of Dropbox's notify service.
    pub notify: String,
}

/// The WIT `changes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// The cursor has changes: call `sync-page` with it.
    pub changes: bool,
    /// Seconds Dropbox asks us to wait before the next longpoll.
    pub backoff_secs: Option<u32>,
}

/// The timeout to send, or why the request is refused before any I/O.
pub fn effective_timeout(timeout: Option<u32>) -> Result<u32, Error> {
    match timeout {
        None => Ok(DEFAULT_TIMEOUT_SECS),
        Some(t @ MIN_TIMEOUT_SECS..=MAX_TIMEOUT_SECS) => Ok(t),
        Some(t) => Err(Error::InvalidInput(format!(
            "longpoll timeout {t} s is outside {MIN_TIMEOUT_SECS}..={MAX_TIMEOUT_SECS} (Dropbox's bounds)"
        ))),
    }
}

/// Build the longpoll request: JSON body, no `Authorization` header.
pub fn longpoll_request(req: &WaitRequest) -> Result<HttpRequest, Error> {
    let timeout = effective_timeout(req.timeout_secs)?;
    if req.cursor.is_empty() {
        return Err(Error::InvalidInput("longpoll cursor is empty".into()));
    }
    if req.cursor.chars().any(char::is_control) {
        return Err(Error::InvalidInput("longpoll cursor contains control characters".into()));
    }
    match url::Url::parse(&req.notify) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => return Err(Error::InvalidInput(format!("notify endpoint {:?} is not an http(s) URL", req.notify))),
    }
    let body = serde_json::json!({ "cursor": req.cursor, "timeout": timeout }).to_string();
    Ok(HttpRequest::post(format!("{}{}", req.notify.trim_end_matches('/'), Route::Longpoll.path()))
        .header("content-type", "application/json")
        .body(body)
        // The answer is a two-field object; anything large is not Dropbox.
        .max_response_bytes(MAX_ERROR_BODY_BYTES))
}

#[derive(Deserialize)]
struct LongpollResult {
    changes: bool,
    #[serde(default)]
    backoff: Option<u64>,
}

/// Read a longpoll answer. Dropbox has served it as `text/plain`, so the content type is not
/// checked: the body decides.
pub fn read_longpoll(resp: &crate::http::HttpResponse) -> Result<Changes, Error> {
    let body = api::check_rpc(Route::Longpoll, resp).map_err(|f| match f {
        api::Failure::Error(e) => e,
        // The route is noauth: a 401 cannot be about a token we did not send.
        api::Failure::ExpiredToken => Error::Api("files/list_folder/longpoll: unexpected 401".into()),
    })?;
    let r: LongpollResult = api::parse_json(Route::Longpoll, body)?;
    Ok(Changes { changes: r.changes, backoff_secs: r.backoff.map(|b| b.min(u64::from(u32::MAX)) as u32) })
}

/// Wait for changes on `req.cursor` (one request).
pub fn wait_for_changes<T: Transport>(req: &WaitRequest, transport: &mut T) -> Result<Changes, Error> {
    let request = longpoll_request(req)?;
    let resp = transport.send(&request).map_err(|e| api::transport_error(Route::Longpoll, e))?;
    read_longpoll(&resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::fake::{reply, Scripted};
    use crate::http::HttpResponse;

    fn request(timeout: Option<u32>) -> WaitRequest {
        WaitRequest {
            cursor: "AAE-cursor".into(),
            timeout_secs: timeout,
            notify: "https://notify.dropboxapi.com".into(),
        }
    }

    #[test]
    fn sends_cursor_and_timeout_without_a_token() {
        let mut t = Scripted::new([reply(200, r#"{"changes": true}"#)]);
        let c = wait_for_changes(&request(Some(120)), &mut t).unwrap();
        assert_eq!(c, Changes { changes: true, backoff_secs: None });
        let sent = &t.seen[0];
        assert_eq!(sent.url, "https://notify.dropboxapi.com/2/files/list_folder/longpoll");
        assert!(!sent.headers.iter().any(|(k, _)| *k == "authorization"), "longpoll is noauth");
        let body: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
        assert_eq!(body, serde_json::json!({ "cursor": "AAE-cursor", "timeout": 120 }));
    }

    #[test]
    fn backoff_is_reported_and_text_plain_bodies_are_read() {
        let resp = HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: br#"{"changes": false, "backoff": 60}"#.to_vec(),
        };
        assert_eq!(read_longpoll(&resp).unwrap(), Changes { changes: false, backoff_secs: Some(60) });
    }

    #[test]
    fn timeouts_outside_dropbox_bounds_fail_before_any_request() {
        for bad in [0, 29, 481] {
            let mut t = Scripted::offline();
            let e = wait_for_changes(&request(Some(bad)), &mut t).unwrap_err();
            assert!(matches!(e, Error::InvalidInput(_)), "{bad}: {e:?}");
            assert!(t.seen.is_empty());
        }
        let mut t = Scripted::new([reply(200, r#"{"changes": false}"#)]);
        wait_for_changes(&request(None), &mut t).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&t.seen[0].body).unwrap();
        assert_eq!(body["timeout"], 30);
        let empty = WaitRequest { cursor: String::new(), ..request(None) };
        assert!(matches!(wait_for_changes(&empty, &mut Scripted::offline()), Err(Error::InvalidInput(_))));
    }

    #[test]
    fn reset_rate_limits_and_server_errors_are_classified() {
        let reset = reply(409, r#"{"error_summary": "reset/..", "error": {".tag": "reset"}}"#);
        assert!(matches!(wait_for_changes(&request(None), &mut Scripted::new([reset])), Err(Error::CursorReset(_))));
        let limited = reply(429, r#"{"error": {"reason": {".tag": "too_many_requests"}, "retry_after": 7}}"#);
        assert_eq!(wait_for_changes(&request(None), &mut Scripted::new([limited])), Err(Error::RateLimited(7000)));
        let down = reply(503, "upstream down");
        assert!(matches!(wait_for_changes(&request(None), &mut Scripted::new([down])), Err(Error::Transient(_))));
        let garbage = reply(200, "<html>");
        assert!(matches!(wait_for_changes(&request(None), &mut Scripted::new([garbage])), Err(Error::Transient(_))));
        let bad = reply(400, "Error in call to API function: cursor invalid");
        assert!(matches!(wait_for_changes(&request(None), &mut Scripted::new([bad])), Err(Error::InvalidInput(_))));
    }
}
