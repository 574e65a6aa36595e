//! The SolutionStack controller: resolve → validate → render → apply → prune → status.

pub mod apply;
pub mod drift;
pub mod index;
pub mod lean;
pub mod owned;
pub mod pace;
pub mod quantity;
pub mod render;
pub mod resolve;
pub mod status;
pub mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::api::{AzureResource, BlueprintStatus, SolutionBlueprint, SolutionStack, SolutionStackStatus};
use crate::backoff::Backoff;
use crate::blueprint;
use crate::error::{Error, Result, bounded};
use crate::events::Recorder;
use crate::leader::LeaderGate;
use crate::naming;
use crate::ownership;
use crate::readable::Readable;
use crate::reconciler;
use crate::relist::{self, Events};
use crate::telemetry::{Health, Metrics};
use render::ChildKind;
use resolve::{BindingState, SecretResolver};
use status::{Observation, Plan, Rollout};

/// Controller name: the metric label and the Event reporting controller.
pub const CONTROLLER: &str = "solutionstack";

/// Settings of `citystack run` that the controller uses.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespace to watch; `None` for all.
    pub namespace: Option<String>,
    /// Reconciles running at once.
    pub concurrency: u16,
    /// Seconds between resyncs of a converged stack.
    pub resync: Duration,
    /// The stacks this replica reconciles when sharded (`None`: all).
    pub shard: Option<crate::shard::Scope>,
}

/// Shared state of the reconciles.
pub struct Context {
    writer: apply::Writer,
    deployments: Store<lean::Lean<Deployment>>,
    services: Store<lean::Lean<Service>>,
    azure: Store<AzureResource>,
    secrets: SecretResolver,
    recorder: Recorder,
    resync: Duration,
    backoff: Backoff<ObjectRef<CachedStack>>,
    /// True once every cache finished its first list. A watch channel, because a store's own
    /// readiness future wakes only the last task that polled it.
    synced: tokio::sync::watch::Receiver<bool>,
    pace: pace::StatusPace,
    /// Reconciles run in trigger order, `concurrency` first ones and `concurrency` others at
    /// once (`turns`).
    turns: crate::turns::Turns,
    /// Our last status writes (digest, generation observed), until the cache shows them
    /// (`written`): not sent twice, and classed as progress for `turns`.
    status_writes: crate::written::StatusWrites,
    stacks: Store<CachedStack>,
    /// Blueprints (cluster-scoped), for stacks that instantiate one.
    blueprints: Store<Readable<SolutionBlueprint>>,
    /// What each stack refers to (its expanded spec's, once reconciled).
    references: index::Index,
    /// The children each stack controls (candidates for pruning).
    owned: Arc<owned::Owned>,
}

/// A SolutionStack as the controller caches it (`lean::Lean`: metadata typed, the rest as
/// compact JSON text); reconciles parse it.
pub type CachedStack = lean::Lean<SolutionStack>;

/// Progress-only status writes of one stack are at least this far apart (`pace`).
const PROGRESS_WINDOW: Duration = Duration::from_secs(3);

/// Runs the controller until `shutdown` is cancelled, then finishes in-flight reconciles.
/// Marks `health` ready once every cache has synced. Reports blueprint instances to `members`
/// (the blueprint controller's rollouts), when given.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Metrics,
    health: Health,
    leader: LeaderGate,
    members: Option<Arc<blueprint::controller::Members>>,
    shutdown: CancellationToken,
) {
    let deployments: Api<lean::Lean<Deployment>> = reconciler::api(client.clone(), &settings.namespace);
    let services: Api<lean::Lean<Service>> = reconciler::api(client.clone(), &settings.namespace);
    let secrets: Api<PartialObjectMeta<Secret>> = reconciler::api(client.clone(), &settings.namespace);
    // Stacks and their children outside the shard never reach the caches. On a server that
    // filters, the API server sends only this replica's stacks; the filter below also covers
    // one that ignores shardSelector.
    let shard = settings.shard;
    let stack_client = match shard {
        Some(scope) if scope.server_side => crate::shard::stack_client(&client, &scope.range),
        _ => client.clone(),
    };
    let stacks: Api<CachedStack> = reconciler::api(stack_client, &settings.namespace);

    // Owned children: label-selected, kept lean (stripped while parsed, `lean::Lean`) in stores
    // for diffing.
    // Each cache counts as synced once its first list is in the store. Tracked from the
    // stream (after `reflect`), not with `Store::wait_until_ready`: that future wakes only
    // the last task to poll it, and the Controller itself polls the stack store's.
    let (synced_tx, synced) = tokio::sync::watch::channel(false);
    let sync = SyncTracker::new(6, synced_tx, health);
    let children = watcher::Config::default().labels(&crate::shard::child_selector(shard.as_ref()));
    let owned = Arc::new(owned::Owned::default());
    let (deploy_store, deploy_writer) = reflector::store();
    let deploy_stream = watcher(deployments, children.clone())
        .default_backoff()
        .filter(crate::shard::in_scope(shard))
        .reflect(deploy_writer)
        .inspect(sync.observer(0))
        .inspect(observe(&owned, ChildKind::Deployment));
    let deploy_stream = relist::objects(deploy_stream, deploy_store.clone(), Events::Touched);
    let (service_store, service_writer) = reflector::store();
    let service_stream = watcher(services, children)
        .default_backoff()
        .filter(crate::shard::in_scope(shard))
        .reflect(service_writer)
        .inspect(sync.observer(1))
        .inspect(observe(&owned, ChildKind::Service));
    let service_stream = relist::objects(service_stream, service_store.clone(), Events::Touched);
    // AzureResources: the stack's own (inline Azure bindings) and those it references.
    // Read one by one (`readable`): one nested too deep to read must not stop the watch.
    let azure_api: Api<Readable<AzureResource>> = reconciler::api(client.clone(), &settings.namespace);
    let (azure_store, azure_writer) = reflector::store();
    let azure_stream = watcher(azure_api, watcher::Config::default())
        .default_backoff()
        .filter_map(|event| std::future::ready(crate::readable::readable_only(event)))
        .modify(reconciler::strip)
        .reflect(azure_writer)
        .inspect(sync.observer(4))
        .inspect(observe(&owned, ChildKind::AzureResource));
    let azure_stream = relist::objects(azure_stream, azure_store.clone(), Events::Touched);
    // User Secrets: metadata only; a change wakes the stacks that bind them.
    let (secret_store, secret_writer) = reflector::store();
    let secret_stream = watcher(secrets, watcher::Config::default())
        .default_backoff()
        .modify(reconciler::strip)
        .reflect(secret_writer)
        .inspect(sync.observer(2));
    let secret_stream = relist::objects(secret_stream, secret_store.clone(), Events::Touched);
    // Blueprints: few, cluster-scoped, never sharded; a change wakes their instances.
    let blueprint_api: Api<Readable<SolutionBlueprint>> = Api::all(client.clone());
    let (blueprint_store, blueprint_writer) = reflector::store();
    let blueprint_stream = watcher(blueprint_api, watcher::Config::default())
        .default_backoff()
        .modify(reconciler::strip)
        .reflect(blueprint_writer)
        .inspect(sync.observer(5))
        .filter(blueprint_changes());
    let blueprint_stream = relist::objects(blueprint_stream, blueprint_store.clone(), Events::Touched);
    let (stack_store, stack_writer) = reflector::store();
    let references = index::Index::default();
    // Stacks are cached lean too (parsing strips them); each reconcile parses its stack.
    let stack_stream = watcher(stacks, watcher::Config::default())
        .default_backoff()
        .filter(crate::shard::in_scope(shard))
        .reflect(stack_writer)
        .inspect(sync.observer(3))
        .inspect({
            let references = references.clone();
            move |event| references.observe(event)
        })
        .inspect({
            let mut observe = members.as_ref().map(|m| m.observer(settings.namespace.clone()));
            move |event| {
                if let Some(observe) = observe.as_mut() {
                    observe(event);
                }
            }
        });
    // A stack's own status write does not wake it again (a no-op reconcile per write, ~4 per
    // stack while it rolls out); its children's changes do.
    let stack_stream = relist::objects(stack_stream, stack_store.clone(), Events::Applied)
        .predicate_filter(reconciler::intent, Default::default());

    let reporter = Reporter { controller: "citystack".into(), instance: std::env::var("POD_NAME").ok() };
    let ctx = Arc::new(Context {
        writer: apply::Writer { client: client.clone(), gate: leader.clone(), metrics: metrics.clone() },
        deployments: deploy_store,
        services: service_store,
        azure: azure_store,
        secrets: SecretResolver::new(client.clone(), secret_store),
        recorder: Recorder::new(client.clone(), reporter, metrics),
        resync: settings.resync,
        backoff: Backoff::new(Duration::from_secs(1)),
        synced,
        pace: pace::StatusPace::new(PROGRESS_WINDOW),
        turns: crate::turns::Turns::new(settings.concurrency),
        status_writes: crate::written::StatusWrites::default(),
        stacks: stack_store.clone(),
        blueprints: blueprint_store,
        references: references.clone(),
        owned,
    });

    let promotions = leader.promotions();
    let secret_index = references.clone();
    let blueprint_index = references.clone();
    // No limit in kube's runner: `ctx.turns` limits reconciles, fairly.
    let config = controller::Config::default().concurrency(0);
    let stop = shutdown.clone();
    Controller::for_stream(stack_stream, stack_store)
        .with_config(config)
        .owns_stream(deploy_stream)
        .owns_stream(service_stream)
        .watches_stream(secret_stream, move |secret: PartialObjectMeta<Secret>| {
            secret_index.binding_secret(&secret.namespace().unwrap_or_default(), &secret.name_any())
        })
        .watches_stream(azure_stream, move |resource: AzureResource| {
            references.using_azure(&resource.namespace().unwrap_or_default(), &resource.name_any())
        })
        .watches_stream(blueprint_stream, move |blueprint: Readable<SolutionBlueprint>| {
            blueprint_index.instances(&blueprint.name_any())
        })
        .reconcile_all_on(promotions)
        .graceful_shutdown_on({
            let ctx = ctx.clone();
            async move {
                stop.cancelled().await;
                ctx.turns.close();
            }
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(object = %object, "reconciled"),
                Err(controller::Error::ReconcilerFailed(error, object)) => {
                    debug!(object = %object, %error, "reconcile failed")
                }
                Err(controller::Error::QueueError(error)) => {
                    warn!(error = %crate::error::watch_message(&error), "controller: watch")
                }
                Err(error) => warn!(%error, "controller"),
            }
        })
        .await;
}

/// For `inspect` on a child watch: keeps `owned` up to date with the watch's kind.
fn observe<K: Resource>(
    owned: &Arc<owned::Owned>,
    kind: ChildKind,
) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) + use<K> {
    let owned = owned.clone();
    move |event| owned.observe(kind, event)
}

/// Marks the controller synced (the watch channel reconciles wait on, and `Health`) once
/// every watched stream has delivered its first complete list.
struct SyncTracker {
    seen: Arc<Mutex<Vec<bool>>>,
    done: Arc<tokio::sync::watch::Sender<bool>>,
    health: Health,
}

impl SyncTracker {
    fn new(streams: usize, done: tokio::sync::watch::Sender<bool>, health: Health) -> Self {
        Self { seen: Arc::new(Mutex::new(vec![false; streams])), done: Arc::new(done), health }
    }

    /// The `inspect` callback for stream `index`.
    fn observer<K>(&self, index: usize) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) + use<K> {
        let (seen, done, health) = (self.seen.clone(), self.done.clone(), self.health.clone());
        move |event| {
            if !matches!(event, Ok(watcher::Event::InitDone)) || *done.borrow() {
                return;
            }
            let all = seen.lock().map(|mut s| {
                if let Some(flag) = s.get_mut(index) {
                    *flag = true;
                }
                s.iter().all(|f| *f)
            });
            // Only the first stream to complete the set flips it (they may race).
            let flipped = all.unwrap_or(false) && done.send_if_modified(|synced| !std::mem::replace(synced, true));
            if flipped {
                info!("caches synced");
                health.set_ready();
            }
        }
    }
}

/// Which pool a stack's reconcile takes its turn from: progress when its status (cached, or
/// as this controller last wrote it) observed its generation.
fn class(stack: &CachedStack, written: &crate::written::StatusWrites) -> crate::turns::Class {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct StatusView {
        observed_generation: Option<i64>,
    }
    #[derive(serde::Deserialize)]
    struct View {
        status: Option<StatusView>,
    }
    let observed = stack.view::<View>().and_then(|view| view.status?.observed_generation);
    let metadata = &stack.metadata;
    written.class(metadata.uid.as_deref(), metadata.resource_version.as_deref(), metadata.generation, observed)
}

async fn reconcile(cached: Arc<CachedStack>, ctx: Arc<Context>) -> Result<Action> {
    let Some((_turn, cached)) = ctx.turns.take(&ctx.stacks, &cached, |s| class(s, &ctx.status_writes)).await else {
        return Ok(Action::await_change());
    };
    // Boxed: thousands of reconciles may wait for a turn, each only as big as this frame.
    let work = Box::pin(async {
        let stack = cached.parse().map_err(|e| Error::encoding("cached SolutionStack", e))?;
        reconcile_inner(&stack, &ctx).await
    });
    reconciler::reconcile(CONTROLLER, cached.as_ref(), &ctx.writer.metrics, &ctx.backoff, work).await
}

async fn reconcile_inner(stack: &SolutionStack, ctx: &Context) -> Result<Action> {
    // Diffing against caches that have not finished their first list would re-create
    // children that exist: wait for them (immediate once synced).
    if ctx.synced.clone().wait_for(|synced| *synced).await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    ctx.writer.may_write()?;
    let namespace = stack.namespace().unwrap_or_default();
    // Deleting: children go with the garbage collector (ownerReferences); nothing to do.
    if stack.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }

    // 0. the blueprint (pure, from its cache): the spec this stack becomes.
    // Expressions run on the blocking pool (on a thread of their own, `template::isolated`):
    // a hostile template costs its own time, never a runtime worker's.
    let instance = match &stack.spec.blueprint {
        None => Instance { stack: std::borrow::Cow::Borrowed(stack), status: None, error: None, record: None },
        Some(_) => {
            let (owned, blueprints) = (stack.clone(), ctx.blueprints.clone());
            let expanded = tokio::task::spawn_blocking(move || {
                let found = instance(&owned, &blueprints);
                let stack = std::borrow::Cow::Owned(found.stack.into_owned());
                Instance { stack, status: found.status, error: found.error, record: found.record }
            });
            expanded.await.map_err(|e| {
                Error::refused(
                    crate::error::Category::InvalidBlueprint,
                    format!("the blueprint's expansion failed: {e}"),
                )
            })?
        }
    };
    if let (Some(version), false) = (&instance.record, stack.spec.paused)
        && !record_version(ctx, stack, version).await?
    {
        // Changed since read (a rollout moved it): the next reconcile reads the change.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    if instance.error.is_none() {
        let key = (namespace.clone(), stack.name_any());
        ctx.references.expanded(key, index::refers(&instance.stack));
    }
    let blueprint_failed = instance.error.is_some();
    let stack = instance.stack.as_ref();

    // 1. resolve (reads only)
    let bindings = ctx.secrets.resolve(stack, &ctx.azure).await?;
    // 2. validate (pure)
    let validated = match instance.error {
        Some(error) => Err(error),
        None => validate::validate(&stack.spec),
    };
    // 3. render (pure)
    let owner = stack.controller_owner_ref(&()).map(|mut o| {
        o.block_owner_deletion = Some(true);
        o
    });
    let desired = render::render(stack, owner.as_ref(), &resolve::ready_bindings(&bindings))?;

    // What the caches hold now, of what this stack controls (a namesake of another owner is
    // neither shown nor counted); applies below replace entries with their responses.
    let stack_name = stack.name_any();
    let uid = stack.uid().unwrap_or_default();
    let mut deployments: BTreeMap<String, Deployment> = BTreeMap::new();
    let mut services: BTreeMap<String, String> = BTreeMap::new();
    for component in &stack.spec.components {
        let child = naming::child_name(&stack_name, &component.name);
        let deployment = ctx.deployments.get(&ObjectRef::new(&child).within(&namespace));
        if let Some(d) = deployment.filter(|d| ownership::controls(d.meta(), &uid)).and_then(|d| d.object()) {
            deployments.insert(component.name.clone(), d);
        }
        let service = ctx.services.get(&ObjectRef::new(&child).within(&namespace));
        if service.is_some_and(|s| ownership::controls(s.meta(), &uid)) {
            services.insert(component.name.clone(), format!("{child}.{namespace}.svc"));
        }
    }

    // 4. apply, dependencies first; 5. prune. A component that fails is reported on its own;
    // the others (except its dependents) and pruning go on.
    let mut plans = BTreeMap::new();
    let mut changes = Vec::new();
    let mut failures: Vec<Error> = Vec::new();
    let spec_error = validated.as_ref().err();
    if let (Ok(validated), false) = (&validated, stack.spec.paused) {
        let mut keep = BTreeSet::new();
        // Azure bindings first: components wait for them, so they must not wait for components.
        // Independent writes go out together: a stack's latency is its longest chain of
        // dependencies, not the number of its children.
        let azure: Vec<_> = desired.iter().filter(|c| c.kind == ChildKind::AzureResource).collect();
        keep.extend(azure.iter().map(|c| (c.kind, c.name.clone())));
        let applied =
            join_all(azure.iter().map(|c| apply::apply_child(&ctx.writer, &ctx.azure, &namespace, &uid, c))).await;
        for result in applied {
            match result {
                Ok(applied) => changes.extend(applied.change),
                Err(error @ Error::NotLeader) => return Err(error),
                Err(error) => failures.push(error),
            }
        }
        for wave in validated.waves(&stack.spec) {
            let mut ready = Vec::new();
            for name in wave {
                let Some(component) = stack.spec.components.iter().find(|c| c.name == name) else {
                    continue;
                };
                let waits = waits_for(component, &bindings, &plans, &deployments);
                if waits.is_empty() {
                    // A child that fails to apply is not pruned either.
                    keep.extend(desired.iter().filter(|c| c.component == name).map(|c| (c.kind, c.name.clone())));
                    ready.push(name);
                } else {
                    // Held: nothing created or changed, and nothing of it pruned.
                    for kind in [ChildKind::Deployment, ChildKind::Service] {
                        keep.insert((kind, naming::child_name(&stack_name, &name)));
                    }
                    plans.insert(name, Plan::Held(waits));
                }
            }
            let applied = join_all(ready.iter().map(|name| {
                apply_component(ctx, &namespace, &uid, desired.iter().filter(move |c| &c.component == name))
            }))
            .await;
            for (name, applied) in ready.into_iter().zip(applied) {
                changes.extend(applied.changes);
                if let Some(deployment) = applied.deployment {
                    deployments.insert(name.clone(), deployment);
                }
                if let Some(address) = applied.service {
                    services.insert(name.clone(), address);
                }
                match applied.error {
                    None => {
                        plans.insert(name, Plan::Applied);
                    }
                    Some(error @ Error::NotLeader) => return Err(error),
                    Some(error) => {
                        plans.insert(name, Plan::Failed { category: error.category(), message: error.to_string() });
                        failures.push(error);
                    }
                }
            }
        }
        let caches = (&ctx.deployments, &ctx.services, &ctx.azure);
        match apply::prune(&ctx.writer, caches, &ctx.owned, stack, &keep).await {
            Ok(mut pruned) => changes.append(&mut pruned),
            Err(error @ Error::NotLeader) => return Err(error),
            Err(error) => failures.push(error),
        }
    }
    for change in &changes {
        info!(kind = change.kind.as_str(), child = %change.name, "{} {} {}", change.action, change.kind.as_str(), change.name);
    }
    for (action, note) in apply::summarize(&changes) {
        publish(ctx, stack, EventType::Normal, action, note);
    }
    // A failure that needs a person (a conflict, a refused child) is Stalled; one that heals
    // by itself is retried with backoff.
    let first_permanent = failures.iter().position(|e| e.category().stalls());
    let first_transient = failures.iter().position(|e| !e.category().stalls());

    // 6. status (pure), written only when it changed
    let now = Time(jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap_or_default());
    let observation = Observation {
        stack,
        spec_error,
        child_error: first_permanent.and_then(|i| failures.get(i)),
        transient_error: first_transient.and_then(|i| failures.get(i)),
        bindings: &bindings,
        plans: &plans,
        deployments: &deployments,
        services: &services,
        blueprint: instance.status.as_ref(),
    };
    let mut status = status::compute(&observation, &now);
    if blueprint_failed && let Some(previous) = &stack.status {
        // What the stack became is unknown now; its children are untouched, so their last
        // reported state stands beside the Stalled condition.
        status.components = previous.components.clone();
        status.bindings = previous.bindings.clone();
        status.ready = previous.ready.clone();
    }
    // Progress waits for its window unless this reconcile is about to fail and retry on its
    // own backoff (which could hold the status back for longer).
    let now_instant = std::time::Instant::now();
    let deferred = match first_transient {
        None => ctx.pace.wait(&uid, stack.status.as_ref(), &status, now_instant),
        Some(_) => None,
    };
    if deferred.is_none() && write_status(ctx, stack, status).await? {
        ctx.pace.written(&uid, now_instant);
    }
    let soon = |after: Duration| Action::requeue(deferred.map_or(after, |wait| wait.min(after)));

    for error in failures.iter().filter(|e| e.category().stalls()) {
        ctx.writer.metrics.reconcile_failed(CONTROLLER, error.category());
        warn!(category = %error.category(), %error, "child not written");
    }
    if let Some(i) = first_transient {
        return Err(failures.swap_remove(i));
    }
    if first_permanent.is_some() {
        // The same request fails again: no hot retry. A change of the stack or of an owned
        // child wakes it; the resync retries in case what refused it (a policy, the other
        // owner's object) went away.
        return Ok(soon(ctx.resync));
    }
    if let Err(error) = validated {
        ctx.writer.metrics.reconcile_failed(CONTROLLER, error.category());
        // An invalid spec cannot heal by retrying: wait for the next change.
        return Ok(deferred.map_or_else(Action::await_change, Action::requeue));
    }
    Ok(soon(ctx.resync))
}

/// For `filter` on the blueprint watch (after its store saw every event): only what resolving
/// reads wakes the instances, the spec (generation) and where the rollout stands, not the
/// instance counts each status write changes; deletions and relists always pass.
fn blueprint_changes()
-> impl FnMut(&Result<watcher::Event<Readable<SolutionBlueprint>>, watcher::Error>) -> futures::future::Ready<bool> {
    let mut seen: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    move |event| {
        let pass = match event {
            Ok(watcher::Event::Apply(blueprint)) => {
                let intent = blueprint_intent(blueprint);
                seen.insert(blueprint.name_any(), intent) != Some(intent)
            }
            Ok(watcher::Event::Delete(blueprint)) => {
                seen.remove(&blueprint.name_any());
                true
            }
            _ => true,
        };
        futures::future::ready(pass)
    }
}

/// What stacks read of a blueprint: its generation, and the rollout's target and phase (which
/// decide where a new instance starts).
fn blueprint_intent(blueprint: &Readable<SolutionBlueprint>) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    blueprint.metadata.generation.hash(&mut hasher);
    blueprint.metadata.uid.hash(&mut hasher);
    let rollout = blueprint.object.as_ref().ok().and_then(|b| b.status.as_ref()).and_then(|s| s.rollout.as_ref());
    rollout.map(|r| (&r.version, &r.phase)).hash(&mut hasher);
    blueprint.object.is_ok().hash(&mut hasher);
    hasher.finish()
}

/// A stack as the pipeline sees it (see `blueprint`).
struct Instance<'a> {
    /// The stack, with the blueprint revision's template expanded into its spec.
    stack: std::borrow::Cow<'a, SolutionStack>,
    /// `status.blueprint`.
    status: Option<BlueprintStatus>,
    /// Why the blueprint could not be expanded; the stack is then left as it is.
    error: Option<Error>,
    /// A revision chosen now, to record on the stack (`blueprint::VERSION_ANNOTATION`).
    record: Option<String>,
}

/// Expands the blueprint `stack` names, if any (pure; the blueprint from the cache).
fn instance<'a>(stack: &'a SolutionStack, blueprints: &Store<Readable<SolutionBlueprint>>) -> Instance<'a> {
    let plain = |status, error| Instance { stack: std::borrow::Cow::Borrowed(stack), status, error, record: None };
    let Some(reference) = &stack.spec.blueprint else { return plain(None, None) };
    let assigned = stack.annotations().get(blueprint::VERSION_ANNOTATION).map(String::as_str);
    let mut status = BlueprintStatus {
        name: reference.name.clone(),
        version: assigned.unwrap_or_default().to_owned(),
        ..Default::default()
    };
    let Some(found) = blueprints.get(&ObjectRef::new(&reference.name)) else {
        let error = Error::refused(
            crate::error::Category::MissingReference,
            format!("spec.blueprint.name: SolutionBlueprint {} does not exist", reference.name),
        );
        return plain(Some(status), Some(error));
    };
    let found = match &found.object {
        Ok(found) => found,
        Err(reason) => {
            let message = format!("spec.blueprint.name: SolutionBlueprint {} cannot be read: {reason}", reference.name);
            return plain(Some(status), Some(Error::refused(crate::error::Category::InvalidBlueprint, message)));
        }
    };
    let resolved = match blueprint::resolve(found, reference, assigned) {
        Ok(resolved) => resolved,
        Err(error) => return plain(Some(status), Some(error)),
    };
    status.version = resolved.version.to_string();
    let Some(revision) = blueprint::revision(found, &resolved.version) else {
        return plain(Some(status), Some(Error::InvalidSpec("spec.blueprint.version: revision not found".into())));
    };
    match blueprint::instantiate(stack, found, revision) {
        Ok(spec) => {
            status.parameters = "Valid".into();
            let mut expanded = stack.clone();
            expanded.spec = spec;
            Instance {
                stack: std::borrow::Cow::Owned(expanded),
                status: Some(status),
                error: None,
                record: resolved.record.then(|| resolved.version.to_string()),
            }
        }
        Err(error) => {
            if error.category() == crate::error::Category::InvalidParameters {
                status.parameters = "Invalid".into();
            }
            plain(Some(status), Some(error))
        }
    }
}

/// Records on the stack the revision it runs from now on (a merge patch of one annotation;
/// the annotation is the operator's). `Ok(false)`: the stack changed since it was read.
async fn record_version(ctx: &Context, stack: &SolutionStack, version: &str) -> Result<bool> {
    ctx.writer.may_write()?;
    let api: Api<SolutionStack> = Api::namespaced(ctx.writer.client.clone(), &stack.namespace().unwrap_or_default());
    // Over the version this reconcile read: a rollout's move or a rollback written meanwhile
    // wins (409, and the next reconcile reads it).
    let over = stack.resource_version();
    let patch = serde_json::json!({"metadata": {"resourceVersion": over, "annotations": {blueprint::VERSION_ANNOTATION: version}}});
    match api.patch(&stack.name_any(), &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await {
        Ok(_) => {
            info!(version, "blueprint revision recorded");
            Ok(true)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(Error::kube("record the blueprint revision", error)),
    }
}

/// Why `component` must wait: each dependency (or used binding) that is not Ready, with the
/// reason. A component dependency counts as Ready only once applied in this reconcile and
/// rolled out, so a dependency whose spec just changed holds its dependents back.
fn waits_for(
    component: &crate::api::Component,
    bindings: &BTreeMap<String, BindingState>,
    plans: &BTreeMap<String, Plan>,
    deployments: &BTreeMap<String, Deployment>,
) -> Vec<(String, String)> {
    let mut waits = Vec::new();
    let mut names: Vec<&String> = component.depends_on.iter().chain(component.uses.iter()).collect();
    names.sort();
    names.dedup();
    for dep in names {
        if let Some(state) = bindings.get(dep) {
            if let BindingState::NotReady { message, .. }
            | BindingState::Pending { message }
            | BindingState::Stalled { message, .. } = state
            {
                waits.push((dep.clone(), message.clone()));
            }
            continue;
        }
        let why = match (plans.get(dep), deployments.get(dep).map(status::rollout)) {
            (Some(Plan::Held(_)), _) => "waiting for its own dependencies".to_owned(),
            (Some(Plan::Failed { .. }), _) => "it failed (see its status)".to_owned(),
            (_, None) => "Deployment not created yet".to_owned(),
            (_, Some(Rollout::Complete)) => continue,
            (_, Some(Rollout::Progressing(why) | Rollout::Failed(why))) => why,
        };
        waits.push((dep.clone(), why));
    }
    waits
}

/// What applying one component's children did: the writes made, what its Deployment and
/// Service look like now (`None` when not applied), and its first error.
struct ComponentApplied {
    changes: Vec<apply::Change>,
    deployment: Option<Deployment>,
    service: Option<String>,
    error: Option<Error>,
}

/// Applies a component's Deployment and Service together; both are tried even if one fails.
async fn apply_component<'a>(
    ctx: &Context,
    namespace: &str,
    uid: &str,
    children: impl Iterator<Item = &'a render::DesiredChild>,
) -> ComponentApplied {
    let (deployment, service): (Vec<_>, Vec<_>) = children.partition(|c| c.kind == ChildKind::Deployment);
    let deployments =
        join_all(deployment.iter().map(|c| apply::apply_child(&ctx.writer, &ctx.deployments, namespace, uid, c)));
    let services = join_all(
        service
            .iter()
            .filter(|c| c.kind == ChildKind::Service)
            .map(|c| async move { (c, apply::apply_child(&ctx.writer, &ctx.services, namespace, uid, c).await) }),
    );
    let (deployments, services) = futures::future::join(deployments, services).await;
    let mut applied = ComponentApplied { changes: Vec::new(), deployment: None, service: None, error: None };
    for result in deployments {
        match result {
            Ok(done) => {
                applied.changes.extend(done.change);
                applied.deployment = Some(done.object);
            }
            Err(error) => record(&mut applied.error, error),
        }
    }
    for (child, result) in services {
        match result {
            Ok(done) => {
                applied.changes.extend(done.change);
                applied.service = Some(format!("{}.{namespace}.svc", child.name));
            }
            Err(error) => record(&mut applied.error, error),
        }
    }
    applied
}

/// Keeps the first error of a component, except that a lost leadership wins: the reconcile
/// must stop, not carry on failing each write.
fn record(slot: &mut Option<Error>, error: Error) {
    if slot.is_none() || matches!(error, Error::NotLeader) {
        *slot = Some(error);
    }
}

/// Whether a write was sent (see `reconciler::write_status`).
async fn write_status(ctx: &Context, stack: &SolutionStack, status: SolutionStackStatus) -> Result<bool> {
    let (uid, version) = (stack.uid().unwrap_or_default(), stack.resource_version().unwrap_or_default());
    if ctx.status_writes.already_written(&uid, &version, &status) {
        return Ok(false);
    }
    // One Event per change of the Ready reason, so a waiting or failing stack does not spam.
    let written =
        reconciler::write_status(&ctx.writer, &ctx.recorder, stack, &status, &[status::REASON_ROLLING_OUT]).await?;
    if written.is_some() {
        ctx.status_writes.record(&uid, &version, status.observed_generation, &status);
    }
    Ok(written.is_some())
}

/// Queues an Event on the stack (best effort, see `events`).
fn publish<K: Resource<DynamicType = ()>>(ctx: &Context, stack: &K, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(bounded(&note, 1024)),
        action: "Reconcile".into(),
        secondary: None,
    };
    reconciler::publish(&ctx.recorder, stack, event);
}

fn error_policy(stack: Arc<CachedStack>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = reconciler::retry_delay(CONTROLLER, stack.as_ref(), error, &ctx.writer.metrics, &ctx.backoff);
    publish(&ctx, stack.as_ref(), EventType::Warning, error.category().as_str(), error.to_string());
    Action::requeue(delay)
}
