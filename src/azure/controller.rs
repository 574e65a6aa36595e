//! The AzureResource controller: resolve (credential, target; I/O) → observe (operation,
//! GET; I/O) → plan (pure) → act (ARM calls; binding Secret) → status (pure) → write status.
//! Long-running operations never block a reconcile: progress is recorded in status and the
//! object is requeued after `Retry-After`.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::Predicate;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::{AzureResource, AzureResourceStatus, DeletionPolicy};
use crate::azure::credential::Credentials;
use crate::azure::delete::{self, Deletion};
use crate::azure::plan::{self, Inputs};
use crate::azure::resolve::{self, Target};
use crate::azure::status::{self, Outcome};
use crate::azure::{act, hold, observe, secret};
use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::events::Recorder;
use crate::leader::LeaderGate;
use crate::naming;
use crate::reconciler::{self, Verdict};
use crate::relist::{self, Events};
use crate::stack::apply::Writer;
use crate::telemetry::{Health, Metrics};

/// Controller name: the metric label.
pub const CONTROLLER: &str = "azureresource";
/// Finalizer on AzureResources whose effective deletion policy is Delete.
pub const FINALIZER: &str = "citystack.io/azure-cleanup";
/// How often a deletion blocked by foreign resources in a group looks again.
const BLOCKED_RECHECK: Duration = Duration::from_secs(20);

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
    /// A long-running operation older than this is dropped and the resource read afresh.
    pub operation_deadline: Duration,
    /// The cluster's identity (kube-system's UID, never empty): in derived names and owner tags.
    pub cluster_uid: String,
    /// The AzureResources this replica reconciles when sharded (`None`: all).
    pub shard: Option<crate::shard::Scope>,
}

/// Shared state of the reconciles.
pub struct Context {
    /// Kubernetes client, leader gate and metrics.
    pub writer: Writer,
    credentials: Arc<Credentials>,
    cluster_uid: String,
    default_subscription: Option<String>,
    recorder: Recorder,
    resync: Duration,
    operation_deadline: Duration,
    backoff: Backoff<ObjectRef<AzureResource>>,
    store: Store<AzureResource>,
    /// Reconciles run in trigger order, `concurrency` first ones and `concurrency` others at
    /// once (`turns`).
    turns: crate::turns::Turns,
    written: crate::written::Written<AzureResource>,
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
    // Read one by one (`readable`): one nested too deep to read must not stop the watch.
    let api: Api<crate::readable::Readable<AzureResource>> = reconciler::api(client.clone(), &settings.namespace);
    let (store, writer) = reflector::store();
    let mut synced = Some(health);
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        .filter_map(|event| std::future::ready(crate::readable::readable_only(event)))
        .modify(reconciler::strip)
        .reflect(writer)
        .inspect(move |event| {
            if matches!(event, Ok(watcher::Event::InitDone))
                && let Some(health) = synced.take()
            {
                health.set_ready();
            }
        });
    let stream = relist::objects(events, store.clone(), Events::Applied)
        // Sharded: reconcile only this replica's objects, but cache every one: deleting an
        // Azure resource must see every AzureResource that uses it, whichever replica has it.
        .try_filter({
            let shard = settings.shard;
            move |object| std::future::ready(crate::shard::keep(shard.as_ref(), object))
        })
        // The recorded operation is read by the reconcile, so a change to it (by anyone) wakes
        // the object; the rest of the status is the reconcile's own output.
        .predicate_filter(reconciler::intent.combine(recorded_operation), Default::default());
    let reporter = Reporter { controller: "citystack".into(), instance: std::env::var("POD_NAME").ok() };
    let ctx = Arc::new(Context {
        writer: Writer { client: client.clone(), gate: leader.clone(), metrics: metrics.clone() },
        credentials,
        cluster_uid: settings.cluster_uid,
        default_subscription: settings.default_subscription,
        recorder: Recorder::new(client.clone(), reporter, metrics),
        resync: settings.resync,
        operation_deadline: settings.operation_deadline,
        backoff: Backoff::new(Duration::from_secs(2)),
        store: store.clone(),
        turns: crate::turns::Turns::new(settings.concurrency),
        written: crate::written::Written::default(),
    });
    let promotions = leader.promotions();
    Controller::for_stream(stream, store)
        // No limit in kube's runner: `ctx.turns` limits reconciles, fairly.
        .with_config(controller::Config::default().concurrency(0))
        .reconcile_all_on(promotions)
        .graceful_shutdown_on({
            let ctx = ctx.clone();
            async move {
                shutdown.cancelled().await;
                ctx.turns.close();
            }
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                // Reconcile failures are logged by `error_policy`.
                Ok(_) | Err(controller::Error::ReconcilerFailed(..)) => {}
                Err(controller::Error::QueueError(error)) => {
                    warn!(error = %crate::error::watch_message(&error), "azureresource controller: watch")
                }
                Err(error) => warn!(%error, "azureresource controller"),
            }
        })
        .await;
}

/// Predicate: the status field the reconcile follows (`status.operation`).
fn recorded_operation(object: &AzureResource) -> Option<u64> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    object.status.as_ref().and_then(|s| s.operation.as_ref()).hash(&mut hasher);
    Some(hasher.finish())
}

async fn reconcile(object: Arc<AzureResource>, ctx: Arc<Context>) -> Result<Action> {
    // Classed as the object was last written: a poll that follows our own status write can
    // come before the watch delivers it.
    let class = |object: &Arc<AzureResource>| {
        let object = ctx.written.latest(object.clone());
        crate::turns::Class::of(object.metadata.generation, object.status.as_ref().and_then(|s| s.observed_generation))
    };
    let Some((_turn, object)) = ctx.turns.take(&ctx.store, &object, class).await else {
        return Ok(Action::await_change());
    };
    // The status records the operation in flight: never act on a cached copy older than our
    // own last status write (a requeue can come before the watch delivers it).
    let object = ctx.written.latest(object);
    // Boxed: many reconciles may wait for a turn, each only as big as this frame.
    let work = Box::pin(reconcile_inner(&object, &ctx));
    reconciler::reconcile(CONTROLLER, object.as_ref(), &ctx.writer.metrics, &ctx.backoff, work).await
}

fn error_policy(object: Arc<AzureResource>, error: &Error, ctx: Arc<Context>) -> Action {
    Action::requeue(reconciler::retry_delay(CONTROLLER, object.as_ref(), error, &ctx.writer.metrics, &ctx.backoff))
}

async fn reconcile_inner(object: &AzureResource, ctx: &Context) -> Result<Action> {
    ctx.writer.may_write()?;
    if object.meta().deletion_timestamp.is_some() {
        return finalize(object, ctx).await;
    }
    let target = match resolve(object, ctx).await {
        Ok(target) => target,
        Err(error) => return report(object, ctx, None, Err(error), None).await,
    };
    // A finalizer only when Azure cleanup is ours to do; then the cleanup's credential is held
    // so that deleting the namespace cannot remove it first.
    let patched = ensure_finalizer(object, ctx, target.policy == DeletionPolicy::Delete).await?;
    // Later writes go over the patched version, so read-your-writes knows both.
    if let Some(patched) = &patched {
        ctx.written.record(object, patched.clone());
    }
    let object = patched.as_ref().unwrap_or(object);
    if let (DeletionPolicy::Delete, Some((secret, false))) = (target.policy, &target.credential_secret) {
        ctx.writer.may_write()?;
        hold::hold(&ctx.writer.client, &object.namespace().unwrap_or_default(), secret).await?;
    }
    let (outcome, dropped) = match converge(object, ctx, &target).await {
        Ok((outcome, dropped)) => (Ok(outcome), dropped),
        Err(error) => (Err(error), None),
    };
    if let Some(why) = &dropped {
        let note = Some(crate::error::bounded(why, 1024));
        let event = Event {
            type_: EventType::Warning,
            reason: "OperationDropped".into(),
            note,
            action: "Reconcile".into(),
            secondary: None,
        };
        publish(object, ctx, event);
    }
    report(object, ctx, Some(&target), outcome, dropped).await
}

async fn resolve(object: &AzureResource, ctx: &Context) -> Result<Target> {
    resolve::resolve(object, &ctx.credentials, &ctx.cluster_uid, ctx.default_subscription.as_deref()).await
}

/// observe → plan → act, one line each.
async fn converge(object: &AzureResource, ctx: &Context, target: &Target) -> Result<(Outcome, Option<String>)> {
    let recorded = object.status.clone().unwrap_or_default();
    let observed = observe::observe(target, &recorded, &reconciler::now(), ctx.operation_deadline).await?;
    let password = match object.spec.kind {
        crate::api::AzureKind::PostgreSQLFlexibleServer => secret::admin_password(&ctx.writer.client, object).await?,
        _ => None,
    };
    let plan = plan::plan(&Inputs {
        spec: &object.spec,
        generation: object.metadata.generation,
        recorded: &recorded,
        name: &target.name,
        id: &target.id,
        owner: &target.owner,
        password: password.as_deref(),
        tenant: target.tenant.as_deref(),
        observed: &observed,
    });
    let outcome = act::act(ctx, object, target, plan.decision, password.as_deref()).await?;
    Ok((outcome, plan.dropped))
}

/// Computes and writes the status; the next action from the outcome.
async fn report(
    object: &AzureResource,
    ctx: &Context,
    target: Option<&Target>,
    result: Result<Outcome>,
    dropped: Option<String>,
) -> Result<Action> {
    let recorded = object.status.clone().unwrap_or_default();
    let (status, _) = status::compute(&status::Inputs {
        recorded: &recorded,
        generation: object.metadata.generation,
        target: target.map(Target::summary),
        result: result.as_ref(),
        dropped: dropped.as_deref(),
        now: &reconciler::now(),
    });
    write_status(object, ctx, status).await?;
    match result {
        Ok(Outcome::Progressing { after, .. }) => Ok(Action::requeue(after)),
        Ok(Outcome::Provisioned { .. }) => Ok(Action::requeue(jittered(ctx.resync))),
        Ok(Outcome::Deleting { blocked: true, .. }) => Ok(Action::requeue(BLOCKED_RECHECK)),
        Ok(Outcome::Deleting { .. }) => Ok(Action::requeue(Duration::from_secs(5))),
        // Permanent errors wait for a change; the status says what to do.
        Err(error) if !error.category().is_transient() => Ok(Action::await_change()),
        Err(error) => Err(error),
    }
}

/// `resync` lengthened by up to 20 %, so resources provisioned together do not read ARM
/// together. Never shortened: the resync is the read budget's promise (a GET and a list-keys
/// per resource per resync), and a spread around it would break it for half the resources.
fn jittered(resync: Duration) -> Duration {
    let factor: f64 = rand::Rng::random_range(&mut rand::rng(), 1.0..=1.2);
    resync.mul_f64(factor)
}

async fn write_status(object: &AzureResource, ctx: &Context, status: AzureResourceStatus) -> Result<()> {
    let reasons = [status::PROVISIONING, status::DELETING];
    if let Some(written) = reconciler::write_status(&ctx.writer, &ctx.recorder, object, &status, &reasons).await? {
        ctx.written.record(object, written);
    }
    Ok(())
}

fn publish(object: &AzureResource, ctx: &Context, event: Event) {
    reconciler::publish(&ctx.recorder, object, event);
}

/// Adds or removes our finalizer as `wanted`; the patched object when it wrote one.
async fn ensure_finalizer(object: &AzureResource, ctx: &Context, wanted: bool) -> Result<Option<AzureResource>> {
    let has = object.finalizers().iter().any(|f| f == FINALIZER);
    if has == wanted {
        return Ok(None);
    }
    ctx.writer.may_write()?;
    let mut finalizers: Vec<String> = object.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
    if wanted {
        finalizers.push(FINALIZER.into());
    }
    let api: Api<AzureResource> = Api::namespaced(ctx.writer.client.clone(), &object.namespace().unwrap_or_default());
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": object.resource_version()}});
    let patched = api
        .patch(&object.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| Error::kube("update finalizers", e))?;
    Ok(Some(patched))
}

/// Deletion: with policy Delete, delete in Azure what this object owns (see
/// [`delete::decide`]), then drop the finalizer. The abandon annotation skips the cleanup.
async fn finalize(object: &AzureResource, ctx: &Context) -> Result<Action> {
    if !object.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let abandoned = object.annotations().get(naming::ABANDON_ANNOTATION).is_some_and(|v| v == "true");
    if abandoned {
        let event = Event {
            type_: EventType::Warning,
            reason: "Abandoned".into(),
            note: Some(format!(
                "{} is set: the Azure resource was left in place, not deleted; remove it by hand if it should go",
                naming::ABANDON_ANNOTATION
            )),
            action: "Delete".into(),
            secondary: None,
        };
        publish(object, ctx, event);
        return remove_finalizer(object, ctx).await;
    }
    let policy =
        crate::azure::kinds::effective_deletion_policy(object.spec.kind, object.spec.mode, object.spec.deletion_policy);
    if policy != DeletionPolicy::Delete {
        return remove_finalizer(object, ctx).await;
    }
    let target = match resolve(object, ctx).await {
        Ok(target) => target,
        Err(error) => return report(object, ctx, None, Err(error), None).await,
    };
    let outcome = delete_in_azure(object, ctx, &target).await;
    match outcome {
        Ok(None) => remove_finalizer(object, ctx).await,
        Ok(Some(outcome)) => report(object, ctx, Some(&target), Ok(outcome), None).await,
        Err(error) => report(object, ctx, Some(&target), Err(error), None).await,
    }
}

/// `None` once nothing is left to delete; else the deletion's progress.
async fn delete_in_azure(object: &AzureResource, ctx: &Context, target: &Target) -> Result<Option<Outcome>> {
    let (sub, id) = (&target.subscription, &target.id);
    let resource = match target.arm.get(sub, id, &target.api_version).await {
        Ok(found) => found.map(|r| r.body),
        Err(e) => return Err(Error::arm(format!("GET {id}"), e)),
    };
    let contents = match (&resource, object.spec.kind) {
        (Some(_), crate::api::AzureKind::ResourceGroup) => target
            .arm
            .list(sub, &format!("{id}/resources"), delete::LIST_API_VERSION, delete::MAX_PAGES)
            .await
            .map_err(|e| Error::arm(format!("list {id}/resources"), e))?,
        _ => Vec::new(),
    };
    match delete::decide(object.spec.kind, &target.owner, resource.as_ref(), &contents) {
        Deletion::Gone => Ok(None),
        Deletion::NotOurs => {
            warn!(%id, "not deleting an Azure resource without this object's ownership tag");
            Ok(None)
        }
        Deletion::Blocked { message } => Ok(Some(Outcome::Deleting { message, blocked: true })),
        Deletion::InProgress => {
            Ok(Some(Outcome::Deleting { message: format!("ARM is deleting {id}"), blocked: false }))
        }
        Deletion::Delete => {
            ctx.writer.may_write()?;
            let response = target
                .arm
                .delete(sub, id, &target.api_version)
                .await
                .map_err(|e| Error::arm(format!("DELETE {id}"), e))?;
            if response.status == 404 {
                return Ok(None);
            }
            info!(%id, status = response.status, "DELETE sent");
            Ok(Some(Outcome::Deleting { message: format!("deleting {id} in Azure"), blocked: false }))
        }
    }
}

async fn remove_finalizer(object: &AzureResource, ctx: &Context) -> Result<Action> {
    ctx.writer.may_write()?;
    hold::release_if_last(&ctx.writer.client, &ctx.store, object).await?;
    let finalizers: Vec<String> = object.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
    let api: Api<AzureResource> = Api::namespaced(ctx.writer.client.clone(), &object.namespace().unwrap_or_default());
    api.patch(
        &object.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"finalizers": finalizers}})),
    )
    .await
    .map_err(|e| Error::kube("remove finalizer", e))?;
    Ok(Action::await_change())
}

/// The verdict kind of a status, for callers outside this module (the stack's view).
pub fn verdict_of(status: &AzureResourceStatus) -> Option<Verdict> {
    let find = |t: &str| status.conditions.iter().find(|c| c.type_ == t && c.status == "True");
    if let Some(c) = find("Stalled") {
        return Some(Verdict::Stalled { reason: c.reason.clone(), message: c.message.clone() });
    }
    if let Some(c) = find("Ready") {
        return Some(Verdict::Ready { reason: c.reason.clone(), message: c.message.clone() });
    }
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| Verdict::Progressing { reason: c.reason.clone(), message: c.message.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resyncs_spread_and_never_come_sooner_than_the_resync() {
        let hour = Duration::from_secs(3600);
        let spread: Vec<Duration> = (0..200).map(|_| jittered(hour)).collect();
        assert!(
            spread.iter().all(|d| (Duration::from_secs(3600)..=Duration::from_secs(4320)).contains(d)),
            "{spread:?}"
        );
        assert!(spread.iter().any(|d| *d != spread[0]), "all the same: not spread");
    }
}
