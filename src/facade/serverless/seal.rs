//! Tokens at rest: the web kit's sealing format (`v1.`, XChaCha20-Poly1305, shared with
//! `coco-host`) under a key derived from the configured seal secret, bound to the datasource id
//! (a sealed value moved to another record does not open).

use hmac::{Hmac, KeyInit as _, Mac};
use sha2::Sha256;

use crate::error::Error;
use crate::secret::SecretBytes;

/// Random bytes per sealed value.
pub const NONCE_LEN: usize = coco_web::seal::NONCE_LEN;
const KEY_DOMAIN: &[u8] = b"coco-dropbox/kv-tokens/v1";
/// A weaker secret would be guessable offline from one sealed value.
pub const MIN_SEAL_SECRET_LEN: usize = 32;

/// The sealing key. Never printed.
#[derive(Debug)]
pub struct SealKey(coco_web::seal::SealKey);

impl SealKey {
    pub fn derive(secret: &SecretBytes) -> Result<SealKey, Error> {
        if secret.expose().len() < MIN_SEAL_SECRET_LEN {
            return Err(Error::InvalidInput(format!(
                "the seal secret must be at least {MIN_SEAL_SECRET_LEN} bytes (e.g. openssl rand -hex 32)"
            )));
        }
        let mut m = <Hmac<Sha256>>::new_from_slice(secret.expose()).expect("HMAC takes any key length");
        m.update(KEY_DOMAIN);
        Ok(SealKey(coco_web::seal::SealKey::new(&m.finalize().into_bytes().into())))
    }

    /// `v1.` + base64url(nonce ‖ ciphertext ‖ tag).
    pub fn seal(&self, bound_to: &str, plaintext: &[u8], nonce: &[u8; NONCE_LEN]) -> String {
        self.0.seal(bound_to, plaintext, nonce)
    }

    pub fn open(&self, bound_to: &str, sealed: &str) -> Result<Vec<u8>, Error> {
        self.0.open(bound_to, sealed).ok_or_else(|| {
            Error::InvalidInput(
                "stored tokens do not open with this seal secret (was it changed?): reconnect the account".into(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> SealKey {
        SealKey::derive(&SecretBytes::new(s)).unwrap()
    }

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_binding() {
        let k = key("seal-secret-0123456789abcdef-0123456789");
        let sealed = k.seal("ds1", b"REFRESH-abc", &[9; NONCE_LEN]);
        assert!(sealed.starts_with("v1.") && !sealed.contains("REFRESH"));
        assert_eq!(k.open("ds1", &sealed).unwrap(), b"REFRESH-abc");
        assert!(k.open("ds2", &sealed).is_err(), "bound to its datasource");
        assert!(key("another-seal-secret-0123456789abcdef").open("ds1", &sealed).is_err());
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(k.open("ds1", std::str::from_utf8(&tampered).unwrap()).is_err());
        assert!(k.open("ds1", "v1.").is_err() && k.open("ds1", "plain").is_err());
        assert!(SealKey::derive(&SecretBytes::new("short")).is_err());
        assert!(!format!("{k:?}").contains(|c: char| c.is_ascii_digit()));
        // The web kit's format: what coco-host seals reads the same way.
        let host = coco_web::seal::SealKey::new(&[5; 32]);
        assert_eq!(host.open("ds1", &host.seal("ds1", b"x", &[1; NONCE_LEN])).unwrap(), b"x");
    }
}
