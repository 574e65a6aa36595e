//! The curated-kind table: for each kind its ARM type and api-version, defaults, naming
//! rules, and how its binding (servicebinding.io Secret) is exported. Pure.
//!
//! Naming rules follow Microsoft's "Naming rules and restrictions for Azure resources";
//! api-versions are the latest stable ones in the public Azure REST API specifications
//! (github.com/Azure/azure-rest-api-specs, specification/<service>/resource-manager).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::api::{AzureKind, AzureResourceSpec, DeletionPolicy, Mode};
use crate::naming;

/// How a kind's credentials are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keys {
    /// No secret beyond what the GET returns (Key Vault: access is by Entra ID).
    None,
    /// `POST {resource}/{action}` (Storage, Redis, Cognitive Services: `listKeys`).
    Action(&'static str),
    /// `POST {resource}/authorizationRules/RootManageSharedAccessKey/listKeys` (Event Hubs).
    NamespaceRule,
    /// The operator generates the administrator password, keeps it in a Secret, and sends it
    /// with the PUT (PostgreSQL flexible server: no list-keys action exists).
    GeneratedPassword,
}

/// Naming rules of a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameRule {
    /// Minimum length.
    pub min: usize,
    /// Maximum length.
    pub max: usize,
    /// Whether hyphens are allowed (else letters and digits only).
    pub hyphens: bool,
    /// Whether upper-case letters are allowed.
    pub upper: bool,
    /// Whether the name must start with a letter.
    pub letter_first: bool,
    /// Whether the name is globally unique in Azure (a DNS name): derived names carry a hash.
    pub global: bool,
}

/// Everything the operator knows about one curated kind.
#[derive(Clone, Copy, Debug)]
pub struct KindInfo {
    /// The kind.
    pub kind: AzureKind,
    /// ARM resource type, e.g. `Microsoft.Storage/storageAccounts`.
    pub arm_type: &'static str,
    /// api-version used for the resource and its children.
    pub api_version: &'static str,
    /// Naming rules.
    pub name: NameRule,
    /// Whether the resource holds data (its deletion policy defaults to Orphan).
    pub holds_data: bool,
    /// How credentials are exported.
    pub keys: Keys,
    /// servicebinding.io `type` of the binding Secret.
    pub binding_type: &'static str,
    /// JSON pointers of write-only fields: sent in the PUT, never returned by GET, so drift
    /// on them is seen only through the recorded hash.
    pub write_only: &'static [&'static str],
    /// Whether the SKU lives in `properties.sku` (Redis, Key Vault) instead of `sku`.
    pub sku_in_properties: bool,
}

const TABLE: [KindInfo; 7] = [
    KindInfo {
        kind: AzureKind::ResourceGroup,
        arm_type: "Microsoft.Resources/resourceGroups",
        api_version: "2025-04-01",
        name: NameRule { min: 1, max: 90, hyphens: true, upper: true, letter_first: false, global: false },
        holds_data: true,
        keys: Keys::None,
        binding_type: "azure-resourcegroup",
        write_only: &[],
        sku_in_properties: false,
    },
    KindInfo {
        kind: AzureKind::StorageAccount,
        arm_type: "Microsoft.Storage/storageAccounts",
        api_version: "2026-09-01",
        name: NameRule { min: 3, max: 24, hyphens: false, upper: false, letter_first: false, global: true },
        holds_data: true,
        keys: Keys::Action("listKeys"),
        binding_type: "azure-storage",
        write_only: &[],
        sku_in_properties: false,
    },
    KindInfo {
        kind: AzureKind::PostgreSQLFlexibleServer,
        arm_type: "Microsoft.DBforPostgreSQL/flexibleServers",
        api_version: "2025-08-01",
        name: NameRule { min: 3, max: 63, hyphens: true, upper: false, letter_first: false, global: true },
        holds_data: true,
        keys: Keys::GeneratedPassword,
        binding_type: "postgresql",
        write_only: &["/properties/administratorLoginPassword"],
        sku_in_properties: false,
    },
    KindInfo {
        kind: AzureKind::RedisCache,
        arm_type: "Microsoft.Cache/redis",
        api_version: "2024-11-01",
        name: NameRule { min: 1, max: 63, hyphens: true, upper: true, letter_first: false, global: true },
        holds_data: false,
        keys: Keys::Action("listKeys"),
        binding_type: "redis",
        write_only: &[],
        sku_in_properties: true,
    },
    KindInfo {
        kind: AzureKind::EventHubNamespace,
        arm_type: "Microsoft.EventHub/namespaces",
        api_version: "2026-01-01",
        name: NameRule { min: 8, max: 50, hyphens: true, upper: true, letter_first: true, global: true },
        holds_data: false,
        keys: Keys::NamespaceRule,
        binding_type: "azure-eventhubs",
        write_only: &[],
        sku_in_properties: false,
    },
    KindInfo {
        kind: AzureKind::KeyVault,
        arm_type: "Microsoft.KeyVault/vaults",
        api_version: "2026-02-01",
        name: NameRule { min: 3, max: 24, hyphens: true, upper: true, letter_first: true, global: true },
        holds_data: true,
        keys: Keys::None,
        binding_type: "azure-keyvault",
        write_only: &[],
        sku_in_properties: true,
    },
    KindInfo {
        kind: AzureKind::CognitiveServicesAccount,
        arm_type: "Microsoft.CognitiveServices/accounts",
        api_version: "2026-09-01",
        name: NameRule { min: 2, max: 64, hyphens: true, upper: true, letter_first: false, global: true },
        holds_data: false,
        keys: Keys::Action("listKeys"),
        binding_type: "azure-cognitiveservices",
        write_only: &[],
        sku_in_properties: false,
    },
];

/// The table entry of a curated kind; `None` for Generic. The match is exhaustive: a new
/// kind in the API enum does not compile until it has an entry.
pub fn info(kind: AzureKind) -> Option<&'static KindInfo> {
    let index = match kind {
        AzureKind::ResourceGroup => 0,
        AzureKind::StorageAccount => 1,
        AzureKind::PostgreSQLFlexibleServer => 2,
        AzureKind::RedisCache => 3,
        AzureKind::EventHubNamespace => 4,
        AzureKind::KeyVault => 5,
        AzureKind::CognitiveServicesAccount => 6,
        AzureKind::Generic => return None,
    };
    TABLE.get(index).filter(|k| k.kind == kind)
}

/// The deletion policy in effect: Observe always orphans; else the spec's; else Orphan for an
/// adopted resource (citystack did not create it), for kinds that hold data and for Generic
/// (contents unknown); Delete for the rest.
pub fn effective_deletion_policy(kind: AzureKind, mode: Mode, spec: Option<DeletionPolicy>) -> DeletionPolicy {
    match (mode, spec) {
        (Mode::Observe, _) => DeletionPolicy::Orphan,
        (_, Some(policy)) => policy,
        (Mode::Adopt, None) => DeletionPolicy::Orphan,
        (Mode::Provision, None) => match info(kind) {
            Some(k) if !k.holds_data => DeletionPolicy::Delete,
            _ => DeletionPolicy::Orphan,
        },
    }
}

/// Child resources the spec asks for, as `(ARM id, PUT body)`, under the resource `id`
/// (StorageAccount containers and queues, PostgreSQL databases, Event Hubs hubs). Pure.
pub fn children(kind: AzureKind, spec: &AzureResourceSpec, id: &str) -> Vec<(String, Value)> {
    let under = |path: &str, names: &[String], body: Value| -> Vec<(String, Value)> {
        names.iter().map(|n| (format!("{id}/{path}/{n}"), body.clone())).collect()
    };
    match kind {
        AzureKind::StorageAccount => {
            let mut out = under("blobServices/default/containers", &spec.containers, json!({"properties": {}}));
            out.extend(under("queueServices/default/queues", &spec.queues, json!({"properties": {}})));
            out
        }
        AzureKind::PostgreSQLFlexibleServer => {
            under("databases", &spec.databases, json!({"properties": {"charset": "UTF8", "collation": "en_US.utf8"}}))
        }
        AzureKind::EventHubNamespace => under("eventhubs", &spec.hubs, json!({"properties": {"partitionCount": 2}})),
        AzureKind::ResourceGroup
        | AzureKind::RedisCache
        | AzureKind::KeyVault
        | AzureKind::CognitiveServicesAccount
        | AzureKind::Generic => Vec::new(),
    }
}

/// The body written to an adopted resource: only what its spec sets explicitly (tags, and
/// `sku` and `properties` when given), never a kind default or a generated value, so adopting
/// changes nothing its owner chose. Sent as an ARM PATCH (RFC 7396 merge semantics). Pure.
pub fn adopt_body(
    kind: AzureKind,
    sku: Option<&Value>,
    properties: Option<&Value>,
    tags: &BTreeMap<String, String>,
) -> Value {
    let mut body = json!({ "tags": tags });
    let sku_in_properties = info(kind).is_some_and(|k| k.sku_in_properties);
    if let Some(p) = properties {
        body["properties"] = p.clone();
    }
    match (sku, sku_in_properties) {
        (Some(sku), true) => merge(&mut body, &json!({"properties": {"sku": sku}})),
        (Some(sku), false) => body["sku"] = sku.clone(),
        (None, _) => {}
    }
    body
}

/// What a derived name is built from: every input that makes it unique.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameSeed<'a> {
    /// The cluster's identity: the UID of the kube-system namespace.
    pub cluster: &'a str,
    /// Subscription ID.
    pub subscription: &'a str,
    /// Resource group ("" for a resource group itself).
    pub resource_group: &'a str,
    /// Kubernetes namespace of the AzureResource.
    pub namespace: &'a str,
    /// Name of the AzureResource.
    pub name: &'a str,
}

/// A deterministic Azure name for `kind`: the readable `<namespace>-<name>` cut to fit, plus
/// (for globally unique kinds) 8 hex characters of a hash of the whole seed, so equal input
/// always gives the same name and two clusters or subscriptions do not collide.
pub fn derive_name(kind: AzureKind, seed: &NameSeed<'_>) -> String {
    let rule = info(kind).map(|k| k.name).unwrap_or(NameRule {
        min: 1,
        max: 63,
        hyphens: true,
        upper: false,
        letter_first: true,
        global: true,
    });
    let hash_input =
        format!("{}\n{}\n{}\n{}\n{}", seed.cluster, seed.subscription, seed.resource_group, seed.namespace, seed.name);
    let hash = if rule.global { naming::short_hash(hash_input.as_bytes())[..8].to_owned() } else { String::new() };
    let mut readable: String = format!("{}-{}", seed.namespace, seed.name)
        .chars()
        .filter_map(|c| {
            let c = if rule.upper { c } else { c.to_ascii_lowercase() };
            match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' => Some(c),
                '-' | '.' | '_' if rule.hyphens => Some('-'),
                _ => None,
            }
        })
        .collect();
    while readable.contains("--") {
        readable = readable.replace("--", "-");
    }
    let separator = if rule.hyphens && !hash.is_empty() { "-" } else { "" };
    let room = rule.max - hash.len() - separator.len();
    readable.truncate(room);
    let mut readable = readable.trim_matches('-').to_owned();
    if rule.letter_first && !readable.starts_with(|c: char| c.is_ascii_alphabetic()) {
        readable.insert(0, 'c');
        readable.truncate(room);
        readable = readable.trim_end_matches('-').to_owned();
    }
    if readable.is_empty() { format!("cs{hash}") } else { format!("{readable}{separator}{hash}") }
}

/// Checks a given Azure name against the kind's rules.
///
/// Errors: a message naming the rule broken, e.g. `3 to 24 lowercase letters and digits`.
pub fn check_name(kind: AzureKind, name: &str) -> Result<(), String> {
    let Some(rule) = info(kind).map(|k| k.name) else { return Ok(()) };
    let charset = match (rule.hyphens, rule.upper) {
        (true, true) => "letters, digits and hyphens",
        (true, false) => "lowercase letters, digits and hyphens",
        (false, true) => "letters and digits",
        (false, false) => "lowercase letters and digits",
    };
    let describe = || {
        format!(
            "{} to {} {charset}{}",
            rule.min,
            rule.max,
            if rule.letter_first { ", starting with a letter" } else { "" }
        )
    };
    let allowed = |c: char| {
        c.is_ascii_digit()
            || c.is_ascii_lowercase()
            || (rule.upper && c.is_ascii_uppercase())
            || (rule.hyphens && c == '-')
            || (kind == AzureKind::ResourceGroup && matches!(c, '_' | '.' | '(' | ')'))
    };
    let ok = (rule.min..=rule.max).contains(&name.len())
        && name.chars().all(allowed)
        && !name.starts_with('-')
        && !name.ends_with(['-', '.'])
        && (!rule.letter_first || name.starts_with(|c: char| c.is_ascii_alphabetic()));
    if ok { Ok(()) } else { Err(format!("Azure name {name:?} breaks the {kind:?} naming rule: {}", describe())) }
}

/// The PUT body of a curated kind: its defaults, with `sku` and `properties` from the spec
/// merged over them (objects merge key by key; the spec wins).
pub fn desired_body(
    kind: AzureKind,
    location: &str,
    sku: Option<&Value>,
    properties: Option<&Value>,
    tags: &BTreeMap<String, String>,
    tenant: Option<&str>,
) -> Value {
    let (default_sku, mut default_properties, extra): (Option<Value>, Value, Option<(&str, Value)>) = match kind {
        AzureKind::ResourceGroup => (None, json!({}), None),
        AzureKind::StorageAccount => (
            Some(json!({"name": "Standard_LRS"})),
            json!({"minimumTlsVersion": "TLS1_2", "supportsHttpsTrafficOnly": true, "allowBlobPublicAccess": false}),
            Some(("kind", json!("StorageV2"))),
        ),
        AzureKind::PostgreSQLFlexibleServer => (
            Some(json!({"name": "Standard_B1ms", "tier": "Burstable"})),
            json!({"version": "16", "storage": {"storageSizeGB": 32}, "administratorLogin": "citystack"}),
            None,
        ),
        AzureKind::RedisCache => (
            None,
            json!({"sku": {"name": "Basic", "family": "C", "capacity": 0}, "enableNonSslPort": false, "minimumTlsVersion": "1.2"}),
            None,
        ),
        AzureKind::EventHubNamespace => {
            (Some(json!({"name": "Standard", "tier": "Standard", "capacity": 1})), json!({}), None)
        }
        AzureKind::KeyVault => (
            None,
            json!({"sku": {"family": "A", "name": "standard"}, "tenantId": tenant.unwrap_or_default(), "enableRbacAuthorization": true, "accessPolicies": []}),
            None,
        ),
        AzureKind::CognitiveServicesAccount => {
            (Some(json!({"name": "S0"})), json!({}), Some(("kind", json!("CognitiveServices"))))
        }
        AzureKind::Generic => (None, json!({}), None),
    };
    let sku_inside = info(kind).is_some_and(|k| k.sku_in_properties);
    if let (true, Some(sku)) = (sku_inside, sku) {
        merge(&mut default_properties, &json!({ "sku": sku }));
    }
    if let Some(p) = properties {
        merge(&mut default_properties, p);
    }
    let mut body = json!({ "location": location, "tags": tags });
    if kind != AzureKind::ResourceGroup {
        body["properties"] = default_properties;
    }
    if let (false, Some(sku)) = (sku_inside, sku.cloned().or(default_sku)) {
        body["sku"] = sku;
    }
    if let Some((key, value)) = extra {
        body[key] = value;
    }
    body
}

/// Merges `over` into `base`: objects key by key (recursively), anything else replaced.
pub fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed<'a>(namespace: &'a str, name: &'a str) -> NameSeed<'a> {
        NameSeed { cluster: "uid-1", subscription: "sub", resource_group: "rg", namespace, name }
    }

    #[test]
    fn derived_names_obey_every_kinds_rules() {
        let long = "a-very-long-namespace-name-for-a-city-department";
        for kind in TABLE.iter().map(|k| k.kind) {
            for (ns, name) in [("hanoi-transport", "traffic-archive"), (long, long), ("x", "1"), ("9lives", "db")] {
                let derived = derive_name(kind, &seed(ns, name));
                assert!(check_name(kind, &derived).is_ok(), "{kind:?} {derived}: {:?}", check_name(kind, &derived));
            }
        }
    }

    #[test]
    fn derived_names_are_stable_and_unique_per_seed() {
        let a = derive_name(AzureKind::StorageAccount, &seed("hanoi", "archive"));
        assert_eq!(a, derive_name(AzureKind::StorageAccount, &seed("hanoi", "archive")));
        assert_ne!(a, derive_name(AzureKind::StorageAccount, &seed("hue", "archive")));
        let other_cluster = NameSeed { cluster: "uid-2", ..seed("hanoi", "archive") };
        assert_ne!(a, derive_name(AzureKind::StorageAccount, &other_cluster));
        assert!(a.starts_with("hanoiarchive"), "{a}");
    }

    #[test]
    fn names_that_break_rules_are_named() {
        let error = check_name(AzureKind::StorageAccount, "Has-Upper").err().unwrap_or_default();
        assert!(error.contains("3 to 24 lowercase letters and digits"), "{error}");
        assert!(check_name(AzureKind::KeyVault, "1vault").is_err());
        assert!(check_name(AzureKind::ResourceGroup, "rg_city.(1)").is_ok());
    }

    #[test]
    fn deletion_policy_defaults_protect_data() {
        let p = Mode::Provision;
        assert_eq!(effective_deletion_policy(AzureKind::StorageAccount, p, None), DeletionPolicy::Orphan);
        assert_eq!(effective_deletion_policy(AzureKind::RedisCache, p, None), DeletionPolicy::Delete);
        assert_eq!(effective_deletion_policy(AzureKind::Generic, p, None), DeletionPolicy::Orphan);
        assert_eq!(
            effective_deletion_policy(AzureKind::RedisCache, Mode::Observe, Some(DeletionPolicy::Delete)),
            DeletionPolicy::Orphan
        );
        assert_eq!(
            effective_deletion_policy(AzureKind::KeyVault, p, Some(DeletionPolicy::Delete)),
            DeletionPolicy::Delete
        );
        // Adopted resources were not created by citystack: Orphan whatever the kind.
        for kind in [AzureKind::RedisCache, AzureKind::EventHubNamespace, AzureKind::CognitiveServicesAccount] {
            assert_eq!(effective_deletion_policy(kind, Mode::Adopt, None), DeletionPolicy::Orphan, "{kind:?}");
        }
        assert_eq!(
            effective_deletion_policy(AzureKind::RedisCache, Mode::Adopt, Some(DeletionPolicy::Delete)),
            DeletionPolicy::Delete
        );
    }

    #[test]
    fn every_kind_has_its_own_table_entry() {
        for kind in TABLE.iter().map(|k| k.kind) {
            assert_eq!(info(kind).map(|k| k.kind), Some(kind));
        }
        assert!(info(AzureKind::Generic).is_none());
    }

    #[test]
    fn adopted_resources_receive_only_explicit_fields() {
        let tags = BTreeMap::from([("citystack-owner".to_owned(), "o".to_owned())]);
        assert_eq!(adopt_body(AzureKind::RedisCache, None, None, &tags), json!({"tags": {"citystack-owner": "o"}}));
        let sku = json!({"name": "Premium", "family": "P", "capacity": 1});
        let body = adopt_body(AzureKind::RedisCache, Some(&sku), Some(&json!({"minimumTlsVersion": "1.2"})), &tags);
        assert_eq!(body["properties"]["sku"], sku);
        assert_eq!(body["properties"]["minimumTlsVersion"], json!("1.2"));
        assert!(body.get("location").is_none() && body.get("sku").is_none());
        let storage = adopt_body(AzureKind::StorageAccount, Some(&json!({"name": "Standard_GRS"})), None, &tags);
        assert_eq!(storage["sku"]["name"], json!("Standard_GRS"));
        assert!(storage.get("properties").is_none() && storage.get("kind").is_none());
    }

    #[test]
    fn spec_properties_merge_over_defaults() {
        let body = desired_body(
            AzureKind::StorageAccount,
            "southeastasia",
            None,
            Some(&json!({"allowBlobPublicAccess": true, "accessTier": "Cool"})),
            &BTreeMap::new(),
            None,
        );
        assert_eq!(body["properties"]["allowBlobPublicAccess"], json!(true));
        assert_eq!(body["properties"]["minimumTlsVersion"], json!("TLS1_2"));
        assert_eq!(body["sku"]["name"], json!("Standard_LRS"));
        assert_eq!(body["kind"], json!("StorageV2"));
        let redis = desired_body(
            AzureKind::RedisCache,
            "eastus",
            Some(&json!({"name": "Standard", "family": "C", "capacity": 1})),
            None,
            &BTreeMap::new(),
            None,
        );
        assert_eq!(redis["properties"]["sku"]["name"], json!("Standard"));
        assert!(redis.get("sku").is_none());
    }
}
