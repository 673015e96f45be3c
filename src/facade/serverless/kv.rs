//! The state store the runtime keeps: one key-value bucket (`wasi:keyvalue` under
//! `wasmtime serve`, Spin's key-value store on Spin). Only what both runtimes offer: get, set,
//! delete, list and one atomic increment (for the lease). No transactions, so every write
//! sequence in this mode is ordered to be safe to stop after any step.

use std::collections::BTreeMap;

/// A store failure, as the runtime explained it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvError(pub String);

impl std::fmt::Display for KvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "key-value store: {}", self.0)
    }
}

pub trait KvStore {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError>;
    fn delete(&mut self, key: &str) -> Result<(), KvError>;
    /// Every key that starts with `prefix` (the runtimes list whole buckets; filtering is ours).
    fn keys_with_prefix(&mut self, prefix: &str) -> Result<Vec<String>, KvError>;
    /// Add `delta` to the counter at `key` (absent = 0) atomically; the new value.
    fn increment(&mut self, key: &str, delta: u64) -> Result<u64, KvError>;
}

/// An in-memory bucket: the native tests' runtime.
#[derive(Default, Debug, Clone)]
pub struct MemoryKv {
    pub map: BTreeMap<String, Vec<u8>>,
    /// Fail every write whose key starts with this (fault tests).
    pub fail_writes_to: Option<String>,
}

impl MemoryKv {
    fn refuse(&self, key: &str) -> Result<(), KvError> {
        match &self.fail_writes_to {
            Some(p) if key.starts_with(p.as_str()) => Err(KvError(format!("write to {key} refused"))),
            _ => Ok(()),
        }
    }
}

impl KvStore for MemoryKv {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.map.get(key).cloned())
    }

    fn set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.refuse(key)?;
        self.map.insert(key.to_string(), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, key: &str) -> Result<(), KvError> {
        self.refuse(key)?;
        self.map.remove(key);
        Ok(())
    }

    fn keys_with_prefix(&mut self, prefix: &str) -> Result<Vec<String>, KvError> {
        Ok(self
            .map
            .range(prefix.to_string()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }

    fn increment(&mut self, key: &str, delta: u64) -> Result<u64, KvError> {
        self.refuse(key)?;
        let now = counter_value(self.map.get(key).map(Vec::as_slice))?.wrapping_add(delta);
        self.map.insert(key.to_string(), now.to_string().into_bytes());
        Ok(now)
    }
}

/// A counter as the runtimes store it: decimal text (wasmtime's in-memory provider, Spin) or
/// eight little-endian bytes (some providers).
pub fn counter_value(raw: Option<&[u8]>) -> Result<u64, KvError> {
    let Some(raw) = raw else { return Ok(0) };
    if let Some(n) = std::str::from_utf8(raw).ok().and_then(|s| s.trim().parse::<u64>().ok()) {
        return Ok(n);
    }
    match <[u8; 8]>::try_from(raw) {
        Ok(b) => Ok(u64::from_le_bytes(b)),
        Err(_) => Err(KvError("a counter holds something that is not a number".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_listing_and_counters() {
        let mut kv = MemoryKv::default();
        for k in ["a:1", "a:2", "ab", "b:1"] {
            kv.set(k, b"x").unwrap();
        }
        assert_eq!(kv.keys_with_prefix("a:").unwrap(), ["a:1", "a:2"]);
        assert_eq!(kv.increment("n", 1).unwrap(), 1);
        assert_eq!(kv.increment("n", 2).unwrap(), 3);
        assert_eq!(counter_value(Some(&5u64.to_le_bytes())).unwrap(), 5);
        assert!(counter_value(Some(b"nope")).is_err());
    }
}
