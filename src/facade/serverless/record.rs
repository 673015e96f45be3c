//! One datasource as the store keeps it, under `ds:{id}`: who it is, where its listing stands,
//! and its tokens sealed. Nothing here is secret in clear.

use serde::{Deserialize, Serialize};

use super::kv::{KvError, KvStore};
use super::seal::{SealKey, NONCE_LEN};
use crate::error::Error;
use crate::facade::{RootJson, TokensJson};
use crate::secret::Secret;
use crate::types::Tokens;

pub const RECORD_PREFIX: &str = "ds:";

pub fn record_key(id: &str) -> String {
    format!("{RECORD_PREFIX}{id}")
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Record {
    pub id: String,
    pub name: String,
    pub connector_id: String,
    /// [`TokensJson`], sealed and bound to `id`.
    pub tokens: String,
    pub root_info: Option<RootJson>,
    /// Where the next page starts; none: list from the beginning.
    pub cursor: Option<String>,
    /// Bumped by every full re-listing; index entries it does not refresh are swept at its end.
    pub generation: u64,
    /// A full listing is under way (the first one, or after a reset).
    pub listing: bool,
    /// The datasource exists at Coco Server.
    pub coco_created: bool,
    pub documents: u64,
    pub pages: u64,
    pub connected_at: u64,
    pub last_sync_at: Option<u64>,
    pub last_error: Option<String>,
    /// Dropbox no longer accepts the refresh token: connect the account again.
    pub reauth_required: bool,
    /// A `DELETE` revoked the tokens and is still to remove the datasource at Coco Server
    /// (absent in records of earlier versions).
    #[serde(default)]
    pub revoked: bool,
}

impl Record {
    pub fn status(&self) -> &'static str {
        if self.reauth_required {
            "reauth-required"
        } else if self.last_error.is_some() {
            "error"
        } else if self.listing {
            "listing"
        } else {
            "synced"
        }
    }

    pub fn seal_tokens(&mut self, key: &SealKey, tokens: &Tokens, nonce: &[u8; NONCE_LEN]) {
        let json = serde_json::to_vec(&TokensJson::from(tokens.clone())).unwrap_or_default();
        self.tokens = key.seal(&self.id, &json, nonce);
    }

    pub fn open_tokens(&self, key: &SealKey) -> Result<Tokens, Error> {
        let raw = key.open(&self.id, &self.tokens)?;
        let t: TokensJson = serde_json::from_slice(&raw)
            .map_err(|_| Error::InvalidInput("stored tokens are unreadable: reconnect the account".into()))?;
        Ok(Tokens {
            access_token: Secret::new(t.access_token),
            expires_at: t.expires_at,
            refresh_token: Secret::new(t.refresh_token),
        })
    }
}

pub fn load(kv: &mut dyn KvStore, id: &str) -> Result<Option<Record>, KvError> {
    match kv.get(&record_key(id))? {
        None => Ok(None),
        Some(raw) => {
            serde_json::from_slice(&raw).map(Some).map_err(|e| KvError(format!("record of {id} is unreadable: {e}")))
        }
    }
}

pub fn save(kv: &mut dyn KvStore, r: &Record) -> Result<(), KvError> {
    kv.set(&record_key(&r.id), &serde_json::to_vec(r).map_err(|e| KvError(e.to_string()))?)
}

/// Every datasource id, sorted, from the keys alone.
pub fn ids(kv: &mut dyn KvStore) -> Result<Vec<String>, KvError> {
    let mut ids: Vec<String> =
        kv.keys_with_prefix(RECORD_PREFIX)?.into_iter().map(|k| k[RECORD_PREFIX.len()..].to_string()).collect();
    ids.sort();
    Ok(ids)
}

/// Every record, by id.
pub fn all(kv: &mut dyn KvStore) -> Result<Vec<Record>, KvError> {
    let mut out = Vec::new();
    for id in ids(kv)? {
        if let Some(r) = load(kv, &id)? {
            out.push(r);
        }
    }
    Ok(out)
}
