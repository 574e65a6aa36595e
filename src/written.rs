//! Read your own writes: a controller's writes of an object, kept until its cache has seen them.
//!
//! A reconcile that writes status and asks to run again soon (an Azure operation polled every
//! few seconds) can run before the watch has delivered its own write; the cached copy then
//! lacks what the write recorded (the operation in flight), and the reconcile would act as if
//! there were none: a second PUT, a failed operation lost. So each write is kept with the
//! resourceVersions it replaced: the one it was made over and, when a reconcile writes twice
//! (a finalizer, then status), those its earlier writes replaced. A reconcile given a cached
//! copy still at one of them takes the written object instead. Any other cached version is
//! newer (the write's own event, or someone's after it), and the kept write is dropped.
//!
//! Where only a status write matters (whether it was already sent, and which pool a
//! reconcile takes its turn from, `turns`), [`StatusWrites`] keeps a digest of it and the
//! generation it observed, by UID.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::{Resource, ResourceExt};

use crate::turns::Class;

/// Writes kept at most; past it they are all dropped (only the help is lost, never a write).
const MAX: usize = 4096;

/// Replaced versions kept per object: a reconcile writes an object at most a few times.
const MAX_REPLACED: usize = 8;

/// The last write of each object whose cache has not caught up, by UID.
pub struct Written<K> {
    kept: Mutex<HashMap<String, Kept<K>>>,
}

/// An object as last written, and the versions it and the writes it followed replaced.
struct Kept<K> {
    replaced: Vec<String>,
    written: Arc<K>,
}

impl<K> Default for Written<K> {
    fn default() -> Self {
        Self { kept: Mutex::new(HashMap::new()) }
    }
}

impl<K: Resource> Written<K> {
    /// Records that `written` (the API server's answer) replaced `before`.
    pub fn record(&self, before: &K, written: K) {
        let (Some(uid), Some(replaced)) = (before.meta().uid.clone(), before.resource_version()) else { return };
        let Ok(mut kept) = self.kept.lock() else { return };
        if kept.len() >= MAX {
            kept.clear();
        }
        // Written over our own previous write: the versions that one replaced are older too.
        let mut older = match kept.remove(&uid) {
            Some(previous) if previous.written.resource_version().as_ref() == Some(&replaced) => previous.replaced,
            _ => Vec::new(),
        };
        if older.len() >= MAX_REPLACED {
            older.remove(0);
        }
        older.push(replaced);
        kept.insert(uid, Kept { replaced: older, written: Arc::new(written) });
    }

    /// `cached`, or the object this controller wrote over it when the cache has not seen that
    /// write yet.
    pub fn latest(&self, cached: Arc<K>) -> Arc<K> {
        let (Some(uid), Ok(mut kept)) = (cached.meta().uid.as_deref(), self.kept.lock()) else { return cached };
        let version = cached.resource_version();
        match kept.get(uid) {
            Some(last) if version.is_some_and(|v| last.replaced.contains(&v)) => last.written.clone(),
            Some(_) => {
                kept.remove(uid);
                cached
            }
            None => cached,
        }
    }
}

/// The last status this controller wrote per object (by UID): the resourceVersion it was
/// written over, the generation it observed and a digest of it, kept until the cache shows
/// another version. A reconcile that runs before the watch delivers its own status write sees
/// a cached status that lacks it, and would act on that:
/// - it would send the same status again: a write that changes nothing, on an API server that
///   is busiest exactly when the watch lags ([`StatusWrites::already_written`]);
/// - classed from the cache alone it was [`Class::Fresh`] and queued behind every first
///   reconcile of a burst, and its object's later triggers waited with it: at 10,000 stacks,
///   2,105 stacks whose Deployments were all available still showed their first status
///   ([`StatusWrites::class`]).
#[derive(Default)]
pub struct StatusWrites(Mutex<HashMap<String, StatusWrite>>);

/// One status write: the version it was written over, the generation it observed, its digest.
struct StatusWrite {
    over: String,
    generation: Option<i64>,
    digest: u64,
}

impl StatusWrites {
    /// Entries kept at most; past it they are all dropped (a dropped entry costs at most one
    /// repeated write or one turn from the fresh pool: the cache catches up by itself).
    const MAX: usize = 16_384;

    /// Records that `status` (any serializable form), observing `generation`, was written
    /// over `version` of `uid`.
    pub fn record(&self, uid: &str, version: &str, generation: Option<i64>, status: &impl serde::Serialize) {
        let mut writes = self.lock();
        if writes.len() >= Self::MAX {
            writes.clear();
        }
        let write = StatusWrite { over: version.to_owned(), generation, digest: digest(status) };
        writes.insert(uid.to_owned(), write);
    }

    /// Whether `status` is what this controller last wrote over `version`, the version the
    /// cache still shows: the write is done and only its watch event is missing. A cache at
    /// any other version (our write's own, or someone's after it) ends the entry.
    pub fn already_written(&self, uid: &str, version: &str, status: &impl serde::Serialize) -> bool {
        self.while_cached(uid, version, |write| write.digest == digest(status)).unwrap_or(false)
    }

    /// The class of a cached object (`uid`, its `version` and `generation`, the `observed`
    /// generation its cached status shows), counting this controller's status write over that
    /// version the cache has not shown yet.
    pub fn class(
        &self,
        uid: Option<&str>,
        version: Option<&str>,
        generation: Option<i64>,
        observed: Option<i64>,
    ) -> Class {
        let cached = Class::of(generation, observed);
        let (Some(uid), Some(version)) = (uid, version) else { return cached };
        let ours = self.while_cached(uid, version, |write| generation.is_some() && write.generation == generation);
        if ours == Some(true) { Class::Progress } else { cached }
    }

    /// `check` applied to the entry of `uid` while the cache still shows the `version` it was
    /// written over; an entry over any other version is dropped (`None`).
    fn while_cached(&self, uid: &str, version: &str, check: impl FnOnce(&StatusWrite) -> bool) -> Option<bool> {
        let mut writes = self.lock();
        match writes.get(uid) {
            Some(write) if write.over == version => Some(check(write)),
            Some(_) => {
                writes.remove(uid);
                None
            }
            None => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, StatusWrite>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A digest of the JSON form (SipHash; 0 if it cannot be serialized, which only makes a
/// needless write more likely).
fn digest(value: &impl serde::Serialize) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    serde_json::to_vec(value).unwrap_or_default().hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    use super::*;

    fn at(version: &str, data: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                uid: Some("u".into()),
                resource_version: Some(version.into()),
                ..Default::default()
            },
            data: Some([("k".to_owned(), data.to_owned())].into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_stale_cache_gives_way_to_our_write_until_it_catches_up() {
        let written = Written::default();
        let before = at("1", "old");
        written.record(&before, at("2", "ours"));
        // The cache still holds the version we wrote over: our write is newer.
        assert_eq!(written.latest(Arc::new(at("1", "old"))).data, at("2", "ours").data);
        // The cache caught up (or someone wrote after us): the cache wins from then on.
        assert_eq!(written.latest(Arc::new(at("3", "theirs"))).data, at("3", "theirs").data);
        assert_eq!(written.latest(Arc::new(at("1", "old"))).data, at("1", "old").data);
    }

    #[test]
    fn two_writes_in_a_row_are_newer_than_both_versions_they_replaced() {
        // A finalizer added (1 -> 2), then status written over it (2 -> 3); the cache may
        // still show 1 or 2 when the reconcile runs again.
        let written = Written::default();
        written.record(&at("1", "old"), at("2", "finalizer"));
        written.record(&at("2", "finalizer"), at("3", "status"));
        assert_eq!(written.latest(Arc::new(at("1", "old"))).data, at("3", "status").data);
        assert_eq!(written.latest(Arc::new(at("2", "finalizer"))).data, at("3", "status").data);
        assert_eq!(written.latest(Arc::new(at("3", "status"))).data, at("3", "status").data);
        // Not a chain: a write over a version we did not write starts afresh.
        written.record(&at("7", "theirs"), at("8", "ours"));
        assert_eq!(written.latest(Arc::new(at("1", "old"))).data, at("1", "old").data);
    }

    #[test]
    fn a_reconcile_after_our_own_status_write_is_progress_before_the_cache_shows_it() {
        let writes = StatusWrites::default();
        writes.record("u", "7", Some(3), &"status");
        // The cache still shows the version the status was written over.
        assert_eq!(writes.class(Some("u"), Some("7"), Some(3), None), Class::Progress);
        assert_eq!(writes.class(Some("u"), Some("7"), Some(3), Some(2)), Class::Progress);
        // The spec changed since: fresh, and the entry goes.
        assert_eq!(writes.class(Some("u"), Some("9"), Some(4), Some(2)), Class::Fresh);
        assert_eq!(writes.class(Some("u"), Some("7"), Some(3), Some(2)), Class::Fresh);
        writes.record("u", "7", Some(3), &"status");
        // Another object: only its cache counts.
        assert_eq!(writes.class(Some("v"), Some("7"), Some(3), None), Class::Fresh);
        // Once the cache shows the write, the entry goes.
        assert_eq!(writes.class(Some("u"), Some("8"), Some(3), Some(3)), Class::Progress);
        assert!(writes.lock().is_empty());
    }

    #[test]
    fn a_status_written_over_the_cached_version_is_not_written_again() {
        let writes = StatusWrites::default();
        writes.record("u", "7", Some(1), &"ready 1/1");
        // The cache still shows version 7: the same status is done, another one is not.
        assert!(writes.already_written("u", "7", &"ready 1/1"));
        assert!(!writes.already_written("u", "7", &"ready 0/1"));
        assert!(!writes.already_written("v", "7", &"ready 1/1"));
        // The cache moved on (our write's event, or someone's write): compare with it again.
        assert!(!writes.already_written("u", "8", &"ready 1/1"));
        assert!(!writes.already_written("u", "7", &"ready 1/1"));
    }
}
