//! What the host does after each step of a sync: one pure function, [`next_action`], from what
//! happened (a WIT error, a crashed call, a page that made no progress) and the run's counters
//! to an [`Action`]. No I/O and no clock: the sync loop carries the action out; the table test
//! below covers every WIT error case and every bound.
//!
//! [`describe`] is the host's one wording of a WIT error.

use std::time::Duration;

use crate::runtime::WitError;

/// The one backoff curve of the host: exponential, capped, with "equal jitter" (half fixed,
/// half random, so retries of many tenants spread out). Sync retries ([`RetryPolicy`]), sink
/// delivery and the longpoll watcher each use it with their own bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait's ceiling; doubles per consecutive failure.
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// A batch to a sink: retried within one drain.
    pub const DELIVERY: Backoff = Backoff { first: Duration::from_millis(200), max: Duration::from_secs(30) };
    /// `serve`'s sink task after a drain failed: it tries again later, all datasources at once.
    pub const SINK_TASK: Backoff = Backoff { first: Duration::from_secs(2), max: Duration::from_secs(64) };
    /// A failing longpoll: latency only (interval polling still runs).
    pub const WATCH: Backoff = Backoff { first: Duration::from_secs(10), max: Duration::from_secs(300) };

    /// The wait before retry `attempt` (0: the first retry), `jitter` in [0, 1).
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self.first.saturating_mul(1u32 << attempt.min(20)).min(self.max);
        let half = exp / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// Bounds on retrying. The defaults suit a scheduler; tests shorten them.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// First transient backoff; doubles per consecutive failure.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Consecutive transient failures (5xx, timeouts, traps) before the datasource fails.
    pub max_attempts: u32,
    /// Consecutive rate limits before the datasource fails for this run.
    pub max_rate_limits: u32,
    /// The longest server-given wait we honour at once (`Retry-After` can be hours).
    pub max_server_wait: Duration,
    /// Listing restarts (cursor resets, root changes) within one run.
    pub max_restarts: u32,
    /// Consecutive pages with the same cursor, no entries and `has_more`.
    pub max_stalled_pages: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            max_attempts: 6,
            max_rate_limits: 30,
            max_server_wait: Duration::from_secs(15 * 60),
            max_restarts: 3,
            max_stalled_pages: 5,
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with "equal jitter" (half fixed, half random); `jitter` in [0, 1).
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        Backoff { first: self.base_delay, max: self.max_delay }.delay(attempt, jitter)
    }
}

/// What happened in one step that was not a page applied with progress.
#[derive(Clone, Debug)]
pub enum Event<'a> {
    /// The component returned this error.
    Failed(&'a WitError),
    /// The call produced no result: a trap, a timeout, an instantiation failure.
    Crashed(&'a str),
    /// A page was applied but moved nothing: same cursor, no entries, `has_more`.
    Stalled,
}

/// Consecutive and per-run counts the bounds are checked against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub transient: u32,
    pub rate_limits: u32,
    pub stalled: u32,
    pub restarts: u32,
}

impl Counters {
    /// Record the action taken, so the next decision sees it.
    pub fn record(&mut self, action: &Action) {
        match action {
            Action::Backoff { .. } => self.transient += 1,
            Action::Wait { .. } => self.rate_limits += 1,
            Action::Continue => self.stalled += 1,
            Action::RestartListing { .. } | Action::SetRootAndRestart { .. } => self.restarts += 1,
            Action::ParkForReauth { .. } | Action::Fail { .. } => {}
        }
    }

    /// A page that moved the sync forward ends every streak (restarts count per run).
    pub fn progressed(&mut self) {
        self.transient = 0;
        self.rate_limits = 0;
        self.stalled = 0;
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Retry the same request after the server-given wait (already capped).
    Wait { delay: Duration, capped: bool },
    /// Retry the same request after an exponential backoff.
    Backoff { delay: Duration, why: String },
    /// Keep going with the next page (a stalled page, within its bound).
    Continue,
    /// Forget the cursor and list from scratch under a new generation.
    RestartListing { why: String },
    /// Store the account's new root, then list from scratch.
    SetRootAndRestart { root: crate::state::RootRecord },
    /// Stop syncing this datasource until the account is connected again.
    ParkForReauth { detail: String },
    /// Stop this run and mark the datasource failing.
    Fail { detail: String },
}

/// The host's wording of a WIT error: `{case}: {what}`. The text payloads are the component's
/// own words; the cases without one are worded here.
pub fn describe(e: &WitError) -> String {
    match e {
        WitError::InvalidInput(m) => format!("invalid-input: {m}"),
        WitError::Denied(m) => format!("denied: {m}"),
        WitError::InvalidClient(m) => format!("invalid-client: {m}"),
        WitError::ReauthRequired(m) => format!("reauth-required: {m}"),
        WitError::RateLimited(ms) => format!("rate-limited: retry after {ms} ms"),
        WitError::CursorReset(m) => format!("cursor-reset: {m}"),
        WitError::RootChanged(r) => format!("root-changed: the root namespace is now {}", r.root_namespace_id),
        WitError::PathNotFound(p) => format!("path-not-found: the configured folder {p:?} does not exist"),
        WitError::Transient(m) => format!("transient: {m}"),
        WitError::Api(m) => format!("api: {m}"),
    }
}

/// Decide what to do after `event`, given the run so far. `jitter` in [0, 1) randomises backoff.
pub fn next_action(event: &Event<'_>, counters: &Counters, policy: &RetryPolicy, jitter: f64) -> Action {
    let transient = |why: String| {
        if counters.transient >= policy.max_attempts {
            Action::Fail { detail: format!("{} consecutive transient failures, last: {why}", counters.transient + 1) }
        } else {
            Action::Backoff { delay: policy.backoff(counters.transient, jitter), why }
        }
    };
    let restart = |action: Action, why: &str| {
        if counters.restarts >= policy.max_restarts {
            Action::Fail {
                detail: format!("the listing restarted {} times in one run, last: {why}", counters.restarts + 1),
            }
        } else {
            action
        }
    };
    match event {
        Event::Crashed(why) => transient(format!("the component call failed: {why}")),
        Event::Stalled => {
            if counters.stalled >= policy.max_stalled_pages {
                Action::Fail {
                    detail: format!(
                        "{} pages in a row made no progress (same cursor, no entries)",
                        counters.stalled + 1
                    ),
                }
            } else {
                Action::Continue
            }
        }
        Event::Failed(e) => match e {
            WitError::RateLimited(ms) => {
                if counters.rate_limits >= policy.max_rate_limits {
                    return Action::Fail {
                        detail: format!("rate limited {} times in a row", counters.rate_limits + 1),
                    };
                }
                let asked = Duration::from_millis(*ms);
                Action::Wait { delay: asked.min(policy.max_server_wait), capped: asked > policy.max_server_wait }
            }
            WitError::Transient(_) => transient(describe(e)),
            WitError::CursorReset(why) => restart(Action::RestartListing { why: why.clone() }, &describe(e)),
            WitError::RootChanged(root) => restart(Action::SetRootAndRestart { root: root.into() }, &describe(e)),
            WitError::ReauthRequired(_) => Action::ParkForReauth { detail: describe(e) },
            // Retrying cannot fix these: the configuration or the request is wrong.
            WitError::InvalidInput(_)
            | WitError::Denied(_)
            | WitError::InvalidClient(_)
            | WitError::PathNotFound(_)
            | WitError::Api(_) => Action::Fail { detail: describe(e) },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RootInfo;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            max_attempts: 3,
            max_rate_limits: 2,
            max_server_wait: Duration::from_secs(900),
            max_restarts: 2,
            max_stalled_pages: 4,
        }
    }

    fn root() -> RootInfo {
        RootInfo { is_team: true, root_namespace_id: "9".into(), home_namespace_id: "1".into(), home_path: None }
    }

    fn at(transient: u32, rate_limits: u32, stalled: u32, restarts: u32) -> Counters {
        Counters { transient, rate_limits, stalled, restarts }
    }

    /// Every WIT error case and every bound: (event, counters, expected action).
    #[test]
    fn the_policy_table() {
        let fresh = Counters::default();
        let ms = Duration::from_millis;
        let fail =
            |needle: &'static str| move |a: &Action| matches!(a, Action::Fail { detail } if detail.contains(needle));
        type Check = Box<dyn Fn(&Action) -> bool>;
        let errors = [
            WitError::InvalidInput("bad cursor".into()),
            WitError::Denied("state expired".into()),
            WitError::InvalidClient("wrong secret".into()),
            WitError::ReauthRequired("invalid_grant".into()),
            WitError::RateLimited(3_000),
            WitError::RateLimited(7_200_000),
            WitError::CursorReset("409 reset".into()),
            WitError::RootChanged(root()),
            WitError::PathNotFound("/Gone".into()),
            WitError::Transient("503".into()),
            WitError::Api("409 other".into()),
        ];
        let rows: Vec<(Event<'_>, Counters, Check)> = vec![
            // Configuration or request errors: fail at once, whatever the counters.
            (Event::Failed(&errors[0]), fresh, Box::new(fail("invalid-input: bad cursor"))),
            (Event::Failed(&errors[1]), fresh, Box::new(fail("denied: state expired"))),
            (Event::Failed(&errors[2]), fresh, Box::new(fail("invalid-client: wrong secret"))),
            (Event::Failed(&errors[8]), fresh, Box::new(fail("\"/Gone\" does not exist"))),
            (Event::Failed(&errors[10]), fresh, Box::new(fail("api: 409 other"))),
            // Re-authorization parks the datasource.
            (
                Event::Failed(&errors[3]),
                fresh,
                Box::new(
                    |a| matches!(a, Action::ParkForReauth { detail } if detail == "reauth-required: invalid_grant"),
                ),
            ),
            // Rate limits: the server's wait, capped, bounded in a row.
            (
                Event::Failed(&errors[4]),
                fresh,
                Box::new(move |a| *a == Action::Wait { delay: ms(3_000), capped: false }),
            ),
            (
                Event::Failed(&errors[5]),
                fresh,
                Box::new(|a| *a == Action::Wait { delay: Duration::from_secs(900), capped: true }),
            ),
            (Event::Failed(&errors[4]), at(0, 1, 0, 0), Box::new(|a| matches!(a, Action::Wait { .. }))),
            (Event::Failed(&errors[4]), at(0, 2, 0, 0), Box::new(fail("rate limited 3 times in a row"))),
            // Resets and root changes restart the listing, bounded per run.
            (
                Event::Failed(&errors[6]),
                fresh,
                Box::new(|a| matches!(a, Action::RestartListing { why } if why == "409 reset")),
            ),
            (Event::Failed(&errors[6]), at(0, 0, 0, 2), Box::new(fail("restarted 3 times in one run"))),
            (
                Event::Failed(&errors[7]),
                at(0, 0, 0, 1),
                Box::new(|a| matches!(a, Action::SetRootAndRestart { root } if root.root_namespace_id == "9")),
            ),
            (Event::Failed(&errors[7]), at(0, 0, 0, 2), Box::new(fail("root namespace is now 9"))),
            // Transient failures and crashed calls back off exponentially, bounded in a row.
            (
                Event::Failed(&errors[9]),
                fresh,
                Box::new(
                    move |a| matches!(a, Action::Backoff { delay, why } if *delay == ms(50) && why == "transient: 503"),
                ),
            ),
            (
                Event::Failed(&errors[9]),
                at(2, 0, 0, 0),
                Box::new(move |a| matches!(a, Action::Backoff { delay, .. } if *delay == ms(200))),
            ),
            (
                Event::Failed(&errors[9]),
                at(3, 0, 0, 0),
                Box::new(fail("4 consecutive transient failures, last: transient: 503")),
            ),
            (
                Event::Crashed("trap: unreachable"),
                fresh,
                Box::new(|a| matches!(a, Action::Backoff { why, .. } if why.contains("unreachable"))),
            ),
            (Event::Crashed("timeout"), at(3, 0, 0, 0), Box::new(fail("consecutive transient failures"))),
            // Pages without progress are tolerated a few times, then fail.
            (Event::Stalled, at(0, 0, 3, 0), Box::new(|a| *a == Action::Continue)),
            (Event::Stalled, at(0, 0, 4, 0), Box::new(fail("5 pages in a row made no progress"))),
        ];
        for (event, counters, check) in rows {
            let action = next_action(&event, &counters, &policy(), 0.0);
            assert!(check(&action), "{event:?} at {counters:?} gave {action:?}");
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_jitters_within_half() {
        let p = policy();
        assert_eq!(p.backoff(0, 0.0), Duration::from_millis(50));
        assert_eq!(p.backoff(0, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(1, 0.5), Duration::from_millis(150));
        assert_eq!(p.backoff(30, 1.0), Duration::from_secs(2), "capped at max_delay");
        // The other users' bounds, on the same curve.
        assert_eq!(Backoff::DELIVERY.delay(0, 1.0), Duration::from_millis(200));
        assert_eq!(Backoff::DELIVERY.delay(0, 0.0), Duration::from_millis(100));
        assert_eq!(Backoff::SINK_TASK.delay(10, 1.0), Duration::from_secs(64));
        assert_eq!(Backoff::WATCH.delay(1, 0.5), Duration::from_secs(15));
        assert_eq!(Backoff::WATCH.delay(9, 1.0), Duration::from_secs(300));
    }

    #[test]
    fn counters_follow_the_actions_and_reset_on_progress() {
        let mut c = Counters::default();
        c.record(&Action::Backoff { delay: Duration::ZERO, why: String::new() });
        c.record(&Action::Wait { delay: Duration::ZERO, capped: false });
        c.record(&Action::Continue);
        c.record(&Action::RestartListing { why: String::new() });
        assert_eq!(c, at(1, 1, 1, 1));
        c.progressed();
        assert_eq!(c, at(0, 0, 0, 1), "restarts count per run");
    }
}
