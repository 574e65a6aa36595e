//! Resolve: which credential, subscription, Azure name and ARM id an AzureResource means. The
//! id is always recomputed from the spec (status is never authority: a recorded name can
//! only make the operator refuse, never point it elsewhere).

use kube::ResourceExt;

use crate::api::{AzureKind, AzureResource, DeletionPolicy, Mode};
use crate::azure::arm::Arm;
use crate::azure::credential::Credentials;
use crate::azure::kinds::{self, NameSeed};
use crate::error::{Category, Error, Result};
use crate::naming;

/// Where the resource lives and how to call ARM for it.
pub struct Target {
    /// ARM client with the resolved credential.
    pub arm: Arm,
    /// Subscription id.
    pub subscription: String,
    /// Azure name (given or derived).
    pub name: String,
    /// ARM id.
    pub id: String,
    /// api-version for the resource and its children.
    pub api_version: String,
    /// Deletion policy in effect.
    pub policy: DeletionPolicy,
    /// This object's owner tag value.
    pub owner: String,
    /// The credential's tenant id, if known.
    pub tenant: Option<String>,
    /// The credential Secret (name, whether it already carries the hold); `None` for the
    /// operator's identity.
    pub credential_secret: Option<(String, bool)>,
}

impl Target {
    /// The status view of the target.
    pub fn summary(&self) -> crate::azure::status::Target<'_> {
        crate::azure::status::Target {
            name: &self.name,
            subscription: &self.subscription,
            id: &self.id,
            policy: self.policy,
        }
    }
}

/// Resolves the credential and target of `object`.
///
/// Errors: a missing or unusable credential ([`Error::Credential`]); the operator's identity
/// outside trusted namespaces for Adopt/Observe, no subscription, no resource group, a name
/// that breaks the kind's rules, a Generic type or name with empty or dot segments, or a
/// derived name that changed under a recorded one ([`Error::Refused`], InvalidSpec).
pub async fn resolve(
    object: &AzureResource,
    credentials: &Credentials,
    cluster: &str,
    default_subscription: Option<&str>,
) -> Result<Target> {
    let namespace = object.namespace().unwrap_or_default();
    let spec = &object.spec;
    let credential = credentials.resolve(&namespace, spec.credential_ref.as_ref().map(|r| r.name.as_str())).await?;
    // Adopting or observing with the operator's identity reaches resources this namespace did
    // not create: only trusted namespaces may do that.
    if spec.mode != Mode::Provision && credential.operator_identity && !credentials.trusted(&namespace).await? {
        return Err(invalid(format!(
            "spec.mode {:?} with the operator's identity is only allowed in namespaces matching --trusted-namespaces; bring a credential Secret",
            spec.mode
        )));
    }
    let subscription = spec
        .subscription_id
        .clone()
        .or(credential.subscription.clone())
        .or(default_subscription.map(str::to_owned))
        .ok_or_else(|| {
            invalid("no subscription: set spec.subscriptionId (or AZURE_SUBSCRIPTION_ID in the credential Secret)")
        })?;
    let (arm_type, api_version) = match (kinds::info(spec.kind), &spec.generic) {
        (Some(info), _) => (info.arm_type.to_owned(), info.api_version.to_owned()),
        (None, Some(generic)) => (generic.type_.clone(), generic.api_version.clone()),
        (None, None) => return Err(invalid("spec.generic is required for kind Generic")),
    };
    let resource_group = spec.resource_group.clone().unwrap_or_default();
    if spec.kind != AzureKind::ResourceGroup && resource_group.is_empty() {
        return Err(invalid("spec.resourceGroup is required (or the stack's spec.azure.resourceGroup)"));
    }
    let name = match &spec.name {
        Some(name) => name.clone(),
        None => kinds::derive_name(
            spec.kind,
            &NameSeed {
                cluster,
                subscription: &subscription,
                resource_group: &resource_group,
                namespace: &namespace,
                name: &object.name_any(),
            },
        ),
    };
    if let Some(recorded) = object.status.as_ref().and_then(|s| s.azure_name.as_deref())
        && recorded != name
    {
        return Err(invalid(format!(
            "the Azure name would change from {recorded} to {name} (subscription, resource group or cluster changed); a new name is another resource: create a new AzureResource"
        )));
    }
    kinds::check_name(spec.kind, &name).map_err(|m| invalid(format!("spec.name: {m}")))?;
    let id = arm_id(spec.kind, &arm_type, &subscription, &resource_group, &name)?;
    let policy = kinds::effective_deletion_policy(spec.kind, spec.mode, spec.deletion_policy);
    let owner = naming::owner_tag_value(cluster, &namespace, &object.name_any());
    Ok(Target {
        arm: credential.arm,
        subscription,
        name,
        id,
        api_version,
        policy,
        owner,
        tenant: credential.tenant,
        credential_secret: credential.secret,
    })
}

fn invalid(message: impl Into<String>) -> Error {
    Error::refused(Category::InvalidSpec, message)
}

/// The ARM id of a resource, pure. Nested types (`Microsoft.Sql/servers/databases`) take
/// nested names (`server/db`).
///
/// Errors: a type or name segment that is empty, `.`/`..`, or holds characters outside
/// ARM's (letters, digits, `-_.()`): it would address another path of the subscription.
pub fn arm_id(kind: AzureKind, arm_type: &str, subscription: &str, resource_group: &str, name: &str) -> Result<String> {
    let safe = |segment: &str| {
        !segment.is_empty()
            && segment.len() <= 260
            && !segment.chars().all(|c| c == '.')
            && segment.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'))
    };
    let types: Vec<&str> = arm_type.split('/').collect();
    let names: Vec<&str> = name.split('/').collect();
    if !types.iter().all(|s| safe(s)) || types.len() < 2 {
        return Err(invalid(format!(
            "spec.generic.type {arm_type:?} is not an ARM type (Provider.Namespace/type[/child])"
        )));
    }
    if names.len() != types.len() - 1 || !names.iter().all(|s| safe(s)) {
        return Err(invalid(format!(
            "spec.name {name:?} must have one segment per type level of {arm_type} ({} segments separated by /), each of letters, digits, -_.()",
            types.len() - 1
        )));
    }
    if kind == AzureKind::ResourceGroup {
        return Ok(format!("/subscriptions/{subscription}/resourceGroups/{name}"));
    }
    let mut path = format!("/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/{}", types[0]);
    for (type_segment, name_segment) in types[1..].iter().zip(names) {
        path.push_str(&format!("/{type_segment}/{name_segment}"));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_built_from_the_spec_only() {
        let id = arm_id(AzureKind::StorageAccount, "Microsoft.Storage/storageAccounts", "s", "rg", "files");
        assert_eq!(
            id.ok().as_deref(),
            Some("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/files")
        );
        let nested = arm_id(AzureKind::Generic, "Microsoft.Sql/servers/databases", "s", "rg", "srv/db");
        assert_eq!(
            nested.ok().as_deref(),
            Some("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Sql/servers/srv/databases/db")
        );
        let group = arm_id(AzureKind::ResourceGroup, "Microsoft.Resources/resourceGroups", "s", "", "rg-1");
        assert_eq!(group.ok().as_deref(), Some("/subscriptions/s/resourceGroups/rg-1"));
    }

    #[test]
    fn path_segments_cannot_escape() {
        for (arm_type, name) in [
            ("Microsoft.Web/sites", "../../../resourceGroups/victim"),
            ("Microsoft.Web/sites", ".."),
            ("../Microsoft.Web/sites", "x"),
            ("Microsoft.Web/sites", "a/b"),
            ("Microsoft.Sql/servers/databases", "srv"),
            ("Microsoft.Web/sites", "a?b=c"),
            ("Microsoft.Web//sites", "x"),
            ("Microsoft.Web", "x"),
        ] {
            assert!(arm_id(AzureKind::Generic, arm_type, "s", "rg", name).is_err(), "{arm_type} {name}");
        }
    }
}
