//! Which datasource steps next: the scheduler's decisions as plain data, no I/O and no clock of
//! its own (every method takes `now`), so they are unit-tested.
//!
//! Fairness is page by page: a step is one page, and among the datasources that are due the
//! one stepped least recently goes first. A 1M-entry listing therefore takes one turn in each
//! round like everybody else, and never more than one page in flight (single flight per
//! datasource), so other tenants' deltas are never stuck behind it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A failing datasource (retries ran out) is tried again after this long at the earliest.
pub const FAILING_RETRY: Duration = Duration::from_secs(300);

#[derive(Clone, Debug)]
pub struct Settings {
    /// Re-sync interval for datasources that set none.
    pub default_interval: Duration,
    /// Spread of each interval, as a fraction (0.1 = ±10 %), so tenants do not beat in step.
    pub jitter: f64,
    /// Pages per minute per datasource (0 = unlimited).
    pub pages_per_minute: u32,
    /// Pages in flight across all datasources.
    pub max_in_flight: usize,
}

/// Why a datasource is not stepping now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// Due now (or a step is running).
    Ready,
    /// Up to date; the next re-sync is at its interval.
    Interval,
    RateLimited,
    /// Retrying a transient failure.
    Backoff,
    /// Its pages-per-minute budget is spent.
    Budget,
    /// Another process holds its sync lease.
    Leased,
    /// Retries ran out; tried again later.
    Failing,
    /// Its refresh token stopped working: waits for a reconnect.
    Parked,
    Paused,
}

impl Waiting {
    pub fn as_str(self) -> &'static str {
        match self {
            Waiting::Ready => "ready",
            Waiting::Interval => "interval",
            Waiting::RateLimited => "rate-limited",
            Waiting::Backoff => "backoff",
            Waiting::Budget => "budget",
            Waiting::Leased => "leased-elsewhere",
            Waiting::Failing => "failing",
            Waiting::Parked => "reauth-required",
            Waiting::Paused => "paused",
        }
    }
}

/// How a step ended, as the scheduler needs to know it.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A page was applied (or the listing restarts): step again as soon as it is its turn.
    More,
    /// Fully indexed: next re-sync at the interval.
    Done,
    /// Rate-limited: not before `delay`.
    Wait(Duration),
    /// Transient failure: not before `delay`.
    Backoff(Duration),
    /// Another process syncs it now.
    Leased,
    /// Needs a reconnect.
    Parked,
    /// Retries ran out.
    Failing,
    /// It was removed.
    Gone,
}

/// Pages-per-minute budget: a token bucket holding ten seconds' worth.
#[derive(Clone, Debug)]
pub struct Budget {
    per_minute: u32,
    tokens: f64,
    at: Instant,
}

impl Budget {
    pub fn new(per_minute: u32, now: Instant) -> Self {
        Budget { per_minute, tokens: Self::capacity(per_minute), at: now }
    }

    fn capacity(per_minute: u32) -> f64 {
        (f64::from(per_minute) / 6.0).max(1.0)
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(self.per_minute) / 60.0).min(Self::capacity(self.per_minute));
        self.at = now;
    }

    /// Take one page's token, or say when one will be there.
    pub fn take(&mut self, now: Instant) -> Result<(), Instant> {
        if self.per_minute == 0 {
            return Ok(());
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let secs = (1.0 - self.tokens) * 60.0 / f64::from(self.per_minute);
        // Never "now": a rounding remainder must not make the caller spin.
        Err(now + Duration::from_secs_f64(secs).max(Duration::from_millis(1)))
    }
}

/// One datasource, as the scheduler sees it.
#[derive(Clone, Debug)]
pub struct Slot {
    pub interval: Option<Duration>,
    pub paused: bool,
    pub parked: bool,
    pub due: Instant,
    pub waiting: Waiting,
    /// A step is in flight.
    pub running: bool,
    /// A run is under way (this process holds the lease between its steps).
    pub in_run: bool,
    pub last_stepped: Option<Instant>,
    pub budget: Budget,
    /// Woken while a step ran: that step's page may predate the change, so go again.
    pub rewake: bool,
}

/// What the store says about a datasource, for [`Schedule::reconcile`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    pub id: String,
    pub interval_secs: Option<u32>,
    pub paused: bool,
    pub parked: bool,
}

pub struct Schedule {
    pub settings: Settings,
    slots: HashMap<String, Slot>,
    in_flight: usize,
}

impl Schedule {
    pub fn new(settings: Settings) -> Self {
        Schedule { settings, slots: HashMap::new(), in_flight: 0 }
    }

    pub fn slot(&self, id: &str) -> Option<&Slot> {
        self.slots.get(id)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Ids with a run under way (whose leases this process must keep renewing).
    pub fn in_run(&self) -> Vec<String> {
        self.slots.iter().filter(|(_, s)| s.in_run).map(|(id, _)| id.clone()).collect()
    }

    /// Take the store's list: new datasources are due now, removed ones dropped, settings and
    /// parked/paused flags refreshed (a reconnect un-parks; a resume makes it due now).
    pub fn reconcile(&mut self, known: &[Known], now: Instant) {
        let ids: std::collections::HashSet<&str> = known.iter().map(|k| k.id.as_str()).collect();
        self.slots.retain(|id, s| ids.contains(id.as_str()) || s.running);
        for k in known {
            let per_minute = self.settings.pages_per_minute;
            let slot = self.slots.entry(k.id.clone()).or_insert_with(|| Slot {
                interval: None,
                paused: false,
                parked: false,
                due: now,
                waiting: Waiting::Ready,
                running: false,
                in_run: false,
                last_stepped: None,
                budget: Budget::new(per_minute, now),
                rewake: false,
            });
            slot.interval = k.interval_secs.map(|s| Duration::from_secs(u64::from(s)));
            if slot.paused && !k.paused || slot.parked && !k.parked {
                slot.due = now;
                slot.waiting = Waiting::Ready;
            }
            slot.paused = k.paused;
            slot.parked = k.parked;
            if k.paused {
                slot.waiting = Waiting::Paused;
            } else if k.parked && !slot.running {
                slot.waiting = Waiting::Parked;
            }
        }
    }

    fn eligible(s: &Slot) -> bool {
        !s.running && !s.paused && !s.parked
    }

    /// The next datasource to step, if a slot is free and one is due: the one stepped least
    /// recently. Marks it running; [`Schedule::finish`] must follow.
    pub fn next(&mut self, now: Instant) -> Option<String> {
        loop {
            if self.in_flight >= self.settings.max_in_flight {
                return None;
            }
            let (id, _) = self
                .slots
                .iter()
                .filter(|(_, s)| Self::eligible(s) && s.due <= now)
                .min_by_key(|(id, s)| (s.last_stepped, s.due, id.as_str()))?;
            let id = id.clone();
            let slot = self.slots.get_mut(&id).expect("just found");
            if let Err(refill) = slot.budget.take(now) {
                slot.due = refill;
                slot.waiting = Waiting::Budget;
                continue;
            }
            slot.running = true;
            slot.rewake = false;
            slot.waiting = Waiting::Ready;
            slot.last_stepped = Some(now);
            self.in_flight += 1;
            return Some(id);
        }
    }

    /// Record how a step ended. `jitter` in [0, 1) spreads the interval.
    pub fn finish(&mut self, id: &str, outcome: &Outcome, now: Instant, jitter: f64) {
        let default = self.settings.default_interval;
        let spread = self.settings.jitter;
        let Some(slot) = self.slots.get_mut(id) else { return };
        if slot.running {
            slot.running = false;
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        let interval = slot.interval.unwrap_or(default);
        let jittered = interval.mul_f64((1.0 + spread * (2.0 * jitter - 1.0)).max(0.0));
        let rewake = std::mem::take(&mut slot.rewake);
        let (due, waiting, in_run) = match outcome {
            Outcome::More => (now, Waiting::Ready, true),
            Outcome::Done if rewake => (now, Waiting::Ready, false),
            Outcome::Done => (now + jittered, Waiting::Interval, false),
            // The holder may finish before the change: look again soon.
            Outcome::Leased if rewake => (now + Duration::from_secs(1), Waiting::Leased, false),
            Outcome::Wait(d) => (now + *d, Waiting::RateLimited, true),
            Outcome::Backoff(d) => (now + *d, Waiting::Backoff, true),
            Outcome::Leased => (now + jittered, Waiting::Leased, false),
            Outcome::Failing => (now + interval.max(FAILING_RETRY), Waiting::Failing, false),
            Outcome::Parked => {
                slot.parked = true;
                (now, Waiting::Parked, false)
            }
            Outcome::Gone => {
                self.slots.remove(id);
                return;
            }
        };
        slot.due = due;
        slot.waiting = if slot.paused { Waiting::Paused } else { waiting };
        slot.in_run = in_run;
    }

    /// Sync it now (webhook, longpoll, admin): due at once unless paused or parked, or already
    /// waiting out a rate limit (Dropbox's wait stands). True if it will step.
    pub fn wake(&mut self, id: &str, now: Instant) -> bool {
        let Some(slot) = self.slots.get_mut(id) else { return false };
        if slot.paused || slot.parked {
            return false;
        }
        if slot.waiting == Waiting::RateLimited && slot.due > now {
            return true;
        }
        if slot.running {
            slot.rewake = true;
        } else {
            slot.due = slot.due.min(now);
            slot.waiting = Waiting::Ready;
        }
        true
    }

    /// When the loop must look again: the earliest due among datasources that can step.
    pub fn next_due(&self) -> Option<Instant> {
        self.slots.values().filter(|s| Self::eligible(s)).map(|s| s.due).min()
    }

    /// Idle: not running, not in a run, not paused or parked (candidates for a longpoll).
    pub fn is_idle(&self, id: &str) -> bool {
        self.slots.get(id).is_some_and(|s| Self::eligible(s) && !s.in_run && s.waiting == Waiting::Interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_in_flight: usize, pages_per_minute: u32) -> Settings {
        Settings { default_interval: Duration::from_secs(30), jitter: 0.1, pages_per_minute, max_in_flight }
    }

    fn known(id: &str) -> Known {
        Known { id: id.into(), interval_secs: None, paused: false, parked: false }
    }

    #[test]
    fn a_long_listing_takes_turns_with_everyone_else() {
        let t0 = Instant::now();
        let mut s = Schedule::new(settings(1, 0));
        s.reconcile(&[known("big"), known("a"), known("b")], t0);
        let mut order = Vec::new();
        let mut now = t0;
        for _ in 0..9 {
            now += Duration::from_millis(1);
            let id = s.next(now).expect("something is due");
            assert!(s.next(now).is_none(), "one page in flight at most");
            let outcome = if id == "big" { Outcome::More } else { Outcome::Done };
            s.finish(&id, &outcome, now, 0.5);
            if id != "big" {
                // Their deltas arrive again (a webhook), while big keeps listing.
                assert!(s.wake(&id, now));
            }
            order.push(id);
        }
        let big = order.iter().filter(|i| *i == "big").count();
        assert_eq!(big, 3, "round robin: {order:?}");
        for w in order.windows(2) {
            assert_ne!(w[0], w[1], "nobody steps twice in a row while others wait: {order:?}");
        }
    }

    #[test]
    fn done_waits_for_the_interval_with_jitter_and_wake_makes_it_due() {
        let t0 = Instant::now();
        let mut s = Schedule::new(settings(4, 0));
        s.reconcile(&[Known { interval_secs: Some(100), ..known("a") }], t0);
        assert_eq!(s.next(t0).as_deref(), Some("a"));
        s.finish("a", &Outcome::Done, t0, 0.0);
        let due = s.slot("a").unwrap().due;
        assert_eq!(due - t0, Duration::from_secs(90), "-10 % at jitter 0");
        assert_eq!(s.slot("a").unwrap().waiting, Waiting::Interval);
        assert!(s.is_idle("a"));
        assert!(s.next(t0 + Duration::from_secs(89)).is_none());
        assert!(s.wake("a", t0 + Duration::from_secs(1)));
        assert_eq!(s.next(t0 + Duration::from_secs(1)).as_deref(), Some("a"));
    }

    #[test]
    fn a_wake_during_the_last_step_runs_one_more() {
        let t0 = Instant::now();
        let mut s = Schedule::new(settings(4, 0));
        s.reconcile(&[known("a")], t0);
        assert_eq!(s.next(t0).as_deref(), Some("a"));
        assert!(s.wake("a", t0), "a webhook while the page is in flight");
        s.finish("a", &Outcome::Done, t0, 0.5);
        assert_eq!(s.next(t0).as_deref(), Some("a"), "due again at once");
        s.finish("a", &Outcome::Done, t0, 0.5);
        assert!(s.next(t0).is_none(), "and only once");
    }

    #[test]
    fn rate_limits_stand_against_wakes_and_failures_back_off() {
        let t0 = Instant::now();
        let mut s = Schedule::new(settings(4, 0));
        s.reconcile(&[known("a")], t0);
        s.next(t0);
        s.finish("a", &Outcome::Wait(Duration::from_secs(60)), t0, 0.5);
        assert!(s.wake("a", t0));
        assert!(s.next(t0 + Duration::from_secs(59)).is_none(), "Dropbox's wait is honoured");
        assert_eq!(s.next(t0 + Duration::from_secs(60)).as_deref(), Some("a"));
        s.finish("a", &Outcome::Failing, t0, 0.5);
        assert_eq!(s.slot("a").unwrap().due - t0, FAILING_RETRY);
        assert!(!s.slot("a").unwrap().in_run);
    }

    #[test]
    fn parked_and_paused_never_step_until_the_store_says_otherwise() {
        let t0 = Instant::now();
        let mut s = Schedule::new(settings(4, 0));
        s.reconcile(&[known("a"), Known { paused: true, ..known("p") }], t0);
        assert_eq!(s.next(t0).as_deref(), Some("a"));
        assert!(s.next(t0).is_none(), "p is paused");
        s.finish("a", &Outcome::Parked, t0, 0.5);
        assert!(!s.wake("a", t0) && !s.wake("p", t0));
        assert!(s.next(t0 + Duration::from_secs(3600)).is_none());
        assert_eq!(s.slot("a").unwrap().waiting, Waiting::Parked);
        // Reconnected and resumed: both due at once.
        s.reconcile(&[known("a"), known("p")], t0 + Duration::from_secs(5));
        let mut got = vec![s.next(t0 + Duration::from_secs(5)).unwrap(), s.next(t0 + Duration::from_secs(5)).unwrap()];
        got.sort();
        assert_eq!(got, ["a", "p"]);
    }

    #[test]
    fn budgets_cap_pages_per_minute_and_the_global_cap_holds() {
        let t0 = Instant::now();
        // 60 pages a minute: a burst of 10, then one a second.
        let mut s = Schedule::new(settings(100, 60));
        s.reconcile(&[known("a")], t0);
        let mut pages = 0;
        let mut now = t0;
        while now < t0 + Duration::from_secs(30) {
            if let Some(id) = s.next(now) {
                pages += 1;
                s.finish(&id, &Outcome::More, now, 0.5);
            } else {
                assert_eq!(s.slot("a").unwrap().waiting, Waiting::Budget);
            }
            now += Duration::from_millis(100);
        }
        assert!((38..=41).contains(&pages), "10 burst + ~30 refilled, got {pages}");
        let mut s = Schedule::new(settings(2, 0));
        s.reconcile(&[known("a"), known("b"), known("c")], t0);
        assert!(s.next(t0).is_some() && s.next(t0).is_some());
        assert!(s.next(t0).is_none(), "two in flight at most");
        assert_eq!(s.in_flight(), 2);
    }

    #[test]
    fn removed_datasources_disappear_unless_a_step_is_running() {
        let t0 = Instant::now();
        let mut s = Schedule::new(settings(4, 0));
        s.reconcile(&[known("a"), known("b")], t0);
        let running = s.next(t0).unwrap();
        s.reconcile(&[], t0);
        assert_eq!(s.len(), 1, "the running one stays until its step ends");
        s.finish(&running, &Outcome::Gone, t0, 0.5);
        assert!(s.is_empty());
        assert_eq!(s.in_flight(), 0);
    }
}
