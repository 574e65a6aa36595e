//! The operator's own ARM request budget, shaped like ARM's throttling so that ARM never has
//! to refuse it: token buckets per subscription and principal, reads, writes and deletes
//! apart ("Understand how Azure Resource Manager throttles requests", token bucket
//! algorithm: reads 250 burst refilled at 25/s, writes 200 at 10/s, deletes 200 at 10/s).
//! The operator takes `--azure-budget-percent` of each, leaving the rest to the people and
//! tools that share its principal.

use std::num::NonZeroU32;
use std::time::Duration;

use azure_core::http::Method;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// ARM's documented bucket per class: (burst, refill per second).
pub const READS: (u32, u32) = (250, 25);
/// Writes: PUT, PATCH, POST (actions such as listKeys).
pub const WRITES: (u32, u32) = (200, 10);
/// Deletes.
pub const DELETES: (u32, u32) = (200, 10);

/// Buckets keyed by `<subscription>\n<principal>`.
pub struct Budget {
    reads: DefaultKeyedRateLimiter<String>,
    writes: DefaultKeyedRateLimiter<String>,
    deletes: DefaultKeyedRateLimiter<String>,
}

impl Budget {
    /// `percent` (1..=100) of each of ARM's buckets; at least 1 request of burst and 1 per
    /// second.
    pub fn new(percent: u8) -> Self {
        let share = u32::from(percent.clamp(1, 100));
        let quota = |(burst, rate): (u32, u32)| {
            let scaled = |n: u32| NonZeroU32::new((n * share / 100).max(1)).unwrap_or(NonZeroU32::MIN);
            Quota::per_second(scaled(rate)).allow_burst(scaled(burst))
        };
        Self {
            reads: RateLimiter::keyed(quota(READS)),
            writes: RateLimiter::keyed(quota(WRITES)),
            deletes: RateLimiter::keyed(quota(DELETES)),
        }
    }

    /// Takes one request of `method`'s class for `key`; `Err(wait)` when that bucket is empty.
    pub fn check(&self, key: &String, method: &Method) -> Result<(), Duration> {
        let bucket = match *method {
            Method::Get | Method::Head => &self.reads,
            Method::Delete => &self.deletes,
            _ => &self.writes,
        };
        bucket.check_key(key).map_err(|not_until| {
            not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()))
        })
    }

    /// Drops the keys whose buckets are full again (they carry no state worth keeping).
    pub fn retain_recent(&self) {
        self.reads.retain_recent();
        self.writes.retain_recent();
        self.deletes.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_have_their_own_buckets_of_the_documented_share() {
        let budget = Budget::new(80);
        let key = "sub\nprincipal".to_owned();
        // 80 % of 200: 160 writes at once, then the bucket is empty...
        assert!((0..160).all(|_| budget.check(&key, &Method::Put).is_ok()));
        let wait = budget.check(&key, &Method::Post).err();
        assert!(wait.is_some_and(|w| w <= Duration::from_millis(130)), "{wait:?}");
        // ...while reads and deletes are untouched, and so is another principal.
        assert!((0..200).all(|_| budget.check(&key, &Method::Get).is_ok()));
        assert!(budget.check(&key, &Method::Get).is_err());
        assert!((0..160).all(|_| budget.check(&key, &Method::Delete).is_ok()));
        assert!(budget.check(&"sub\nsomeone-else".to_owned(), &Method::Put).is_ok());
    }
}
