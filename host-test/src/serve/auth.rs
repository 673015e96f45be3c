//! Who may call what, read from axum's headers: the API token and the browser's OAuth cookie.
//! The rules themselves (constant-time comparison, the `__Host-` cookie, connect links) are the
//! web kit's, shared with the facade component ([`coco_web`]).

use axum::http::HeaderMap;

use crate::secret::Secret;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `Authorization: Bearer …` or Coco's `X-API-TOKEN`, compared in constant time.
pub fn has_token(headers: &HeaderMap, expected: &Secret) -> bool {
    coco_web::token::presented(header(headers, "authorization"), header(headers, "x-api-token"))
        .is_some_and(|presented| coco_web::token::matches(expected.expose(), presented))
}

/// The session cookie the browser sent back (any of its `Cookie` headers).
pub fn session_cookie(headers: &HeaderMap, https: bool) -> Option<&str> {
    coco_web::cookie::session(headers.get_all("cookie").iter().filter_map(|v| v.to_str().ok()), https)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_token_comes_from_either_header_and_must_match_exactly() {
        let t = Secret::new("admin-token-0123456789");
        assert!(has_token(&headers(&[("authorization", "Bearer admin-token-0123456789")]), &t));
        assert!(has_token(&headers(&[("x-api-token", "admin-token-0123456789")]), &t));
        assert!(!has_token(&headers(&[("x-api-token", "admin-token-012345678")]), &t));
        assert!(!has_token(&headers(&[("authorization", "Basic YWRtaW4=")]), &t));
        assert!(!has_token(&headers(&[]), &t));
        assert!(!has_token(&headers(&[("x-api-token", "")]), &Secret::new("")), "an empty token never matches");
    }

    #[test]
    fn cookies_are_read_by_name_from_every_cookie_header() {
        let h = headers(&[("cookie", "a=1; coco_dropbox_oauth=abc; b=2")]);
        assert_eq!(session_cookie(&h, false), Some("abc"));
        assert_eq!(session_cookie(&h, true), None);
        let h = headers(&[("cookie", "a=1"), ("cookie", "__Host-coco_dropbox_oauth=v")]);
        assert_eq!(session_cookie(&h, true), Some("v"));
    }
}
