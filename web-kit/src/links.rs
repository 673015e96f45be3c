//! Signed connect links: how a browser, which cannot send the API token, is let into a
//! connect flow. An API client mints one for a connector; it names that connector, expires
//! within ten minutes, and carries a nonce so a surface with a store can bind it to the first
//! browser that opens it. The MAC key is the surface's state secret, under a label of its own,
//! so a ticket is never mistaken for an OAuth state.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::encode::{base64_url, from_base64_url, hex};

/// How long a link may be opened: the OAuth state's own lifetime.
pub const LINK_TTL_SECS: u64 = 600;

/// A ticket that checked out.
#[derive(Debug, PartialEq, Eq)]
pub struct Link {
    /// Names this link for single use (hex).
    pub nonce: String,
    pub expires_at: u64,
}

fn mac(secret: &[u8], payload: &str) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(b"coco-dropbox connect link v1\0");
    m.update(payload.as_bytes());
    m
}

/// The ticket: `base64url("{expires_at}:{hex nonce}:{connector_id}") "." base64url(mac)`.
pub fn mint(secret: &[u8], connector_id: &str, expires_at: u64, nonce: &[u8]) -> String {
    let payload = format!("{expires_at}:{}:{connector_id}", hex(nonce));
    let tag = mac(secret, &payload).finalize().into_bytes();
    format!("{}.{}", base64_url(payload.as_bytes()), base64_url(&tag))
}

/// The link, if `ticket` is ours, for `connector_id`, and not expired at `now`.
pub fn check(secret: &[u8], ticket: &str, connector_id: &str, now: u64) -> Option<Link> {
    let (payload, tag) = ticket.split_once('.')?;
    let payload = String::from_utf8(from_base64_url(payload)?).ok()?;
    mac(secret, &payload).verify_slice(&from_base64_url(tag)?).ok()?;
    let mut parts = payload.splitn(3, ':');
    let expires_at = parts.next()?.parse::<u64>().ok()?;
    let nonce = parts.next()?.to_string();
    (parts.next()? == connector_id && now < expires_at && !nonce.is_empty()).then_some(Link { nonce, expires_at })
}

/// `link=…` of a query string (a ticket is base64url: nothing to percent-decode).
pub fn from_query(query: &str) -> Option<&str> {
    query.split('&').find_map(|p| p.strip_prefix("link=")).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_expire_name_one_connector_and_cannot_be_forged() {
        let key = b"state-secret-of-the-host-0123456";
        let t = mint(key, "dropbox", 1_000, &[0xab; 16]);
        assert_eq!(check(key, &t, "dropbox", 999), Some(Link { nonce: "ab".repeat(16), expires_at: 1_000 }));
        assert!(check(key, &t, "dropbox", 1_000).is_none(), "expired");
        assert!(check(key, &t, "other", 999).is_none(), "another connector");
        assert!(check(b"another-key-of-sufficient-length", &t, "dropbox", 999).is_none());
        let forged = mint(b"another-key-of-sufficient-length", "dropbox", 5_000, &[1; 16]);
        assert!(check(key, &forged, "dropbox", 999).is_none());
        for garbage in ["", ".", "x.y", "garbage"] {
            assert!(check(key, garbage, "dropbox", 0).is_none(), "{garbage}");
        }
        // A connector id with a colon stays whole.
        let t = mint(key, "a:b", 1_000, &[1; 16]);
        assert!(check(key, &t, "a:b", 0).is_some() && check(key, &t, "b", 0).is_none());
        assert!(check(key, &mint(key, "dropbox", 1_000, &[]), "dropbox", 0).is_none(), "a nonce is required");
        assert_eq!(from_query("a=1&link=abc.def"), Some("abc.def"));
        assert_eq!(from_query("link="), None);
    }
}
