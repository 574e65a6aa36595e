//! Every derived name and label, in one place. Kubernetes object names used here are DNS-1035
//! labels (at most 63 characters, RFC 1035), as are label values; admission rejects stacks
//! whose derived names would not fit (see `api::stack`), so nothing here shortens names.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// The field manager of every server-side apply the operator sends.
pub const FIELD_MANAGER: &str = "citystack";
/// Value of `app.kubernetes.io/managed-by` on every child.
pub const MANAGED_BY: &str = "citystack";
/// Annotation on each child: hash of the desired state last applied (see `stack::apply`).
pub const DESIRED_HASH_ANNOTATION: &str = "citystack.io/desired-hash";
/// Annotation on a pod template: hash of the bound data, so changed credentials roll pods.
pub const BINDING_HASH_ANNOTATION: &str = "citystack.io/binding-hash";
/// Label carrying `spec.solution` (the catalog label of the stack).
pub const SOLUTION_LABEL: &str = "citystack.io/solution";
/// Label on each Deployment, Service and inline AzureResource of a stack: the shard bucket of
/// the stack's UID (`shard::ring::bucket`, two hex digits), so sharded replicas can watch
/// only their range's children with a label selector (the API server's `shardSelector`
/// hashes an object's own UID, never its owner's).
pub const SHARD_BUCKET_LABEL: &str = "citystack.io/shard-bucket";
/// The longest DNS-1035 label (RFC 1035; Kubernetes object names and label values).
pub const MAX_NAME: usize = 63;

/// `app.kubernetes.io/*` recommended label keys.
pub mod label {
    /// The component name.
    pub const NAME: &str = "app.kubernetes.io/name";
    /// The stack name (identity label, used in selectors).
    pub const INSTANCE: &str = "app.kubernetes.io/instance";
    /// The component name (identity label, used in selectors).
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    /// The stack name.
    pub const PART_OF: &str = "app.kubernetes.io/part-of";
    /// Always `citystack`.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
}

/// Name of a component's Deployment and Service: `<stack>-<component>`.
pub fn child_name(stack: &str, component: &str) -> String {
    format!("{stack}-{component}")
}

/// All labels on a component's children and pods.
pub fn component_labels(stack: &str, component: &str, solution: Option<&str>) -> BTreeMap<String, String> {
    let mut labels = selector_labels(stack, component);
    labels.insert(label::NAME.into(), component.into());
    labels.insert(label::PART_OF.into(), stack.into());
    labels.insert(label::MANAGED_BY.into(), MANAGED_BY.into());
    if let Some(solution) = solution {
        labels.insert(SOLUTION_LABEL.into(), solution.into());
    }
    labels
}

/// The stable identity labels used in selectors (only these two: selectors are immutable).
pub fn selector_labels(stack: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (label::INSTANCE.to_owned(), stack.to_owned()),
        (label::COMPONENT.to_owned(), component.to_owned()),
    ])
}

/// Label selector matching every child the operator manages for one stack.
pub fn stack_selector(stack: &str) -> String {
    format!("{}={},{}={}", label::MANAGED_BY, MANAGED_BY, label::INSTANCE, stack)
}

/// Label selector matching every child the operator manages.
pub fn managed_selector() -> String {
    format!("{}={}", label::MANAGED_BY, MANAGED_BY)
}

/// Tag on every Azure resource the operator writes, naming the AzureResource that owns it
/// (see [`owner_tag_value`]). Ownership is this exact value, never the tag's presence.
pub const OWNER_TAG: &str = "citystack-owner";

/// Label on an AzureResource's binding Secret naming the AzureResource.
pub const AZURE_RESOURCE_LABEL: &str = "citystack.io/azure-resource";

/// Annotation a person sets (value `"true"`) on an AzureResource whose Azure cleanup cannot
/// run (its credential is gone): deletion then leaves the Azure resource in place, removes
/// the finalizer, and says so in an Event.
pub const ABANDON_ANNOTATION: &str = "citystack.io/abandon";

/// Annotation a person sets (any new value, e.g. a timestamp) on an AzureResource to have it
/// read from Azure at once instead of at the next `--azure-resync`, e.g. after rotating keys.
/// Any change of an annotation wakes the object; this one is the documented way.
pub const REFRESH_ANNOTATION: &str = "citystack.io/refresh";

/// The owner tag value of AzureResource `namespace/name` in the cluster whose kube-system
/// namespace has UID `cluster`: `<cluster>/<namespace>/<name>`.
pub fn owner_tag_value(cluster: &str, namespace: &str, name: &str) -> String {
    format!("{cluster}/{namespace}/{name}")
}

/// Name of an AzureResource's servicebinding.io Secret: `<azr>-binding`.
pub fn binding_secret_name(azure_resource: &str) -> String {
    format!("{azure_resource}-binding")
}

/// First 16 hex characters (64 bits) of the SHA-256 of `bytes`: short, stable identifiers
/// for annotation values.
pub fn short_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_uses_identity_labels_only() {
        let selector = selector_labels("traffic", "ingest");
        assert_eq!(selector.len(), 2);
        let all = component_labels("traffic", "ingest", Some("smart-transport"));
        assert!(selector.iter().all(|(k, v)| all.get(k) == Some(v)));
        assert_eq!(all[label::MANAGED_BY], "citystack");
    }

    #[test]
    fn short_hash_is_stable() {
        assert_eq!(short_hash(b"abc"), "ba7816bf8f01cfea");
    }
}
