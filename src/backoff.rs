//! Per-object exponential backoff for failed reconciles: the n-th failure in a row of one
//! object waits `min` doubled n-1 times, with jitter, at most five minutes; a success
//! resets it. Objects back off independently, so one failing object never slows others.
//! An object that stops failing without a success (it was deleted) is forgotten after
//! [`FORGET_AFTER`], so the table holds only objects failing now.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

/// The longest wait between retries.
pub const MAX_DELAY: Duration = Duration::from_secs(300);

/// An object not failing again within this time is forgotten: a failing object is retried
/// within twice [`MAX_DELAY`] (delay plus jitter), or within ARM's capped `Retry-After` of
/// 15 minutes, so only objects that are gone or no longer retried stay quiet this long.
pub const FORGET_AFTER: Duration = Duration::from_secs(20 * 60);

/// Failure counts by object (with the time of the last failure), and the delays they lead to.
pub struct Backoff<K> {
    min: Duration,
    failures: Mutex<HashMap<K, (usize, Instant)>>,
}

impl<K: Eq + Hash> Backoff<K> {
    /// Backoff starting at `min`.
    pub fn new(min: Duration) -> Self {
        Self { min, failures: Mutex::new(HashMap::new()) }
    }

    /// Records a failure of `key` and returns how long to wait before retrying it.
    pub fn failed(&self, key: K) -> Duration {
        self.failed_at(key, Instant::now())
    }

    fn failed_at(&self, key: K, now: Instant) -> Duration {
        let attempt = self
            .failures
            .lock()
            .map(|mut failures| {
                failures.retain(|_, (_, last)| now.saturating_duration_since(*last) < FORGET_AFTER);
                let (count, last) = failures.entry(key).or_insert((0, now));
                *count += 1;
                *last = now;
                *count
            })
            .unwrap_or(1);
        ExponentialBuilder::default()
            .with_min_delay(self.min)
            .with_max_delay(MAX_DELAY)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(attempt.saturating_sub(1))
            .unwrap_or(MAX_DELAY)
    }

    /// Forgets the failures of `key` (it succeeded).
    pub fn succeeded(&self, key: &K) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_per_object_and_resets() {
        let backoff = Backoff::new(Duration::from_secs(1));
        let first = backoff.failed("a");
        let _ = backoff.failed("a");
        let third = backoff.failed("a");
        assert!(third > first, "{first:?} then {third:?}");
        assert!(backoff.failed("b") < Duration::from_secs(3), "another object starts low");
        backoff.succeeded(&"a");
        assert!(backoff.failed("a") < Duration::from_secs(3));
        for _ in 0..20 {
            assert!(backoff.failed("c") <= MAX_DELAY + MAX_DELAY);
        }
    }

    #[test]
    fn objects_that_stop_failing_are_forgotten() {
        let backoff = Backoff::new(Duration::from_secs(1));
        let start = Instant::now();
        for _ in 0..5 {
            backoff.failed_at("gone", start);
        }
        backoff.failed_at("other", start + FORGET_AFTER);
        let held = backoff.failures.lock().map(|f| f.len()).unwrap_or_default();
        assert_eq!(held, 1, "the object that stopped failing was dropped");
    }
}
