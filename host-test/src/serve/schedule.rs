//! Which datasource steps next: the scheduler's decisions as plain data, no I/O and no clock of
//! its own (every method takes `now`), so they are unit-tested.
//!
//! Fairness is page by page: a step is one page, and among the datasources that are due the
//! one stepped least recently goes first. A 1M-entry listing therefore takes one turn in each
//! round like everybody else, and never more than one page in flight (single flight per
//! datasource), so other tenants' deltas are never stuck behind it.
//!
//! Replicas on one database each keep a schedule. What they share comes in through
//! [`Schedule::reconcile`]: a datasource another replica holds the lease of waits until that
//! lease would run out, and one another replica synced waits for its interval from then, so
//! replicas claim different datasources instead of racing for the same ones. Ties are broken
//! in an order salted per replica, so replicas starting together reach for different ones first.

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

impl Settings {
    /// Runs this process keeps open at once (each holds its datasource's lease between pages).
    /// Twice the pages in flight: enough that one long listing never holds back other tenants'
    /// deltas, few enough that a replica does not lease every due datasource before its peers
    /// start, and then leave them idle while it works through them a page at a time.
    pub fn max_runs(&self) -> usize {
        self.max_in_flight.saturating_mul(2).max(1)
    }
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
    /// Another process syncs it now: look again after this long (when its lease would run out).
    Leased(Duration),
    /// Another process finished a sync of it since this one last looked: `ago` before now, at
    /// `at` (unix seconds, the store's `last_synced_at`). The next sync is an interval after.
    SyncedElsewhere { at: i64, ago: Duration },
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

    /// Charge pages a step made beyond the one token it took (a parallel listing's step makes
    /// several). The bucket may go into debt: the next step waits until it is paid off, so
    /// over time a datasource stays within its pages per minute.
    pub fn charge(&mut self, pages: u64, now: Instant) {
        if self.per_minute == 0 || pages == 0 {
            return;
        }
        self.refill(now);
        self.tokens -= pages as f64;
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
    /// Woken (webhook, longpoll, admin) since its last sync: it syncs even if another replica
    /// synced it meanwhile, since that sync may predate the change.
    pub woken: bool,
    /// The newest completed sync this process knows of (unix seconds, any replica's).
    pub seen_synced: Option<i64>,
}

/// What the store says about a datasource, for [`Schedule::reconcile`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    pub id: String,
    pub interval_secs: Option<u32>,
    pub paused: bool,
    pub parked: bool,
    /// Its last completed sync, by any replica (unix seconds).
    pub synced_at: Option<i64>,
    /// Another live process holds its sync lease until then.
    pub leased_until: Option<Instant>,
}

impl Known {
    /// A datasource nobody has synced or leased yet.
    pub fn new(id: &str, interval_secs: Option<u32>, paused: bool, parked: bool) -> Self {
        Known { id: id.into(), interval_secs, paused, parked, synced_at: None, leased_until: None }
    }
}

pub struct Schedule {
    pub settings: Settings,
    slots: HashMap<String, Slot>,
    in_flight: usize,
    /// Tie-break salt (0: plain id order).
    salt: u64,
}

impl Schedule {
    pub fn new(settings: Settings) -> Self {
        Schedule { settings, slots: HashMap::new(), in_flight: 0, salt: 0 }
    }

    /// Break ties between equally due datasources in an order of this salt's own (a replica
    /// passes its lease holder's hash), rather than by id as every replica would.
    pub fn salted(mut self, salt: u64) -> Self {
        self.salt = salt;
        self
    }

    /// Where `id` falls among equally due datasources.
    fn tie_break<'a>(&self, id: &'a str) -> (u64, &'a str) {
        if self.salt == 0 {
            return (0, id);
        }
        // FNV-1a over the salt and the id: stable, cheap, and different per replica.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ self.salt;
        for b in id.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        (h, id)
    }

    /// This process's own run of `id` completed with the store's `last_synced_at` = `at`.
    pub fn note_synced(&mut self, id: &str, at: i64) {
        if let Some(slot) = self.slots.get_mut(id) {
            slot.seen_synced = slot.seen_synced.max(Some(at));
        }
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
    /// parked/paused flags refreshed (a reconnect un-parks; a resume makes it due now). What
    /// other replicas did moves a datasource's turn later, never earlier: a sync of theirs
    /// newer than this process knew of puts the next one an interval after it, and a live
    /// lease of theirs puts it at the lease's end. `now_unix` is `now` on the store's clock.
    pub fn reconcile(&mut self, known: &[Known], now: Instant, now_unix: i64) {
        let ids: std::collections::HashSet<&str> = known.iter().map(|k| k.id.as_str()).collect();
        self.slots.retain(|id, s| ids.contains(id.as_str()) || s.running);
        let default = self.settings.default_interval;
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
                woken: false,
                seen_synced: k.synced_at,
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
            let ours = slot.running || slot.in_run || slot.woken;
            let waits_its_turn = matches!(slot.waiting, Waiting::Ready | Waiting::Interval | Waiting::Leased);
            if k.synced_at > slot.seen_synced {
                slot.seen_synced = k.synced_at;
                if !ours && waits_its_turn {
                    let ago = k.synced_at.map_or(0, |at| now_unix.saturating_sub(at).max(0)) as u64;
                    let next = now + slot.interval.unwrap_or(default).saturating_sub(Duration::from_secs(ago));
                    if next > slot.due {
                        slot.due = next;
                        slot.waiting = Waiting::Interval;
                    }
                }
            }
            if let Some(until) = k.leased_until.filter(|_| !ours && waits_its_turn) {
                if until > slot.due {
                    slot.due = until;
                    slot.waiting = Waiting::Leased;
                }
            }
        }
    }

    fn eligible(s: &Slot) -> bool {
        !s.running && !s.paused && !s.parked
    }

    /// Runs open in this process: under way between pages, or starting with a step now.
    fn runs_open(&self) -> usize {
        self.slots.values().filter(|s| s.in_run || s.running).count()
    }

    /// It may step now as far as the caps go: it goes on with its run, or a new run fits.
    fn startable(&self, s: &Slot, runs_open: usize) -> bool {
        Self::eligible(s) && (s.in_run || runs_open < self.settings.max_runs())
    }

    /// The next datasource to step, if a slot is free and one is due: the one stepped least
    /// recently. Marks it running; [`Schedule::finish`] must follow.
    pub fn next(&mut self, now: Instant) -> Option<String> {
        // A datasource passed over for its budget below opens no run: count once.
        let open = self.runs_open();
        loop {
            if self.in_flight >= self.settings.max_in_flight {
                return None;
            }
            let (id, _) = self
                .slots
                .iter()
                .filter(|(_, s)| self.startable(s, open) && s.due <= now)
                .min_by_key(|(id, s)| (s.last_stepped, s.due, self.tie_break(id)))?;
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

    /// Charge `id`'s budget for pages its step made beyond the one it took a token for.
    pub fn charge(&mut self, id: &str, extra_pages: u64, now: Instant) {
        if let Some(slot) = self.slots.get_mut(id) {
            slot.budget.charge(extra_pages, now);
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
        let spread_by = |d: Duration| d.mul_f64((1.0 + spread * (2.0 * jitter - 1.0)).max(0.0));
        let jittered = spread_by(interval);
        let rewake = std::mem::take(&mut slot.rewake);
        // A woken datasource stays woken only while someone else holds it: the step that
        // takes it syncs after the change.
        let woken = std::mem::take(&mut slot.woken);
        let (due, waiting, in_run) = match outcome {
            Outcome::More => (now, Waiting::Ready, true),
            Outcome::Done if rewake => {
                slot.woken = true;
                (now, Waiting::Ready, false)
            }
            Outcome::Done => (now + jittered, Waiting::Interval, false),
            // The holder may finish before the change: look again soon.
            Outcome::Leased(_) if rewake || woken => {
                slot.woken = woken;
                (now + Duration::from_secs(1), Waiting::Leased, false)
            }
            Outcome::Wait(d) => (now + *d, Waiting::RateLimited, true),
            Outcome::Backoff(d) => (now + *d, Waiting::Backoff, true),
            Outcome::Leased(retry) => (now + spread_by(*retry), Waiting::Leased, false),
            Outcome::SyncedElsewhere { at, ago } => {
                slot.seen_synced = slot.seen_synced.max(Some(*at));
                (now + jittered.saturating_sub(*ago), Waiting::Interval, false)
            }
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
        slot.woken = true;
        if slot.running {
            slot.rewake = true;
        } else {
            slot.due = slot.due.min(now);
            slot.waiting = Waiting::Ready;
        }
        true
    }

    /// When the loop must look again: the earliest due among datasources that can step. None
    /// while the caps are reached: a step that ends wakes the loop, so it must not spin on a
    /// due datasource it cannot start.
    pub fn next_due(&self) -> Option<Instant> {
        if self.in_flight >= self.settings.max_in_flight {
            return None;
        }
        let open = self.runs_open();
        self.slots.values().filter(|s| self.startable(s, open)).map(|s| s.due).min()
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

    /// `t0` on the store's clock.
    const T0_UNIX: i64 = 1_800_000_000;

    fn known(id: &str) -> Known {
        Known::new(id, None, false, false)
    }

    #[test]
    fn a_long_listing_takes_turns_with_everyone_else() {
        let t0 = Instant::now();
        let mut s = Schedule::new(settings(1, 0));
        s.reconcile(&[known("big"), known("a"), known("b")], t0, T0_UNIX);
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
        s.reconcile(&[Known { interval_secs: Some(100), ..known("a") }], t0, T0_UNIX);
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
        s.reconcile(&[known("a")], t0, T0_UNIX);
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
        s.reconcile(&[known("a")], t0, T0_UNIX);
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
        s.reconcile(&[known("a"), Known { paused: true, ..known("p") }], t0, T0_UNIX);
        assert_eq!(s.next(t0).as_deref(), Some("a"));
        assert!(s.next(t0).is_none(), "p is paused");
        s.finish("a", &Outcome::Parked, t0, 0.5);
        assert!(!s.wake("a", t0) && !s.wake("p", t0));
        assert!(s.next(t0 + Duration::from_secs(3600)).is_none());
        assert_eq!(s.slot("a").unwrap().waiting, Waiting::Parked);
        // Reconnected and resumed: both due at once.
        s.reconcile(&[known("a"), known("p")], t0 + Duration::from_secs(5), T0_UNIX);
        let mut got = vec![s.next(t0 + Duration::from_secs(5)).unwrap(), s.next(t0 + Duration::from_secs(5)).unwrap()];
        got.sort();
        assert_eq!(got, ["a", "p"]);
    }

    #[test]
    fn budgets_cap_pages_per_minute_and_the_global_cap_holds() {
        let t0 = Instant::now();
        // 60 pages a minute: a burst of 10, then one a second.
        let mut s = Schedule::new(settings(100, 60));
        s.reconcile(&[known("a")], t0, T0_UNIX);
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
        s.reconcile(&[known("a"), known("b"), known("c")], t0, T0_UNIX);
        assert!(s.next(t0).is_some() && s.next(t0).is_some());
        assert!(s.next(t0).is_none(), "two in flight at most");
        assert_eq!(s.in_flight(), 2);
    }

    #[test]
    fn steps_that_make_many_pages_pay_for_all_of_them() {
        let t0 = Instant::now();
        // 60 pages a minute, burst 10: steps of 8 pages each (one token taken, 7 charged).
        let mut s = Schedule::new(settings(100, 60));
        s.reconcile(&[known("a")], t0, T0_UNIX);
        let mut pages = 0u64;
        let mut now = t0;
        while now < t0 + Duration::from_secs(60) {
            if let Some(id) = s.next(now) {
                pages += 8;
                s.charge(&id, 7, now);
                s.finish(&id, &Outcome::More, now, 0.5);
            }
            now += Duration::from_millis(100);
        }
        // A minute's refill (60) plus the burst (10), give or take the step that overdraws.
        assert!((64..=80).contains(&pages), "within the budget, got {pages}");
        assert_eq!(s.slot("a").unwrap().waiting, Waiting::Budget, "it waits out its debt");
        // Unlimited budgets are never charged.
        let mut s = Schedule::new(settings(100, 0));
        s.reconcile(&[known("a")], t0, T0_UNIX);
        for _ in 0..100 {
            let id = s.next(t0).expect("no budget to wait for");
            s.charge(&id, 1_000, t0);
            s.finish(&id, &Outcome::More, t0, 0.5);
        }
    }

    #[test]
    fn removed_datasources_disappear_unless_a_step_is_running() {
        let t0 = Instant::now();
        let mut s = Schedule::new(settings(4, 0));
        s.reconcile(&[known("a"), known("b")], t0, T0_UNIX);
        let running = s.next(t0).unwrap();
        s.reconcile(&[], t0, T0_UNIX);
        assert_eq!(s.len(), 1, "the running one stays until its step ends");
        s.finish(&running, &Outcome::Gone, t0, 0.5);
        assert!(s.is_empty());
        assert_eq!(s.in_flight(), 0);
    }

    #[test]
    fn another_replicas_lease_and_sync_move_the_turn_later_and_a_wake_still_goes() {
        let t0 = Instant::now();
        let mut s = Schedule::new(settings(4, 0));
        s.reconcile(&[known("a"), known("b"), known("c")], t0, T0_UNIX);
        // Another replica holds b's lease for 40 more seconds and has just synced c.
        let leased = Known { leased_until: Some(t0 + Duration::from_secs(40)), ..known("b") };
        let synced = Known { synced_at: Some(T0_UNIX - 10), ..known("c") };
        s.reconcile(&[known("a"), leased, synced.clone()], t0, T0_UNIX);
        assert_eq!(s.next(t0).as_deref(), Some("a"), "only a is this replica's to take now");
        assert!(s.next(t0).is_none());
        assert_eq!(
            (s.slot("b").unwrap().due - t0, s.slot("b").unwrap().waiting),
            (Duration::from_secs(40), Waiting::Leased)
        );
        assert_eq!(
            (s.slot("c").unwrap().due - t0, s.slot("c").unwrap().waiting),
            (Duration::from_secs(20), Waiting::Interval),
            "an interval (30 s) after their sync, 10 s ago"
        );
        // The same news again changes nothing; it only ever moves a turn later.
        s.reconcile(&[known("a"), Known { synced_at: Some(T0_UNIX - 25), ..known("b") }, synced], t0, T0_UNIX);
        assert_eq!(s.slot("c").unwrap().due - t0, Duration::from_secs(20));
        assert_eq!(s.slot("b").unwrap().due - t0, Duration::from_secs(40));
        // A webhook here wins over both: the other replica's sync may predate the change.
        assert!(s.wake("c", t0));
        assert_eq!(s.next(t0).as_deref(), Some("c"));
        assert!(s.slot("c").unwrap().woken, "the step must not skip it as synced elsewhere");
        // Held elsewhere: look again 1 s later while woken; otherwise when the lease ends.
        s.finish("c", &Outcome::Leased(Duration::from_secs(60)), t0, 0.5);
        assert_eq!(s.slot("c").unwrap().due - t0, Duration::from_secs(1));
        assert!(s.slot("c").unwrap().woken, "still owed a sync after the change");
        s.finish("a", &Outcome::Leased(Duration::from_secs(60)), t0, 0.5);
        assert_eq!(
            (s.slot("a").unwrap().due - t0, s.slot("a").unwrap().waiting),
            (Duration::from_secs(60), Waiting::Leased)
        );
    }

    #[test]
    fn a_sync_found_done_elsewhere_waits_an_interval_from_it() {
        let t0 = Instant::now();
        let mut s = Schedule::new(settings(4, 0));
        s.reconcile(&[known("a")], t0, T0_UNIX);
        s.next(t0);
        s.finish("a", &Outcome::SyncedElsewhere { at: T0_UNIX - 5, ago: Duration::from_secs(5) }, t0, 0.5);
        let slot = s.slot("a").unwrap();
        assert_eq!(
            (slot.due - t0, slot.waiting, slot.seen_synced),
            (Duration::from_secs(25), Waiting::Interval, Some(T0_UNIX - 5))
        );
        assert!(s.is_idle("a"), "idle: a longpoll may watch it");
        // A sync this process made itself is not news when the store reports it.
        s.note_synced("a", T0_UNIX + 3);
        s.reconcile(&[Known { synced_at: Some(T0_UNIX + 3), ..known("a") }], t0, T0_UNIX + 3);
        assert_eq!(s.slot("a").unwrap().due - t0, Duration::from_secs(25));
    }

    #[test]
    fn replicas_reach_for_equally_due_datasources_in_different_orders() {
        let t0 = Instant::now();
        let ids: Vec<Known> = (0..16).map(|i| known(&format!("ds-{i:02}"))).collect();
        let order = |salt: u64| {
            let mut s = Schedule::new(settings(4, 0)).salted(salt);
            s.reconcile(&ids, t0, T0_UNIX);
            (0..4).map(|_| s.next(t0).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(order(0), ["ds-00", "ds-01", "ds-02", "ds-03"], "unsalted: by id");
        assert_eq!(order(7), order(7), "a replica's own order is stable");
        let (a, b) = (order(0x9e37_79b9), order(0x85eb_ca6b));
        assert_ne!(a, b);
        assert!(a.iter().filter(|id| b.contains(id)).count() < 4, "{a:?} vs {b:?}");
    }

    #[test]
    fn a_process_keeps_at_most_twice_its_in_flight_runs_open_and_never_spins_at_a_cap() {
        let t0 = Instant::now();
        let mut s = Schedule::new(settings(2, 0));
        let ids: Vec<Known> = (0..10).map(|i| known(&format!("ds-{i}"))).collect();
        s.reconcile(&ids, t0, T0_UNIX);
        let (a, b) = (s.next(t0).unwrap(), s.next(t0).unwrap());
        assert_eq!(s.next_due(), None, "both pages in flight: nothing to wake for until one ends");
        // Both are long listings; two more runs open as their first pages end.
        s.finish(&a, &Outcome::More, t0, 0.5);
        s.finish(&b, &Outcome::More, t0, 0.5);
        let (c, d) = (s.next(t0).unwrap(), s.next(t0).unwrap());
        assert!(![&a, &b].contains(&&c) && ![&a, &b].contains(&&d), "new runs first, as the least recently stepped");
        s.finish(&c, &Outcome::More, t0, 0.5);
        s.finish(&d, &Outcome::More, t0, 0.5);
        // Four runs open = 2 × 2 in flight: the next steps go on with them, the six others wait.
        let mut stepped = std::collections::BTreeSet::new();
        let mut now = t0;
        for _ in 0..8 {
            now += Duration::from_millis(1);
            let id = s.next(now).unwrap();
            stepped.insert(id.clone());
            s.finish(&id, &Outcome::More, now, 0.5);
        }
        assert_eq!(stepped, [a, b, c, d].into_iter().collect(), "only the open runs step");
        // One run ends: a waiting datasource starts.
        now += Duration::from_millis(1);
        let id = s.next(now).unwrap();
        s.finish(&id, &Outcome::Done, now, 0.5);
        let fresh = s.next(now).unwrap();
        assert!(!stepped.contains(&fresh), "{fresh} starts its run");
    }
}
