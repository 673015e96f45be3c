//! One `sync-page` step: refresh the token if due, fetch ONE list_folder page, map it.

use serde::Serialize;

use crate::api::{self, Route};
use crate::error::Error;
use crate::http::Transport;
use crate::mapping::{self, MapContext};
use crate::session::{Session, DEFAULT_REFRESH_MARGIN_SECS};
use crate::types::{PageRequest, PageResult, SyncFailure};

/// Dropbox's maximum (and our default) `limit`.
pub const MAX_PAGE_LIMIT: u32 = 2000;

/// Normalise the configured folder: "" and "/" mean the root (Dropbox wants ""), a trailing
/// slash is dropped, a leading one added. `id:`/`ns:` paths pass through.
pub fn normalize_path(path: &str) -> Result<String, Error> {
    if path.chars().any(char::is_control) {
        return Err(Error::InvalidInput(format!("path {path:?} contains control characters")));
    }
    if path.starts_with("id:") || path.starts_with("ns:") {
        return Ok(path.trim_end_matches('/').to_string());
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if trimmed.contains("//") {
        return Err(Error::InvalidInput(format!("path {path:?} has an empty component")));
    }
    Ok(if trimmed.starts_with('/') { trimmed.to_string() } else { format!("/{trimmed}") })
}

fn effective_limit(limit: Option<u32>) -> Result<u32, Error> {
    match limit {
        None => Ok(MAX_PAGE_LIMIT),
        Some(n @ 1..=MAX_PAGE_LIMIT) => Ok(n),
        Some(n) => Err(Error::InvalidInput(format!("page limit {n} is outside 1..={MAX_PAGE_LIMIT}"))),
    }
}

fn check_endpoint(name: &str, value: &str) -> Result<(), Error> {
    match url::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err(Error::InvalidInput(format!("{name} endpoint {value:?} is not an http(s) URL"))),
    }
}

/// Everything that can be checked before any request is made.
fn validate(req: &PageRequest) -> Result<(), Error> {
    let missing = |what: &str| Err(Error::InvalidInput(format!("{what} is empty")));
    if req.datasource_id.is_empty() {
        return missing("datasource id");
    }
    if req.app.client_id.is_empty() {
        return missing("client_id");
    }
    if req.app.client_secret.is_empty() {
        return missing("client_secret");
    }
    if req.tokens.refresh_token.is_empty() {
        return missing("refresh_token");
    }
    if matches!(&req.cursor, Some(c) if c.trim().is_empty()) {
        return missing("cursor");
    }
    check_endpoint("api", &req.endpoints.api)?;
    check_endpoint("authorize", &req.endpoints.authorize)?;
    Ok(())
}

#[derive(Serialize)]
struct ListFolderArg<'a> {
    path: &'a str,
    recursive: bool,
    limit: u32,
    include_mounted_folders: bool,
    include_non_downloadable_files: bool,
}

#[derive(Serialize)]
struct ContinueArg<'a> {
    cursor: &'a str,
}

/// Run one page. Failures carry any tokens refreshed before the failure.
pub fn sync_page<T: Transport>(req: &PageRequest, transport: &mut T) -> Result<PageResult, Box<SyncFailure>> {
    run(req, transport, Call::Page)
}

/// Take the cursor of "now" for the request's folder (`get_latest_cursor`): a result with no
/// documents. Failures carry any tokens refreshed before the failure.
pub fn latest_cursor<T: Transport>(req: &PageRequest, transport: &mut T) -> Result<PageResult, Box<SyncFailure>> {
    run(req, transport, Call::LatestCursor)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    Page,
    LatestCursor,
}

fn run<T: Transport>(req: &PageRequest, transport: &mut T, call: Call) -> Result<PageResult, Box<SyncFailure>> {
    let fail_early = |error| Box::new(SyncFailure { error, tokens: None, stats: Default::default() });
    validate(req).map_err(fail_early)?;
    if call == Call::LatestCursor && req.cursor.is_some() {
        return Err(fail_early(Error::InvalidInput("latest-cursor takes no cursor".into())));
    }
    let limit = effective_limit(req.options.page_limit).map_err(fail_early)?;
    let path = normalize_path(&req.options.path).map_err(fail_early)?;

    let mut session = Session::new(transport, &req.endpoints, &req.app, req.tokens.clone(), req.now);
    if let Some(n) = req.options.max_page_bytes {
        session.max_page_bytes = n as usize;
    }
    let outcome = fetch_and_map(req, &mut session, &path, limit, call);
    let tokens = session.refreshed_tokens();
    let mut stats = session.stats;
    match outcome {
        Ok((mut result, entries, skipped)) => {
            stats.entries = entries;
            stats.skipped = skipped;
            result.tokens = tokens;
            result.stats = stats;
            Ok(result)
        }
        Err(error) => Err(Box::new(SyncFailure { error, tokens, stats })),
    }
}

fn fetch_and_map<T: Transport>(
    req: &PageRequest,
    session: &mut Session<'_, T>,
    path: &str,
    limit: u32,
    call: Call,
) -> Result<(PageResult, u32, u32), Error> {
    let margin = req.options.refresh_margin_secs.map_or(DEFAULT_REFRESH_MARGIN_SECS, u64::from);
    session.ensure_fresh(margin)?;
    let path_root = req.options.root_info.as_ref().and_then(|r| r.path_root());
    let list_arg = || {
        serde_json::to_string(&ListFolderArg {
            path,
            recursive: req.options.recursive,
            limit,
            include_mounted_folders: true,
            include_non_downloadable_files: true,
        })
    };
    let (route, body) = match (&req.cursor, call) {
        (_, Call::LatestCursor) => (Route::GetLatestCursor, list_arg()),
        (None, Call::Page) => (Route::ListFolder, list_arg()),
        (Some(cursor), Call::Page) => (Route::ListFolderContinue, serde_json::to_string(&ContinueArg { cursor })),
    };
    let body = body.map_err(|e| Error::InvalidInput(format!("cannot encode request: {e}")))?;
    let bytes = session.rpc(route, &body, path_root).map_err(|e| match e {
        Error::PathNotFound(_) => Error::PathNotFound(if path.is_empty() { "/".into() } else { path.into() }),
        other => other,
    })?;
    if call == Call::LatestCursor {
        #[derive(serde::Deserialize)]
        struct Latest {
            cursor: String,
        }
        let latest: Latest = api::parse_json(route, &bytes)?;
        if latest.cursor.is_empty() {
            return Err(Error::Transient(format!("{}: response has no cursor", route.name())));
        }
        let result = PageResult {
            documents: Default::default(),
            deletes: Vec::new(),
            cursor: latest.cursor,
            has_more: false,
            tokens: None,
            stats: Default::default(),
        };
        return Ok((result, 0, 0));
    }
    let web_base = req.endpoints.authorize.trim_end_matches('/');
    let ctx = MapContext {
        datasource_id: &req.datasource_id,
        datasource_name: &req.datasource_name,
        owner_id: req.owner_id.as_deref(),
        batch_number: &req.batch_number,
        web_base,
    };
    let listing = api::parse_json_with(route, &bytes, |text| mapping::map_listing(&ctx, text))?;
    if listing.cursor.is_empty() {
        return Err(Error::Transient(format!("{route:?}: response has no cursor")));
    }
    let mapped = listing.page;
    Ok((
        PageResult {
            documents: mapped.documents,
            deletes: mapped.deletes,
            cursor: listing.cursor.into_owned(),
            has_more: listing.has_more,
            tokens: None,
            stats: Default::default(),
        },
        listing.entries,
        mapped.skipped,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::fake::{self, Scripted};
    use crate::http::{HttpRequest, HttpResponse, TransportError};
    use crate::secret::Secret;
    use crate::types::{AppCredentials, Endpoints, RootInfo, SyncOptions, Tokens};

    fn ok(status: u16, body: &str) -> Result<HttpResponse, TransportError> {
        fake::reply(status, body)
    }

    fn request(cursor: Option<&str>, expires_at: u64) -> PageRequest {
        PageRequest {
            datasource_id: "ds".into(),
            datasource_name: "Franz's Dropbox".into(),
            owner_id: None,
            app: AppCredentials { client_id: "k".into(), client_secret: Secret::new("s") },
            tokens: Tokens {
                access_token: Secret::new("old-access"),
                expires_at,
                refresh_token: Secret::new("refresh"),
            },
            cursor: cursor.map(str::to_string),
            options: SyncOptions { path: "/Docs/".into(), ..Default::default() },
            batch_number: "b".into(),
            now: 10_000,
            endpoints: Endpoints::single("http://127.0.0.1:1"),
        }
    }

    const PAGE: &str = r#"{"entries":[{".tag":"file","name":"a.pdf","id":"id:1","path_lower":"/docs/a.pdf","path_display":"/Docs/a.pdf"}],"cursor":"C2","has_more":false}"#;
    const TOKEN: &str = r#"{"access_token":"new-access","expires_in":14400,"token_type":"bearer"}"#;

    fn header<'a>(r: &'a HttpRequest, name: &str) -> Option<&'a str> {
        r.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn fresh_token_one_request_normalised_path() {
        let mut t = Scripted::new([ok(200, PAGE)]);
        let r = sync_page(&request(None, 20_000), &mut t).unwrap();
        assert_eq!(t.seen.len(), 1);
        let body: serde_json::Value = serde_json::from_slice(&t.seen[0].body).unwrap();
        assert_eq!(body["path"], "/Docs");
        assert_eq!(body["limit"], 2000);
        assert_eq!(body["recursive"], true);
        assert!(t.seen[0].url.ends_with("/2/files/list_folder"));
        assert_eq!(r.cursor, "C2");
        assert!(!r.has_more && r.tokens.is_none());
        assert_eq!(r.stats.requests, 1);
        assert_eq!(r.documents.len(), 1);
    }

    #[test]
    fn refreshes_within_margin_before_listing() {
        let mut t = Scripted::new([ok(200, TOKEN), ok(200, PAGE)]);
        let r = sync_page(&request(Some("C1"), 10_200), &mut t).unwrap();
        assert!(t.seen[0].url.ends_with("/oauth2/token"));
        assert_eq!(header(&t.seen[1], "authorization"), Some("Bearer new-access"));
        let tokens = r.tokens.unwrap();
        assert_eq!(tokens.refresh_token.expose(), "refresh");
        assert_eq!(tokens.expires_at, 10_000 + 14_400);
        assert_eq!(r.stats.refreshes, 1);
    }

    #[test]
    fn expired_401_refreshes_once_and_replays_the_same_body() {
        let expired = r#"{"error":{".tag":"expired_access_token"}}"#;
        let mut t = Scripted::new([ok(401, expired), ok(200, TOKEN), ok(200, PAGE)]);
        let r = sync_page(&request(Some("C1"), 99_999), &mut t).unwrap();
        assert_eq!(t.seen.len(), 3);
        assert_eq!(t.seen[0].body, t.seen[2].body);
        assert_eq!(header(&t.seen[2], "authorization"), Some("Bearer new-access"));
        assert_eq!(r.stats.refreshes, 1);
        // A second expiry in a row is not replayed again.
        let mut t = Scripted::new([ok(401, expired), ok(200, TOKEN), ok(401, expired)]);
        let f = sync_page(&request(Some("C1"), 99_999), &mut t).unwrap_err();
        assert!(matches!(f.error, Error::Transient(_)));
        assert!(f.tokens.is_some(), "the refreshed token survives the failure");
    }

    #[test]
    fn invalid_grant_on_refresh_requires_reauth() {
        let mut t = Scripted::new([ok(400, r#"{"error":"invalid_grant"}"#)]);
        let f = sync_page(&request(None, 0), &mut t).unwrap_err();
        assert!(matches!(f.error, Error::ReauthRequired(_)));
    }

    #[test]
    fn latest_cursor_sends_the_listing_argument_and_returns_no_documents() {
        let mut t = Scripted::new([ok(200, r#"{"cursor":"LATEST"}"#)]);
        let mut req = request(None, 20_000);
        req.options.recursive = false;
        let r = latest_cursor(&req, &mut t).unwrap();
        assert!(t.seen[0].url.ends_with("/2/files/list_folder/get_latest_cursor"));
        let body: serde_json::Value = serde_json::from_slice(&t.seen[0].body).unwrap();
        assert_eq!((body["path"].as_str(), body["recursive"].as_bool()), (Some("/Docs"), Some(false)));
        assert_eq!(r.cursor, "LATEST");
        assert!(r.documents.is_empty() && !r.has_more);
        // It starts from nothing: a cursor is refused before any request.
        let mut t = Scripted::offline();
        let f = latest_cursor(&request(Some("C1"), 20_000), &mut t).unwrap_err();
        assert!(matches!(f.error, Error::InvalidInput(_)));
        // A missing folder is named.
        let gone = r#"{"error":{".tag":"path","path":{".tag":"not_found"}}}"#;
        let mut t = Scripted::new([ok(409, gone)]);
        let f = latest_cursor(&request(None, 20_000), &mut t).unwrap_err();
        assert!(matches!(f.error, Error::PathNotFound(p) if p == "/Docs"));
    }

    #[test]
    fn bad_input_fails_before_any_request() {
        let mut t = Scripted::offline();
        let mut r = request(Some("  "), 99_999);
        assert!(matches!(sync_page(&r, &mut t).unwrap_err().error, Error::InvalidInput(m) if m.contains("cursor")));
        r.cursor = None;
        r.options.page_limit = Some(5000);
        assert!(matches!(sync_page(&r, &mut t).unwrap_err().error, Error::InvalidInput(m) if m.contains("5000")));
        r.options.page_limit = Some(0);
        assert!(matches!(sync_page(&r, &mut t).unwrap_err().error, Error::InvalidInput(m) if m.contains("outside")));
        r.options.page_limit = None;
        r.endpoints.api = "not a url".into();
        assert!(
            matches!(sync_page(&r, &mut t).unwrap_err().error, Error::InvalidInput(m) if m.contains("api endpoint"))
        );
        assert!(t.seen.is_empty());
    }

    #[test]
    fn unreadable_bodies_and_dead_connections_are_transient() {
        for answer in [ok(200, "<html>oops"), ok(200, r#"{"entries":[],"#), Err(TransportError::Failed("reset".into()))]
        {
            let mut t = Scripted::new([answer]);
            let f = sync_page(&request(Some("C"), 99_999), &mut t).unwrap_err();
            assert!(matches!(f.error, Error::Transient(_)), "{:?}", f.error);
        }
    }

    #[test]
    fn missing_configured_folder_is_named() {
        let gone = r#"{"error":{".tag":"path","path":{".tag":"not_found"}}}"#;
        let mut t = Scripted::new([ok(409, gone)]);
        let f = sync_page(&request(None, 99_999), &mut t).unwrap_err();
        assert_eq!(f.error, Error::PathNotFound("/Docs".into()));
    }

    #[test]
    fn the_component_decides_the_path_root_from_root_info() {
        let team = RootInfo {
            is_team: true,
            root_namespace_id: "42".into(),
            home_namespace_id: "7".into(),
            home_path: Some("/Franz".into()),
        };
        let user =
            RootInfo { is_team: false, root_namespace_id: "7".into(), home_namespace_id: "7".into(), home_path: None };
        // A team member in a team space without one: the same id, or no root_info at all.
        let team_home_only = RootInfo { root_namespace_id: "7".into(), ..team.clone() };
        for (root_info, want) in [
            (Some(team), Some(r#"{".tag":"root","root":"42"}"#)),
            (Some(user), None),
            (Some(team_home_only), None),
            (None, None),
        ] {
            let mut t = Scripted::new([ok(200, PAGE)]);
            let mut r = request(Some("C"), 99_999);
            r.options.root_info = root_info.clone();
            sync_page(&r, &mut t).unwrap();
            assert_eq!(header(&t.seen[0], "dropbox-api-path-root"), want, "{root_info:?}");
        }
    }

    #[test]
    fn path_normalisation() {
        for (input, want) in [
            ("", ""),
            ("/", ""),
            ("///", ""),
            ("Docs", "/Docs"),
            ("/Docs/", "/Docs"),
            ("/a b/c", "/a b/c"),
            ("id:abc", "id:abc"),
        ] {
            assert_eq!(normalize_path(input).unwrap(), want, "{input:?}");
        }
        assert!(normalize_path("/a//b").is_err());
        assert!(normalize_path("/a\nb").is_err());
    }
}
