//! The curated resource types: canonical type names, naming rules, provisioning states,
//! computed read-only properties, write-only properties, keys and POST actions.
//!
//! Everything here is per resource provider and cites the REST reference it follows
//! (github.com/Azure/azure-rest-api-specs, `specification/<service>/resource-manager/...`).
//! Types not listed are `Generic`: stored and echoed back with `provisioningState: Succeeded`.

use crate::azurite;
use crate::respond::{ArmError, random_key};
use serde_json::{Map, Value, json};

/// A curated resource kind (or Generic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    StorageAccount,
    /// `storageAccounts/{a}/blobServices/default/containers/{c}`
    BlobContainer,
    /// `storageAccounts/{a}/queueServices/default/queues/{q}`
    Queue,
    /// `storageAccounts/{a}/{blob|queue|table|file}Services/default`: exists with its account.
    StorageService,
    PostgresServer,
    /// `flexibleServers/{s}/databases/{d}`
    PostgresDatabase,
    Redis,
    EventHubNamespace,
    /// `namespaces/{n}/eventhubs/{h}`
    EventHub,
    /// `namespaces/{n}/authorizationRules/{r}` and `namespaces/{n}/eventhubs/{h}/authorizationRules/{r}`
    EventHubAuthRule,
    KeyVault,
    CognitiveAccount,
    Generic,
}

struct Curated {
    namespace: &'static str,
    types: &'static [&'static str],
    kind: Kind,
}

/// Canonical casing as the resource providers return it in `id` and `type`.
const CURATED: &[Curated] = &[
    Curated { namespace: "Microsoft.Storage", types: &["storageAccounts"], kind: Kind::StorageAccount },
    Curated {
        namespace: "Microsoft.Storage",
        types: &["storageAccounts", "blobServices", "containers"],
        kind: Kind::BlobContainer,
    },
    Curated {
        namespace: "Microsoft.Storage",
        types: &["storageAccounts", "queueServices", "queues"],
        kind: Kind::Queue,
    },
    Curated { namespace: "Microsoft.Storage", types: &["storageAccounts", "blobServices"], kind: Kind::StorageService },
    Curated {
        namespace: "Microsoft.Storage",
        types: &["storageAccounts", "queueServices"],
        kind: Kind::StorageService,
    },
    Curated {
        namespace: "Microsoft.Storage",
        types: &["storageAccounts", "tableServices"],
        kind: Kind::StorageService,
    },
    Curated { namespace: "Microsoft.Storage", types: &["storageAccounts", "fileServices"], kind: Kind::StorageService },
    Curated { namespace: "Microsoft.DBforPostgreSQL", types: &["flexibleServers"], kind: Kind::PostgresServer },
    Curated {
        namespace: "Microsoft.DBforPostgreSQL",
        types: &["flexibleServers", "databases"],
        kind: Kind::PostgresDatabase,
    },
    Curated { namespace: "Microsoft.Cache", types: &["Redis"], kind: Kind::Redis },
    Curated { namespace: "Microsoft.EventHub", types: &["namespaces"], kind: Kind::EventHubNamespace },
    Curated { namespace: "Microsoft.EventHub", types: &["namespaces", "eventhubs"], kind: Kind::EventHub },
    Curated {
        namespace: "Microsoft.EventHub",
        types: &["namespaces", "authorizationRules"],
        kind: Kind::EventHubAuthRule,
    },
    Curated {
        namespace: "Microsoft.EventHub",
        types: &["namespaces", "eventhubs", "authorizationRules"],
        kind: Kind::EventHubAuthRule,
    },
    Curated { namespace: "Microsoft.KeyVault", types: &["vaults"], kind: Kind::KeyVault },
    Curated { namespace: "Microsoft.CognitiveServices", types: &["accounts"], kind: Kind::CognitiveAccount },
];

/// A resource type resolved to its kind and canonical casing.
#[derive(Debug, Clone)]
pub struct Classified {
    pub kind: Kind,
    pub namespace: String,
    pub types: Vec<String>,
}

impl Classified {
    /// `Microsoft.Storage/storageAccounts/blobServices/containers`
    pub fn full_type(&self) -> String {
        format!("{}/{}", self.namespace, self.types.join("/"))
    }
}

/// Resolves `namespace` + type segments (any casing) to a kind; unknown types are Generic and
/// keep the casing they were sent with.
pub fn classify(namespace: &str, types: &[String]) -> Classified {
    for c in CURATED {
        if c.namespace.eq_ignore_ascii_case(namespace)
            && c.types.len() == types.len()
            && c.types.iter().zip(types).all(|(a, b)| a.eq_ignore_ascii_case(b))
        {
            return Classified {
                kind: c.kind,
                namespace: c.namespace.to_string(),
                types: c.types.iter().map(|s| s.to_string()).collect(),
            };
        }
    }
    Classified { kind: Kind::Generic, namespace: namespace.to_string(), types: types.to_vec() }
}

/// Where a resource is in its lifecycle. Rendered per provider by [`Kind::status_fields`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Creating,
    Updating,
    Deleting,
    Succeeded,
    Failed,
}

/// The async-operation headers an answer carries (the `headers` of a `responses` entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LroHeaders {
    /// `Azure-AsyncOperation`: the status monitor (`{status, error}`).
    pub async_operation: bool,
    /// `Location`: 202 while running, then the final answer.
    pub location: bool,
    /// `Retry-After` (seconds).
    pub retry_after: bool,
}

/// Headers preset.
pub const NO_HEADERS: LroHeaders = LroHeaders { async_operation: false, location: false, retry_after: false };
/// Headers preset.
pub const LOCATION: LroHeaders = LroHeaders { async_operation: false, location: true, retry_after: true };
/// Headers preset.
pub const ASYNC_OP: LroHeaders = LroHeaders { async_operation: true, location: false, retry_after: true };
/// Headers preset.
pub const BOTH: LroHeaders = LroHeaders { async_operation: true, location: true, retry_after: true };
/// Headers preset.
pub const RETRY_ONLY: LroHeaders = LroHeaders { async_operation: false, location: false, retry_after: true };

/// How one write is answered, from the operation's `responses` and
/// `x-ms-long-running-operation(-options)` in the REST spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Done at once: this status; a PUT answers with the resource, a DELETE without a body.
    Sync(u16),
    /// Long-running: the resource shows a non-terminal state until the operation completes.
    Async {
        /// The HTTP status of the first answer.
        status: u16,
        /// Whether the first answer carries the resource (with its non-terminal state).
        body: bool,
        /// The async-operation headers of the first answer.
        headers: LroHeaders,
    },
}

impl Answer {
    /// The answer when the resource already exists (a retried create): 201 becomes 200.
    pub fn for_existing(self) -> Answer {
        match self {
            Answer::Sync(201) => Answer::Sync(200),
            Answer::Async { status: 201, body, headers } => Answer::Async { status: 200, body, headers },
            other => other,
        }
    }

    /// Whether the write runs as a long-running operation.
    pub fn is_async(self) -> bool {
        matches!(self, Answer::Async { .. })
    }
}

/// A kind's write contract: the answers of create (PUT of a new resource), update (PUT or
/// PATCH of an existing one) and delete (DELETE of an existing one; a missing one is 204),
/// and the spec they come from (`specification/...` in github.com/Azure/azure-rest-api-specs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contract {
    /// PUT of a new resource.
    pub create: Answer,
    /// PUT/PATCH of an existing resource.
    pub update: Answer,
    /// DELETE of an existing resource.
    pub delete: Answer,
    /// The spec file (and api-version) the answers come from.
    pub spec: &'static str,
}

impl Kind {
    /// The write contract of this kind; see the table in `hack/armsim/README.md`.
    pub fn contract(self) -> Contract {
        use Answer::{Async, Sync};
        match self {
            // StorageAccounts_Create: 200, or 202 + Location + Retry-After without a body,
            // final-state-via location; StorageAccounts_Delete: 200/204, synchronous.
            Kind::StorageAccount => Contract {
                create: Async { status: 202, body: false, headers: LOCATION },
                update: Sync(200),
                delete: Sync(200),
                spec: "storage/resource-manager/Microsoft.Storage/stable/2026-09-01/openapi.json",
            },
            // BlobContainers_Create: 200/201; BlobContainers_Delete: 200/204.
            Kind::BlobContainer => Contract {
                create: Sync(201),
                update: Sync(200),
                delete: Sync(200),
                spec: "storage/resource-manager/Microsoft.Storage/stable/2026-09-01/openapi.json",
            },
            // Queue_Create: 200 only; Queue_Delete: 204 only.
            Kind::Queue => Contract {
                create: Sync(200),
                update: Sync(200),
                delete: Sync(204),
                spec: "storage/resource-manager/Microsoft.Storage/stable/2026-09-01/openapi.json",
            },
            Kind::StorageService => Contract {
                create: Sync(200),
                update: Sync(200),
                delete: Sync(200),
                spec: "storage/resource-manager/Microsoft.Storage/stable/2026-09-01/openapi.json",
            },
            // Servers_CreateOrUpdate / Servers_Update: 202 + Azure-AsyncOperation + Location +
            // Retry-After, final-state-via azure-async-operation; Servers_Delete: 202 (same
            // headers) or 204, final-state-via location. Databases_Create / _Delete: the same.
            Kind::PostgresServer | Kind::PostgresDatabase => Contract {
                create: Async { status: 202, body: false, headers: BOTH },
                update: Async { status: 202, body: false, headers: BOTH },
                delete: Async { status: 202, body: false, headers: BOTH },
                spec: "postgresql/resource-manager/Microsoft.DBforPostgreSQL/stable/2025-08-01/openapi.json",
            },
            // Redis_Create: 200, or 201 + Location, final-state-via location;
            // Redis_Delete: 200, 202 + Location + Retry-After, or 204, final-state-via location.
            // The create answer also carries Azure-AsyncOperation (allowed by the ARM async
            // contract, not declared by this spec): the operator reads a failed operation's
            // error from that monitor (see the README's deviations).
            Kind::Redis => Contract {
                create: Async { status: 201, body: true, headers: BOTH },
                update: Async { status: 200, body: true, headers: NO_HEADERS },
                delete: Async { status: 202, body: false, headers: LOCATION },
                spec: "redis/resource-manager/Microsoft.Cache/stable/2024-11-01/redis.json",
            },
            // Namespaces_CreateOrUpdate: 200/201/202, long-running (2026-01-01 declares
            // Azure-AsyncOperation on 201); Namespaces_Delete: 200/202/204, long-running.
            Kind::EventHubNamespace => Contract {
                create: Async { status: 201, body: true, headers: ASYNC_OP },
                update: Async { status: 200, body: true, headers: NO_HEADERS },
                delete: Async { status: 202, body: false, headers: BOTH },
                spec: "eventhub/resource-manager/Microsoft.EventHub/stable/2024-01-01/namespaces.json",
            },
            // EventHubs_CreateOrUpdate: 200 only; EventHubs_Delete: 200/204. Authorization
            // rules: 200 / 200/204.
            Kind::EventHub | Kind::EventHubAuthRule => Contract {
                create: Sync(200),
                update: Sync(200),
                delete: Sync(200),
                spec: "eventhub/resource-manager/Microsoft.EventHub/stable/2024-01-01/eventhubs.json",
            },
            // Vaults_CreateOrUpdate: 200, or 201 + Location + Retry-After with the vault,
            // final-state-via location; Vaults_Delete: 200/204, synchronous.
            Kind::KeyVault => Contract {
                create: Async { status: 201, body: true, headers: LOCATION },
                update: Sync(200),
                delete: Sync(200),
                spec: "keyvault/resource-manager/Microsoft.KeyVault/stable/2026-02-01/openapi.json",
            },
            // Accounts_Create: 200, 201 + Retry-After, or 202 + Location + Retry-After,
            // final-state-via location; Accounts_Delete: 200, 202 + Location + Retry-After, 204.
            Kind::CognitiveAccount => Contract {
                create: Async { status: 201, body: true, headers: RETRY_ONLY },
                update: Async { status: 200, body: true, headers: NO_HEADERS },
                delete: Async { status: 202, body: false, headers: LOCATION },
                spec: "cognitiveservices/resource-manager/Microsoft.CognitiveServices/stable/2026-09-01/cognitiveservices.json",
            },
            // Generic ("Azure Resource Manager RPC: resource API reference"): 201/200, 200.
            Kind::Generic => {
                Contract { create: Sync(201), update: Sync(200), delete: Sync(200), spec: "(none: the ARM RPC)" }
            }
        }
    }

    /// Top-level curated kinds: tracked (they need a `location`, "Azure Resource Manager RPC:
    /// resource API reference, tracked resources") and named globally (their names become DNS
    /// names).
    pub fn tracked(self) -> bool {
        matches!(
            self,
            Kind::StorageAccount
                | Kind::PostgresServer
                | Kind::Redis
                | Kind::EventHubNamespace
                | Kind::KeyVault
                | Kind::CognitiveAccount
        )
    }

    /// Kinds whose names are global (they become DNS names).
    pub fn globally_unique(self) -> bool {
        self.tracked()
    }

    /// The error a PUT of a globally-unique name taken elsewhere gets.
    pub fn name_taken(self, name: &str) -> ArmError {
        match self {
            // "Storage Accounts - Create": 409 StorageAccountAlreadyTaken.
            Kind::StorageAccount => ArmError::conflict(
                "StorageAccountAlreadyTaken",
                format!("The storage account named {name} is already taken."),
            ),
            // Key Vault: 409 VaultAlreadyExists.
            Kind::KeyVault => ArmError::conflict(
                "VaultAlreadyExists",
                format!(
                    "The vault name '{name}' is already in use. Vault names are globally unique so it is possible that the name is already taken."
                ),
            ),
            Kind::PostgresServer => ArmError::conflict(
                "ServerNameAlreadyExists",
                format!("Specified server name '{name}' is already used. Please use a different name and try again."),
            ),
            Kind::Redis => ArmError::conflict(
                "NameNotAvailable",
                format!("The name '{name}' is already in use by another Azure Cache for Redis."),
            ),
            // The real Event Hubs RP answers 400 BadRequest here; armsim uses 409 like the others.
            Kind::EventHubNamespace => ArmError::conflict(
                "Conflict",
                format!(
                    "The specified name is not available. Namespace '{name}' already exists in another resource group or subscription."
                ),
            ),
            _ => ArmError::conflict(
                "Conflict",
                format!("The name '{name}' is already in use by another resource of this type."),
            ),
        }
    }

    /// Naming rules ("Naming rules and restrictions for Azure resources").
    pub fn validate_name(self, name: &str) -> Result<(), ArmError> {
        let len = name.chars().count();
        let alnum = |c: char| c.is_ascii_alphanumeric();
        let lower_alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        let edges = |f: &dyn Fn(char) -> bool| name.chars().next().is_some_and(f) && name.chars().last().is_some_and(f);
        let invalid = |rule: &str| {
            Err(ArmError::bad_request("InvalidResourceName", format!("Resource name '{name}' is invalid: {rule}")))
        };
        match self {
            Kind::StorageAccount => {
                if !(3..=24).contains(&len) || !name.chars().all(lower_alnum) {
                    return Err(ArmError::bad_request(
                        "AccountNameInvalid",
                        format!(
                            "{name} is not a valid storage account name. Storage account name must be between 3 and 24 characters in length and use numbers and lower-case letters only."
                        ),
                    ));
                }
            }
            Kind::BlobContainer | Kind::Queue => {
                if !(3..=63).contains(&len)
                    || !name.chars().all(|c| lower_alnum(c) || c == '-')
                    || !edges(&lower_alnum)
                    || name.contains("--")
                {
                    return invalid(
                        "3-63 lower-case letters, digits and single hyphens, starting and ending with a letter or digit",
                    );
                }
            }
            Kind::KeyVault => {
                if !(3..=24).contains(&len)
                    || !name.chars().all(|c| alnum(c) || c == '-')
                    || !name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    || !name.chars().last().is_some_and(alnum)
                    || name.contains("--")
                {
                    return invalid(
                        "3-24 letters, digits and single hyphens, starting with a letter and ending with a letter or digit",
                    );
                }
            }
            Kind::PostgresServer => {
                if !(3..=63).contains(&len) || !name.chars().all(|c| lower_alnum(c) || c == '-') || !edges(&lower_alnum)
                {
                    return invalid(
                        "3-63 lower-case letters, digits and hyphens, not starting or ending with a hyphen",
                    );
                }
            }
            Kind::Redis => {
                if !(1..=63).contains(&len)
                    || !name.chars().all(|c| alnum(c) || c == '-')
                    || !edges(&alnum)
                    || name.contains("--")
                {
                    return invalid(
                        "1-63 letters, digits and single hyphens, starting and ending with a letter or digit",
                    );
                }
            }
            Kind::EventHubNamespace => {
                if !(6..=50).contains(&len)
                    || !name.chars().all(|c| alnum(c) || c == '-')
                    || !name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    || !name.chars().last().is_some_and(alnum)
                {
                    return invalid(
                        "6-50 letters, digits and hyphens, starting with a letter and ending with a letter or digit",
                    );
                }
            }
            Kind::CognitiveAccount => {
                if !(2..=64).contains(&len) || !name.chars().all(|c| alnum(c) || c == '-') || !edges(&alnum) {
                    return invalid("2-64 letters, digits and hyphens, starting and ending with a letter or digit");
                }
            }
            Kind::EventHub => {
                if !(1..=256).contains(&len) || !name.chars().all(|c| alnum(c) || "-._".contains(c)) || !edges(&alnum) {
                    return invalid(
                        "1-256 letters, digits, periods, hyphens and underscores, starting and ending with a letter or digit",
                    );
                }
            }
            Kind::StorageService => {
                if !name.eq_ignore_ascii_case("default") {
                    return invalid("the only service name is 'default'");
                }
            }
            Kind::PostgresDatabase | Kind::EventHubAuthRule | Kind::Generic => {
                if name.is_empty() {
                    return invalid("empty name");
                }
            }
        }
        Ok(())
    }

    /// Properties accepted in PUT but never returned.
    pub fn write_only(self) -> &'static [&'static str] {
        match self {
            // "Servers - Create": administratorLoginPassword is x-ms-secret / write-only.
            Kind::PostgresServer => &["administratorLoginPassword"],
            _ => &[],
        }
    }

    /// The lifecycle fields this provider reports under `properties`.
    pub fn status_fields(self, phase: Phase) -> Vec<(&'static str, Value)> {
        use Phase::*;
        let s = |v: &str| Value::String(v.to_string());
        match self {
            // Storage ProvisioningState: Creating, ResolvingDNS, Succeeded (+ Deleting, Failed in 2023+).
            Kind::StorageAccount => vec![(
                "provisioningState",
                s(match phase {
                    Creating => "Creating",
                    Updating => "Accepted",
                    Deleting => "Deleting",
                    Succeeded => "Succeeded",
                    Failed => "Failed",
                }),
            )],
            // Flexible servers have no provisioningState; `state` (ServerState) tells the story.
            Kind::PostgresServer => vec![(
                "state",
                s(match phase {
                    Creating => "Provisioning",
                    Updating => "Updating",
                    Deleting => "Dropping",
                    Succeeded => "Ready",
                    Failed => "Disabled",
                }),
            )],
            // Redis ProvisioningState: Creating, Updating, Deleting, Succeeded, Failed, ...
            Kind::Redis | Kind::CognitiveAccount => vec![(
                "provisioningState",
                s(match phase {
                    Creating => "Creating",
                    Updating => "Updating",
                    Deleting => "Deleting",
                    Succeeded => "Succeeded",
                    Failed => "Failed",
                }),
            )],
            // Event Hubs namespaces report provisioningState "Created" and status "Activating"
            // while the namespace is being set up.
            Kind::EventHubNamespace => vec![
                (
                    "provisioningState",
                    s(match phase {
                        Creating => "Created",
                        Updating => "Updating",
                        Deleting => "Deleting",
                        Succeeded => "Succeeded",
                        Failed => "Failed",
                    }),
                ),
                (
                    "status",
                    s(match phase {
                        Creating => "Activating",
                        Updating => "Updating",
                        Deleting => "Removing",
                        Succeeded => "Active",
                        Failed => "Unknown",
                    }),
                ),
            ],
            // Key Vault provisioningState: RegisteringDns, Succeeded.
            Kind::KeyVault => vec![(
                "provisioningState",
                s(match phase {
                    Creating | Updating => "RegisteringDns",
                    Deleting => "Deleting",
                    Succeeded => "Succeeded",
                    Failed => "Failed",
                }),
            )],
            Kind::EventHub => vec![("status", s("Active"))],
            Kind::Generic => vec![(
                "provisioningState",
                s(match phase {
                    Failed => "Failed",
                    _ => "Succeeded",
                }),
            )],
            Kind::BlobContainer
            | Kind::Queue
            | Kind::StorageService
            | Kind::PostgresDatabase
            | Kind::EventHubAuthRule => vec![],
        }
    }

    /// Kinds that carry a pair of access keys.
    pub fn has_keys(self) -> bool {
        matches!(
            self,
            Kind::StorageAccount | Kind::Redis | Kind::EventHubAuthRule | Kind::CognitiveAccount | Kind::Generic
        )
    }
}

/// A resource's two access keys.
#[derive(Debug, Clone)]
pub struct Keys {
    pub primary: String,
    pub secondary: String,
    /// Azurite-backed storage: the keys are Azurite's and cannot change.
    pub fixed: bool,
}

impl Keys {
    fn random(bytes: usize) -> Self {
        Keys { primary: random_key(bytes), secondary: random_key(bytes), fixed: false }
    }

    /// Fresh keys for a new resource of `kind`.
    pub fn for_kind(kind: Kind, azurite_backed: bool) -> Option<Self> {
        match kind {
            Kind::StorageAccount if azurite_backed => Some(Keys {
                primary: azurite::ACCOUNT_KEY.to_string(),
                secondary: azurite::ACCOUNT_KEY.to_string(),
                fixed: true,
            }),
            // Storage account keys are 64 bytes (88 base64 characters).
            Kind::StorageAccount => Some(Self::random(64)),
            k if k.has_keys() => Some(Self::random(32)),
            _ => None,
        }
    }

    /// Rotates one key (`Some(true)` primary, `Some(false)` secondary) or both (`None`).
    pub fn regenerate(&mut self, kind: Kind, which: Option<bool>) -> Result<(), ArmError> {
        if self.fixed {
            return Err(ArmError::conflict(
                "KeyRegenerationNotSupported",
                "armsim: this storage account is backed by Azurite, whose devstoreaccount1 key is fixed; keys cannot be regenerated.",
            ));
        }
        let bytes = if kind == Kind::StorageAccount { 64 } else { 32 };
        if which != Some(false) {
            self.primary = random_key(bytes);
        }
        if which != Some(true) {
            self.secondary = random_key(bytes);
        }
        Ok(())
    }
}

/// What computed properties depend on.
pub struct Ctx<'a> {
    pub subscription: &'a str,
    /// Names along the id: `[account, "default", container]`.
    pub names: &'a [String],
    pub location: Option<&'a str>,
    /// The `kind` top-level field (storage, cognitive services).
    pub kind_field: Option<&'a str>,
    /// The properties as sent.
    pub sent: &'a Map<String, Value>,
    pub azurite: Option<&'a azurite::Azurite>,
    pub now: &'a str,
}

/// Read-only properties the provider computes. `previous` keeps creation timestamps stable.
pub fn computed(kind: Kind, ctx: &Ctx<'_>, previous: Option<&Map<String, Value>>) -> Map<String, Value> {
    let name = ctx.names.last().map(String::as_str).unwrap_or_default();
    let keep =
        |key: &str| previous.and_then(|p| p.get(key)).cloned().unwrap_or_else(|| Value::String(ctx.now.to_string()));
    let mut m = Map::new();
    match kind {
        // "Storage Accounts - Get Properties": primaryEndpoints, primaryLocation, statusOfPrimary, creationTime.
        Kind::StorageAccount => {
            let endpoints = match ctx.azurite {
                Some(a) => {
                    let mut e = json!({
                        "blob": format!("{}/", a.blob),
                        "queue": format!("{}/", a.queue),
                    });
                    if let Some(t) = &a.table {
                        e["table"] = Value::String(format!("{t}/"));
                    }
                    e
                }
                None => json!({
                    "blob": format!("https://{name}.blob.core.windows.net/"),
                    "queue": format!("https://{name}.queue.core.windows.net/"),
                    "table": format!("https://{name}.table.core.windows.net/"),
                    "file": format!("https://{name}.file.core.windows.net/"),
                    "dfs": format!("https://{name}.dfs.core.windows.net/"),
                    "web": format!("https://{name}.z13.web.core.windows.net/"),
                }),
            };
            m.insert("primaryEndpoints".into(), endpoints);
            if let Some(loc) = ctx.location {
                m.insert("primaryLocation".into(), loc.into());
            }
            m.insert("statusOfPrimary".into(), "available".into());
            m.insert("creationTime".into(), keep("creationTime"));
        }
        // "Servers - Get": fullyQualifiedDomainName; version echoed (default 16).
        Kind::PostgresServer => {
            m.insert("fullyQualifiedDomainName".into(), format!("{name}.postgres.database.azure.com").into());
            if !ctx.sent.contains_key("version") {
                m.insert("version".into(), "16".into());
            }
        }
        // "Redis - Get": hostName, port 6379, sslPort 6380, redisVersion.
        Kind::Redis => {
            m.insert("hostName".into(), format!("{name}.redis.cache.windows.net").into());
            m.insert("port".into(), 6379.into());
            m.insert("sslPort".into(), 6380.into());
            if !ctx.sent.contains_key("redisVersion") {
                m.insert("redisVersion".into(), "6.0".into());
            }
        }
        // "Namespaces - Get": serviceBusEndpoint, metricId, createdAt, updatedAt.
        Kind::EventHubNamespace => {
            m.insert("serviceBusEndpoint".into(), format!("https://{name}.servicebus.windows.net:443/").into());
            m.insert("metricId".into(), format!("{}:{}", ctx.subscription, name.to_ascii_lowercase()).into());
            m.insert("createdAt".into(), keep("createdAt"));
            m.insert("updatedAt".into(), ctx.now.into());
        }
        // "Event Hubs - Get": partitionIds from partitionCount, createdAt, updatedAt.
        Kind::EventHub => {
            let count = ctx.sent.get("partitionCount").and_then(Value::as_u64).unwrap_or(4);
            if !ctx.sent.contains_key("partitionCount") {
                m.insert("partitionCount".into(), count.into());
            }
            m.insert("partitionIds".into(), (0..count).map(|i| Value::String(i.to_string())).collect());
            m.insert("createdAt".into(), keep("createdAt"));
            m.insert("updatedAt".into(), ctx.now.into());
        }
        // "Vaults - Get": vaultUri.
        Kind::KeyVault => {
            m.insert("vaultUri".into(), format!("https://{name}.vault.azure.net/").into());
        }
        // "Accounts - Get": endpoint (custom subdomain, OpenAI, or the regional endpoint).
        Kind::CognitiveAccount => {
            let sub = ctx.sent.get("customSubDomainName").and_then(Value::as_str);
            let endpoint = match (sub, ctx.kind_field) {
                (Some(s), Some(k)) if k.eq_ignore_ascii_case("OpenAI") => format!("https://{s}.openai.azure.com/"),
                (Some(s), _) => format!("https://{s}.cognitiveservices.azure.com/"),
                (None, _) => format!("https://{}.api.cognitive.microsoft.com/", ctx.location.unwrap_or("westus")),
            };
            m.insert("endpoint".into(), endpoint.into());
            m.insert("dateCreated".into(), keep("dateCreated"));
        }
        // "Blob Containers - Get": lease state, last modified, public access default.
        Kind::BlobContainer => {
            if !ctx.sent.contains_key("publicAccess") {
                m.insert("publicAccess".into(), "None".into());
            }
            m.insert("leaseStatus".into(), "Unlocked".into());
            m.insert("leaseState".into(), "Available".into());
            m.insert("hasImmutabilityPolicy".into(), false.into());
            m.insert("hasLegalHold".into(), false.into());
            m.insert("lastModifiedTime".into(), ctx.now.into());
        }
        Kind::Queue => {
            m.insert("approximateMessageCount".into(), 0.into());
        }
        // "Databases - Get": charset/collation defaults.
        Kind::PostgresDatabase => {
            if !ctx.sent.contains_key("charset") {
                m.insert("charset".into(), "UTF8".into());
            }
            if !ctx.sent.contains_key("collation") {
                m.insert("collation".into(), "en_US.utf8".into());
            }
        }
        Kind::EventHubAuthRule | Kind::StorageService | Kind::Generic => {}
    }
    m
}

/// Parses which key a regenerate body names: `Some(true)` primary, `Some(false)` secondary.
fn which_key(body: &Value, field: &str, primary: &[&str], secondary: &[&str]) -> Result<bool, ArmError> {
    let v = body.get(field).and_then(Value::as_str).unwrap_or_default();
    if primary.iter().any(|p| p.eq_ignore_ascii_case(v)) {
        Ok(true)
    } else if secondary.iter().any(|s| s.eq_ignore_ascii_case(v)) {
        Ok(false)
    } else {
        Err(ArmError::bad_request(
            "InvalidRequestContent",
            format!("The request body must contain '{field}' with one of {primary:?} or {secondary:?}; got '{v}'."),
        ))
    }
}

/// Event Hubs connection string ("Get an Event Hubs connection string").
fn eventhub_connection_string(names: &[String], rule: &str, key: &str) -> String {
    let ns = names.first().map(String::as_str).unwrap_or_default();
    let mut s = format!("Endpoint=sb://{ns}.servicebus.windows.net/;SharedAccessKeyName={rule};SharedAccessKey={key}");
    if names.len() == 3 {
        s.push_str(&format!(";EntityPath={}", names[1]));
    }
    s
}

/// The list-keys answer for a keyed resource.
pub fn list_keys_body(kind: Kind, names: &[String], keys: &Keys, created: &str) -> Value {
    match kind {
        // "Storage Accounts - List Keys": {keys:[{keyName,value,permissions,creationTime}]}.
        Kind::StorageAccount => json!({"keys": [
            {"keyName": "key1", "value": keys.primary, "permissions": "FULL", "creationTime": created},
            {"keyName": "key2", "value": keys.secondary, "permissions": "FULL", "creationTime": created},
        ]}),
        // "Redis - List Keys": {primaryKey, secondaryKey}.
        Kind::Redis => json!({"primaryKey": keys.primary, "secondaryKey": keys.secondary}),
        // "Namespaces - List Keys" / "Event Hubs - List Keys": AccessKeys.
        Kind::EventHubAuthRule => {
            let rule = names.last().map(String::as_str).unwrap_or_default();
            json!({
                "primaryConnectionString": eventhub_connection_string(names, rule, &keys.primary),
                "secondaryConnectionString": eventhub_connection_string(names, rule, &keys.secondary),
                "primaryKey": keys.primary,
                "secondaryKey": keys.secondary,
                "keyName": rule,
            })
        }
        // "Accounts - List Keys" (Cognitive Services): {key1, key2}.
        Kind::CognitiveAccount => json!({"key1": keys.primary, "key2": keys.secondary}),
        // Generic (simulator-specific): both common shapes.
        _ => json!({
            "primaryKey": keys.primary,
            "secondaryKey": keys.secondary,
            "keys": [
                {"keyName": "key1", "value": keys.primary},
                {"keyName": "key2", "value": keys.secondary},
            ],
        }),
    }
}

/// The POST actions a kind supports. Returns `Ok(None)` when the action is not known.
pub fn action(
    kind: Kind,
    action: &str,
    names: &[String],
    keys: Option<&mut Keys>,
    body: &Value,
    created: &str,
) -> Result<Option<Value>, ArmError> {
    let a = action.to_ascii_lowercase();
    let Some(keys) = keys else {
        return Ok(None);
    };
    match (kind, a.as_str()) {
        (_, "listkeys") => Ok(Some(list_keys_body(kind, names, keys, created))),
        // "Storage Accounts - Regenerate Key": {keyName: key1|key2} → the list-keys shape.
        (Kind::StorageAccount, "regeneratekey") => {
            let which = which_key(body, "keyName", &["key1"], &["key2"])?;
            keys.regenerate(kind, Some(which))?;
            Ok(Some(list_keys_body(kind, names, keys, created)))
        }
        // "Redis - Regenerate Key": {keyType: Primary|Secondary} → {primaryKey, secondaryKey}.
        (Kind::Redis, "regeneratekey") => {
            let which = which_key(body, "keyType", &["Primary"], &["Secondary"])?;
            keys.regenerate(kind, Some(which))?;
            Ok(Some(list_keys_body(kind, names, keys, created)))
        }
        // "Namespaces - Regenerate Keys": {keyType: PrimaryKey|SecondaryKey, key?} → AccessKeys.
        (Kind::EventHubAuthRule, "regeneratekeys") => {
            let which = which_key(body, "keyType", &["PrimaryKey"], &["SecondaryKey"])?;
            keys.regenerate(kind, Some(which))?;
            if let Some(k) = body.get("key").and_then(Value::as_str) {
                if which {
                    keys.primary = k.to_string();
                } else {
                    keys.secondary = k.to_string();
                }
            }
            Ok(Some(list_keys_body(kind, names, keys, created)))
        }
        // "Accounts - Regenerate Key" (Cognitive Services): {keyName: Key1|Key2} → {key1, key2}.
        (Kind::CognitiveAccount, "regeneratekey") => {
            let which = which_key(body, "keyName", &["Key1"], &["Key2"])?;
            keys.regenerate(kind, Some(which))?;
            Ok(Some(list_keys_body(kind, names, keys, created)))
        }
        (Kind::Generic, "regeneratekey" | "regeneratekeys") => {
            keys.regenerate(kind, None)?;
            Ok(Some(list_keys_body(kind, names, keys, created)))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_is_case_insensitive_and_canonicalises() {
        let c = classify("microsoft.storage", &["STORAGEACCOUNTS".into(), "blobservices".into(), "Containers".into()]);
        assert_eq!(c.kind, Kind::BlobContainer);
        assert_eq!(c.full_type(), "Microsoft.Storage/storageAccounts/blobServices/containers");
        let g = classify("Microsoft.Web", &["sites".into()]);
        assert_eq!(g.kind, Kind::Generic);
        assert_eq!(g.full_type(), "Microsoft.Web/sites");
    }

    #[test]
    fn storage_names() {
        assert!(Kind::StorageAccount.validate_name("abc123").is_ok());
        assert_eq!(Kind::StorageAccount.validate_name("Abc").unwrap_err().code, "AccountNameInvalid");
        assert!(Kind::StorageAccount.validate_name("ab").is_err());
    }
}
