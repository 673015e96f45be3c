//! Signed connect links: how a browser, which cannot send the API token, is let into
//! `/connect`. `POST /api/connect-links` (API token) mints one for a connector; it names that
//! connector, expires within ten minutes, and carries a nonce so a build with a store can bind
//! it to the first browser that opens it. The MAC key is the state secret, under a label of
//! its own, so a link is never mistaken for an OAuth state.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How long a link may be opened: the OAuth state's own lifetime.
pub const LINK_TTL_SECS: u64 = 600;

/// A link that checked out.
#[derive(Debug, PartialEq, Eq)]
pub struct Link {
    /// Names this link for single use.
    pub nonce: String,
    pub expires_at: u64,
}

fn mac(secret: &[u8], payload: &str) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(b"coco-dropbox facade connect link v1\0");
    m.update(payload.as_bytes());
    m
}

/// The link's ticket: `base64url("{expires_at}:{nonce}:{connector_id}") "." base64url(mac)`.
pub fn mint(secret: &[u8], connector_id: &str, expires_at: u64, nonce: &[u8]) -> String {
    let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    let payload = format!("{expires_at}:{nonce}:{connector_id}");
    let tag = mac(secret, &payload).finalize().into_bytes();
    format!("{}.{}", URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(tag))
}

/// The link, if `ticket` is ours, for `connector_id`, and not expired at `now`.
pub fn check(secret: &[u8], ticket: &str, connector_id: &str, now: u64) -> Option<Link> {
    let (payload, tag) = ticket.split_once('.')?;
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    mac(secret, &payload).verify_slice(&URL_SAFE_NO_PAD.decode(tag).ok()?).ok()?;
    let mut parts = payload.splitn(3, ':');
    let expires_at = parts.next()?.parse::<u64>().ok()?;
    let nonce = parts.next()?.to_string();
    (parts.next()? == connector_id && now < expires_at && !nonce.is_empty()).then_some(Link { nonce, expires_at })
}

/// `?link=…` of a query string, percent-decoding left aside (a ticket is base64url).
pub fn from_query(query: &str) -> Option<&str> {
    query.split('&').find_map(|p| p.strip_prefix("link=")).filter(|t| !t.is_empty())
}

/// Unix seconds as RFC 3339 (UTC), as `serve` shows expiries.
pub fn rfc3339(unix: u64) -> String {
    let (days, secs) = (unix / 86_400, unix % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"state-secret-0123456789";

    #[test]
    fn a_link_names_one_connector_and_expires() {
        let t = mint(KEY, "dropbox", 1_000, &[0xab; 16]);
        let link = check(KEY, &t, "dropbox", 999).unwrap();
        assert_eq!(link, Link { nonce: "ab".repeat(16), expires_at: 1_000 });
        assert!(check(KEY, &t, "dropbox", 1_000).is_none(), "expired");
        assert!(check(KEY, &t, "other", 999).is_none(), "another connector");
        assert!(check(b"another-secret-0123456789", &t, "dropbox", 999).is_none());
        let forged = mint(b"another-secret-0123456789", "dropbox", 5_000, &[1; 16]);
        assert!(check(KEY, &forged, "dropbox", 999).is_none());
        for garbage in ["", ".", "x.y", "garbage"] {
            assert!(check(KEY, garbage, "dropbox", 0).is_none(), "{garbage}");
        }
        // A connector id with a colon stays whole.
        let t = mint(KEY, "a:b", 1_000, &[1; 16]);
        assert!(check(KEY, &t, "a:b", 0).is_some() && check(KEY, &t, "b", 0).is_none());
    }

    #[test]
    fn the_ticket_is_read_from_the_query() {
        assert_eq!(from_query("a=1&link=abc.def&b=2"), Some("abc.def"));
        assert_eq!(from_query("link="), None);
        assert_eq!(from_query(""), None);
    }

    #[test]
    fn expiries_read_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_655_600), "2026-12-07T15:00:00Z");
    }
}
