//! Which stacks a Secret or AzureResource event concerns, looked up in an index kept from
//! the stack watch instead of scanning every stack per event: with N stacks and N bound
//! Secrets, a relist of the Secrets costs N lookups, not N² binding comparisons.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use crate::api::SolutionStack;
use crate::naming;
use crate::stack::{CachedStack, resolve};

/// `(namespace, name)` of a Secret or an AzureResource.
type Key = (String, String);

/// What one stack refers to by name, in its own namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refers {
    /// Secrets it binds: `secretRef` names, and the binding Secret (`<azure resource>-binding`)
    /// of each Azure binding.
    pub secrets: BTreeSet<String>,
    /// AzureResources it owns (inline Azure bindings) or references (`azureResourceRef`).
    pub azure: BTreeSet<String>,
    /// The SolutionBlueprint it instantiates (cluster-scoped).
    pub blueprint: Option<String>,
}

impl Refers {
    fn union(mut self, other: Option<&Refers>) -> Refers {
        if let Some(other) = other {
            self.secrets.extend(other.secrets.iter().cloned());
            self.azure.extend(other.azure.iter().cloned());
            self.blueprint = self.blueprint.or_else(|| other.blueprint.clone());
        }
        self
    }
}

/// The names `stack` refers to (pure).
pub fn refers(stack: &SolutionStack) -> Refers {
    let mut out = Refers { blueprint: stack.spec.blueprint.as_ref().map(|b| b.name.clone()), ..Default::default() };
    for binding in &stack.spec.bindings {
        if let Some(secret) = &binding.secret_ref {
            out.secrets.insert(secret.name.clone());
        }
        if let Some(azure) = resolve::azure_resource_name(stack, binding) {
            out.secrets.insert(naming::binding_secret_name(&azure));
            out.azure.insert(azure);
        }
    }
    out
}

/// Referenced `(namespace, name)` → names of the stacks (in that namespace) referring to it.
type Referrers = HashMap<Key, BTreeSet<String>>;

#[derive(Default)]
struct Maps {
    secrets: Referrers,
    azure: Referrers,
    /// Blueprint name → the stacks instantiating it.
    blueprints: HashMap<String, BTreeSet<Key>>,
    /// What each stack refers to, as indexed (its written spec's and its expansion's).
    stacks: HashMap<Key, Refers>,
    /// What each stack's written spec refers to.
    written: HashMap<Key, Refers>,
    /// What a stack's expanded spec (its blueprint's template) refers to, as its last
    /// reconcile found: the watch sees only the spec as written.
    expanded: HashMap<Key, Refers>,
}

fn key(stack: &CachedStack) -> Key {
    (stack.namespace().unwrap_or_default(), stack.name_any())
}

impl Maps {
    fn insert(&mut self, stack: &CachedStack) {
        let (namespace, name) = key(stack);
        // A cached stack that does not parse back (a bug) refers to nothing.
        let refers = stack.object().map(|s| refers(&s)).unwrap_or_default();
        self.set(namespace, name, refers);
    }

    fn set(&mut self, namespace: String, name: String, refers: Refers) {
        self.remove(&namespace, &name);
        let key = (namespace.clone(), name.clone());
        self.written.insert(key.clone(), refers.clone());
        let refers = refers.union(self.expanded.get(&key));
        if let Some(blueprint) = &refers.blueprint {
            self.blueprints.entry(blueprint.clone()).or_default().insert((namespace.clone(), name.clone()));
        }
        for secret in &refers.secrets {
            self.secrets.entry((namespace.clone(), secret.clone())).or_default().insert(name.clone());
        }
        for azure in &refers.azure {
            self.azure.entry((namespace.clone(), azure.clone())).or_default().insert(name.clone());
        }
        self.stacks.insert((namespace, name), refers);
    }

    fn remove(&mut self, namespace: &str, stack: &str) {
        let Some(old) = self.stacks.remove(&(namespace.to_owned(), stack.to_owned())) else { return };
        if let Some(blueprint) = &old.blueprint
            && let Some(set) = self.blueprints.get_mut(blueprint)
        {
            set.remove(&(namespace.to_owned(), stack.to_owned()));
            if set.is_empty() {
                self.blueprints.remove(blueprint);
            }
        }
        for (map, names) in [(&mut self.secrets, &old.secrets), (&mut self.azure, &old.azure)] {
            for name in names {
                let key = (namespace.to_owned(), name.clone());
                if let Some(set) = map.get_mut(&key) {
                    set.remove(stack);
                    if set.is_empty() {
                        map.remove(&key);
                    }
                }
            }
        }
    }
}

/// The index, shared between the stack watch (which keeps it) and the event mappers (which
/// read it). Cheap to clone.
#[derive(Clone, Default)]
pub struct Index {
    live: Arc<Mutex<Maps>>,
    /// Built during a relist and swapped in when it completes, so stacks deleted while the
    /// watch was down leave no entries behind.
    relist: Arc<Mutex<Option<Maps>>>,
}

impl Index {
    /// Updates the index from one event of the stack watch (the `inspect` callback).
    pub fn observe(&self, event: &Result<watcher::Event<CachedStack>, watcher::Error>) {
        let Ok(event) = event else { return };
        match event {
            watcher::Event::Apply(stack) => {
                if let Ok(mut live) = self.live.lock() {
                    live.insert(stack);
                }
            }
            watcher::Event::Delete(stack) => {
                if let Ok(mut live) = self.live.lock() {
                    let (namespace, name) = key(stack);
                    live.remove(&namespace, &name);
                    live.written.remove(&(namespace.clone(), name.clone()));
                    live.expanded.remove(&(namespace, name));
                }
            }
            watcher::Event::Init => {
                if let Ok(mut relist) = self.relist.lock() {
                    *relist = Some(Maps::default());
                }
            }
            watcher::Event::InitApply(stack) => {
                if let Ok(mut relist) = self.relist.lock() {
                    relist.get_or_insert_with(Maps::default).insert(stack);
                }
            }
            watcher::Event::InitDone => {
                let built = self.relist.lock().ok().and_then(|mut r| r.take());
                if let (Some(mut built), Ok(mut live)) = (built, self.live.lock()) {
                    // Expansions of stacks still there carry over, and their entries are
                    // indexed again with them (the relist saw only the written specs).
                    let mut expanded = std::mem::take(&mut live.expanded);
                    expanded.retain(|key, _| built.stacks.contains_key(key));
                    built.expanded = expanded;
                    let keys: Vec<Key> = built.expanded.keys().cloned().collect();
                    for (namespace, name) in keys {
                        if let Some(written) = built.written.get(&(namespace.clone(), name.clone())).cloned() {
                            built.set(namespace, name, written);
                        }
                    }
                    *live = built;
                }
            }
        }
    }

    /// Records what the expanded spec of the stack `key` refers to (after each reconcile of
    /// a stack that instantiates a blueprint): its events then also wake the stack.
    pub fn expanded(&self, key: (String, String), refers: Refers) {
        let Ok(mut live) = self.live.lock() else { return };
        if live.expanded.get(&key) == Some(&refers) {
            return;
        }
        // Not indexed: deleted meanwhile (a reconcile runs only on a stack the watch saw).
        let Some(written) = live.written.get(&key).cloned() else { return };
        live.expanded.insert(key.clone(), refers);
        let (namespace, name) = key;
        live.set(namespace, name, written);
    }

    /// The stacks (any namespace) that instantiate the blueprint `name`.
    pub fn instances(&self, name: &str) -> Vec<ObjectRef<CachedStack>> {
        let Ok(live) = self.live.lock() else { return Vec::new() };
        let stacks = live.blueprints.get(name).cloned().unwrap_or_default();
        stacks.into_iter().map(|(namespace, stack)| ObjectRef::new(&stack).within(&namespace)).collect()
    }

    /// The stacks in `namespace` that bind the Secret `name`.
    pub fn binding_secret(&self, namespace: &str, name: &str) -> Vec<ObjectRef<CachedStack>> {
        self.lookup(|m| &m.secrets, namespace, name)
    }

    /// The stacks in `namespace` that own or reference the AzureResource `name`.
    pub fn using_azure(&self, namespace: &str, name: &str) -> Vec<ObjectRef<CachedStack>> {
        self.lookup(|m| &m.azure, namespace, name)
    }

    fn lookup(&self, map: impl Fn(&Maps) -> &Referrers, namespace: &str, name: &str) -> Vec<ObjectRef<CachedStack>> {
        let Ok(live) = self.live.lock() else { return Vec::new() };
        let stacks = map(&live).get(&(namespace.to_owned(), name.to_owned())).cloned().unwrap_or_default();
        stacks.into_iter().map(|stack| ObjectRef::new(&stack).within(namespace)).collect()
    }

    /// Entries held: (stacks, Secret keys, AzureResource keys). For tests and metrics.
    pub fn sizes(&self) -> (usize, usize, usize) {
        self.live.lock().map(|m| (m.stacks.len(), m.secrets.len(), m.azure.len())).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(namespace: &str, name: &str, bindings: serde_json::Value) -> CachedStack {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "citystack.io/v1alpha1", "kind": "SolutionStack",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"components": [{"name": "web", "image": "registry.example/web:1"}], "bindings": bindings}
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn names(refs: Vec<ObjectRef<CachedStack>>) -> Vec<String> {
        refs.into_iter().map(|r| r.name).collect()
    }

    #[test]
    fn every_kind_of_reference_is_indexed() {
        let s = stack(
            "city",
            "portal",
            serde_json::json!([
                {"name": "db", "secretRef": {"name": "db-credentials"}},
                {"name": "cache", "azure": {"kind": "RedisCache"}},
                {"name": "vault", "azureResourceRef": {"name": "shared-vault"}},
            ]),
        );
        let refers = refers(&s.object().unwrap_or_else(|| panic!("cached stack parses back")));
        assert_eq!(
            refers.secrets.iter().map(String::as_str).collect::<Vec<_>>(),
            ["db-credentials", "portal-cache-binding", "shared-vault-binding"]
        );
        assert_eq!(refers.azure.iter().map(String::as_str).collect::<Vec<_>>(), ["portal-cache", "shared-vault"]);
    }

    #[test]
    fn changes_deletes_and_relists_keep_the_index_exact() {
        let index = Index::default();
        let a = stack("city", "a", serde_json::json!([{"name": "db", "secretRef": {"name": "db"}}]));
        let b = stack("city", "b", serde_json::json!([{"name": "db", "secretRef": {"name": "db"}}]));
        let other_ns = stack("town", "c", serde_json::json!([{"name": "db", "secretRef": {"name": "db"}}]));
        for s in [&a, &b, &other_ns] {
            index.observe(&Ok(watcher::Event::Apply(s.clone())));
        }
        assert_eq!(names(index.binding_secret("city", "db")), ["a", "b"]);
        assert_eq!(names(index.binding_secret("town", "db")), ["c"]);
        assert!(index.binding_secret("city", "other").is_empty());

        // b now binds another Secret: it leaves the old key.
        let b2 = stack("city", "b", serde_json::json!([{"name": "db", "secretRef": {"name": "db-v2"}}]));
        index.observe(&Ok(watcher::Event::Apply(b2)));
        assert_eq!(names(index.binding_secret("city", "db")), ["a"]);
        assert_eq!(names(index.binding_secret("city", "db-v2")), ["b"]);

        index.observe(&Ok(watcher::Event::Delete(a.clone())));
        assert!(index.binding_secret("city", "db").is_empty());

        // A relist that no longer has c (deleted while the watch was down) forgets it, and
        // the old entries answer until the relist completes.
        index.observe(&Ok(watcher::Event::Init));
        index.observe(&Ok(watcher::Event::InitApply(a)));
        assert_eq!(names(index.binding_secret("town", "db")), ["c"]);
        index.observe(&Ok(watcher::Event::InitDone));
        assert!(index.binding_secret("town", "db").is_empty());
        assert_eq!(names(index.binding_secret("city", "db")), ["a"]);
        assert_eq!(index.sizes(), (1, 1, 0));
    }

    #[test]
    fn a_blueprint_wakes_its_instances_and_their_expanded_references_them() {
        let index = Index::default();
        let with_blueprint: CachedStack = serde_json::from_value(serde_json::json!({
            "apiVersion": "citystack.io/v1alpha1", "kind": "SolutionStack",
            "metadata": {"name": "a", "namespace": "city"},
            "spec": {"blueprint": {"name": "transport", "version": "^1"}}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        index.observe(&Ok(watcher::Event::Apply(with_blueprint.clone())));
        assert_eq!(names(index.instances("transport")), ["a"]);
        let expanded = |secret: &str| Refers { secrets: [secret.to_owned()].into(), ..Default::default() };
        index.expanded(("city".into(), "a".into()), expanded("events"));
        assert_eq!(names(index.binding_secret("city", "events")), ["a"]);
        // A later event of the stack (its status) keeps the expansion.
        index.observe(&Ok(watcher::Event::Apply(with_blueprint.clone())));
        assert_eq!(names(index.binding_secret("city", "events")), ["a"]);
        // A new expansion replaces the old one.
        index.expanded(("city".into(), "a".into()), expanded("events-v2"));
        assert!(index.binding_secret("city", "events").is_empty());
        assert_eq!(names(index.binding_secret("city", "events-v2")), ["a"]);
        assert_eq!(names(index.instances("transport")), ["a"]);
        // A relist keeps the expansion indexed.
        index.observe(&Ok(watcher::Event::Init));
        index.observe(&Ok(watcher::Event::InitApply(with_blueprint.clone())));
        index.observe(&Ok(watcher::Event::InitDone));
        assert_eq!(names(index.binding_secret("city", "events-v2")), ["a"]);
        // Gone: nothing of it is left.
        index.observe(&Ok(watcher::Event::Delete(with_blueprint)));
        assert!(index.instances("transport").is_empty());
        assert!(index.binding_secret("city", "events-v2").is_empty());
        index.expanded(("city".into(), "a".into()), expanded("late"));
        assert!(index.binding_secret("city", "late").is_empty());
    }
}
