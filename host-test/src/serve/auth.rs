//! Who may call what: the API token (constant-time), the browser's OAuth cookie, and signed
//! connect links that let a browser (which cannot send the token) start a connect flow.

use axum::http::HeaderMap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

/// `Authorization: Bearer …` or Coco's `X-API-TOKEN`, compared in constant time over SHA-256
/// digests (so the length does not leak either).
pub fn has_token(headers: &HeaderMap, expected: &Secret) -> bool {
    let presented = match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        Some(v) => match v.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => Some(t.trim()),
            _ => None,
        },
        None => headers.get("x-api-token").and_then(|v| v.to_str().ok()).map(str::trim),
    };
    let Some(presented) = presented.filter(|p| !p.is_empty()) else { return false };
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

/// `Set-Cookie` for a new flow (10 minutes, the state's lifetime), or clearing it.
pub fn set_cookie(https: bool, value: Option<&str>) -> String {
    let (value, age) = match value {
        Some(v) => (v, 600),
        None => ("", 0),
    };
    let secure = if https { "; Secure" } else { "" };
    format!("{}={value}; Max-Age={age}; Path=/; HttpOnly; SameSite=Lax{secure}", cookie_name(https))
}

/// The session cookie the browser sent back.
pub fn session_cookie(headers: &HeaderMap, https: bool) -> Option<String> {
    let want = cookie_name(https);
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == want)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn link_mac(key: &[u8], payload: &str) -> hmac::Hmac<Sha256> {
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(b"coco-host connect link v1\0");
    mac.update(payload.as_bytes());
    mac
}

/// A connect link's ticket: an expiry, a nonce (the link's single use) and the connector id,
/// MACed with a host secret.
pub fn connect_ticket(key: &[u8], connector_id: &str, expires_at: u64, nonce: &[u8; 16]) -> String {
    let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    let payload = format!("{expires_at}:{nonce}:{connector_id}");
    let tag = link_mac(key, &payload).finalize().into_bytes();
    format!("{}.{}", URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(tag))
}

/// A ticket that checked out: its nonce and expiry.
#[derive(Debug, PartialEq, Eq)]
pub struct Ticket {
    pub nonce: String,
    pub expires_at: u64,
}

/// The ticket, if it is ours, for this connector, and not expired at `now`.
pub fn ticket_valid(key: &[u8], ticket: &str, connector_id: &str, now: u64) -> Option<Ticket> {
    let (payload, tag) = ticket.split_once('.')?;
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    link_mac(key, &payload).verify_slice(&URL_SAFE_NO_PAD.decode(tag).ok()?).ok()?;
    let mut parts = payload.splitn(3, ':');
    let expires_at = parts.next()?.parse::<u64>().ok()?;
    let nonce = parts.next()?.to_string();
    (parts.next()? == connector_id && now < expires_at && !nonce.is_empty()).then_some(Ticket { nonce, expires_at })
}

/// A cookie as the store keeps it (a link's holder): its SHA-256, hex.
pub fn cookie_digest(cookie: &str) -> String {
    Sha256::digest(cookie.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
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
    fn cookies_are_read_by_name_and_set_http_only() {
        let h = headers(&[("cookie", "a=1; coco_dropbox_oauth=abc; b=2")]);
        assert_eq!(session_cookie(&h, false).as_deref(), Some("abc"));
        assert_eq!(session_cookie(&h, true), None);
        let set = set_cookie(true, Some("v"));
        assert!(set.starts_with("__Host-coco_dropbox_oauth=v;") && set.contains("HttpOnly") && set.contains("Secure"));
        assert!(set_cookie(false, None).contains("Max-Age=0"));
    }

    #[test]
    fn connect_links_expire_and_name_one_connector() {
        let key = b"state-secret-of-the-host-0123456";
        let t = connect_ticket(key, "dropbox", 1_000, &[0xab; 16]);
        assert_eq!(ticket_valid(key, &t, "dropbox", 999), Some(Ticket { nonce: "ab".repeat(16), expires_at: 1_000 }));
        assert!(ticket_valid(key, &t, "dropbox", 1_000).is_none(), "expired");
        assert!(ticket_valid(key, &t, "other", 999).is_none(), "another connector");
        assert!(ticket_valid(b"another-key-of-sufficient-length", &t, "dropbox", 999).is_none());
        let forged = connect_ticket(b"another-key-of-sufficient-length", "dropbox", 5_000, &[1; 16]);
        assert!(ticket_valid(key, &forged, "dropbox", 999).is_none());
        assert!(ticket_valid(key, "garbage", "dropbox", 0).is_none());
    }
}
