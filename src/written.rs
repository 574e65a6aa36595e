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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::{Resource, ResourceExt};

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
}
