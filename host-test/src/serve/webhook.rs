//! Dropbox webhooks, as data: the signature check and the accounts a notification names.

use hmac::{KeyInit, Mac};
use sha2::Sha256;

/// True if `signature` (hex, as in `X-Dropbox-Signature`) is the HMAC-SHA256 of `body` under
/// `app_secret`. The comparison is constant time (`Mac::verify_slice`).
pub fn signature_valid(app_secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Some(tag) = hex_decode(signature.trim()) else { return false };
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(app_secret).expect("any key length");
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

/// The account ids in `list_folder.accounts` (the legacy `delta.users` carries no account id
/// and is ignored). A body without them names no account.
pub fn changed_accounts(body: &[u8]) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct Notification {
        #[serde(default)]
        list_folder: Option<ListFolder>,
    }
    #[derive(serde::Deserialize)]
    struct ListFolder {
        #[serde(default)]
        accounts: Vec<String>,
    }
    let n: Notification = serde_json::from_slice(body).map_err(|e| format!("not a Dropbox notification: {e}"))?;
    Ok(n.list_folder.map(|l| l.accounts).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap();
        mac.update(body);
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn only_the_app_secrets_signature_of_these_exact_bytes_passes() {
        let body = br#"{"list_folder": {"accounts": ["dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc"]}, "delta": {"users": [12345]}}"#;
        let good = sign(b"app-secret", body);
        assert!(signature_valid(b"app-secret", body, &good));
        assert!(signature_valid(b"app-secret", body, &good.to_uppercase()), "hex case does not matter");
        assert!(!signature_valid(b"other-secret", body, &good));
        let mut tampered = body.to_vec();
        tampered[30] ^= 1;
        assert!(!signature_valid(b"app-secret", &tampered, &good));
        assert!(!signature_valid(b"app-secret", body, &good[..62]));
        assert!(!signature_valid(b"app-secret", body, ""));
        assert!(!signature_valid(b"app-secret", body, &"zz".repeat(32)));
        assert_eq!(changed_accounts(body).unwrap(), ["dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc"]);
    }

    #[test]
    fn bodies_without_accounts_name_none_and_garbage_is_an_error() {
        assert!(changed_accounts(br#"{"delta": {"users": [1]}}"#).unwrap().is_empty());
        assert!(changed_accounts(b"{}").unwrap().is_empty());
        assert!(changed_accounts(b"<xml/>").is_err());
    }
}
