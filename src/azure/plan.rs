//! The AzureResource decision, pure: from the spec, what ARM said (the resource and any
//! operation in flight) and the recorded status (untrusted: it may only make the operator more
//! careful, never point it elsewhere) to one [`Decision`]. Every branch is a table row in the
//! tests below; no I/O happens here.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::api::{AzureKind, AzureResourceSpec, AzureResourceStatus, Mode};
use crate::azure::credential::is_guid;
use crate::azure::kinds;
use crate::azure::response::Provisioning;
use crate::error::{Category, bounded};
use crate::naming::{self, OWNER_TAG};
use crate::stack::drift;

/// How often a resource in a non-terminal provisioningState (or an operation that gave no
/// `Retry-After`) is looked at again.
pub const POLL: Duration = Duration::from_secs(5);

/// A long-running operation as last observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// None recorded.
    None,
    /// Still running; look again after `after` (the operation's `Retry-After`, if any).
    Running {
        /// `Retry-After`, bounded.
        after: Option<Duration>,
    },
    /// Ended Succeeded (or the `Location` poll gave the final answer).
    Succeeded,
    /// Ended Failed or Canceled.
    Ended {
        /// `Failed` or `Canceled`.
        state: String,
        /// ARM error code (bounded).
        code: String,
        /// ARM error message (bounded).
        message: String,
    },
    /// The operation URL answered 404: ARM forgot it (operations expire).
    Gone,
    /// The recorded URL is outside the configured ARM endpoint; it was not called.
    Untrusted {
        /// `scheme://host:port` of the URL.
        origin: String,
    },
    /// Older than the operation deadline; not called again.
    Expired,
}

/// What ARM holds for the target.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// The GET body; `None` when ARM answered 404 (or it was not read while an operation runs).
    pub resource: Option<Value>,
    /// The operation recorded in status, as followed.
    pub operation: Operation,
}

/// Everything the decision depends on.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    /// The spec.
    pub spec: &'a AzureResourceSpec,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The recorded status (untrusted).
    pub recorded: &'a AzureResourceStatus,
    /// The Azure name in use.
    pub name: &'a str,
    /// The ARM id, recomputed from the spec.
    pub id: &'a str,
    /// This object's owner tag value (`naming::owner_tag_value`).
    pub owner: &'a str,
    /// The generated administrator password (provisioned PostgreSQL only).
    pub password: Option<&'a str>,
    /// The credential's tenant id (Key Vault's `properties.tenantId`).
    pub tenant: Option<&'a str>,
    /// What ARM holds.
    pub observed: &'a Observed,
}

/// How a write is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// PUT: create or replace (provisioned resources).
    Put,
    /// PATCH: merge only the given fields (adopted resources).
    Patch,
}

/// The one thing to do now.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// An operation is running: look again after `after`; nothing else.
    FollowOperation {
        /// When to look again.
        after: Duration,
    },
    /// The resource does not exist: PUT it.
    Create {
        /// The body.
        body: Value,
        /// Hash of the body, write-only fields included.
        hash: String,
    },
    /// The resource differs from the desired state: write the difference.
    Update {
        /// PUT (full desired body) or PATCH (only explicit fields).
        method: Method,
        /// The body.
        body: Value,
        /// Hash of the body, write-only fields included.
        hash: String,
        /// JSON pointers that differ (for the log and the condition), at most 10.
        paths: Vec<String>,
    },
    /// Converged: ensure children, read keys, write the binding.
    ExportOnly {
        /// The resource as GET returned it.
        resource: Value,
        /// Hash of the desired state (recorded as applied), when the operator writes.
        hash: Option<String>,
    },
    /// The resource is in a non-terminal provisioningState: look again after `after`.
    Wait {
        /// The provisioningState.
        state: String,
        /// When to look again.
        after: Duration,
    },
    /// Nothing may be done until something changes.
    Refuse {
        /// Category (condition reason).
        category: Category,
        /// What, where, what to do.
        message: String,
    },
}

/// A decision, plus why a recorded operation was dropped (shown in the condition).
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The decision.
    pub decision: Decision,
    /// Why `status.operation` was dropped, if it was.
    pub dropped: Option<String>,
}

/// Decides what to do. Pure.
pub fn plan(inputs: &Inputs<'_>) -> Plan {
    let dropped = match &inputs.observed.operation {
        Operation::Running { after } => {
            return Plan { decision: Decision::FollowOperation { after: after.unwrap_or(POLL) }, dropped: None };
        }
        Operation::Ended { state, code, message } => {
            let message = format!(
                "the ARM operation on {} ended {state}: {code}: {message}; change the spec to send a fresh request",
                inputs.id
            );
            return Plan { decision: refuse(Category::AzureOperationFailed, message), dropped: None };
        }
        Operation::Gone => Some("the operation URL answered 404 (ARM expired it); the resource was read afresh".into()),
        Operation::Untrusted { origin } => Some(format!(
            "status.operation points at {origin}, outside the configured ARM endpoint; dropped without calling it"
        )),
        Operation::Expired => Some("the operation outlived --azure-operation-deadline; dropped".into()),
        Operation::None | Operation::Succeeded => None,
    };
    Plan { decision: decide(inputs), dropped }
}

fn refuse(category: Category, message: impl Into<String>) -> Decision {
    Decision::Refuse { category, message: bounded(&message.into(), 1000) }
}

fn decide(inputs: &Inputs<'_>) -> Decision {
    let spec = inputs.spec;
    // A permanent failure for this generation stays refused until the spec changes: sending
    // the same request again would fail again (and might cost money or quota).
    if let Some((category, message)) = stalled_for_this_generation(inputs.recorded, inputs.generation) {
        return Decision::Refuse { category, message };
    }
    let Some(resource) = &inputs.observed.resource else {
        return match spec.mode {
            Mode::Provision => match desired(inputs, None) {
                Ok((body, hash)) => Decision::Create { body, hash },
                Err(refusal) => refusal,
            },
            Mode::Adopt | Mode::Observe => refuse(
                Category::MissingReference,
                format!("{} not found: spec.mode {:?} needs an existing resource", inputs.id, spec.mode),
            ),
        };
    };
    let tags = tags_of(resource);
    let theirs = tags.get(OWNER_TAG).map(String::as_str);
    match (spec.mode, theirs) {
        (Mode::Provision, None) => {
            return refuse(
                Category::AzureConflict,
                format!(
                    "{} already exists and was not created by citystack; set spec.mode: Adopt to take it over",
                    inputs.id
                ),
            );
        }
        (Mode::Provision | Mode::Adopt, Some(other)) if other != inputs.owner => {
            return refuse(
                Category::AzureConflict,
                format!("{} is owned by another citystack object ({})", inputs.id, bounded(other, 200)),
            );
        }
        _ => {}
    }
    let (state, state_text) = Provisioning::of_resource(resource);
    let writes = spec.mode != Mode::Observe;
    if state == Provisioning::InProgress {
        return Decision::Wait { state: state_text.unwrap_or_default(), after: POLL };
    }
    if !writes {
        return match state {
            Provisioning::Failed | Provisioning::Canceled => refuse(
                Category::AzureOperationFailed,
                format!(
                    "the observed resource {} is in provisioningState {}",
                    inputs.id,
                    state_text.unwrap_or_default()
                ),
            ),
            _ => Decision::ExportOnly { resource: resource.clone(), hash: None },
        };
    }
    let (body, hash) = match desired(inputs, Some(resource)) {
        Ok(desired) => desired,
        Err(refusal) => return refusal,
    };
    let comparable = without_write_only(spec.kind, &body);
    let paths = differing_paths(&comparable, resource);
    let hash_changed = inputs.recorded.applied_hash.as_deref() != Some(hash.as_str());
    let drifted = !paths.is_empty() || hash_changed;
    let method = if spec.mode == Mode::Adopt { Method::Patch } else { Method::Put };
    match (state, drifted) {
        (Provisioning::Failed | Provisioning::Canceled, false) => refuse(
            Category::AzureOperationFailed,
            format!(
                "{} is in provisioningState {}; change the spec to send a fresh request",
                inputs.id,
                state_text.unwrap_or_default()
            ),
        ),
        (_, true) => Decision::Update {
            method,
            body,
            hash,
            paths: if paths.is_empty() { vec!["(write-only fields)".into()] } else { paths },
        },
        (_, false) => Decision::ExportOnly { resource: resource.clone(), hash: Some(hash) },
    }
}

/// The Stalled condition of the recorded status, when it is about this generation and its
/// category is one a retry cannot fix without a spec change.
fn stalled_for_this_generation(recorded: &AzureResourceStatus, generation: Option<i64>) -> Option<(Category, String)> {
    let stalled = recorded.conditions.iter().find(|c| c.type_ == "Stalled" && c.status == "True")?;
    if stalled.observed_generation != generation || generation.is_none() {
        return None;
    }
    let category =
        [Category::AzureOperationFailed, Category::AzureRejected].into_iter().find(|c| c.as_str() == stalled.reason)?;
    Some((category, bounded(&stalled.message, 1000)))
}

fn tags_of(resource: &Value) -> BTreeMap<String, String> {
    resource
        .get("tags")
        .and_then(Value::as_object)
        .map(|tags| tags.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default()
}

/// The desired body and its hash. Provisioned: the kind's defaults with the spec merged over
/// them; adopted: only what the spec sets. Tags: the observed ones (others', e.g. Azure
/// Policy's, stay), the spec's, and this object's owner tag.
fn desired(inputs: &Inputs<'_>, observed: Option<&Value>) -> Result<(Value, String), Decision> {
    let spec = inputs.spec;
    let mut tags = observed.map(tags_of).unwrap_or_default();
    tags.extend(spec.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
    tags.insert(OWNER_TAG.into(), inputs.owner.into());
    let sku = spec.sku.as_ref().and_then(|s| serde_json::to_value(s).ok());
    let body = match spec.mode {
        Mode::Adopt => kinds::adopt_body(spec.kind, sku.as_ref(), spec.properties.as_ref(), &tags),
        Mode::Provision | Mode::Observe => {
            let location = spec
                .location
                .clone()
                .or_else(|| observed.and_then(|o| o.get("location")).and_then(Value::as_str).map(str::to_owned))
                .ok_or_else(|| {
                    refuse(
                        Category::InvalidSpec,
                        "spec.location is required to provision (or the stack's spec.azure.location)",
                    )
                })?;
            let explicit_tenant = spec.properties.as_ref().and_then(|p| p.get("tenantId")).is_some();
            // Key Vault's properties.tenantId must be the tenant's GUID (not a domain name).
            if spec.kind == AzureKind::KeyVault && !explicit_tenant && !inputs.tenant.is_some_and(is_guid) {
                return Err(refuse(
                    Category::InvalidSpec,
                    "a Key Vault needs its tenant's GUID: the credential names none (or a domain name); set spec.properties.tenantId",
                ));
            }
            let mut body =
                kinds::desired_body(spec.kind, &location, sku.as_ref(), spec.properties.as_ref(), &tags, inputs.tenant);
            match spec.kind {
                AzureKind::PostgreSQLFlexibleServer => {
                    if let Some(password) = inputs.password {
                        body["properties"]["administratorLoginPassword"] = json!(password);
                    }
                }
                AzureKind::CognitiveServicesAccount if body.pointer("/properties/customSubDomainName").is_none() => {
                    body["properties"]["customSubDomainName"] = json!(inputs.name);
                }
                AzureKind::ResourceGroup
                | AzureKind::StorageAccount
                | AzureKind::RedisCache
                | AzureKind::EventHubNamespace
                | AzureKind::KeyVault
                | AzureKind::CognitiveServicesAccount
                | AzureKind::Generic => {}
            }
            body
        }
    };
    let hash = naming::short_hash(body.to_string().as_bytes());
    Ok((body, hash))
}

/// The desired body without write-only fields, which ARM never returns.
fn without_write_only(kind: AzureKind, body: &Value) -> Value {
    let mut out = body.clone();
    for pointer in kinds::info(kind).map(|k| k.write_only).unwrap_or_default() {
        if let Some((parent, key)) = pointer.rsplit_once('/')
            && let Some(map) = out.pointer_mut(parent).and_then(Value::as_object_mut)
        {
            map.remove(key);
        }
    }
    out
}

/// JSON pointers of desired leaves the observed resource does not match (ARM normalises
/// locations and enum-like strings: compared lower-case without spaces). At most 10.
pub fn differing_paths(desired: &Value, observed: &Value) -> Vec<String> {
    fn normalise(v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(s.to_ascii_lowercase().replace(' ', "")),
            Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), normalise(v))).collect()),
            Value::Array(a) => Value::Array(a.iter().map(normalise).collect()),
            other => other.clone(),
        }
    }
    fn walk(path: &str, desired: &Value, observed: &Value, out: &mut Vec<String>) {
        if out.len() >= 10 {
            return;
        }
        match (desired, observed) {
            (Value::Object(d), Value::Object(o)) => {
                for (key, dv) in d {
                    walk(&format!("{path}/{key}"), dv, o.get(key).unwrap_or(&Value::Null), out);
                }
            }
            (d, o) if !drift::is_subset(&normalise(d), &normalise(o), false) => out.push(path.to_owned()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", desired, observed, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    const ID: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Cache/redis/cache";
    const OWNER: &str = "cluster/ns/cache";

    fn spec(v: Value) -> AzureResourceSpec {
        let mut base = json!({"kind": "RedisCache", "location": "eastus", "resourceGroup": "rg"});
        kinds::merge(&mut base, &v);
        serde_json::from_value(base).unwrap_or_else(|e| panic!("{e}"))
    }

    fn resource(owner: Option<&str>, state: &str, extra: Value) -> Value {
        let mut r = json!({"location": "eastus", "tags": {}, "properties": {"provisioningState": state,
            "sku": {"name": "Basic", "family": "C", "capacity": 0}, "enableNonSslPort": false, "minimumTlsVersion": "1.2"}});
        if let Some(o) = owner {
            r["tags"][OWNER_TAG] = json!(o);
        }
        kinds::merge(&mut r, &extra);
        r
    }

    fn stalled(reason: &str, generation: i64) -> AzureResourceStatus {
        AzureResourceStatus {
            conditions: vec![Condition {
                type_: "Stalled".into(),
                status: "True".into(),
                reason: reason.into(),
                message: "earlier failure".into(),
                observed_generation: Some(generation),
                last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
            }],
            ..Default::default()
        }
    }

    fn run(spec: &AzureResourceSpec, recorded: &AzureResourceStatus, observed: Observed) -> Plan {
        plan(&Inputs {
            spec,
            generation: Some(2),
            recorded,
            name: "cache",
            id: ID,
            owner: OWNER,
            password: None,
            tenant: Some("72f988bf-86f1-41af-91ab-2d7cd011db47"),
            observed: &observed,
        })
    }

    fn seen(resource: Option<Value>) -> Observed {
        Observed { resource, operation: Operation::None }
    }

    /// The hash of the body the plan would PUT for `spec` over `observed`.
    fn converged_hash(spec: &AzureResourceSpec, observed: &Value) -> Option<String> {
        match run(spec, &AzureResourceStatus::default(), seen(Some(observed.clone()))).decision {
            Decision::Update { hash, .. } | Decision::ExportOnly { hash: Some(hash), .. } => Some(hash),
            other => panic!("{other:?}"),
        }
    }

    fn kind_of(d: &Decision) -> String {
        match d {
            Decision::FollowOperation { .. } => "FollowOperation".into(),
            Decision::Create { .. } => "Create".into(),
            Decision::Update { method, .. } => format!("Update/{method:?}"),
            Decision::ExportOnly { .. } => "ExportOnly".into(),
            Decision::Wait { .. } => "Wait".into(),
            Decision::Refuse { category, .. } => format!("Refuse/{category}"),
        }
    }

    #[test]
    fn decision_table() {
        let provision = spec(json!({}));
        let adopt = spec(json!({"mode": "Adopt"}));
        let observe = spec(json!({"mode": "Observe"}));
        let ours = resource(Some(OWNER), "Succeeded", json!({}));
        let converged = {
            let hash = converged_hash(&provision, &ours);
            AzureResourceStatus { applied_hash: hash, ..Default::default() }
        };
        let none = AzureResourceStatus::default();
        let (rejected2, failed2, failed1, conflict2) = (
            stalled("AzureRejected", 2),
            stalled("AzureOperationFailed", 2),
            stalled("AzureOperationFailed", 1),
            stalled("AzureConflict", 2),
        );
        let op = |operation| Observed { resource: Some(ours.clone()), operation };
        #[rustfmt::skip]
        let rows: Vec<(&str, &AzureResourceSpec, &AzureResourceStatus, Observed, &str)> = vec![
            ("missing, provision", &provision, &none, seen(None), "Create"),
            ("missing, adopt", &adopt, &none, seen(None), "Refuse/MissingReference"),
            ("missing, observe", &observe, &none, seen(None), "Refuse/MissingReference"),
            ("ours, converged", &provision, &converged, seen(Some(ours.clone())), "ExportOnly"),
            ("ours, hash unknown", &provision, &none, seen(Some(ours.clone())), "Update/Put"),
            ("ours, sku changed by hand", &provision, &converged,
                seen(Some(resource(Some(OWNER), "Succeeded", json!({"properties": {"sku": {"name": "Premium"}}})))), "Update/Put"),
            ("untagged, provision", &provision, &converged, seen(Some(resource(None, "Succeeded", json!({})))), "Refuse/AzureConflict"),
            ("another owner, provision", &provision, &none, seen(Some(resource(Some("c/other/x"), "Succeeded", json!({})))), "Refuse/AzureConflict"),
            ("another owner, adopt", &adopt, &none, seen(Some(resource(Some("c/other/x"), "Succeeded", json!({})))), "Refuse/AzureConflict"),
            ("untagged, adopt", &adopt, &none, seen(Some(resource(None, "Succeeded", json!({})))), "Update/Patch"),
            ("another owner, observe", &observe, &none, seen(Some(resource(Some("c/other/x"), "Succeeded", json!({})))), "ExportOnly"),
            ("observe, failed", &observe, &none, seen(Some(resource(None, "Failed", json!({})))), "Refuse/AzureOperationFailed"),
            ("in progress", &provision, &none, seen(Some(resource(Some(OWNER), "Updating", json!({})))), "Wait"),
            ("failed, same spec", &provision, &converged, seen(Some(resource(Some(OWNER), "Failed", json!({})))), "Refuse/AzureOperationFailed"),
            ("failed, spec changed", &provision, &none, seen(Some(resource(Some(OWNER), "Failed", json!({})))), "Update/Put"),
            ("operation running", &provision, &none, op(Operation::Running { after: None }), "FollowOperation"),
            ("operation failed", &provision, &none,
                op(Operation::Ended { state: "Failed".into(), code: "Quota".into(), message: "m".into() }), "Refuse/AzureOperationFailed"),
            ("operation succeeded", &provision, &converged, op(Operation::Succeeded), "ExportOnly"),
            ("operation gone", &provision, &converged, op(Operation::Gone), "ExportOnly"),
            ("operation untrusted", &provision, &converged, op(Operation::Untrusted { origin: "https://evil:443".into() }), "ExportOnly"),
            ("operation expired", &provision, &converged, op(Operation::Expired), "ExportOnly"),
            ("rejected this generation", &provision, &rejected2, seen(None), "Refuse/AzureRejected"),
            ("failed this generation", &provision, &failed2, seen(None), "Refuse/AzureOperationFailed"),
            ("failed an earlier generation", &provision, &failed1, seen(None), "Create"),
            ("conflict earlier is re-checked", &provision, &conflict2, seen(None), "Create"),
        ];
        for (name, spec, recorded, observed, want) in rows {
            let got = run(spec, recorded, observed);
            assert_eq!(kind_of(&got.decision), want, "{name}: {got:?}");
        }
    }

    #[test]
    fn dropped_operations_say_why() {
        let ours = resource(Some(OWNER), "Succeeded", json!({}));
        let provision = spec(json!({}));
        for (operation, words) in [
            (Operation::Gone, "404"),
            (Operation::Untrusted { origin: "https://evil.example:443".into() }, "evil.example"),
            (Operation::Expired, "deadline"),
        ] {
            let plan =
                run(&provision, &AzureResourceStatus::default(), Observed { resource: Some(ours.clone()), operation });
            assert!(plan.dropped.as_deref().is_some_and(|d| d.contains(words)), "{plan:?}");
        }
    }

    #[test]
    fn adopt_writes_only_explicit_fields() {
        let untagged = resource(None, "Succeeded", json!({"tags": {"team": "city"}}));
        let adopt = spec(json!({"mode": "Adopt", "location": "westeurope"}));
        let got = run(&adopt, &AzureResourceStatus::default(), seen(Some(untagged)));
        let Decision::Update { method: Method::Patch, body, .. } = got.decision else { panic!("{got:?}") };
        assert_eq!(body, json!({"tags": {"team": "city", OWNER_TAG: OWNER}}), "no defaults, no location");
        // A provisioned PostgreSQL gets its generated password; an adopted one never does.
        let pg = spec(json!({"kind": "PostgreSQLFlexibleServer", "mode": "Adopt"}));
        let observed = seen(Some(json!({"location": "eastus", "properties": {"state": "Ready"}})));
        let adopted = plan(&Inputs {
            spec: &pg,
            generation: Some(1),
            recorded: &AzureResourceStatus::default(),
            name: "pg",
            id: ID,
            owner: OWNER,
            password: Some("generated"),
            tenant: None,
            observed: &observed,
        });
        assert!(!format!("{adopted:?}").contains("generated"), "{adopted:?}");
    }

    #[test]
    fn write_only_fields_count_through_the_hash() {
        let pg = spec(json!({"kind": "PostgreSQLFlexibleServer"}));
        let server = json!({"location": "eastus", "tags": {OWNER_TAG: OWNER}, "sku": {"name": "Standard_B1ms", "tier": "Burstable"},
            "properties": {"version": "16", "storage": {"storageSizeGB": 32}, "administratorLogin": "citystack"}});
        let inputs = |password, recorded| Inputs {
            spec: &pg,
            generation: Some(1),
            recorded,
            name: "pg",
            id: ID,
            owner: OWNER,
            password: Some(password),
            tenant: None,
            observed: Box::leak(Box::new(seen(Some(server.clone())))),
        };
        let fresh = AzureResourceStatus::default();
        let first = plan(&inputs("one", &fresh));
        let Decision::Update { hash, paths, .. } = first.decision else { panic!("{first:?}") };
        assert_eq!(paths, vec!["(write-only fields)".to_owned()]);
        let recorded = AzureResourceStatus { applied_hash: Some(hash), ..Default::default() };
        assert_eq!(kind_of(&plan(&inputs("one", &recorded)).decision), "ExportOnly");
        assert_eq!(kind_of(&plan(&inputs("two", &recorded)).decision), "Update/Put");
    }

    #[test]
    fn key_vault_gets_the_credential_tenant() {
        let kv = spec(json!({"kind": "KeyVault"}));
        let got = run(&kv, &AzureResourceStatus::default(), seen(None));
        let Decision::Create { body, .. } = got.decision else { panic!("{got:?}") };
        assert_eq!(body["properties"]["tenantId"], json!("72f988bf-86f1-41af-91ab-2d7cd011db47"));
        let no_tenant = plan(&Inputs {
            spec: &kv,
            generation: Some(1),
            recorded: &AzureResourceStatus::default(),
            name: "kv",
            id: ID,
            owner: OWNER,
            password: None,
            tenant: Some("contoso.onmicrosoft.com"),
            observed: &seen(None),
        });
        assert!(
            matches!(&no_tenant.decision, Decision::Refuse { category: Category::InvalidSpec, message } if message.contains("tenantId"))
        );
    }

    #[test]
    fn differing_paths_name_the_leaves() {
        let desired = json!({"location": "East US", "properties": {"a": 1, "b": {"c": "x"}}});
        let observed = json!({"location": "eastus", "properties": {"a": 2, "b": {"c": "X"}}});
        assert_eq!(differing_paths(&desired, &observed), vec!["/properties/a".to_owned()]);
    }
}
