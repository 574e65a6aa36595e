//! Apply and prune: compare desired children with the cache, send a server-side apply only
//! for those that drifted, and delete owned children no longer desired. All writes here go
//! through one field manager ([`FIELD_MANAGER`]).

use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, GetParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::api::{AzureResource, SolutionStack};
use crate::error::{Error, Result};
use crate::naming::FIELD_MANAGER;
use crate::ownership::{self, Control};
use crate::stack::drift;
use crate::stack::lean::{Cached, Lean};
use crate::stack::owned::Owned;
use crate::stack::render::{ChildKind, DesiredChild};

pub use crate::reconciler::Writer;

/// A write the operator made to a child, reported as an Event on the stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// What was done: `Created`, `Updated` or `Pruned` (the Event reason).
    pub action: &'static str,
    /// The child's kind.
    pub kind: ChildKind,
    /// The child's name.
    pub name: String,
}

/// The changes of one reconcile as one Event per action (Created, Updated, Pruned), in that
/// order, each naming its children by kind: `Created Deployment portal-api, portal-web;
/// Service portal-web`. One Event per reconcile instead of one per child keeps a fleet's
/// roll-out from writing more Events than objects.
pub fn summarize(changes: &[Change]) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for action in ["Created", "Updated", "Pruned"] {
        let mut by_kind: Vec<(&str, Vec<&str>)> = Vec::new();
        for change in changes.iter().filter(|c| c.action == action) {
            match by_kind.iter_mut().find(|(kind, _)| *kind == change.kind.as_str()) {
                Some((_, names)) => names.push(&change.name),
                None => by_kind.push((change.kind.as_str(), vec![&change.name])),
            }
        }
        if by_kind.is_empty() {
            continue;
        }
        let parts: Vec<String> = by_kind.iter().map(|(kind, names)| format!("{kind} {}", names.join(", "))).collect();
        out.push((action, format!("{action} {}", parts.join("; "))));
    }
    out
}

/// The result of applying one child: the object as it now is, and the write made, if any.
pub struct Applied<K> {
    /// The observed object (the apply response, or the cached object when converged).
    pub object: K,
    /// The write made, `None` when the child was already converged.
    pub change: Option<Change>,
}

/// Applies `child` unless the cached object already carries it (see [`drift::converged`]).
/// An object of that name that `controller_uid` does not control is never written: the cache
/// shows another stack's child; one the cache cannot show (no citystack labels: a Helm
/// release's, a hand-made one) is looked up live before the first apply.
///
/// Errors: `Conflict` naming the object and its owner; `KubeRejected` if the API server
/// refuses the apply for good (4xx), `KubeApi` if it fails otherwise.
pub async fn apply_child<C: Cached>(
    writer: &Writer,
    cache: &Store<C>,
    namespace: &str,
    controller_uid: &str,
    child: &DesiredChild,
) -> Result<Applied<C::Object>> {
    let cached = cache.get(&ObjectRef::new(&child.name).within(namespace));
    let api: Api<C::Object> = Api::namespaced(writer.client.clone(), namespace);
    let live = match &cached {
        Some(observed) => Some(observed.meta().clone()),
        None => api
            // From the API server's watch cache (resourceVersion 0): a quorum read per new
            // child would double the cost of a fleet's first roll-out, and a namesake created
            // in the last moment races the apply below either way.
            .get_metadata_opt_with(&child.name, &GetParams::any())
            .await
            .map_err(|e| Error::kube(format!("get {} {}", child.kind.as_str(), child.name), e))?
            .map(|m| m.metadata),
    };
    if let Control::Foreign(owner) = ownership::control(live.as_ref(), controller_uid) {
        let fix = match child.kind {
            ChildKind::AzureResource => "rename the binding, or delete or rename that AzureResource",
            ChildKind::Deployment | ChildKind::Service => "rename the component, or delete or rename that object",
        };
        return Err(ownership::conflict(&format!("{} {}", child.kind.as_str(), child.name), &owner, fix));
    }
    if let Some(observed) = &cached
        && drift::converged(&child.object, &observed.json())
        && let Some(object) = observed.typed()
    {
        writer.metrics.child_apply(child.kind.as_str(), false);
        return Ok(Applied { object, change: None });
    }
    writer.may_write()?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let object = api
        .patch(&child.name, &params, &Patch::Apply(&child.object))
        .await
        .map_err(|e| Error::kube(format!("apply {} {}", child.kind.as_str(), child.name), e))?;
    writer.metrics.child_apply(child.kind.as_str(), true);
    let action = if cached.is_some() { "Updated" } else { "Created" };
    Ok(Applied { object, change: Some(Change { action, kind: child.kind, name: child.name.clone() }) })
}

/// Deletes the Deployments, Services and AzureResources that belong to `stack` (controller
/// ownerReference with its UID, as the cache shows them) and are not in `keep` (names by
/// kind). Candidates come from `owned`; objects the stack does not control are never touched.
/// A child already gone (404) counts as pruned.
///
/// Errors: `KubeApi` on the first failed delete.
pub async fn prune(
    writer: &Writer,
    caches: (&Store<Lean<Deployment>>, &Store<Lean<Service>>, &Store<AzureResource>),
    owned: &Owned,
    stack: &SolutionStack,
    keep: &BTreeSet<(ChildKind, String)>,
) -> Result<Vec<Change>> {
    let (deployments, services, azure) = caches;
    let uid = stack.uid().unwrap_or_default();
    let mut candidates = owned.of(&uid);
    candidates.sort();
    let mut changes = Vec::new();
    for (kind, name) in candidates {
        if keep.contains(&(kind, name.clone())) {
            continue;
        }
        let found = match kind {
            ChildKind::Deployment => controlled(deployments, stack, &name),
            ChildKind::Service => controlled(services, stack, &name),
            ChildKind::AzureResource => controlled(azure, stack, &name),
        };
        let Some(target) = found else {
            owned.forget(&uid, kind, &name);
            continue;
        };
        match kind {
            ChildKind::Deployment => delete::<Deployment>(writer, stack, &target, kind, &mut changes).await?,
            ChildKind::Service => delete::<Service>(writer, stack, &target, kind, &mut changes).await?,
            // Removing an inline Azure binding deletes its AzureResource; what happens in Azure
            // is that resource's deletion policy (Orphan by default for kinds that hold data).
            ChildKind::AzureResource => delete::<AzureResource>(writer, stack, &target, kind, &mut changes).await?,
        }
    }
    Ok(changes)
}

/// The name and UID of the cached object `name` in the stack's namespace, when the stack
/// controls it.
fn controlled<K: Resource<DynamicType = ()> + Clone>(
    cache: &Store<K>,
    stack: &SolutionStack,
    name: &str,
) -> Option<(String, String)> {
    let uid = stack.uid()?;
    let object = cache.get(&ObjectRef::new(name).within(&stack.namespace()?))?;
    ownership::controls(object.meta(), &uid).then(|| Some((object.name_any(), object.uid()?)))?
}

async fn delete<K>(
    writer: &Writer,
    stack: &SolutionStack,
    (name, uid): &(String, String),
    kind: ChildKind,
    changes: &mut Vec<Change>,
) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + Debug + DeserializeOwned,
{
    writer.may_write()?;
    let api: Api<K> = Api::namespaced(writer.client.clone(), &stack.namespace().unwrap_or_default());
    // The UID precondition makes sure we delete the object we judged, not a namesake.
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
        ..DeleteParams::background()
    };
    match api.delete(name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
        Err(e) => return Err(Error::kube(format!("prune {} {name}", kind.as_str()), e)),
    }
    changes.push(Change { action: "Pruned", kind, name: name.clone() });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_action_names_every_child() {
        let change = |action, kind, name: &str| Change { action, kind, name: name.into() };
        let changes = [
            change("Created", ChildKind::Deployment, "portal-api"),
            change("Created", ChildKind::Service, "portal-api"),
            change("Pruned", ChildKind::Deployment, "portal-old"),
            change("Created", ChildKind::Deployment, "portal-web"),
        ];
        assert_eq!(
            summarize(&changes),
            [
                ("Created", "Created Deployment portal-api, portal-web; Service portal-api".to_owned()),
                ("Pruned", "Pruned Deployment portal-old".to_owned()),
            ]
        );
        assert!(summarize(&[]).is_empty());
    }
}
