//! Who may call what, read from the facade's request: the API token for non-browser routes and
//! the cookie that binds an OAuth flow to the browser that started it. The rules themselves
//! are the web kit's, shared with `coco-host serve` ([`coco_web`]).

use super::Incoming;
use crate::secret::Secret;

pub use coco_web::cookie::set as set_cookie;

/// The token the caller presented: `Authorization: Bearer …` or Coco's `X-API-TOKEN`.
pub fn presented_token<'a>(req: &'a Incoming<'_>) -> Option<&'a str> {
    coco_web::token::presented(req.header("authorization"), req.header("x-api-token"))
}

/// Equal in constant time (over SHA-256 digests, so lengths do not leak either).
pub fn token_matches(expected: &Secret, presented: &str) -> bool {
    coco_web::token::matches(expected.expose(), presented)
}

/// The session cookie the browser sent back (any of its `Cookie` headers). Over https only the
/// `__Host-` cookie counts: an unprefixed one could have been planted by a sibling host or over
/// plain http.
pub fn session_cookie<'a>(req: &'a Incoming<'_>, https: bool) -> Option<&'a str> {
    coco_web::cookie::session(
        req.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("cookie")).map(|(_, v)| v.as_str()),
        https,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Incoming<'static> {
        let headers: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Incoming { method: "GET", path: "/", query: "", headers: Box::leak(headers.into_boxed_slice()), body: b"" }
    }

    #[test]
    fn tokens_from_either_header_compared_exactly() {
        let t = Secret::new("tok-123");
        assert_eq!(presented_token(&req(&[("authorization", "Bearer tok-123")])), Some("tok-123"));
        assert_eq!(presented_token(&req(&[("authorization", "bearer tok-123")])), Some("tok-123"));
        assert_eq!(presented_token(&req(&[("authorization", "Basic dG9r")])), None);
        assert_eq!(presented_token(&req(&[("x-api-token", "tok-123")])), Some("tok-123"));
        assert_eq!(presented_token(&req(&[])), None);
        assert!(token_matches(&t, "tok-123"));
        assert!(!token_matches(&t, "tok-12"));
        assert!(!token_matches(&t, "tok-1234"));
        assert!(!token_matches(&t, ""));
    }

    #[test]
    fn cookies_are_http_only_lax_and_host_prefixed_over_https() {
        let c = set_cookie(true, Some("v"));
        assert!(c.starts_with("__Host-coco_dropbox_oauth=v;") && c.contains("HttpOnly") && c.contains("SameSite=Lax"));
        assert!(c.contains("; Secure") && c.contains("Path=/") && !c.contains("Domain"));
        assert!(!set_cookie(false, Some("v")).contains("Secure"));
        assert!(set_cookie(false, None).contains("Max-Age=0"));
        let r = req(&[("cookie", "a=b; coco_dropbox_oauth=abc; c=d")]);
        assert_eq!(session_cookie(&r, false), Some("abc"));
        assert_eq!(session_cookie(&r, true), None, "over https only the __Host- cookie counts");
        let r = req(&[("cookie", "coco_dropbox_oauth=planted; __Host-coco_dropbox_oauth=real")]);
        assert_eq!(session_cookie(&r, true), Some("real"));
        let r = req(&[("cookie", "coco_dropbox_oauth=; x=y")]);
        assert_eq!(session_cookie(&r, false), None);
    }
}
