//! The AzureResource controller: resolve (credential, subscription, names) → validate →
//! desired body (pure) → observe and apply through ARM only on drift → binding Secret →
//! status. Long-running operations never block a reconcile: progress is recorded in status
//! and the object is requeued after `Retry-After`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use rand::Rng;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::api::{
    AzureKind, AzureResource, AzureResourceStatus, ConditionSpec, DeletionPolicy, LocalRef, Mode, merge_conditions,
};
use crate::azure::arm::{Arm, ArmError, Provisioning};
use crate::azure::credential::{CredentialError, Credentials};
use crate::azure::export::{self, Exported, Extras};
use crate::azure::kinds::{self, Keys, NameSeed};
use crate::backoff::Backoff;
use crate::error::{Category, bounded};
use crate::leader::LeaderGate;
use crate::naming::{self, FIELD_MANAGER};
use crate::stack::apply::Writer;
use crate::stack::drift;
use crate::telemetry::{Health, Metrics};

/// Controller name: the metric label.
pub const CONTROLLER: &str = "azureresource";
/// Finalizer on AzureResources whose effective deletion policy is Delete.
pub const FINALIZER: &str = "citystack.io/azure-cleanup";
/// Ownership tag on every Azure resource the operator creates: `<cluster UID>/<namespace>/<name>`.
pub const OWNER_TAG: &str = "citystack-owner";

/// A failed step, with its category (condition reason, Event reason, metric label).
#[derive(Debug)]
pub struct Failure {
    /// Category.
    pub category: Category,
    /// Message naming the field, Secret or ARM error code; never a secret value.
    pub message: String,
    /// When to look again (None: wait for a spec change).
    pub retry_after: Option<Duration>,
    /// This instance lost (or never had) the lease: not a failure, the reconcile just ends.
    pub not_leader: bool,
}

impl Failure {
    fn new(category: Category, message: impl Into<String>) -> Self {
        let retry_after = category.is_transient().then_some(Duration::ZERO);
        Self { category, message: bounded(&message.into(), 1000), retry_after, not_leader: false }
    }
}

impl From<ArmError> for Failure {
    fn from(error: ArmError) -> Self {
        match &error {
            ArmError::Throttled { retry_after } => {
                Failure { retry_after: Some(*retry_after), ..Failure::new(Category::AzureThrottled, error.to_string()) }
            }
            ArmError::Auth(_) => Failure::new(Category::AzureAuth, error.to_string()),
            ArmError::Api { .. } | ArmError::Transport(_) => Failure::new(Category::AzureApi, error.to_string()),
        }
    }
}

impl From<CredentialError> for Failure {
    fn from(error: CredentialError) -> Self {
        let category = match error {
            CredentialError::Kube { .. } => Category::KubeApi,
            CredentialError::Invalid { .. } => Category::AzureAuth,
            _ => Category::MissingReference,
        };
        Failure::new(category, error.to_string())
    }
}

/// Settings of the Azure controller.
pub struct AzureSettings {
    /// Namespace to watch; `None` for all.
    pub namespace: Option<String>,
    /// Reconciles at once.
    pub concurrency: u16,
    /// Seconds between resyncs (each resync GETs the resource and lists its keys once).
    pub resync: Duration,
    /// Subscription of last resort (`--azure-subscription-id`).
    pub default_subscription: Option<String>,
    /// The cluster's identity (kube-system's UID, never empty): in derived names and owner tags.
    pub cluster_uid: String,
}

struct Context {
    writer: Writer,
    credentials: Arc<Credentials>,
    cluster_uid: String,
    default_subscription: Option<String>,
    recorder: Recorder,
    resync: Duration,
    backoff: Backoff<ObjectRef<AzureResource>>,
}

/// Runs the AzureResource controller until `shutdown`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: Client,
    settings: AzureSettings,
    credentials: Arc<Credentials>,
    metrics: Metrics,
    health: Health,
    leader: LeaderGate,
    shutdown: CancellationToken,
) {
    let api: Api<AzureResource> = match &settings.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (store, writer) = reflector::store();
    let mut synced = Some(health);
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|o: &mut AzureResource| o.managed_fields_mut().clear())
        .reflect(writer)
        .inspect(move |event| {
            if matches!(event, Ok(watcher::Event::InitDone))
                && let Some(health) = synced.take()
            {
                health.set_ready();
            }
        })
        .applied_objects();
    let reporter = Reporter { controller: "citystack".into(), instance: std::env::var("POD_NAME").ok() };
    let ctx = Arc::new(Context {
        writer: Writer { client: client.clone(), gate: leader.clone(), metrics },
        credentials,
        cluster_uid: settings.cluster_uid,
        default_subscription: settings.default_subscription,
        recorder: Recorder::new(client.clone(), reporter),
        resync: settings.resync,
        backoff: Backoff::new(Duration::from_secs(2)),
    });
    let promotions = leader.promotions();
    Controller::for_stream(stream, store)
        .with_config(controller::Config::default().concurrency(settings.concurrency))
        .reconcile_all_on(promotions)
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Requeue(String, Category, Duration);

async fn reconcile(object: Arc<AzureResource>, ctx: Arc<Context>) -> Result<Action, Requeue> {
    let span = info_span!(
        "reconcile",
        controller = CONTROLLER,
        object.namespace = object.namespace().unwrap_or_default(),
        object.name = object.name_any()
    );
    async move {
        let started = std::time::Instant::now();
        ctx.writer.metrics.reconcile_started(CONTROLLER);
        let result = reconcile_inner(&object, &ctx).await;
        ctx.writer.metrics.reconcile_finished(CONTROLLER, started.elapsed());
        match result {
            Ok(action) => {
                ctx.backoff.succeeded(&ObjectRef::from_obj(object.as_ref()));
                Ok(action)
            }
            Err(failure) if failure.not_leader => Ok(Action::await_change()),
            Err(failure) => {
                Err(Requeue(failure.message, failure.category, failure.retry_after.unwrap_or(Duration::ZERO)))
            }
        }
    }
    .instrument(span)
    .await
}

fn not_leader() -> Failure {
    Failure { not_leader: true, ..Failure::new(Category::KubeApi, "not the leader") }
}

fn error_policy(object: Arc<AzureResource>, error: &Requeue, ctx: Arc<Context>) -> Action {
    ctx.writer.metrics.reconcile_failed(CONTROLLER, error.1);
    let backoff = ctx.backoff.failed(ObjectRef::from_obj(object.as_ref()));
    // Retry-After wins when it asks for longer: never call a throttled subscription early.
    let delay = backoff.max(error.2);
    warn!(object.namespace = object.namespace().unwrap_or_default(), object.name = object.name_any(), category = %error.1, error = %error.0, retry_in_seconds = delay.as_secs(), "reconcile failed");
    Action::requeue(delay)
}

/// Where the resource lives and how to call ARM for it.
struct Target {
    arm: Arm,
    subscription: String,
    name: String,
    id: String,
    api_version: String,
    policy: DeletionPolicy,
}

async fn reconcile_inner(object: &AzureResource, ctx: &Context) -> Result<Action, Failure> {
    ctx.writer.may_write().map_err(|_| not_leader())?;
    let spec = &object.spec;
    let policy = kinds::effective_deletion_policy(spec.kind, spec.mode == Mode::Observe, spec.deletion_policy);

    // Deleting: clean up in Azure (policy Delete), then drop the finalizer.
    if object.meta().deletion_timestamp.is_some() {
        return delete(object, ctx, policy).await;
    }

    let resolved = resolve(object, ctx, policy).await;
    let target = match resolved {
        Ok(target) => target,
        Err(failure) => return report(object, ctx, None, Err(failure)).await,
    };
    // A finalizer only when Azure cleanup is ours to do.
    ensure_finalizer(object, ctx, policy == DeletionPolicy::Delete).await?;
    let outcome = observe_and_apply(object, ctx, &target).await;
    report(object, ctx, Some(&target), outcome).await
}

async fn resolve(object: &AzureResource, ctx: &Context, policy: DeletionPolicy) -> Result<Target, Failure> {
    let namespace = object.namespace().unwrap_or_default();
    let spec = &object.spec;
    let credential = ctx.credentials.resolve(&namespace, spec.credential_ref.as_ref().map(|r| r.name.as_str())).await?;
    // Adopting or observing an existing resource with the operator's identity is a tenant
    // boundary: only trusted namespaces may point it at resources they did not create.
    // A namespace's own credential reaches only what that credential may reach; the
    // operator's identity may adopt or observe only in trusted namespaces.
    if spec.mode != Mode::Provision && credential.operator_identity && !ctx.credentials.trusted(&namespace).await? {
        return Err(Failure::new(
            Category::InvalidSpec,
            format!(
                "spec.mode {:?} with the operator's identity is only allowed in trusted namespaces; bring a credential Secret",
                spec.mode
            ),
        ));
    }
    let subscription = spec
        .subscription_id
        .clone()
        .or(credential.subscription.clone())
        .or(ctx.default_subscription.clone())
        .ok_or_else(|| {
            Failure::new(
                Category::InvalidSpec,
                "no subscription: set spec.subscriptionId (or AZURE_SUBSCRIPTION_ID in the credential Secret)",
            )
        })?;
    let (arm_type, api_version) = match (kinds::info(spec.kind), &spec.generic) {
        (Some(info), _) => (info.arm_type.to_owned(), info.api_version.to_owned()),
        (None, Some(generic)) => (generic.type_.clone(), generic.api_version.clone()),
        (None, None) => return Err(Failure::new(Category::InvalidSpec, "spec.generic is required for kind Generic")),
    };
    let resource_group = spec.resource_group.clone().unwrap_or_default();
    if spec.kind != AzureKind::ResourceGroup && resource_group.is_empty() {
        return Err(Failure::new(
            Category::InvalidSpec,
            "spec.resourceGroup is required (or the stack's spec.azure.resourceGroup)",
        ));
    }
    let name = match (&spec.name, object.status.as_ref().and_then(|s| s.azure_name.clone())) {
        (Some(name), _) => name.clone(),
        // A name once chosen stays, even if the inputs of the derivation change.
        (None, Some(recorded)) => recorded,
        (None, None) => kinds::derive_name(
            spec.kind,
            &NameSeed {
                cluster: &ctx.cluster_uid,
                subscription: &subscription,
                resource_group: &resource_group,
                namespace: &namespace,
                name: &object.name_any(),
            },
        ),
    };
    kinds::check_name(spec.kind, &name).map_err(|m| Failure::new(Category::InvalidSpec, format!("spec.name: {m}")))?;
    let id = match spec.kind {
        AzureKind::ResourceGroup => format!("/subscriptions/{subscription}/resourceGroups/{name}"),
        _ => {
            // Nested types (Microsoft.Sql/servers/databases) take nested names (server/db).
            let mut segments = arm_type.split('/');
            let provider = segments.next().unwrap_or_default();
            let mut path =
                format!("/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/{provider}");
            let names: Vec<&str> = name.split('/').collect();
            for (i, type_segment) in segments.enumerate() {
                path.push_str(&format!("/{type_segment}/{}", names.get(i).copied().unwrap_or_default()));
            }
            path
        }
    };
    Ok(Target { arm: credential.arm, subscription, name, id, api_version, policy })
}

/// The result of one pass against ARM.
struct Outcome {
    provisioning_state: Option<String>,
    operation: Option<String>,
    applied_hash: Option<String>,
    exported: Option<Exported>,
    /// Still in progress: look again after this long.
    progress: Option<(String, Duration)>,
}

fn owner_value(ctx: &Context, object: &AzureResource) -> String {
    format!("{}/{}/{}", ctx.cluster_uid, object.namespace().unwrap_or_default(), object.name_any())
}

async fn observe_and_apply(object: &AzureResource, ctx: &Context, target: &Target) -> Result<Outcome, Failure> {
    let spec = &object.spec;
    let status = object.status.clone().unwrap_or_default();
    let arm = &target.arm;
    let sub = &target.subscription;
    let writes = spec.mode != Mode::Observe;

    // 1. A long-running operation in flight: follow it; never block on it.
    if let Some(url) = &status.operation {
        let op = arm.operation(sub, url).await?;
        let state = op.body.get("status").and_then(Value::as_str).map(str::to_owned);
        match Provisioning::of(state.as_deref()) {
            Provisioning::InProgress => {
                return Ok(Outcome {
                    provisioning_state: status.provisioning_state.clone(),
                    operation: Some(url.clone()),
                    applied_hash: status.applied_hash.clone(),
                    exported: None,
                    progress: Some(("Provisioning".into(), op.retry_after.unwrap_or(Duration::from_secs(5)))),
                });
            }
            Provisioning::Failed | Provisioning::Canceled => {
                let code = op.body.pointer("/error/code").and_then(Value::as_str).unwrap_or("OperationFailed");
                let message = op.body.pointer("/error/message").and_then(Value::as_str).unwrap_or_default();
                return Err(Failure::new(
                    Category::AzureOperationFailed,
                    format!("the ARM operation ended {}: {code}: {}", state.unwrap_or_default(), bounded(message, 300)),
                ));
            }
            Provisioning::Succeeded => {}
        }
    }

    // 2. Observe.
    let observed = arm.get(sub, &target.id, &target.api_version).await?;
    let owner = owner_value(ctx, object);
    let mut password: Option<String> = None;
    if spec.kind == AzureKind::PostgreSQLFlexibleServer {
        password = Some(admin_password(object, ctx).await?);
    }
    let mut tags: BTreeMap<String, String> = observed
        .as_ref()
        .and_then(|o| o.body.get("tags").cloned())
        .and_then(|t| serde_json::from_value(t).ok())
        .unwrap_or_default();
    if observed.is_some() {
        let their_owner = tags.get(OWNER_TAG).cloned();
        match (spec.mode, their_owner) {
            (Mode::Provision, None) if status.resource_id.is_none() => {
                return Err(Failure::new(
                    Category::AzureConflict,
                    format!(
                        "{} already exists and was not created by citystack; set spec.mode: Adopt to take it over",
                        target.id
                    ),
                ));
            }
            (Mode::Provision | Mode::Adopt, Some(other)) if other != owner => {
                return Err(Failure::new(
                    Category::AzureConflict,
                    format!("{} is owned by another citystack object ({other})", target.id),
                ));
            }
            _ => {}
        }
    } else if spec.mode != Mode::Provision {
        return Err(Failure::new(
            Category::MissingReference,
            format!("{} not found (spec.mode {:?} needs an existing resource)", target.id, spec.mode),
        ));
    }

    // 3. Desired (pure): defaults + spec, our tags over the observed ones (others' stay).
    for (k, v) in &spec.tags {
        tags.insert(k.clone(), v.clone());
    }
    if writes {
        tags.insert(OWNER_TAG.into(), owner.clone());
    }
    let location = spec
        .location
        .clone()
        .or_else(|| observed.as_ref().and_then(|o| o.body.get("location")).and_then(Value::as_str).map(str::to_owned))
        .ok_or_else(|| {
            Failure::new(
                Category::InvalidSpec,
                "spec.location is required to provision (or the stack's spec.azure.location)",
            )
        })?;
    let desired = desired_body(object, target, &location, &tags, password.as_deref());
    let desired_hash = naming::short_hash(desired.to_string().as_bytes());

    // 4. Apply only on drift; write-only fields (passwords) are covered by the hash we keep.
    let mut state = observed
        .as_ref()
        .and_then(|o| o.body.pointer("/properties/provisioningState"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let drifted = match &observed {
        None => true,
        Some(o) => {
            !arm_subset(&comparable(&desired), &o.body) || status.applied_hash.as_deref() != Some(desired_hash.as_str())
        }
    };
    if writes && Provisioning::of(state.as_deref()) == Provisioning::InProgress {
        return Ok(Outcome {
            provisioning_state: state,
            operation: None,
            applied_hash: status.applied_hash.clone(),
            exported: None,
            progress: Some(("Provisioning".into(), Duration::from_secs(5))),
        });
    }
    if writes && drifted {
        ctx.writer.may_write().map_err(|_| not_leader())?;
        let response = arm.put(sub, &target.id, &target.api_version, &desired).await?;
        state = response.body.pointer("/properties/provisioningState").and_then(Value::as_str).map(str::to_owned);
        info!(id = %target.id, status = response.status, "PUT {}", target.id);
        if Provisioning::of(state.as_deref()) == Provisioning::InProgress || response.status == 202 {
            return Ok(Outcome {
                provisioning_state: state,
                operation: response.operation,
                applied_hash: Some(desired_hash),
                exported: None,
                progress: Some(("Provisioning".into(), response.retry_after.unwrap_or(Duration::from_secs(2)))),
            });
        }
        // Done at once: read back what ARM made of it.
        return Ok(Outcome {
            provisioning_state: state,
            operation: None,
            applied_hash: Some(desired_hash),
            exported: None,
            progress: Some(("Provisioning".into(), Duration::from_secs(1))),
        });
    }
    if Provisioning::of(state.as_deref()) == Provisioning::Failed {
        return Err(Failure::new(
            Category::AzureOperationFailed,
            format!("{} is in provisioningState Failed", target.id),
        ));
    }
    let resource = observed.map(|o| o.body).unwrap_or(Value::Null);

    // 5. Children (containers, queues, databases, hubs): one GET each, PUT when missing.
    if writes {
        for (child_id, body) in children(object, target) {
            if arm.get(sub, &child_id, &target.api_version).await?.is_none() {
                ctx.writer.may_write().map_err(|_| not_leader())?;
                arm.put(sub, &child_id, &target.api_version, &body).await?;
                info!(id = %child_id, "PUT {child_id}");
            }
        }
    }

    // 6. Keys: listed once per resync, which is how rotated keys are noticed.
    let keys = match (kinds::info(spec.kind).map(|k| k.keys), &spec.generic) {
        (Some(Keys::Action(action)), _) => Some(arm.action(sub, &target.id, action, &target.api_version).await?.body),
        (Some(Keys::NamespaceRule), _) => Some(
            arm.action(
                sub,
                &format!("{}/authorizationRules/RootManageSharedAccessKey", target.id),
                "listKeys",
                &target.api_version,
            )
            .await?
            .body,
        ),
        (None, Some(generic)) => match &generic.list_keys_action {
            Some(action) => Some(arm.action(sub, &target.id, action, &target.api_version).await?.body),
            None => None,
        },
        _ => None,
    };
    let first_child = spec.databases.first().or(spec.hubs.first()).map(String::as_str);
    let exported = match &spec.generic {
        Some(generic) => export::generic(generic, &resource, keys.as_ref()).map_err(|missing| {
            Failure::new(
                Category::InvalidSpec,
                format!("spec.generic.exports found nothing at: {}", missing.join(", ")),
            )
        })?,
        None => export::curated(
            spec.kind,
            &resource,
            keys.as_ref(),
            &Extras { name: &target.name, first_child, password: password.as_deref() },
        ),
    };
    Ok(Outcome {
        provisioning_state: state.or(Some("Succeeded".into())),
        operation: None,
        applied_hash: if writes { Some(desired_hash) } else { status.applied_hash.clone() },
        exported: Some(exported),
        progress: None,
    })
}

/// The PUT body (pure).
fn desired_body(
    object: &AzureResource,
    target: &Target,
    location: &str,
    tags: &BTreeMap<String, String>,
    password: Option<&str>,
) -> Value {
    let spec = &object.spec;
    let sku = spec.sku.as_ref().and_then(|s| serde_json::to_value(s).ok());
    let mut body = kinds::desired_body(spec.kind, location, sku.as_ref(), spec.properties.as_ref(), tags, None);
    match spec.kind {
        AzureKind::PostgreSQLFlexibleServer => {
            if let Some(p) = password {
                body["properties"]["administratorLoginPassword"] = json!(p);
            }
        }
        AzureKind::CognitiveServicesAccount if body.pointer("/properties/customSubDomainName").is_none() => {
            body["properties"]["customSubDomainName"] = json!(target.name);
        }
        _ => {}
    }
    body
}

/// The desired body without write-only fields, which ARM never returns.
fn comparable(desired: &Value) -> Value {
    let mut out = desired.clone();
    if let Some(p) = out.get_mut("properties").and_then(Value::as_object_mut) {
        p.remove("administratorLoginPassword");
    }
    out
}

/// Subset with ARM's normalisations: locations lower-cased without spaces, and enum-like
/// strings compared without regard to case.
fn arm_subset(desired: &Value, observed: &Value) -> bool {
    fn normalise(v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(s.to_ascii_lowercase().replace(' ', "")),
            Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), normalise(v))).collect()),
            Value::Array(a) => Value::Array(a.iter().map(normalise).collect()),
            other => other.clone(),
        }
    }
    drift::is_subset(&normalise(desired), &normalise(observed), false)
}

fn children(object: &AzureResource, target: &Target) -> Vec<(String, Value)> {
    let spec = &object.spec;
    let id = &target.id;
    let mut out = Vec::new();
    for c in &spec.containers {
        out.push((format!("{id}/blobServices/default/containers/{c}"), json!({"properties": {}})));
    }
    for q in &spec.queues {
        out.push((format!("{id}/queueServices/default/queues/{q}"), json!({"properties": {}})));
    }
    for d in &spec.databases {
        out.push((
            format!("{id}/databases/{d}"),
            json!({"properties": {"charset": "UTF8", "collation": "en_US.utf8"}}),
        ));
    }
    for h in &spec.hubs {
        out.push((format!("{id}/eventhubs/{h}"), json!({"properties": {"partitionCount": 2}})));
    }
    out
}

fn binding_type(object: &AzureResource) -> &'static str {
    kinds::info(object.spec.kind).map(|k| k.binding_type).unwrap_or("azure")
}

fn binding_secret_name(object: &AzureResource) -> String {
    format!("{}-binding", object.name_any())
}

/// The PostgreSQL administrator password: generated once, kept in the binding Secret (written
/// before the PUT that uses it, so a crash in between loses nothing), never logged.
async fn admin_password(object: &AzureResource, ctx: &Context) -> Result<String, Failure> {
    let api: Api<Secret> = Api::namespaced(ctx.writer.client.clone(), &object.namespace().unwrap_or_default());
    let name = binding_secret_name(object);
    let existing =
        api.get_opt(&name).await.map_err(|e| Failure::new(Category::KubeApi, format!("get Secret {name}: {e}")))?;
    if let Some(password) =
        existing.and_then(|s| s.data).and_then(|d| d.get("password").cloned()).and_then(|v| String::from_utf8(v.0).ok())
    {
        return Ok(password);
    }
    let password: String = {
        let mut rng = rand::rng();
        const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
        let body: String = (0..28).map(|_| CHARS[rng.random_range(0..CHARS.len())] as char).collect();
        format!("{body}-9a")
    };
    write_binding(object, ctx, &BTreeMap::from([("password".to_owned(), password.clone())])).await?;
    Ok(password)
}

/// Applies the binding Secret (owned by the AzureResource) when its data differs.
async fn write_binding(object: &AzureResource, ctx: &Context, data: &BTreeMap<String, String>) -> Result<(), Failure> {
    let api: Api<Secret> = Api::namespaced(ctx.writer.client.clone(), &object.namespace().unwrap_or_default());
    let name = binding_secret_name(object);
    let wanted: BTreeMap<String, ByteString> =
        data.iter().map(|(k, v)| (k.clone(), ByteString(v.clone().into_bytes()))).collect();
    let current =
        api.get_opt(&name).await.map_err(|e| Failure::new(Category::KubeApi, format!("get Secret {name}: {e}")))?;
    if current.as_ref().and_then(|s| s.data.as_ref()) == Some(&wanted) {
        return Ok(());
    }
    ctx.writer.may_write().map_err(|_| not_leader())?;
    let owner = object.controller_owner_ref(&());
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "labels": {naming::label::MANAGED_BY: naming::MANAGED_BY, "citystack.io/azure-resource": object.name_any()},
            "ownerReferences": owner.map(|o| vec![o]).unwrap_or_default(),
        },
        // The Secret type is immutable: derive it from the kind, not from the data written.
        "type": format!("servicebinding.io/{}", binding_type(object)),
        "data": wanted,
    });
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&secret))
        .await
        .map_err(|e| Failure::new(Category::KubeApi, format!("apply Secret {name}: {e}")))?;
    Ok(())
}

async fn ensure_finalizer(object: &AzureResource, ctx: &Context, wanted: bool) -> Result<(), Failure> {
    let has = object.finalizers().iter().any(|f| f == FINALIZER);
    if has == wanted {
        return Ok(());
    }
    ctx.writer.may_write().map_err(|_| not_leader())?;
    let mut finalizers: Vec<String> = object.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
    if wanted {
        finalizers.push(FINALIZER.into());
    }
    let api: Api<AzureResource> = Api::namespaced(ctx.writer.client.clone(), &object.namespace().unwrap_or_default());
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": object.resource_version()}});
    api.patch(&object.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| Failure::new(Category::KubeApi, format!("update finalizers: {e}")))?;
    Ok(())
}

/// Deletion: with policy Delete, delete in Azure (404 of the resource or its group counts as
/// gone; without a recorded resourceId only a resource carrying our ownership tag is
/// deleted; a resource group only when everything in it is ours), then drop the finalizer.
async fn delete(object: &AzureResource, ctx: &Context, policy: DeletionPolicy) -> Result<Action, Failure> {
    if !object.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    if policy == DeletionPolicy::Delete {
        let target = resolve(object, ctx, policy).await?;
        let sub = &target.subscription;
        let owner = owner_value(ctx, object);
        match target.arm.get(sub, &target.id, &target.api_version).await {
            Ok(None) => {}
            Err(ArmError::Api { status: 404, .. }) => {}
            Err(e) => return Err(e.into()),
            Ok(Some(found)) => {
                let ours =
                    found.body.pointer(&format!("/tags/{OWNER_TAG}")).and_then(Value::as_str) == Some(owner.as_str());
                if ours {
                    if object.spec.kind == AzureKind::ResourceGroup {
                        let list = target.arm.get(sub, &format!("{}/resources", target.id), "2025-04-01").await?;
                        let foreign: Vec<String> = list
                            .and_then(|l| l.body.get("value").and_then(Value::as_array).cloned())
                            .unwrap_or_default()
                            .iter()
                            .filter(|r| r.pointer(&format!("/tags/{OWNER_TAG}")).and_then(Value::as_str).is_none())
                            .filter_map(|r| r.get("id").and_then(Value::as_str).map(str::to_owned))
                            .collect();
                        if !foreign.is_empty() {
                            return report_deleting(
                                object,
                                ctx,
                                format!(
                                    "resource group holds resources citystack does not own: {}",
                                    foreign.join(", ")
                                ),
                                Duration::from_secs(10),
                            )
                            .await;
                        }
                    }
                    ctx.writer.may_write().map_err(|_| not_leader())?;
                    let response = target.arm.delete(sub, &target.id, &target.api_version).await?;
                    if response.status != 404 {
                        info!(id = %target.id, "DELETE {}", target.id);
                        return report_deleting(
                            object,
                            ctx,
                            format!("deleting {} in Azure", target.id),
                            response.retry_after.unwrap_or(Duration::from_secs(5)),
                        )
                        .await;
                    }
                } else {
                    warn!(id = %target.id, "not deleting an Azure resource without our ownership tag");
                }
            }
        }
    }
    ctx.writer.may_write().map_err(|_| not_leader())?;
    let finalizers: Vec<String> = object.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
    let api: Api<AzureResource> = Api::namespaced(ctx.writer.client.clone(), &object.namespace().unwrap_or_default());
    api.patch(
        &object.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"finalizers": finalizers}})),
    )
    .await
    .map_err(|e| Failure::new(Category::KubeApi, format!("remove finalizer: {e}")))?;
    Ok(Action::await_change())
}

async fn report_deleting(
    object: &AzureResource,
    ctx: &Context,
    message: String,
    after: Duration,
) -> Result<Action, Failure> {
    let mut status = object.status.clone().unwrap_or_default();
    // Deletion bumps a custom resource's generation; the status describes this one.
    status.observed_generation = object.metadata.generation;
    let conditions = [
        ConditionSpec::new("Ready", false, "Deleting", message.clone()),
        ConditionSpec::new("Reconciling", true, "Deleting", message),
        ConditionSpec::new("Stalled", false, "NotStalled", ""),
    ];
    status.conditions = merge_conditions(&status.conditions, &conditions, object.metadata.generation, &now());
    write_status(object, ctx, status).await?;
    Ok(Action::requeue(after))
}

fn now() -> Time {
    Time(jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap_or_default())
}

/// Writes the binding and status from an outcome; returns the next action.
async fn report(
    object: &AzureResource,
    ctx: &Context,
    target: Option<&Target>,
    outcome: Result<Outcome, Failure>,
) -> Result<Action, Failure> {
    let mut status: AzureResourceStatus = object.status.clone().unwrap_or_default();
    status.observed_generation = object.metadata.generation;
    if let Some(t) = target {
        status.azure_name = Some(t.name.clone());
        status.subscription_id = Some(t.subscription.clone());
        status.deletion_policy = Some(t.policy);
    }
    let (conditions, action, failure) = match outcome {
        Ok(outcome) => {
            status.provisioning_state = outcome.provisioning_state.clone();
            status.operation = outcome.operation.clone();
            status.applied_hash = outcome.applied_hash.clone();
            if let Some(t) = target
                && outcome.provisioning_state.is_some()
            {
                status.resource_id = Some(t.id.clone());
            }
            match (outcome.exported, outcome.progress) {
                (Some(exported), _) => {
                    write_binding(object, ctx, &exported.data).await?;
                    status.outputs = exported.outputs;
                    status.binding = Some(LocalRef { name: binding_secret_name(object) });
                    let message = format!("{} is provisioned", target.map(|t| t.id.as_str()).unwrap_or_default());
                    (
                        [
                            ConditionSpec::new("Ready", true, "Provisioned", message),
                            ConditionSpec::new("Reconciling", false, "Converged", ""),
                            ConditionSpec::new("Stalled", false, "NotStalled", ""),
                        ],
                        Action::requeue(ctx.resync),
                        None,
                    )
                }
                (None, Some((reason, after))) => {
                    let message =
                        format!("provisioningState {}", outcome.provisioning_state.unwrap_or_else(|| "pending".into()));
                    (
                        [
                            ConditionSpec::new("Ready", false, reason.clone(), message.clone()),
                            ConditionSpec::new("Reconciling", true, reason, message),
                            ConditionSpec::new("Stalled", false, "NotStalled", ""),
                        ],
                        Action::requeue(after),
                        None,
                    )
                }
                (None, None) => (
                    [
                        ConditionSpec::new("Ready", false, "Pending", ""),
                        ConditionSpec::new("Reconciling", true, "Pending", ""),
                        ConditionSpec::new("Stalled", false, "NotStalled", ""),
                    ],
                    Action::requeue(Duration::from_secs(5)),
                    None,
                ),
            }
        }
        Err(failure) => {
            if failure.not_leader {
                return Err(failure);
            }
            let reason = failure.category.as_str();
            let stalled = !failure.category.is_transient();
            let conditions = [
                ConditionSpec::new("Ready", false, reason, failure.message.clone()),
                if stalled {
                    ConditionSpec::new("Reconciling", false, reason, "")
                } else {
                    ConditionSpec::new("Reconciling", true, reason, failure.message.clone())
                },
                if stalled {
                    ConditionSpec::new("Stalled", true, reason, failure.message.clone())
                } else {
                    ConditionSpec::new("Stalled", false, "NotStalled", "")
                },
            ];
            let action = Action::await_change();
            (conditions, action, Some(failure))
        }
    };
    status.conditions = merge_conditions(&status.conditions, &conditions, object.metadata.generation, &now());
    write_status(object, ctx, status).await?;
    match failure {
        Some(failure) if failure.category.is_transient() => Err(failure),
        _ => Ok(action),
    }
}

async fn write_status(object: &AzureResource, ctx: &Context, status: AzureResourceStatus) -> Result<(), Failure> {
    if object.status.as_ref() == Some(&status) {
        return Ok(());
    }
    ctx.writer.may_write().map_err(|_| not_leader())?;
    let previous =
        object.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready")).map(|c| c.reason.clone());
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").cloned();
    let api: Api<AzureResource> = Api::namespaced(ctx.writer.client.clone(), &object.namespace().unwrap_or_default());
    let patch =
        json!({"apiVersion": AzureResource::api_version(&()), "kind": AzureResource::kind(&()), "status": status});
    api.patch_status(&object.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(|e| Failure::new(Category::KubeApi, format!("write AzureResource status: {e}")))?;
    if let Some(ready) = ready.filter(|r| Some(&r.reason) != previous.as_ref()) {
        let type_ = if ready.status == "True" || ready.reason == "Provisioning" {
            EventType::Normal
        } else {
            EventType::Warning
        };
        let event = Event {
            type_,
            reason: ready.reason.clone(),
            note: Some(bounded(&ready.message, 1024)),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(error) = ctx.recorder.publish(&event, &object.object_ref(&())).await {
            warn!(%error, "publishing an Event failed");
        }
    }
    Ok(())
}
