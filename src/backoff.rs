//! Per-object exponential backoff for failed reconciles: the n-th failure in a row of one
//! object waits `min` doubled n-1 times, with jitter, at most five minutes; a success
//! resets it. Objects back off independently, so one failing object never slows others.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// The longest wait between retries.
pub const MAX_DELAY: Duration = Duration::from_secs(300);

/// Failure counts by object, and the delays they lead to.
pub struct Backoff<K> {
    min: Duration,
    failures: Mutex<HashMap<K, usize>>,
}

impl<K: Eq + Hash> Backoff<K> {
    /// Backoff starting at `min`.
    pub fn new(min: Duration) -> Self {
        Self { min, failures: Mutex::new(HashMap::new()) }
    }

    /// Records a failure of `key` and returns how long to wait before retrying it.
    pub fn failed(&self, key: K) -> Duration {
        let attempt = self
            .failures
            .lock()
            .map(|mut failures| {
                let count = failures.entry(key).or_insert(0);
                *count += 1;
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
}
