//! Which children each stack controls, kept from the child watches, so pruning looks up a
//! stack's few children instead of scanning every cached Deployment, Service and
//! AzureResource at each reconcile (at 10,000 stacks, 50,000 objects per reconcile).
//!
//! The index only proposes candidates: pruning reads each from its cache and deletes it only
//! if the cache still shows it controlled by the stack. An entry that is no longer true (its
//! ownerReferences were rewritten) is dropped when pruning meets it; every relist of a kind
//! rebuilds that kind's entries.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::Resource;
use kube::runtime::watcher;

use crate::shard::ring;
use crate::stack::render::ChildKind;

/// Keyed by the hash of the controlling stack's UID (a collision only adds candidates that
/// pruning then rejects); each entry lists the kind and name of a child.
type Entries = HashMap<u64, Vec<(ChildKind, Box<str>)>>;

/// A relist in progress, per kind: (controller UID hash, name) of each listed child.
type Relists = HashMap<ChildKind, Vec<(u64, Box<str>)>>;

/// The children of every stack, by kind and name.
#[derive(Default)]
pub struct Owned {
    live: Mutex<Entries>,
    relists: Mutex<Relists>,
}

impl Owned {
    /// Updates the index from one event of the watch of `kind` (an `inspect` callback).
    pub fn observe<K: Resource>(&self, kind: ChildKind, event: &Result<watcher::Event<K>, watcher::Error>) {
        let Ok(event) = event else { return };
        match event {
            watcher::Event::Apply(child) => {
                if let (Some((owner, name)), Ok(mut live)) = (entry(child), self.live.lock()) {
                    add(&mut live, owner, kind, name);
                }
            }
            watcher::Event::Delete(child) => {
                if let (Some((owner, name)), Ok(mut live)) = (entry(child), self.live.lock()) {
                    remove(&mut live, owner, kind, &name);
                }
            }
            watcher::Event::Init => {
                if let Ok(mut relists) = self.relists.lock() {
                    relists.insert(kind, Vec::new());
                }
            }
            watcher::Event::InitApply(child) => {
                if let (Some(listed), Ok(mut relists)) = (entry(child), self.relists.lock()) {
                    relists.entry(kind).or_default().push(listed);
                }
            }
            watcher::Event::InitDone => {
                let listed = self.relists.lock().ok().and_then(|mut r| r.remove(&kind)).unwrap_or_default();
                let Ok(mut live) = self.live.lock() else { return };
                live.retain(|_, children| {
                    children.retain(|(k, _)| *k != kind);
                    !children.is_empty()
                });
                for (owner, name) in listed {
                    add(&mut live, owner, kind, name);
                }
            }
        }
    }

    /// The children indexed under the stack with `uid`, by kind and name.
    pub fn of(&self, uid: &str) -> Vec<(ChildKind, String)> {
        let Ok(live) = self.live.lock() else { return Vec::new() };
        live.get(&ring::hash(uid)).into_iter().flatten().map(|(kind, name)| (*kind, name.to_string())).collect()
    }

    /// Drops an entry pruning found untrue (the child is gone or no longer the stack's).
    pub fn forget(&self, uid: &str, kind: ChildKind, name: &str) {
        if let Ok(mut live) = self.live.lock() {
            remove(&mut live, ring::hash(uid), kind, name);
        }
    }

    /// Children indexed, for tests.
    pub fn len(&self) -> usize {
        self.live.lock().map(|l| l.values().map(Vec::len).sum()).unwrap_or(0)
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The hash of a child's controller UID and its name; `None` without a controller.
fn entry<K: Resource>(child: &K) -> Option<(u64, Box<str>)> {
    let meta = child.meta();
    let controller = meta.owner_references.iter().flatten().find(|r| r.controller == Some(true))?;
    Some((ring::hash(&controller.uid), meta.name.as_deref()?.into()))
}

fn add(live: &mut Entries, owner: u64, kind: ChildKind, name: Box<str>) {
    let children = live.entry(owner).or_default();
    if !children.iter().any(|(k, n)| *k == kind && *n == name) {
        // A stack has a handful of children: grow by one rather than double.
        children.reserve_exact(1);
        children.push((kind, name));
    }
}

fn remove(live: &mut Entries, owner: u64, kind: ChildKind, name: &str) {
    if let Some(children) = live.get_mut(&owner) {
        children.retain(|(k, n)| !(*k == kind && &**n == name));
        if children.is_empty() {
            live.remove(&owner);
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    use super::*;

    fn child(name: &str, owner: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                owner_references: Some(vec![OwnerReference {
                    controller: Some(true),
                    uid: owner.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn names(owned: &Owned, uid: &str) -> Vec<String> {
        let mut names: Vec<String> = owned.of(uid).into_iter().map(|(k, n)| format!("{}/{n}", k.as_str())).collect();
        names.sort();
        names
    }

    #[test]
    fn children_are_listed_under_their_controller() {
        use watcher::Event::*;
        let owned = Owned::default();
        let (d, s) = (ChildKind::Deployment, ChildKind::Service);
        owned.observe(d, &Ok(Apply(child("a-web", "a"))));
        owned.observe(d, &Ok(Apply(child("a-web", "a"))));
        owned.observe(s, &Ok(Apply(child("a-web", "a"))));
        owned.observe(d, &Ok(Apply(child("b-web", "b"))));
        owned.observe(d, &Ok(Apply(ConfigMap::default())));
        assert_eq!(names(&owned, "a"), ["Deployment/a-web", "Service/a-web"]);
        owned.observe(s, &Ok(Delete(child("a-web", "a"))));
        assert_eq!(names(&owned, "a"), ["Deployment/a-web"]);
        owned.forget("b", d, "b-web");
        assert!(owned.of("b").is_empty());
        assert_eq!(owned.len(), 1);
    }

    #[test]
    fn a_relist_rebuilds_only_its_kind() {
        use watcher::Event::*;
        let owned = Owned::default();
        let (d, s) = (ChildKind::Deployment, ChildKind::Service);
        owned.observe(d, &Ok(Apply(child("a-web", "a"))));
        owned.observe(d, &Ok(Apply(child("a-gone", "a"))));
        owned.observe(s, &Ok(Apply(child("a-web", "a"))));
        for event in [Init, InitApply(child("a-web", "a")), InitApply(child("c-api", "c")), InitDone] {
            owned.observe(d, &Ok(event));
        }
        assert_eq!(names(&owned, "a"), ["Deployment/a-web", "Service/a-web"]);
        assert_eq!(names(&owned, "c"), ["Deployment/c-api"]);
    }
}
