//! The `AzureResource` custom resource (group `citystack.io`, version `v1alpha1`): one Azure
//! resource managed, adopted or only observed through Azure Resource Manager (ARM), and the
//! servicebinding.io Secret that carries its connection details.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::LocalRef;

/// One Azure resource, reconciled through ARM. Stacks create these for inline
/// `bindings[].azure` (owned by the stack) or reference existing ones with
/// `bindings[].azureResourceRef`.
// The derive repeats `type_` across printcolumns, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "citystack.io",
    version = "v1alpha1",
    kind = "AzureResource",
    plural = "azureresources",
    shortname = "azr",
    namespaced,
    status = "AzureResourceStatus",
    category = "citystack",
    doc = "One Azure resource managed, adopted or observed through Azure Resource Manager, with a servicebinding.io Secret of its connection details.",
    printcolumn(name = "Kind", type_ = "string", json_path = ".spec.kind"),
    printcolumn(name = "Azure name", type_ = "string", json_path = ".status.azureName"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.provisioningState"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 63")
        .message("metadata.name must be at most 63 characters: it is the value of the citystack.io/azure-resource label on the binding Secret")
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.kind != 'Generic' || has(self.generic)",
        "message": "spec.generic (type, apiVersion) is required when spec.kind is Generic",
        "fieldPath": ".generic"
    },
    {
        "rule": "self.kind == 'Generic' || !has(self.generic)",
        "message": "spec.generic is only allowed when spec.kind is Generic",
        "fieldPath": ".generic"
    },
    {
        "rule": "!has(self.containers) || self.kind == 'StorageAccount'",
        "message": "spec.containers is only allowed for kind StorageAccount",
        "fieldPath": ".containers"
    },
    {
        "rule": "!has(self.queues) || self.kind == 'StorageAccount'",
        "message": "spec.queues is only allowed for kind StorageAccount",
        "fieldPath": ".queues"
    },
    {
        "rule": "!has(self.databases) || self.kind == 'PostgreSQLFlexibleServer'",
        "message": "spec.databases is only allowed for kind PostgreSQLFlexibleServer",
        "fieldPath": ".databases"
    },
    {
        "rule": "!has(self.hubs) || self.kind == 'EventHubNamespace'",
        "message": "spec.hubs is only allowed for kind EventHubNamespace",
        "fieldPath": ".hubs"
    },
    {
        "rule": "self.mode != 'Observe' || !has(self.deletionPolicy) || self.deletionPolicy == 'Orphan'",
        "message": "spec.deletionPolicy must be Orphan (or unset) when spec.mode is Observe: an observed resource is never written",
        "fieldPath": ".deletionPolicy"
    },
    {
        "rule": "!has(oldSelf.kind) || self.kind == oldSelf.kind",
        "message": "spec.kind is immutable",
        "fieldPath": ".kind"
    },
    {
        "rule": "has(self.name) == has(oldSelf.name) && (!has(self.name) || self.name == oldSelf.name)",
        "message": "spec.name cannot be set, changed or removed once the object exists: a new name would point this object at another Azure resource; create a new AzureResource instead",
        "fieldPath": ".name"
    },
    {
        "rule": "has(self.resourceGroup) == has(oldSelf.resourceGroup) && (!has(self.resourceGroup) || self.resourceGroup == oldSelf.resourceGroup)",
        "message": "spec.resourceGroup cannot be set, changed or removed once the object exists: it names where the Azure resource lives; create a new AzureResource instead",
        "fieldPath": ".resourceGroup"
    },
    {
        "rule": "has(self.subscriptionId) == has(oldSelf.subscriptionId) && (!has(self.subscriptionId) || self.subscriptionId == oldSelf.subscriptionId)",
        "message": "spec.subscriptionId cannot be set, changed or removed once the object exists: it names where the Azure resource lives; create a new AzureResource instead",
        "fieldPath": ".subscriptionId"
    },
    {
        "rule": "!has(self.passwordSecretRef) || self.kind == 'PostgreSQLFlexibleServer'",
        "message": "spec.passwordSecretRef is only allowed for kind PostgreSQLFlexibleServer",
        "fieldPath": ".passwordSecretRef"
    },
    {
        "rule": "!has(self.passwordSecretRef) || self.mode != 'Provision'",
        "message": "spec.passwordSecretRef is only for mode Adopt or Observe: a provisioned server's password is generated by citystack",
        "fieldPath": ".passwordSecretRef"
    },
    {
        "rule": "self.kind != 'ResourceGroup' || !has(self.name) || self.name.matches('^[-a-zA-Z0-9_.()]{0,89}[-a-zA-Z0-9_()]$')",
        "message": "spec.name: a ResourceGroup name is 1 to 90 letters, digits, underscores, hyphens, periods and parentheses, not ending with a period (ARM naming rules)",
        "fieldPath": ".name"
    },
    {
        "rule": "self.kind != 'StorageAccount' || !has(self.name) || self.name.matches('^[a-z0-9]{3,24}$')",
        "message": "spec.name: a StorageAccount name is 3 to 24 lowercase letters and digits (ARM naming rules)",
        "fieldPath": ".name"
    },
    {
        "rule": "self.kind != 'PostgreSQLFlexibleServer' || !has(self.name) || self.name.matches('^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$')",
        "message": "spec.name: a PostgreSQLFlexibleServer name is 3 to 63 lowercase letters, digits and hyphens, not starting or ending with a hyphen (ARM naming rules)",
        "fieldPath": ".name"
    },
    {
        "rule": "self.kind != 'RedisCache' || !has(self.name) || self.name.matches('^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$')",
        "message": "spec.name: a RedisCache name is 1 to 63 letters, digits and hyphens, starting and ending with a letter or digit (ARM naming rules)",
        "fieldPath": ".name"
    },
    {
        "rule": "self.kind != 'EventHubNamespace' || !has(self.name) || self.name.matches('^[a-zA-Z][a-zA-Z0-9-]{6,48}[a-zA-Z0-9]$')",
        "message": "spec.name: a EventHubNamespace name is 8 to 50 letters, digits and hyphens, starting with a letter and ending with a letter or digit (ARM naming rules)",
        "fieldPath": ".name"
    },
    {
        "rule": "self.kind != 'KeyVault' || !has(self.name) || self.name.matches('^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$')",
        "message": "spec.name: a KeyVault name is 3 to 24 letters, digits and hyphens, starting with a letter and ending with a letter or digit (ARM naming rules)",
        "fieldPath": ".name"
    },
    {
        "rule": "self.kind != 'CognitiveServicesAccount' || !has(self.name) || self.name.matches('^[a-zA-Z0-9][a-zA-Z0-9-]{0,62}[a-zA-Z0-9]$')",
        "message": "spec.name: a CognitiveServicesAccount name is 2 to 64 letters, digits and hyphens, starting and ending with a letter or digit (ARM naming rules)",
        "fieldPath": ".name"
    },
    {
        "rule": "!has(self.tags) || self.tags.all(k, size(k) <= 512 && !k.matches('[<>%&?/]') && !k.contains('\\\\'))",
        "message": "spec.tags: a tag name is at most 512 characters without < > % & ? / or \\ (ARM tag rules)",
        "fieldPath": ".tags"
    }
]))]
pub struct AzureResourceSpec {
    /// The curated kind, or `Generic` for any ARM resource type.
    pub kind: AzureKind,

    /// What the operator may do: `Provision` (create/update and own; default), `Adopt` (take
    /// over an existing resource), `Observe` (read and export only; never write to Azure).
    #[serde(default)]
    pub mode: Mode,

    /// Azure resource name. When unset, a deterministic name is derived from the cluster,
    /// subscription, resource group, namespace and object name (obeying the kind's naming
    /// rules, with a short hash for globally unique kinds) and shown in `status.azureName`.
    /// Cannot change once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 90))]
    pub name: Option<String>,

    /// Azure subscription ID; else the stack's `spec.azure.subscriptionId`, else the
    /// credential's, else the operator's `--azure-subscription-id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 36),
        regex(pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
    )]
    pub subscription_id: Option<String>,

    /// Resource group that holds the resource (ignored for kind ResourceGroup): 1 to 90
    /// letters, digits, underscores, hyphens, periods and parentheses, not ending with a
    /// period (ARM naming rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 90), regex(pattern = r"^[-\w\._\(\)]*[-\w_\(\)]$"))]
    pub resource_group: Option<String>,

    /// Azure region, e.g. `southeastasia`; ARM also takes the display name (`South East
    /// Asia`): letters and digits, words separated by single spaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9]+( [A-Za-z0-9]+)*$"))]
    pub location: Option<String>,

    /// SKU; the kind's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<Sku>,

    /// Tags added to the resource (the operator also adds its ownership tags; tags others
    /// add, e.g. Azure Policy, are kept).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32, "additionalProperties" = {"type": "string", "maxLength": 256}))]
    pub tags: BTreeMap<String, String>,

    /// ARM `properties`, merged over the kind's defaults (JSON object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub properties: Option<serde_json::Value>,

    /// Blob containers to create (StorageAccount).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        inner(length(min = 3, max = 63), regex(pattern = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"))
    )]
    pub containers: Vec<String>,

    /// Queues to create (StorageAccount).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        inner(length(min = 3, max = 63), regex(pattern = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"))
    )]
    pub queues: Vec<String>,

    /// Databases to create (PostgreSQLFlexibleServer); the binding's `database` is the first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 63), regex(pattern = r"^[a-zA-Z_][a-zA-Z0-9_]*$")))]
    pub databases: Vec<String>,

    /// Event hubs to create (EventHubNamespace); the binding's `hub` is the first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 256), regex(pattern = r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$")))]
    pub hubs: Vec<String>,

    /// ARM type, api-version and exports of a Generic resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generic: Option<GenericSpec>,

    /// The administrator password of an adopted or observed PostgreSQL flexible server, which
    /// ARM never returns: key `key` of Secret `name` (same namespace). Without it the binding
    /// has no `password` key (status says so); citystack never sets a password it did not
    /// create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,

    /// `Delete` removes the Azure resource when this object is deleted; `Orphan` leaves it.
    /// Default: Orphan for kinds that hold data (StorageAccount, PostgreSQLFlexibleServer,
    /// KeyVault, ResourceGroup, Generic) and for every adopted resource, Delete for the rest.
    /// Observe always orphans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,

    /// Secret (same namespace) with AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET and
    /// optionally AZURE_SUBSCRIPTION_ID; else the namespace's `citystack-azure` Secret; else
    /// the operator's own identity (only in namespaces the operator trusts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_ref: Option<LocalRef>,
}

/// A key of a Secret in the object's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name (DNS subdomain).
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,
    /// Key in the Secret's data.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

fn free_form(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "description": "ARM properties (JSON object), merged over the kind's defaults."
    })
}

/// The curated kinds, plus Generic.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
pub enum AzureKind {
    /// Microsoft.Resources/resourceGroups.
    ResourceGroup,
    /// Microsoft.Storage/storageAccounts (+ blob containers, queues).
    StorageAccount,
    /// Microsoft.DBforPostgreSQL/flexibleServers (+ databases).
    PostgreSQLFlexibleServer,
    /// Microsoft.Cache/redis.
    RedisCache,
    /// Microsoft.EventHub/namespaces (+ event hubs).
    EventHubNamespace,
    /// Microsoft.KeyVault/vaults.
    KeyVault,
    /// Microsoft.CognitiveServices/accounts.
    CognitiveServicesAccount,
    /// Any ARM resource type (`spec.generic`).
    Generic,
}

/// What the operator may do with the Azure resource.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Mode {
    /// Create or update it, and own it (ownership tags).
    #[default]
    Provision,
    /// Take over an existing resource (refused if another owner's tag is on it).
    Adopt,
    /// Read and export only; never write to Azure.
    Observe,
}

/// What happens to the Azure resource when the object is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete it in Azure (the object carries a finalizer until Azure says it is gone).
    Delete,
    /// Leave it in Azure.
    Orphan,
}

/// ARM SKU.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sku {
    /// SKU name, e.g. `Standard_LRS`, `Standard_B1ms`, `standard`.
    #[schemars(length(min = 1, max = 64))]
    pub name: String,
    /// SKU tier, e.g. `Burstable`, `Standard`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub tier: Option<String>,
    /// SKU family (Redis: `C`, `P`; Key Vault: `A`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub family: Option<String>,
    /// Capacity (Redis size, Event Hubs throughput units).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub capacity: Option<i32>,
}

/// A Generic resource: any ARM type, its api-version, and what to export to the binding.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GenericSpec {
    /// ARM resource type, e.g. `Microsoft.Web/sites` or `Microsoft.Sql/servers/databases`: a
    /// dotted provider namespace and type segments of letters and digits (nothing like `..`
    /// or an empty segment can reach the request path).
    #[schemars(
        length(min = 3, max = 256),
        regex(pattern = r"^[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)+(/[A-Za-z][A-Za-z0-9]*)+$")
    )]
    #[serde(rename = "type")]
    pub type_: String,
    /// api-version to call, e.g. `2024-04-01`.
    #[schemars(length(min = 10, max = 32), regex(pattern = r"^\d{4}-\d{2}-\d{2}(-preview)?$"))]
    pub api_version: String,
    /// Name of a POST action whose response holds secrets (e.g. `listKeys`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), regex(pattern = r"^[A-Za-z]+$"))]
    pub list_keys_action: Option<String>,
    /// Binding keys taken from the GET or list-keys response by JSON pointer (RFC 6901).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["key"]))]
    pub exports: Vec<Export>,
}

/// One binding key exported from an ARM response.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Export {
    /// Key in the binding Secret, e.g. `endpoint`.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
    /// JSON pointer into the response, e.g. `/properties/defaultHostName`.
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^(/[^/]*)+$"))]
    pub pointer: String,
    /// Which response: `Resource` (the GET; non-secret, also shown in status) or `ListKeys`.
    #[serde(default)]
    pub from: ExportSource,
}

/// The response an export reads.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ExportSource {
    /// The resource as GET returns it.
    #[default]
    Resource,
    /// The `listKeysAction` response (secret).
    ListKeys,
}

/// Observed state of an AzureResource (kstatus-compatible, like SolutionStack).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureResourceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The Azure name in use (given or derived).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_name: Option<String>,
    /// The subscription in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    /// ARM resource ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// ARM `properties.provisioningState` (Succeeded, Failed, Canceled, or in progress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    /// The deletion policy in effect (the spec's, or the kind's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
    /// Non-secret outputs: endpoints, host names, FQDNs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
    /// The binding Secret (servicebinding.io "provisioned service" duck type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<LocalRef>,
    /// URL of the long-running operation in flight (`Azure-AsyncOperation`, else `Location`,
    /// of the last write), followed until it ends, only on the configured ARM endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// When the operation in `operation` was started (RFC 3339); after
    /// `--azure-operation-deadline` it is dropped and the resource is read afresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_start_time: Option<Time>,
    /// Hash of the desired state last sent with a PUT, including write-only fields (which
    /// ARM never returns), so a PUT is sent again only when they change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_hash: Option<String>,
}
