//! The host's one secret, `COCO_MASTER_KEY`, and what is derived from it: the OAuth state
//! secret (signs state, derives PKCE verifiers) and the key that seals secrets at rest.

use coco_web::seal::SealKey;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The environment variable that holds the master key.
pub const MASTER_KEY_ENV: &str = "COCO_MASTER_KEY";
const MIN_MASTER_KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{MASTER_KEY_ENV} is not set: set it to at least {MIN_MASTER_KEY_LEN} random characters (e.g. `openssl rand -hex 32`); only `demo` runs without it")]
    Missing,
    #[error("{MASTER_KEY_ENV} is too short: use at least {MIN_MASTER_KEY_LEN} random characters")]
    TooShort,
    #[error("a sealed value could not be opened: wrong {MASTER_KEY_ENV}, or the state file was tampered with")]
    Unseal,
}

/// Keys derived from the master key. `Debug` prints nothing secret.
#[derive(Clone)]
pub struct Keys {
    state_secret: Vec<u8>,
    cache_key: [u8; 32],
    seal_key: SealKey,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys([redacted])")
    }
}

fn derive(master: &[u8], label: &str) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(master).expect("any key length");
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().into()
}

impl Keys {
    pub fn from_master(master: &[u8]) -> Result<Self, KeyError> {
        if master.len() < MIN_MASTER_KEY_LEN {
            return Err(KeyError::TooShort);
        }
        let seal_key = derive(master, "coco-dropbox/seal/v1");
        Ok(Keys {
            state_secret: derive(master, "coco-dropbox/oauth-state/v1").to_vec(),
            cache_key: derive(master, "coco-dropbox/compiled-cache/v1"),
            seal_key: SealKey::new(&seal_key),
        })
    }

    /// From `COCO_MASTER_KEY`.
    pub fn from_env() -> Result<Self, KeyError> {
        match std::env::var(MASTER_KEY_ENV) {
            Ok(v) if !v.is_empty() => Keys::from_master(v.as_bytes()),
            _ => Err(KeyError::Missing),
        }
    }

    /// A throw-away key for demo mode.
    pub fn ephemeral() -> Self {
        let master: [u8; 32] = rand::random();
        Keys::from_master(&master).expect("32 bytes is long enough")
    }

    pub fn state_secret(&self) -> &[u8] {
        &self.state_secret
    }

    /// Authenticates compiled components in the on-disk cache: only a holder of the master key
    /// can produce code the host will load.
    pub fn cache_key(&self) -> [u8; 32] {
        self.cache_key
    }

    /// Encrypt `plain`, bound to `context` (e.g. "access_token:<datasource id>") so a sealed
    /// value cannot be swapped into another row or column: the web kit's one format,
    /// `v1.` + base64url(nonce ‖ ciphertext), shared with the key-value facade.
    pub fn seal(&self, context: &str, plain: &str) -> String {
        self.seal_key.seal(context, plain.as_bytes(), &rand::random())
    }

    /// A value [`Keys::seal`] made (or, from a state written before that format, standard
    /// base64 of the same bytes).
    pub fn open(&self, context: &str, sealed: &str) -> Result<String, KeyError> {
        let plain = self.seal_key.open(context, sealed).ok_or(KeyError::Unseal)?;
        String::from_utf8(plain).map_err(|_| KeyError::Unseal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_round_trips_and_binds_context() {
        let k = Keys::from_master(b"0123456789abcdef0123456789abcdef").unwrap();
        let sealed = k.seal("refresh_token:ds1", "rt-secret-value");
        assert!(sealed.starts_with("v1.") && !sealed.contains("rt-secret-value"));
        assert_eq!(k.open("refresh_token:ds1", &sealed).unwrap(), "rt-secret-value");
        assert!(k.open("refresh_token:ds2", &sealed).is_err(), "bound to its row");
        let other = Keys::from_master(b"another-master-key-of-32-bytes!!").unwrap();
        assert!(other.open("refresh_token:ds1", &sealed).is_err());
        assert_ne!(k.seal("c", "v"), k.seal("c", "v"), "fresh nonce each time");
        assert!(matches!(Keys::from_master(b"short"), Err(KeyError::TooShort)));
        assert_eq!(format!("{k:?}"), "Keys([redacted])");
    }
}
