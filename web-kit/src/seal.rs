//! One sealing format for secrets at rest, on both surfaces: `v1.` + base64url(nonce ‖
//! ciphertext ‖ tag), XChaCha20-Poly1305 with a random 24-byte nonce, the plaintext bound to a
//! context (its datasource, its column) as associated data, so a sealed value moved to another
//! row does not open. Each surface derives its own key from its own secret; the format is the
//! same. `coco-host` state sealed before this format (standard base64 without a prefix) still
//! opens.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::encode::{base64_url, from_base64_url};

/// Random bytes per sealed value (the caller supplies them: the kit does no I/O).
pub const NONCE_LEN: usize = 24;
const PREFIX: &str = "v1.";

/// A sealing key. `Debug` prints nothing of it.
#[derive(Clone)]
pub struct SealKey(XChaCha20Poly1305);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey([redacted])")
    }
}

impl SealKey {
    pub fn new(key: &[u8; 32]) -> SealKey {
        SealKey(XChaCha20Poly1305::new(key.into()))
    }

    /// `plain` sealed under `context`.
    pub fn seal(&self, context: &str, plain: &[u8], nonce: &[u8; NONCE_LEN]) -> String {
        let sealed = self
            .0
            .encrypt(XNonce::from_slice(nonce), Payload { msg: plain, aad: context.as_bytes() })
            .expect("XChaCha20-Poly1305 seals any length held in memory");
        let mut raw = nonce.to_vec();
        raw.extend_from_slice(&sealed);
        format!("{PREFIX}{}", base64_url(&raw))
    }

    /// The plaintext, if `sealed` is ours (this key, this context, untouched). Also reads the
    /// host's earlier format (standard base64, no prefix): `.` is not in its alphabet, so the
    /// two cannot be confused.
    pub fn open(&self, context: &str, sealed: &str) -> Option<Vec<u8>> {
        let raw = match sealed.strip_prefix(PREFIX) {
            Some(body) => from_base64_url(body)?,
            None => STANDARD.decode(sealed).ok()?,
        };
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        self.0.decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad: context.as_bytes() }).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_context() {
        let k = SealKey::new(&[7; 32]);
        let sealed = k.seal("refresh_token:ds1", b"REFRESH-abc", &[9; NONCE_LEN]);
        assert!(sealed.starts_with("v1.") && !sealed.contains("REFRESH"));
        assert_eq!(k.open("refresh_token:ds1", &sealed).unwrap(), b"REFRESH-abc");
        assert!(k.open("refresh_token:ds2", &sealed).is_none(), "bound to its context");
        assert!(SealKey::new(&[8; 32]).open("refresh_token:ds1", &sealed).is_none());
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(k.open("refresh_token:ds1", std::str::from_utf8(&tampered).unwrap()).is_none());
        assert!(k.open("c", "v1.").is_none() && k.open("c", "plain").is_none() && k.open("c", "").is_none());
        assert_eq!(format!("{k:?}"), "SealKey([redacted])");
    }

    #[test]
    fn the_hosts_earlier_format_still_opens() {
        let k = SealKey::new(&[7; 32]);
        let v1 = k.seal("ctx", b"secret", &[3; NONCE_LEN]);
        let raw = from_base64_url(v1.strip_prefix("v1.").unwrap()).unwrap();
        let earlier = STANDARD.encode(&raw);
        assert_eq!(k.open("ctx", &earlier).unwrap(), b"secret");
        assert!(k.open("other", &earlier).is_none());
    }
}
