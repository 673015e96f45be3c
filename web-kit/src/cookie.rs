//! The cookie that binds an OAuth flow to the browser that started it: HttpOnly, SameSite=Lax,
//! ten minutes (the OAuth state's lifetime), and `__Host-` prefixed over https (Secure,
//! host-only, `Path=/`).

use sha2::{Digest, Sha256};

/// The cookie's lifetime: the OAuth state's.
pub const MAX_AGE_SECS: u64 = 600;

/// The cookie's name: `__Host-` prefixed over https.
pub fn name(https: bool) -> &'static str {
    if https {
        "__Host-coco_dropbox_oauth"
    } else {
        "coco_dropbox_oauth"
    }
}

/// `Set-Cookie` for a new flow, or to clear the cookie (`value` None).
pub fn set(https: bool, value: Option<&str>) -> String {
    let (value, age) = match value {
        Some(v) => (v, MAX_AGE_SECS),
        None => ("", 0),
    };
    let secure = if https { "; Secure" } else { "" };
    format!("{}={value}; Max-Age={age}; Path=/; HttpOnly; SameSite=Lax{secure}", name(https))
}

/// The session cookie a browser sent back, from every `Cookie` header of the request. Over
/// https only the `__Host-` cookie counts: an unprefixed one could have been planted by a
/// sibling host or over plain http. An empty value is none.
pub fn session<'a>(cookie_headers: impl IntoIterator<Item = &'a str>, https: bool) -> Option<&'a str> {
    let want = name(https);
    cookie_headers
        .into_iter()
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == want)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// A cookie as a store keeps it (the holder a connect link is bound to): its SHA-256, hex.
pub fn digest(cookie: &str) -> String {
    crate::encode::hex(&Sha256::digest(cookie.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_http_only_lax_and_host_prefixed_over_https() {
        let c = set(true, Some("v"));
        assert!(c.starts_with("__Host-coco_dropbox_oauth=v;") && c.contains("HttpOnly") && c.contains("SameSite=Lax"));
        assert!(c.contains("; Secure") && c.contains("Path=/") && c.contains("Max-Age=600") && !c.contains("Domain"));
        assert!(!set(false, Some("v")).contains("Secure"));
        assert!(set(false, None).contains("Max-Age=0"));
    }

    #[test]
    fn the_session_cookie_is_read_by_name_from_every_header() {
        assert_eq!(session(["a=b; coco_dropbox_oauth=abc; c=d"], false), Some("abc"));
        assert_eq!(session(["a=b; coco_dropbox_oauth=abc"], true), None, "over https only __Host- counts");
        assert_eq!(session(["coco_dropbox_oauth=planted; __Host-coco_dropbox_oauth=real"], true), Some("real"));
        assert_eq!(session(["a=b", "coco_dropbox_oauth=second"], false), Some("second"), "any Cookie header");
        assert_eq!(session(["coco_dropbox_oauth=; x=y"], false), None);
        assert_eq!(session([], false), None);
        assert_eq!(digest("abc").len(), 64);
    }
}
