//! Who may call what: the API token for non-browser routes (constant-time), and the cookie
//! that binds an OAuth flow to the browser that started it.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Incoming;
use crate::secret::Secret;

/// The token the caller presented: `Authorization: Bearer …` or Coco's `X-API-TOKEN`.
pub fn presented_token<'a>(req: &'a Incoming<'_>) -> Option<&'a str> {
    if let Some(v) = req.header("authorization") {
        let (scheme, token) = v.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim());
    }
    req.header("x-api-token").map(str::trim)
}

/// Equal in constant time (over SHA-256 digests, so lengths do not leak either).
pub fn token_matches(expected: &Secret, presented: &str) -> bool {
    let a = Sha256::digest(expected.expose().as_bytes());
    let b = Sha256::digest(presented.as_bytes());
    bool::from(a.ct_eq(&b))
}

/// The session cookie's name: `__Host-` prefixed (Secure, host-only, Path=/) over https.
pub fn cookie_name(https: bool) -> &'static str {
    if https {
        "__Host-coco_dropbox_oauth"
    } else {
        "coco_dropbox_oauth"
    }
}

/// `Set-Cookie` for a new flow (10 minutes, the state's lifetime), or to clear it (`value` None).
pub fn set_cookie(https: bool, value: Option<&str>) -> String {
    let (value, age) = match value {
        Some(v) => (v, 600),
        None => ("", 0),
    };
    let secure = if https { "; Secure" } else { "" };
    format!("{}={value}; Max-Age={age}; Path=/; HttpOnly; SameSite=Lax{secure}", cookie_name(https))
}

/// The session cookie the browser sent back. Over https only the `__Host-` cookie counts: an
/// unprefixed one could have been planted by a sibling host or over plain http.
pub fn session_cookie<'a>(req: &'a Incoming<'_>, https: bool) -> Option<&'a str> {
    let header = req.header("cookie")?;
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == cookie_name(https))
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
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
