//! Progress-only status writes, at most one per stack per window.
//!
//! While a stack rolls out, every step of each Deployment (a pod created, updated, ready)
//! changes the stack's component counters, and each change was a status write: about five per
//! stack, more than its children's applies, all on a machine whose API server is also busy
//! rolling the Deployments out. A status whose conditions keep their status and reason (only
//! counters and messages move) waits until the window since the stack's last written status
//! has passed; a change of a condition (Ready, Stalled, Reconciling) or of the generation it
//! describes is written at once, so readiness is never reported late.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::api::SolutionStackStatus;

/// Entries kept before old ones (past the window, so without effect) are dropped.
const TRIM_AT: usize = 1024;

/// When each stack (by UID) last had a status written, and the window between progress-only
/// writes.
pub struct StatusPace {
    window: Duration,
    last: Mutex<HashMap<String, Instant>>,
}

impl StatusPace {
    /// Progress-only writes of a stack at least `window` apart (a zero window: no pacing).
    pub fn new(window: Duration) -> Self {
        Self { window, last: Mutex::new(HashMap::new()) }
    }

    /// Whether `next` may be written now over `previous` for the stack with `uid`
    /// (`Ok`, recorded as its last write) or must wait (`Err` with the time left).
    /// An unchanged status is always `Ok` (nothing is written) and not recorded.
    pub fn admit(
        &self,
        uid: &str,
        previous: Option<&SolutionStackStatus>,
        next: &SolutionStackStatus,
        now: Instant,
    ) -> Result<(), Duration> {
        if previous == Some(next) {
            return Ok(());
        }
        let Ok(mut last) = self.last.lock() else { return Ok(()) };
        if let (Some(previous), Some(at)) = (previous, last.get(uid))
            && progress_only(previous, next)
        {
            let due = *at + self.window;
            if due > now {
                return Err(due - now);
            }
        }
        if last.len() >= TRIM_AT {
            let window = self.window;
            last.retain(|_, at| now.saturating_duration_since(*at) < window);
        }
        last.insert(uid.to_owned(), now);
        Ok(())
    }
}

/// `next` differs from `previous` only in progress: the same observed generation and the same
/// conditions by type, status and reason (messages, counters and component details aside).
pub fn progress_only(previous: &SolutionStackStatus, next: &SolutionStackStatus) -> bool {
    let key = |s: &SolutionStackStatus| {
        s.conditions.iter().map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone())).collect::<Vec<_>>()
    };
    previous.observed_generation == next.observed_generation && key(previous) == key(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn status(ready: &str, reason: &str, counter: &str) -> SolutionStackStatus {
        SolutionStackStatus {
            observed_generation: Some(1),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: ready.into(),
                reason: reason.into(),
                message: format!("{counter} components ready"),
                last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
                observed_generation: Some(1),
            }],
            ready: Some(counter.into()),
            ..Default::default()
        }
    }

    #[test]
    fn progress_waits_for_the_window_and_transitions_do_not() {
        let pace = StatusPace::new(Duration::from_secs(2));
        let t0 = Instant::now();
        let zero = status("False", "RollingOut", "0/3");
        let one = status("False", "RollingOut", "1/3");
        let two = status("False", "RollingOut", "2/3");
        let ready = status("True", "Available", "3/3");
        // The first status of a stack (none written before): at once.
        assert_eq!(pace.admit("u", None, &zero, t0), Ok(()));
        // Progress 1 s later waits the second left of the window.
        assert_eq!(pace.admit("u", Some(&zero), &one, t0 + Duration::from_secs(1)), Err(Duration::from_secs(1)));
        // Readiness is written at once, window or not.
        assert_eq!(pace.admit("u", Some(&zero), &ready, t0 + Duration::from_secs(1)), Ok(()));
        // Progress after the window: written.
        let t3 = t0 + Duration::from_secs(3) + Duration::from_millis(500);
        assert_eq!(pace.admit("u", Some(&one), &two, t3), Ok(()));
        // An unchanged status is no write and does not restart the window.
        assert_eq!(pace.admit("u", Some(&two), &two, t3 + Duration::from_secs(1)), Ok(()));
        // Another stack has a window of its own.
        assert_eq!(pace.admit("v", Some(&zero), &one, t3), Ok(()));
    }

    #[test]
    fn a_new_generation_is_not_progress() {
        let previous = status("False", "RollingOut", "1/3");
        let mut next = previous.clone();
        next.observed_generation = Some(2);
        assert!(!progress_only(&previous, &next));
        assert!(progress_only(&previous, &status("False", "RollingOut", "2/3")));
        assert!(!progress_only(&previous, &status("False", "WaitingForDependency", "1/3")));
    }

    #[test]
    fn old_entries_are_dropped_once_many() {
        let pace = StatusPace::new(Duration::from_secs(1));
        let t0 = Instant::now();
        let (a, b) = (status("False", "RollingOut", "0/3"), status("False", "RollingOut", "1/3"));
        for i in 0..TRIM_AT {
            assert_eq!(pace.admit(&i.to_string(), None, &a, t0), Ok(()));
        }
        assert_eq!(pace.admit("late", Some(&a), &b, t0 + Duration::from_secs(2)), Ok(()));
        assert_eq!(pace.last.lock().map(|l| l.len()).unwrap_or_default(), 1);
    }
}
