//! Objects that a watch must carry even when they cannot be read.
//!
//! The API server stores JSON nested about 10,000 levels deep in fields that preserve unknown
//! fields (a blueprint's template, parameter values); serde_json refuses more than 128. Decoded
//! as `K`, one such object fails the whole list it is in, so the watch retries for ever and
//! every object of the kind (and the controllers waiting for the cache) is stuck. Decoded as
//! `Readable<K>` the object is captured as raw text first (serde_json skips raw values without
//! recursing), then read: one that fails keeps its metadata and the reason, and the rest of the
//! list is served.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// An object of kind `K` as a watch delivered it: read, or the reason it could not be.
#[derive(Clone, Debug)]
pub struct Readable<K> {
    /// Its metadata (also when it could not be read, as far as it could).
    pub metadata: ObjectMeta,
    /// The object, or why it could not be read (names no value).
    pub object: Result<K, String>,
}

impl<K: Resource<DynamicType = ()> + DeserializeOwned> Readable<K> {
    /// Reads `text` (one object's JSON).
    pub fn from_text(text: &str) -> Self {
        match serde_json::from_str::<K>(text) {
            Ok(object) => Self { metadata: object.meta().clone(), object: Ok(object) },
            Err(error) => {
                let metadata = shallow_metadata(text);
                let reason = match error.classify() {
                    serde_json::error::Category::Syntax if error.to_string().contains("recursion limit") => {
                        "nested more than 128 levels deep".to_owned()
                    }
                    _ => format!("not a valid {}: {}", K::kind(&()), value_free(&error.to_string())),
                };
                Self { metadata, object: Err(reason) }
            }
        }
    }
}

/// The metadata of an object's JSON, without its managedFields: they mirror the object's
/// fields (`fieldsV1`), so they are nested as deep as the object.
pub fn shallow_metadata(text: &str) -> ObjectMeta {
    let fields: HashMap<String, Box<RawValue>> = serde_json::from_str(text).unwrap_or_default();
    let Some(metadata) = fields.get("metadata") else { return ObjectMeta::default() };
    let mut metadata: HashMap<String, Box<RawValue>> = serde_json::from_str(metadata.get()).unwrap_or_default();
    metadata.remove("managedFields");
    serde_json::to_string(&metadata).ok().and_then(|m| serde_json::from_str(&m).ok()).unwrap_or_default()
}

/// serde's message without the value it quotes (`invalid type: string "x", expected ...`).
pub fn value_free(message: &str) -> String {
    match (message.find(": "), message.find(", expected ")) {
        (Some(start), Some(expected)) if start < expected => {
            format!("{}{}", &message[..start], &message[expected..])
        }
        _ => crate::error::bounded(message, 256),
    }
}

impl<'de, K: Resource<DynamicType = ()> + DeserializeOwned> Deserialize<'de> for Readable<K> {
    /// Errors: only when not even the object's name can be read (the watch then fails as
    /// it would have; a nameless object must never reach a store, which needs the name).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let read = Self::from_text(raw.get());
        if read.metadata.name.is_none() {
            return Err(serde::de::Error::custom("an object without a readable metadata.name"));
        }
        Ok(read)
    }
}

/// For a watch of `Readable<K>` whose consumers need `K`: the events of objects that could be
/// read, as `K`. An object that could not be read is logged (name and reason) and left out, so
/// the rest of the watch goes on; a store keeps its last readable version until a relist.
pub fn readable_only<K: Resource<DynamicType = ()>>(
    event: Result<kube::runtime::watcher::Event<Readable<K>>, kube::runtime::watcher::Error>,
) -> Option<Result<kube::runtime::watcher::Event<K>, kube::runtime::watcher::Error>> {
    use kube::runtime::watcher::Event;
    let take = |read: Readable<K>| match read.object {
        Ok(object) => Some(object),
        Err(reason) => {
            let (namespace, name) =
                (read.metadata.namespace.unwrap_or_default(), read.metadata.name.unwrap_or_default());
            tracing::warn!(kind = %K::kind(&()), %namespace, %name, reason, "an object cannot be read; it is left out");
            None
        }
    };
    Some(match event {
        Err(error) => Err(error),
        Ok(Event::Apply(read)) => Ok(Event::Apply(take(read)?)),
        Ok(Event::Delete(read)) => Ok(Event::Delete(take(read)?)),
        Ok(Event::InitApply(read)) => Ok(Event::InitApply(take(read)?)),
        Ok(Event::Init) => Ok(Event::Init),
        Ok(Event::InitDone) => Ok(Event::InitDone),
    })
}

impl<K: Serialize> Serialize for Readable<K> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.object {
            Ok(object) => object.serialize(serializer),
            Err(_) => serde_json::json!({"metadata": self.metadata}).serialize(serializer),
        }
    }
}

impl<K: Resource<DynamicType = ()>> Resource for Readable<K> {
    type DynamicType = ();
    type Scope = K::Scope;

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
    use crate::api::SolutionBlueprint;

    fn deep(levels: usize) -> serde_json::Value {
        let mut value = serde_json::json!("x");
        for _ in 0..levels {
            value = serde_json::json!({ "a": value });
        }
        value
    }

    fn blueprint(name: &str, template: serde_json::Value) -> serde_json::Value {
        // managedFields mirror the object's fields, as deep as they are.
        let fields =
            serde_json::json!([{"manager": "kubectl", "fieldsType": "FieldsV1", "fieldsV1": template.clone()}]);
        serde_json::json!({
            "apiVersion": "citystack.io/v1alpha1", "kind": "SolutionBlueprint",
            "metadata": {"name": name, "managedFields": fields},
            "spec": {"revisions": [{"version": "1.0.0", "template": template}]}
        })
    }

    #[test]
    fn one_object_nested_too_deep_does_not_fail_its_list() {
        let list = serde_json::json!({
            "apiVersion": "v1", "kind": "List", "metadata": {},
            "items": [blueprint("fine", serde_json::json!({})), blueprint("deep", deep(300)), blueprint("after", serde_json::json!({}))]
        });
        let text = serde_json::to_string(&list).unwrap_or_default();
        // Read as the type itself, the whole list fails (what a watch would retry for ever).
        assert!(serde_json::from_str::<kube::core::ObjectList<SolutionBlueprint>>(&text).is_err());
        let read: kube::core::ObjectList<Readable<SolutionBlueprint>> =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<_> = read.items.iter().map(|b| b.metadata.name.clone().unwrap_or_default()).collect();
        assert_eq!(names, ["fine", "deep", "after"]);
        assert!(read.items[0].object.is_ok() && read.items[2].object.is_ok());
        assert_eq!(read.items[1].object.as_ref().err().map(String::as_str), Some("nested more than 128 levels deep"));
    }

    #[test]
    fn messages_name_no_value() {
        let bad = serde_json::json!({"apiVersion": "citystack.io/v1alpha1", "kind": "SolutionBlueprint",
            "metadata": {"name": "x"}, "spec": {"revisions": "s3cr3t"}});
        let read = Readable::<SolutionBlueprint>::from_text(&bad.to_string());
        let reason = read.object.err().unwrap_or_default();
        assert!(!reason.contains("s3cr3t") && reason.contains("expected"), "{reason}");
    }
}
