//! How the stack controller caches its children (and its stacks, see the `Child` impl for
//! SolutionStack): the few metadata fields the store, ownership and pruning read, typed
//! (name, namespace, UID, versions, ownerReferences, Helm's release annotation), and the whole
//! object as compact JSON, LZ4-compressed against a dictionary of its kind, unpacked only
//! when a reconcile compares or reads it.
//!
//! A typed k8s-openapi Deployment costs about 10 KB of memory for a one-container pod
//! template (every optional field is inline), its managedFields as much again; its text is
//! about 2 KB. Objects of one kind written by one operator differ in a few names, hashes and
//! counters, so the first object of each kind parsed becomes that kind's dictionary (kept for
//! the life of the process) and every later one packs into ~150 bytes. A cached child lives
//! as long as the object, so this is paid once per child: `make bench` (memory) gives the
//! bytes per cached object.

use std::borrow::Cow;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::OnceLock;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::api::{AzureResource, SolutionStack};

/// A kind the stack controller writes, and what its cache may drop of it.
pub trait Child:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// Drops from the object (JSON, without metadata) what no reconcile reads.
    fn trim(_object: &mut Value) {}

    /// The kind's compression dictionary (one `static` per kind).
    fn dictionary() -> &'static Dictionary;

    /// The metadata kept typed (what reads of the cache need without unpacking the text):
    /// by default name, namespace, UID, versions, ownerReferences and Helm's release
    /// annotation. Labels are not kept: even one costs a B-tree node (~550 bytes).
    fn kept_metadata(full: ObjectMeta) -> ObjectMeta {
        let keep = |map: Option<std::collections::BTreeMap<String, String>>, key: &str| {
            let kept: std::collections::BTreeMap<String, String> =
                map.into_iter().flatten().filter(|(k, _)| k == key).collect();
            (!kept.is_empty()).then_some(kept)
        };
        ObjectMeta {
            name: full.name,
            namespace: full.namespace,
            uid: full.uid,
            resource_version: full.resource_version,
            generation: full.generation,
            owner_references: full.owner_references,
            annotations: keep(full.annotations, crate::ownership::HELM_RELEASE),
            ..ObjectMeta::default()
        }
    }
}

/// The stack controller's own objects: the Controller, its predicate (annotations,
/// finalizers, deletion) and the shard filter read their metadata, kept whole but for
/// labels (managedFields and annotations not ours are stripped before); spec and status
/// live in the packed text.
impl Child for SolutionStack {
    fn dictionary() -> &'static Dictionary {
        static DICTIONARY: Dictionary = Dictionary::new();
        &DICTIONARY
    }

    fn kept_metadata(full: ObjectMeta) -> ObjectMeta {
        ObjectMeta { labels: None, ..full }
    }
}

impl Child for Deployment {
    fn dictionary() -> &'static Dictionary {
        static DICTIONARY: Dictionary = Dictionary::new();
        &DICTIONARY
    }

    /// Keeps the status counters and condition type/status/reason (what
    /// [`super::status::rollout`] reads); drops condition messages and times.
    fn trim(object: &mut Value) {
        let conditions = object.pointer_mut("/status/conditions").and_then(Value::as_array_mut);
        for condition in conditions.into_iter().flatten().filter_map(Value::as_object_mut) {
            condition.retain(|key, _| matches!(key.as_str(), "type" | "status" | "reason"));
        }
    }
}

impl Child for Service {
    fn dictionary() -> &'static Dictionary {
        static DICTIONARY: Dictionary = Dictionary::new();
        &DICTIONARY
    }

    /// Drops the status (load-balancer ingress, conditions): nothing reads it.
    fn trim(object: &mut Value) {
        if let Some(object) = object.as_object_mut() {
            object.remove("status");
        }
    }
}

impl Child for AzureResource {
    fn dictionary() -> &'static Dictionary {
        static DICTIONARY: Dictionary = Dictionary::new();
        &DICTIONARY
    }
}

/// A kind's LZ4 dictionary: the packed text of the first object of the kind the process
/// parsed, at most [`Dictionary::MAX`] bytes, fixed from then on (every packed object of
/// the kind refers to it).
pub struct Dictionary(OnceLock<Box<[u8]>>);

impl Dictionary {
    /// The most of the first text kept (LZ4 matches reach back 64 KiB at most).
    pub const MAX: usize = 16 * 1024;

    /// An empty dictionary, set by the first [`Dictionary::pack`].
    pub const fn new() -> Self {
        Self(OnceLock::new())
    }

    /// `text`, LZ4-compressed with its length in front; the first call's text becomes the
    /// dictionary.
    fn pack(&self, text: &[u8]) -> Box<[u8]> {
        let dictionary = self.0.get_or_init(|| text[..text.len().min(Self::MAX)].into());
        lz4_flex::block::compress_prepend_size_with_dict(text, dictionary).into_boxed_slice()
    }

    /// The text [`Dictionary::pack`] packed; `None` if it does not unpack (a bug).
    fn unpack(&self, packed: &[u8]) -> Option<Vec<u8>> {
        // Set before anything was packed against it.
        let dictionary = self.0.get()?;
        lz4_flex::block::decompress_size_prepended_with_dict(packed, dictionary).ok()
    }
}

impl Default for Dictionary {
    fn default() -> Self {
        Self::new()
    }
}

/// What applying a child reads of its cached object: metadata (through [`Resource`]), the
/// JSON the drift check compares, and the typed object.
pub trait Cached: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static {
    /// The kind written.
    type Object: Child;
    /// The object as JSON.
    fn json(&self) -> Value;
    /// The object, typed; `None` if it cannot be read back (then it is applied again).
    fn typed(&self) -> Option<Self::Object>;
}

impl<K: Child> Cached for Lean<K> {
    type Object = K;
    fn json(&self) -> Value {
        self.value()
    }
    fn typed(&self) -> Option<K> {
        self.object()
    }
}

/// AzureResources stay typed in the stack controller's cache: the binding resolution reads
/// their status, and they are few next to Deployments and Services.
impl Cached for AzureResource {
    type Object = AzureResource;
    fn json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
    fn typed(&self) -> Option<AzureResource> {
        Some(self.clone())
    }
}

/// A cached child of kind `K`: the metadata fields reads need, and the object as compact JSON,
/// packed ([`Dictionary`]).
pub struct Lean<K> {
    /// What [`Child::kept_metadata`] keeps (by default name, namespace, UID, resourceVersion,
    /// generation, ownerReferences and Helm's release annotation); all of it, and the rest,
    /// is also in the packed text.
    pub metadata: ObjectMeta,
    packed: Box<[u8]>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Lean<K> {
    fn clone(&self) -> Self {
        Self { metadata: self.metadata.clone(), packed: self.packed.clone(), kind: PhantomData }
    }
}

impl<K> Debug for Lean<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lean").field("metadata", &self.metadata).field("packed_bytes", &self.packed.len()).finish()
    }
}

impl<K: Child> Lean<K> {
    /// The object as JSON (what the drift check compares), with apiVersion and kind (which
    /// items of a list do not carry).
    pub fn value(&self) -> Value {
        let text = K::dictionary().unpack(&self.packed).unwrap_or_default();
        let mut object: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
        if let Some(map) = object.as_object_mut() {
            map.insert("apiVersion".into(), K::api_version(&()).into_owned().into());
            map.insert("kind".into(), K::kind(&()).into_owned().into());
        }
        object
    }

    /// Some fields of the object: `T` names only those (serde skips the rest unparsed, far
    /// cheaper than [`Lean::parse`]); `None` if the kept text does not parse as `T`.
    pub fn view<T: DeserializeOwned>(&self) -> Option<T> {
        let text = K::dictionary().unpack(&self.packed)?;
        serde_json::from_slice(&text).ok()
    }

    /// The object, typed; `None` only if the kept text no longer parses as `K` (a bug).
    pub fn object(&self) -> Option<K> {
        self.parse().ok()
    }

    /// The object, typed.
    ///
    /// Errors: serde's, if the kept text no longer parses as `K` (a bug).
    pub fn parse(&self) -> serde_json::Result<K> {
        let value = self.value();
        if let Some(reason) = value.get(UNREADABLE).and_then(Value::as_str) {
            return Err(serde_json::Error::custom(format!("the object cannot be read: {reason}")));
        }
        serde_json::from_value(value)
    }
}

/// Key of the text kept for an object that could not be read (see [`Lean::deserialize`]).
const UNREADABLE: &str = "citystack.io/unreadable";

impl<'de, K: Child> Deserialize<'de> for Lean<K> {
    /// Captured as raw text first: serde_json skips raw values without recursing, so one
    /// object nested deeper than its limit of 128 levels (which the API server accepts in
    /// fields that preserve unknown fields) is kept by its metadata, and never reads as `K`,
    /// instead of failing the whole list and with it the watch (`crate::readable`).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        let mut object: Value = match serde_json::from_str(raw.get()) {
            Ok(object) => object,
            Err(_) => {
                let read = crate::readable::Readable::<K>::from_text(raw.get());
                if read.metadata.name.is_none() {
                    // A store needs the name (kube panics without one): fail as before.
                    return Err(D::Error::custom("an object without a readable metadata.name"));
                }
                let reason = read.object.err().unwrap_or_default();
                let text = serde_json::to_vec(&serde_json::json!({UNREADABLE: reason, "metadata": read.metadata}))
                    .map_err(D::Error::custom)?;
                let metadata = K::kept_metadata(read.metadata);
                return Ok(Self { metadata, packed: K::dictionary().pack(&text), kind: PhantomData });
            }
        };
        let map = object.as_object_mut().ok_or_else(|| D::Error::custom("expected an object"))?;
        map.remove("apiVersion");
        map.remove("kind");
        if let Some(metadata) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove("managedFields");
            if let Some(annotations) = metadata.get_mut("annotations").and_then(Value::as_object_mut) {
                annotations.retain(|key, _| crate::reconciler::kept_annotation(key));
            }
        }
        let full: ObjectMeta =
            serde_json::from_value(map.get("metadata").cloned().unwrap_or(Value::Null)).map_err(D::Error::custom)?;
        let metadata = K::kept_metadata(full);
        K::trim(&mut object);
        let text = serde_json::to_vec(&object).map_err(D::Error::custom)?;
        Ok(Self { metadata, packed: K::dictionary().pack(&text), kind: PhantomData })
    }
}

impl<K: Child> Resource for Lean<K> {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        K::kind(&())
    }
    fn group(_: &()) -> Cow<'_, str> {
        K::group(&())
    }
    fn version(_: &()) -> Cow<'_, str> {
        K::version(&())
    }
    fn plural(_: &()) -> Cow<'_, str> {
        K::plural(&())
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::status::{Rollout, rollout};

    fn deployment() -> Value {
        serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "portal-web", "namespace": "city", "generation": 2, "labels": {"app": "web"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "web", "image": "registry.example/web:1",
                    "resources": {"requests": {"cpu": "500m"}}}]}}},
            "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1,
                "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                    "message": "ReplicaSet \"portal-web-5d\" has timed out progressing.",
                    "lastUpdateTime": "2026-12-06T04:00:00Z", "lastTransitionTime": "2026-12-06T04:00:00Z"}]}
        })
    }

    #[test]
    fn a_lean_deployment_reads_back_what_reconciles_use() {
        let full: Deployment = serde_json::from_value(deployment()).unwrap_or_else(|e| panic!("{e}"));
        let lean: Lean<Deployment> = serde_json::from_value(deployment()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(lean.meta().name.as_deref(), Some("portal-web"));
        let back = lean.object().unwrap_or_else(|| panic!("lean Deployment does not parse back"));
        assert!(matches!(rollout(&full), Rollout::Failed(_)));
        assert_eq!(rollout(&back), rollout(&full));
        assert_eq!(back.spec, full.spec);
        let condition = back.status.and_then(|s| s.conditions).unwrap_or_default().pop();
        assert_eq!(condition.and_then(|c| c.message), None);
        // What the drift check compares: the desired fields are all there.
        let desired = serde_json::json!({"metadata": {"name": "portal-web", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "resources": {"requests": {"cpu": "0.5"}}}]}}}});
        assert!(crate::stack::drift::is_subset(&desired, &lean.value(), false));
    }

    #[test]
    fn an_item_of_a_list_reads_back_with_its_kind() {
        // Items of a list response carry no apiVersion or kind; the desired object does.
        let mut item = deployment();
        if let Some(map) = item.as_object_mut() {
            map.remove("apiVersion");
            map.remove("kind");
        }
        let lean: Lean<Deployment> = serde_json::from_value(item).unwrap_or_else(|e| panic!("{e}"));
        let desired =
            serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "portal-web"}});
        assert!(crate::stack::drift::is_subset(&desired, &lean.value(), false));
    }

    #[test]
    fn typed_metadata_keeps_what_reads_need_and_the_text_the_rest() {
        let mut object = deployment();
        object["metadata"] = serde_json::json!({"name": "portal-web", "namespace": "city", "uid": "u1", "generation": 2,
            "resourceVersion": "7", "labels": {"app.kubernetes.io/instance": "portal", "app": "web"},
            "annotations": {"citystack.io/desired-hash": "h", "meta.helm.sh/release-name": "shop",
                "kubectl.kubernetes.io/last-applied-configuration": "{}"},
            "managedFields": [{"manager": "citystack"}],
            "ownerReferences": [{"apiVersion": "citystack.io/v1alpha1", "kind": "SolutionStack", "name": "portal", "uid": "s1", "controller": true}]});
        let lean: Lean<Deployment> = serde_json::from_value(object).unwrap_or_else(|e| panic!("{e}"));
        let meta = lean.meta();
        assert_eq!(meta.labels, None);
        assert_eq!(
            meta.annotations.as_ref().map(|a| a.keys().cloned().collect::<Vec<_>>()),
            Some(vec!["meta.helm.sh/release-name".to_owned()])
        );
        assert_eq!(meta.owner_references.as_ref().map(Vec::len), Some(1));
        assert_eq!(crate::ownership::owner_of(meta), "SolutionStack portal");
        let value = lean.value();
        assert_eq!(value.pointer("/metadata/labels/app").and_then(Value::as_str), Some("web"));
        assert_eq!(
            value.pointer("/metadata/annotations/citystack.io~1desired-hash").and_then(Value::as_str),
            Some("h")
        );
        assert_eq!(value.pointer("/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration"), None);
        assert_eq!(value.pointer("/metadata/managedFields"), None);
    }

    #[test]
    fn a_lean_service_has_no_status() {
        let service = serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"ports": [{"port": 80}]}, "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}});
        let lean: Lean<Service> = serde_json::from_value(service).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(lean.value().get("status"), None);
        assert_eq!(lean.object().and_then(|s| s.spec).and_then(|s| s.ports).map(|p| p.len()), Some(1));
    }

    #[test]
    fn objects_of_a_kind_pack_against_its_dictionary() {
        // Whichever test parses a Deployment first sets the dictionary; all are alike.
        let copy = |i: usize| {
            let mut object = deployment();
            object["metadata"]["name"] = format!("portal-web-{i}").into();
            object["metadata"]["uid"] = format!("6f0c{i:08x}-9b1e-4c55-8d1a-51f0c3a2b7e4").into();
            object
        };
        for i in 0..3 {
            let lean: Lean<Deployment> = serde_json::from_value(copy(i)).unwrap_or_else(|e| panic!("{e}"));
            let text = serde_json::to_vec(&lean.value()).unwrap_or_default();
            assert!(lean.packed.len() * 3 < text.len(), "{} packed of {}", lean.packed.len(), text.len());
            assert_eq!(lean.value().pointer("/metadata/name"), copy(i).pointer("/metadata/name"));
        }
    }
}
