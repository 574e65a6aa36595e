//! Read your own writes: a controller's status writes, kept until its cache has seen them.
//!
//! A reconcile that writes status and asks to run again soon (an Azure operation polled every
//! few seconds) can run before the watch has delivered its own write; the cached copy then
//! lacks what the write recorded (the operation in flight), and the reconcile would act as if
//! there were none: a second PUT, a failed operation lost. So each write is kept with the
//! resourceVersion it replaced; a reconcile given a cached copy still at that version takes the
//! written object instead. Any other cached version is newer (the write's own event, or
//! someone's after it), and the kept write is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::{Resource, ResourceExt};

/// Writes kept at most; past it they are all dropped (only the help is lost, never a write).
const MAX: usize = 4096;

/// The last status write of each object whose cache has not caught up, by UID.
pub struct Written<K> {
    kept: Mutex<HashMap<String, (String, Arc<K>)>>,
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
        kept.insert(uid, (replaced, Arc::new(written)));
    }

    /// `cached`, or the object this controller wrote over it when the cache has not seen that
    /// write yet.
    pub fn latest(&self, cached: Arc<K>) -> Arc<K> {
        let (Some(uid), Ok(mut kept)) = (cached.meta().uid.as_deref(), self.kept.lock()) else { return cached };
        match kept.get(uid) {
            Some((replaced, written)) if cached.resource_version().as_ref() == Some(replaced) => written.clone(),
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
}
