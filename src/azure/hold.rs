//! A Delete-policy AzureResource holds its credential Secret with a finalizer, so deleting a
//! namespace (which deletes both at once) cannot remove the credential before the Azure
//! cleanup that needs it. The hold is released when the Secret's last such user is gone.
//! Kubernetes API conventions, "Finalizers"; the patches are strategic merge patches, under
//! which `metadata.finalizers` merges as a set.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::api::{AzureResource, DeletionPolicy};
use crate::azure::controller::FINALIZER;
use crate::azure::credential::DEFAULT_SECRET;
use crate::azure::kinds;
use crate::error::{Error, Result};

/// Finalizer on a credential Secret while a Delete-policy AzureResource may need it.
pub const CREDENTIAL_FINALIZER: &str = "citystack.io/credential-in-use";

/// The credential Secret an AzureResource names: its `credentialRef`, else the namespace
/// default (whether or not it exists; the operator's identity needs no hold).
pub fn secret_name(object: &AzureResource) -> &str {
    object.spec.credential_ref.as_ref().map(|r| r.name.as_str()).unwrap_or(DEFAULT_SECRET)
}

/// Whether `object` still needs its credential for Azure cleanup: it carries the cleanup
/// finalizer and its policy is Delete.
pub fn needs_credential(object: &AzureResource) -> bool {
    object.finalizers().iter().any(|f| f == FINALIZER)
        && kinds::effective_deletion_policy(object.spec.kind, object.spec.mode, object.spec.deletion_policy)
            == DeletionPolicy::Delete
}

/// Other AzureResources in `object`'s namespace that need the same credential Secret (pure
/// over the cache).
pub fn other_users(objects: &[std::sync::Arc<AzureResource>], object: &AzureResource) -> usize {
    objects
        .iter()
        .filter(|o| o.namespace() == object.namespace() && o.uid() != object.uid())
        .filter(|o| needs_credential(o) && secret_name(o) == secret_name(object))
        .count()
}

/// Adds the hold to Secret `name`.
///
/// Errors: the patch fails (a missing Secret is not an error).
pub async fn hold(client: &Client, namespace: &str, name: &str) -> Result<()> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let patch = json!({"metadata": {"finalizers": [CREDENTIAL_FINALIZER]}});
    match api.patch_metadata(name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(Error::kube(format!("hold credential Secret {name}"), e)),
    }
}

/// Releases the hold `object` has on its credential Secret when no other AzureResource in the
/// namespace needs it (see [`other_users`]).
///
/// Errors: the patch fails (a missing Secret is not an error).
pub async fn release_if_last(client: &Client, store: &Store<AzureResource>, object: &AzureResource) -> Result<()> {
    if other_users(&store.state(), object) > 0 {
        return Ok(());
    }
    let namespace = object.namespace().unwrap_or_default();
    let name = secret_name(object);
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let Some(secret) = api.get_metadata_opt(name).await.map_err(|e| Error::kube(format!("get Secret {name}"), e))?
    else {
        return Ok(());
    };
    if !secret.finalizers().iter().any(|f| f == CREDENTIAL_FINALIZER) {
        return Ok(());
    }
    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [CREDENTIAL_FINALIZER]}});
    match api.patch_metadata(name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(Error::kube(format!("release credential Secret {name}"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn azr(name: &str, uid: &str, spec: serde_json::Value, finalized: bool) -> Arc<AzureResource> {
        let mut o: AzureResource = serde_json::from_value(json!({
            "apiVersion": "citystack.io/v1alpha1", "kind": "AzureResource",
            "metadata": {"name": name, "namespace": "ns", "uid": uid,
                         "finalizers": if finalized { vec![FINALIZER] } else { vec![] }},
            "spec": spec,
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        o.status = None;
        Arc::new(o)
    }

    #[test]
    fn the_last_delete_policy_user_releases() {
        let me = azr("cache", "1", json!({"kind": "RedisCache"}), true);
        let twin = azr("queue", "2", json!({"kind": "RedisCache"}), true);
        let orphan = azr("files", "3", json!({"kind": "StorageAccount"}), false);
        let elsewhere = azr("other", "4", json!({"kind": "RedisCache", "credentialRef": {"name": "team-b"}}), true);
        assert_eq!(other_users(&[me.clone(), twin.clone(), orphan.clone(), elsewhere.clone()], &me), 1);
        assert_eq!(other_users(&[me.clone(), orphan, elsewhere], &me), 0);
        assert_eq!(secret_name(&twin), DEFAULT_SECRET);
        assert!(needs_credential(&me) && !needs_credential(&azr("x", "5", json!({"kind": "RedisCache"}), false)));
    }
}
