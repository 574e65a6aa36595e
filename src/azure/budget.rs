//! The operator's own ARM request budget, shaped like ARM's throttling so that ARM never has
//! to refuse it: token buckets per subscription and principal, reads, writes and deletes
//! apart ("Understand how Azure Resource Manager throttles requests", token bucket
//! algorithm: reads 250 burst refilled at 25/s, writes 200 at 10/s, deletes 200 at 10/s).
//! The operator takes `--azure-budget-percent` of each, leaving the rest to the people and
//! tools that share its principal; sharded replicas split that share among themselves.
//!
//! A 429's `Retry-After` pauses every request for that subscription and principal, in this
//! replica at once and, when sharded, in the others through [`super::pauses`]: ARM throttles
//! the principal, not the replica.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

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

/// The key of the budget and of pauses: subscription (lower case) and principal.
pub fn key(subscription: &str, principal: &str) -> String {
    format!("{}\n{principal}", subscription.to_ascii_lowercase())
}

/// The name a pause travels under between replicas: a short hash of [`key`] (the principal is
/// not secret, but an annotation key has no room for it).
pub fn pause_name(key: &str) -> String {
    crate::naming::short_hash(key.as_bytes())
}

/// A pause to announce to the other replicas: its [`pause_name`] and until when.
pub type Announcement = (String, SystemTime);

/// What every ARM client of the process shares about throttling.
pub struct Throttling {
    percent: u8,
    budget: RwLock<Arc<Budget>>,
    /// Until when each [`pause_name`] is paused.
    paused: Mutex<HashMap<String, Instant>>,
    announce: Mutex<Option<tokio::sync::mpsc::Sender<Announcement>>>,
}

impl Throttling {
    /// A budget of `percent` of ARM's buckets, no pauses.
    pub fn new(percent: u8) -> Self {
        Self {
            percent,
            budget: RwLock::new(Arc::new(Budget::new(percent))),
            paused: Mutex::default(),
            announce: Mutex::default(),
        }
    }

    /// Splits the share among `replicas` sharded replicas (at least 1 % each).
    pub fn set_replicas(&self, replicas: usize) {
        let share = (usize::from(self.percent) / replicas.max(1)).clamp(1, 100);
        let share = u8::try_from(share).unwrap_or(1);
        if let Ok(mut budget) = self.budget.write() {
            *budget = Arc::new(Budget::new(share));
        }
    }

    /// Takes a token for a request of `method` under `key`; `Err(wait)` when its bucket is empty.
    pub fn check(&self, key: &String, method: &Method) -> Result<(), Duration> {
        let budget = self.budget.read().map(|b| b.clone()).map_err(|_| Duration::from_secs(1))?;
        budget.check(key, method)
    }

    /// How long `key` is still paused; `None` when it is not.
    pub fn paused_for(&self, key: &str) -> Option<Duration> {
        let now = Instant::now();
        let until = self.paused.lock().ok()?.get(&pause_name(key)).copied()?;
        (until > now).then(|| until.saturating_duration_since(now))
    }

    /// ARM throttled `key` for `retry_after`: pause it here and announce it to the others.
    pub fn throttled(&self, key: &str, retry_after: Duration) {
        let name = pause_name(key);
        self.pause(&name, Instant::now() + retry_after);
        let sender = self.announce.lock().ok().and_then(|a| a.clone());
        if let Some(sender) = sender {
            // A full channel drops the announcement: the others then learn from ARM itself.
            let _ = sender.try_send((name, SystemTime::now() + retry_after));
        }
    }

    /// Another replica announced that `name` is paused until `until` (bounded by the caller).
    pub fn pause_announced(&self, name: &str, until: SystemTime) {
        let left = until.duration_since(SystemTime::now()).unwrap_or_default();
        if !left.is_zero() {
            self.pause(name, Instant::now() + left);
        }
    }

    fn pause(&self, name: &str, until: Instant) {
        if let Ok(mut paused) = self.paused.lock() {
            let now = Instant::now();
            paused.retain(|_, u| *u > now);
            let entry = paused.entry(name.to_owned()).or_insert(until);
            *entry = (*entry).max(until);
        }
    }

    /// Where this process's pauses are announced from now on (the receiver of the sharing task).
    pub fn announcements(&self) -> tokio::sync::mpsc::Receiver<Announcement> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        if let Ok(mut announce) = self.announce.lock() {
            *announce = Some(tx);
        }
        rx
    }

    /// Drops the budget keys whose buckets are full again.
    pub fn retain_recent(&self) {
        if let Ok(budget) = self.budget.read() {
            budget.retain_recent();
        }
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

#[cfg(test)]
mod throttling_tests {
    use super::*;

    #[test]
    fn pauses_are_local_at_once_and_announced() {
        let throttling = Throttling::new(80);
        let mut announced = throttling.announcements();
        let key = key("SUB", "tenant/client");
        throttling.throttled(&key, Duration::from_secs(30));
        assert!(throttling.paused_for(&key).is_some_and(|d| d > Duration::from_secs(29)));
        assert!(throttling.paused_for(&super::key("other", "tenant/client")).is_none());
        let (name, until) = announced.try_recv().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(name, pause_name(&super::key("sub", "tenant/client")));
        assert!(until > SystemTime::now() + Duration::from_secs(29));

        // Another replica's announcement pauses the key here; a past one does nothing.
        let other = Throttling::new(80);
        other.pause_announced(&name, until);
        assert!(other.paused_for(&key).is_some());
        other.pause_announced(&pause_name("x"), SystemTime::now() - Duration::from_secs(1));
        assert!(other.paused_for("x").is_none());
    }

    #[test]
    fn replicas_split_the_share() {
        let throttling = Throttling::new(80);
        throttling.set_replicas(4);
        let key = key("sub", "p");
        // 20 % of 200 writes: 40 at once.
        assert!((0..40).all(|_| throttling.check(&key, &Method::Put).is_ok()));
        assert!(throttling.check(&key, &Method::Put).is_err());
    }
}
