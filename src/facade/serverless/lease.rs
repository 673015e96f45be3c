//! One sync at a time per datasource, across runtime instances, with only get, set and an
//! atomic increment. A lease is an *epoch*: whoever's increment of `lease:{id}:{n}` returns 1
//! holds epoch `n`, so two callers can never both win the same epoch. The record under
//! `lease-until:{id}` says which epoch is current, until when, and who holds it; a caller
//! competes for the next epoch only once that record is released or expired, and a winner
//! checks the record once more before it writes, so a caller that looked long ago cannot
//! come back and take an epoch someone has moved past.

use serde::{Deserialize, Serialize};

use super::kv::{KvError, KvStore};

/// How long a lease lasts without being given back: longer than any one page takes.
pub const LEASE_SECS: u64 = 300;

fn epoch_key(id: &str, epoch: u64) -> String {
    format!("lease:{id}:{epoch}")
}

fn record_key(id: &str) -> String {
    format!("lease-until:{id}")
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, Default)]
struct Record {
    /// Held until then (0: given back).
    until: u64,
    holder: String,
    /// Absent in records of earlier versions (epoch 0).
    #[serde(default)]
    epoch: u64,
}

fn read(kv: &mut dyn KvStore, id: &str) -> Result<Option<Record>, KvError> {
    Ok(kv.get(&record_key(id))?.and_then(|raw| serde_json::from_slice::<Record>(&raw).ok()))
}

fn write(kv: &mut dyn KvStore, id: &str, r: &Record) -> Result<(), KvError> {
    kv.set(&record_key(id), &serde_json::to_vec(r).unwrap_or_default())
}

/// A held lease; give it back with [`release`].
#[derive(Debug)]
pub struct Lease {
    id: String,
    holder: String,
    epoch: u64,
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
    let current = read(kv, id)?;
    if let Some(r) = &current {
        if r.until > now {
            return Ok(Claim::Busy { retry_after_secs: r.until - now });
        }
    }
    let next = current.as_ref().map_or(0, |r| r.epoch) + 1;
    if kv.increment(&epoch_key(id, next), 1)? != 1 {
        // Another caller won this epoch. If its record is not there yet (it is between its
        // increment and its write, or died there), start the clock so that it cannot stay
        // held for ever; either way, not ours.
        if read(kv, id)?.is_none_or(|r| r.epoch < next) {
            write(kv, id, &Record { until: now + LEASE_SECS, holder: String::new(), epoch: next })?;
        }
        return Ok(Claim::Busy { retry_after_secs: 1 });
    }
    // Won epoch `next` — unless the record moved on while this caller was away.
    if read(kv, id)?.is_some_and(|r| r.epoch >= next) {
        return Ok(Claim::Busy { retry_after_secs: 1 });
    }
    write(kv, id, &Record { until: now + LEASE_SECS, holder: holder.to_string(), epoch: next })?;
    // Keep the last two epochs' counters: a caller still competing for an older one is turned
    // away by the check above.
    if next > 2 {
        kv.delete(&epoch_key(id, next - 2))?;
    }
    Ok(Claim::Held(Lease { id: id.to_string(), holder: holder.to_string(), epoch: next }))
}

/// Give the lease back, if it is still this holder's epoch (one that expired and was taken
/// over, or never written, is someone else's now and stays as it is).
pub fn release(kv: &mut dyn KvStore, lease: Lease) -> Result<(), KvError> {
    match read(kv, &lease.id)? {
        Some(r) if r.epoch == lease.epoch && r.holder == lease.holder => {
            write(kv, &lease.id, &Record { until: 0, holder: String::new(), epoch: lease.epoch })
        }
        _ => Ok(()),
    }
}

/// Remove every key of `id`'s lease (its datasource is gone).
pub fn forget(kv: &mut dyn KvStore, id: &str) -> Result<(), KvError> {
    for key in kv.keys_with_prefix(&format!("lease:{id}:"))? {
        kv.delete(&key)?;
    }
    kv.delete(&record_key(id))
}

#[cfg(test)]
mod tests {
    use super::super::kv::MemoryKv;
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

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
    fn a_holder_that_died_before_writing_its_record_is_not_held_for_ever() {
        let mut kv = MemoryKv::default();
        kv.increment("lease:ds:1", 1).unwrap();
        assert!(matches!(claim(&mut kv, "ds", 100, "b").unwrap(), Claim::Busy { .. }));
        assert!(matches!(claim(&mut kv, "ds", 101, "b").unwrap(), Claim::Busy { .. }));
        held(claim(&mut kv, "ds", 100 + LEASE_SECS, "b").unwrap());
    }

    #[test]
    fn keys_stay_few_over_many_calls() {
        let mut kv = MemoryKv::default();
        for t in 0..1_000 {
            let l = held(claim(&mut kv, "ds", t, "a").unwrap());
            release(&mut kv, l).unwrap();
        }
        assert!(kv.map.len() <= 3, "{:?}", kv.map.keys().collect::<Vec<_>>());
    }

    /// The other caller's whole run, against the same store.
    type Other<'a> = Box<dyn FnOnce(&mut MemoryKv) + 'a>;
    /// How a test store starts out.
    type Setup = fn(&mut MemoryKv);

    /// Runs `other` against the store just before this caller's `at`-th operation.
    struct Interleaved<'a> {
        kv: &'a mut MemoryKv,
        step: usize,
        at: usize,
        other: Option<Other<'a>>,
    }

    impl Interleaved<'_> {
        fn before(&mut self) {
            if self.step == self.at {
                if let Some(f) = self.other.take() {
                    f(self.kv)
                }
            }
            self.step += 1;
        }
    }

    impl KvStore for Interleaved<'_> {
        fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
            self.before();
            self.kv.get(key)
        }
        fn set(&mut self, key: &str, value: &[u8]) -> Result<(), KvError> {
            self.before();
            self.kv.set(key, value)
        }
        fn delete(&mut self, key: &str) -> Result<(), KvError> {
            self.before();
            self.kv.delete(key)
        }
        fn keys_with_prefix(&mut self, prefix: &str) -> Result<Vec<String>, KvError> {
            self.before();
            self.kv.keys_with_prefix(prefix)
        }
        fn increment(&mut self, key: &str, delta: u64) -> Result<u64, KvError> {
            self.before();
            self.kv.increment(key, delta)
        }
    }

    /// Two callers, the second run in full between any two operations of the first, from a
    /// fresh store, a released lease and an expired one: never two holders, and the lease is
    /// not lost (a later caller gets it once any clock started meanwhile has run out).
    #[test]
    fn interleaved_claims_never_make_two_holders() {
        let setups: [(&str, Setup); 3] = [
            ("fresh", |_| {}),
            ("released", |kv| {
                let l = held(claim(kv, "ds", 1, "old").unwrap());
                release(kv, l).unwrap()
            }),
            ("expired", |kv| drop(held(claim(kv, "ds", 1, "dead").unwrap()))),
        ];
        let now = 1 + LEASE_SECS + 10;
        for (name, setup) in setups {
            for at in 0..8 {
                let mut kv = MemoryKv::default();
                setup(&mut kv);
                let b_result: Rc<RefCell<Option<Claim>>> = Rc::default();
                let first = {
                    let b = b_result.clone();
                    let mut view = Interleaved {
                        kv: &mut kv,
                        step: 0,
                        at,
                        other: Some(Box::new(move |kv: &mut MemoryKv| {
                            *b.borrow_mut() = Some(claim(kv, "ds", now, "b").unwrap());
                        })),
                    };
                    claim(&mut view, "ds", now, "a").unwrap()
                };
                let second = b_result.borrow_mut().take();
                let holders = [Some(&first), second.as_ref()]
                    .into_iter()
                    .flatten()
                    .filter(|c| matches!(c, Claim::Held(_)))
                    .count();
                assert!(holders <= 1, "{name}, b at step {at}: two holders ({first:?}, {second:?})");
                // Whoever holds gives it back; later, someone gets it again.
                for c in [Some(first), second].into_iter().flatten() {
                    if let Claim::Held(l) = c {
                        release(&mut kv, l).unwrap();
                    }
                }
                held(claim(&mut kv, "ds", now + 2 * LEASE_SECS, "c").unwrap());
            }
        }
    }

    /// A holder whose lease expired and was taken over gives back nothing of the new one, in
    /// whatever order the two run.
    #[test]
    fn a_late_release_never_frees_anothers_lease() {
        for at in 0..6 {
            let mut kv = MemoryKv::default();
            let late = held(claim(&mut kv, "ds", 1, "late").unwrap());
            let taken: Rc<RefCell<Option<Claim>>> = Rc::default();
            {
                let t = taken.clone();
                let mut view = Interleaved {
                    kv: &mut kv,
                    step: 0,
                    at,
                    other: Some(Box::new(move |kv: &mut MemoryKv| {
                        *t.borrow_mut() = Some(claim(kv, "ds", 1 + LEASE_SECS, "new").unwrap());
                    })),
                };
                release(&mut view, late).unwrap();
                if let Some(f) = view.other.take() {
                    f(view.kv);
                }
            }
            let new_holder = taken.borrow_mut().take();
            if let Some(Claim::Held(_)) = new_holder {
                // The new holder took it over: nobody else may get it now.
                assert!(
                    matches!(claim(&mut kv, "ds", 2 + LEASE_SECS, "third").unwrap(), Claim::Busy { .. }),
                    "b at step {at}: the late release freed the new lease"
                );
            }
        }
    }
}
