//! One sync at a time per datasource, across runtime instances, with only an atomic increment:
//! the caller whose increment turns the counter from 0 to 1 holds the lease. Its expiry lives
//! under a second key, so a holder that died is taken over once the expiry has passed.

use serde::{Deserialize, Serialize};

use super::kv::{KvError, KvStore};

/// How long a lease lasts without being given back: longer than any one page takes.
pub const LEASE_SECS: u64 = 300;

fn counter_key(id: &str) -> String {
    format!("lease:{id}")
}

fn until_key(id: &str) -> String {
    format!("lease-until:{id}")
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
struct Until {
    until: u64,
    holder: String,
}

/// A held lease; give it back with [`release`].
#[derive(Debug)]
pub struct Lease {
    id: String,
    holder: String,
}

#[derive(Debug)]
pub enum Claim {
    Held(Lease),
    /// Someone else holds it, for at most this long.
    Busy {
        retry_after_secs: u64,
    },
}

/// Try to take the lease on `id`. `holder` is fresh per call (random).
pub fn claim(kv: &mut dyn KvStore, id: &str, now: u64, holder: &str) -> Result<Claim, KvError> {
    for attempt in 0..2 {
        if kv.increment(&counter_key(id), 1)? == 1 {
            let until = Until { until: now + LEASE_SECS, holder: holder.to_string() };
            kv.set(&until_key(id), &serde_json::to_vec(&until).unwrap_or_default())?;
            return Ok(Claim::Held(Lease { id: id.to_string(), holder: holder.to_string() }));
        }
        let current = kv.get(&until_key(id))?.and_then(|raw| serde_json::from_slice::<Until>(&raw).ok());
        match current {
            Some(u) if u.until > now => return Ok(Claim::Busy { retry_after_secs: u.until - now }),
            // Held by a caller between its increment and its expiry write, or one that died
            // there: start the clock so that it cannot stay held for ever.
            None => {
                let until = Until { until: now + LEASE_SECS, holder: String::new() };
                kv.set(&until_key(id), &serde_json::to_vec(&until).unwrap_or_default())?;
                return Ok(Claim::Busy { retry_after_secs: LEASE_SECS });
            }
            // Expired: the holder is gone. Reset and compete once more.
            Some(_) if attempt == 0 => {
                kv.delete(&until_key(id))?;
                kv.delete(&counter_key(id))?;
            }
            Some(_) => break,
        }
    }
    Ok(Claim::Busy { retry_after_secs: 1 })
}

/// Give the lease back, unless it expired and someone else took it over meanwhile.
pub fn release(kv: &mut dyn KvStore, lease: Lease) -> Result<(), KvError> {
    let current = kv.get(&until_key(&lease.id))?.and_then(|raw| serde_json::from_slice::<Until>(&raw).ok());
    if current.is_some_and(|u| u.holder != lease.holder) {
        return Ok(());
    }
    kv.delete(&until_key(&lease.id))?;
    kv.delete(&counter_key(&lease.id))
}

#[cfg(test)]
mod tests {
    use super::super::kv::MemoryKv;
    use super::*;

    fn held(c: Claim) -> Lease {
        match c {
            Claim::Held(l) => l,
            Claim::Busy { .. } => panic!("expected the lease"),
        }
    }

    #[test]
    fn one_holder_at_a_time_and_given_back() {
        let mut kv = MemoryKv::default();
        let a = held(claim(&mut kv, "ds", 100, "a").unwrap());
        assert!(matches!(claim(&mut kv, "ds", 101, "b").unwrap(), Claim::Busy { retry_after_secs: 299 }));
        assert!(matches!(claim(&mut kv, "other", 101, "b").unwrap(), Claim::Held(_)));
        release(&mut kv, a).unwrap();
        held(claim(&mut kv, "ds", 102, "b").unwrap());
    }

    #[test]
    fn a_dead_holder_is_taken_over_after_expiry_and_cannot_release_the_new_lease() {
        let mut kv = MemoryKv::default();
        let dead = held(claim(&mut kv, "ds", 100, "dead").unwrap());
        assert!(matches!(claim(&mut kv, "ds", 100 + LEASE_SECS - 1, "b").unwrap(), Claim::Busy { .. }));
        let b = held(claim(&mut kv, "ds", 100 + LEASE_SECS, "b").unwrap());
        release(&mut kv, dead).unwrap();
        assert!(matches!(claim(&mut kv, "ds", 100 + LEASE_SECS + 1, "c").unwrap(), Claim::Busy { .. }));
        release(&mut kv, b).unwrap();
        held(claim(&mut kv, "ds", 100 + LEASE_SECS + 2, "c").unwrap());
    }

    #[test]
    fn a_holder_that_died_before_writing_its_expiry_is_not_held_for_ever() {
        let mut kv = MemoryKv::default();
        kv.increment("lease:ds", 1).unwrap();
        assert!(matches!(claim(&mut kv, "ds", 100, "b").unwrap(), Claim::Busy { retry_after_secs: LEASE_SECS }));
        held(claim(&mut kv, "ds", 100 + LEASE_SECS, "b").unwrap());
    }
}
