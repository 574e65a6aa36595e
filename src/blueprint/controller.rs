//! The SolutionBlueprint controller: checks each revision as it is published, counts the
//! instances per revision, and runs the rollout (`rollout`): it moves stacks by writing the
//! revision annotation on them, and reports in the blueprint's status.
//!
//! It keeps no stack cache of its own: the stack controllers' watches feed [`Members`] (each
//! instance's recorded revision, labels and the status its stack controller wrote), which
//! also wakes the blueprint. So a fleet costs no second cache; the price is that a rollout
//! sees only the stacks this process watches, which is why rollouts run in single-leader mode
//! (the default) and not with `--shard`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::api::blueprint::{RevisionStatus, RolloutStatus, SolutionBlueprint, SolutionBlueprintStatus};
use crate::api::{ConditionSpec, merge_conditions};
use crate::backoff::Backoff;
use crate::blueprint::rollout::{self, Member, phase};
use crate::blueprint::{self, VERSION_ANNOTATION};
use crate::error::{Error, Result, bounded};
use crate::naming::FIELD_MANAGER;
use crate::readable::Readable;
use crate::reconciler::{self, Verdict, Writer};
use crate::stack::CachedStack;

/// Controller name: the metric label.
pub const CONTROLLER: &str = "solutionblueprint";

/// Wake-ups queued at most; past it they are dropped (the blueprint's resync catches up).
const WAKE_QUEUE: usize = 4096;

/// A converged blueprint is looked at again after this long.
const RESYNC: Duration = Duration::from_secs(300);

/// Stack annotation writes a rollout sends at once.
const MOVES_AT_ONCE: usize = 8;

/// A rollout whose moves did not all land looks again this soon.
const MOVE_RETRY: Duration = Duration::from_secs(5);

/// The instances of every blueprint, by `namespace/name`, as the stack controllers' watches
/// show them (their annotation, labels and the status the stack controller wrote).
pub struct Members {
    reported: Mutex<HashMap<String, (String, Member)>>,
    wake: mpsc::Sender<String>,
    /// Stack watches that have not finished their first list yet.
    unsynced: std::sync::atomic::AtomicUsize,
}

impl Members {
    /// The registry for `watches` stack watches, and the receiver of the names of blueprints
    /// whose instances changed.
    pub fn new(watches: usize) -> (Arc<Self>, mpsc::Receiver<String>) {
        let (wake, woken) = mpsc::channel(WAKE_QUEUE);
        let unsynced = std::sync::atomic::AtomicUsize::new(watches);
        (Arc::new(Self { reported: Mutex::new(HashMap::new()), wake, unsynced }), woken)
    }

    /// Whether every stack watch has listed once: before, a rollout would see a partial fleet.
    pub fn synced(&self) -> bool {
        self.unsynced.load(std::sync::atomic::Ordering::Acquire) == 0
    }

    /// The `inspect` callback of a stack watch over `namespace` (`None`: all namespaces).
    pub fn observer(
        self: &Arc<Self>,
        namespace: Option<String>,
    ) -> impl FnMut(&std::result::Result<watcher::Event<CachedStack>, watcher::Error>) + use<> {
        let members = self.clone();
        let mut listed: Option<HashSet<String>> = None;
        let mut synced = false;
        move |event| {
            let Ok(event) = event else { return };
            match event {
                watcher::Event::Apply(stack) => members.report(stack),
                watcher::Event::Delete(stack) => members.forget(&key(stack)),
                watcher::Event::Init => listed = Some(HashSet::new()),
                watcher::Event::InitApply(stack) => {
                    listed.get_or_insert_with(HashSet::new).insert(key(stack));
                    members.report(stack);
                }
                watcher::Event::InitDone => {
                    members.retain(namespace.as_deref(), &listed.take().unwrap_or_default());
                    if !std::mem::replace(&mut synced, true) {
                        members.unsynced.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                    }
                }
            }
        }
    }

    /// Records a stack as its watch shows it; a stack without `spec.blueprint` is forgotten.
    /// Wakes the blueprints concerned when anything changed.
    fn report(&self, cached: &CachedStack) {
        // Only the fields a rollout reads: the stack watch already parses each event for the
        // reference index, and every status write of a fleet passes here.
        let Some(stack) = cached.view::<StackView>() else { return };
        let key = key(cached);
        let Some(reference) = stack.spec.blueprint else { return self.forget(&key) };
        let status = stack.status.as_ref();
        let current = status.and_then(|s| s.observed_generation) == stack.metadata.generation;
        let condition =
            |type_: &str| status.and_then(|s| s.conditions.iter().find(|c| c.type_ == type_)).filter(|_| current);
        let member = Member {
            key: key.clone(),
            wanted: reference.version.clone(),
            labels: stack.metadata.labels,
            recorded: stack.metadata.annotations.get(VERSION_ANNOTATION).cloned(),
            running: status.and_then(|s| s.blueprint.as_ref()).map(|b| b.version.clone()).filter(|v| !v.is_empty()),
            ready: condition("Ready").is_some_and(|c| c.status == "True"),
            // The reason only: the message is the stack's (its namespace's) own, and the
            // blueprint is cluster-scoped, readable by people who may not read the stack.
            stalled: condition("Stalled").filter(|c| c.status == "True").map(|c| bounded(&c.reason, 64)),
            paused: stack.spec.paused,
            resource_version: stack.metadata.resource_version,
        };
        let entry = (reference.name.clone(), member);
        let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        if reported.get(&key) == Some(&entry) {
            return;
        }
        let name = entry.0.clone();
        let previous = reported.insert(key, entry);
        drop(reported);
        let names = previous.map(|(name, _)| name).into_iter().chain([name]);
        for name in names.collect::<HashSet<_>>() {
            // Full: the blueprint is woken by its resync instead.
            let _ = self.wake.try_send(name);
        }
    }

    /// Forgets the stack `key` (deleted, or no longer an instance).
    fn forget(&self, key: &str) {
        let removed = self.reported.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
        if let Some((name, _)) = removed {
            let _ = self.wake.try_send(name);
        }
    }

    /// Forgets the stacks in `namespace` (`None`: every namespace) not in `present` (a
    /// relist's result: stacks deleted while the watch was down).
    fn retain(&self, namespace: Option<&str>, present: &HashSet<String>) {
        let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        let inside = |key: &str| namespace.is_none_or(|ns| key.split('/').next() == Some(ns));
        reported.retain(|key, _| !inside(key) || present.contains(key));
    }

    /// The instances of the blueprint `name`.
    pub fn of(&self, name: &str) -> Vec<Member> {
        let reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        reported.values().filter(|(bp, _)| bp == name).map(|(_, m)| m.clone()).collect()
    }
}

/// What [`Members`] reads of a cached stack.
#[derive(serde::Deserialize)]
struct StackView {
    metadata: MetaView,
    spec: SpecView,
    #[serde(default)]
    status: Option<StatusView>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaView {
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
    generation: Option<i64>,
    resource_version: Option<String>,
}

#[derive(serde::Deserialize)]
struct SpecView {
    #[serde(default)]
    blueprint: Option<crate::api::BlueprintRef>,
    #[serde(default)]
    paused: bool,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusView {
    observed_generation: Option<i64>,
    #[serde(default)]
    conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    blueprint: Option<crate::api::BlueprintStatus>,
}

fn key(stack: &CachedStack) -> String {
    format!("{}/{}", stack.namespace().unwrap_or_default(), stack.name_any())
}

struct Context {
    writer: Writer,
    /// Whether this operator watches every namespace (else it runs only the rollouts of
    /// blueprints it sees instances of, so installations scoped to other namespaces are not
    /// overruled on blueprints they serve).
    all_namespaces: bool,
    members: Arc<Members>,
    backoff: Backoff<ObjectRef<Readable<SolutionBlueprint>>>,
    /// Revision checks by (blueprint UID, version and content digest).
    checks: Mutex<HashMap<(String, String), std::result::Result<(), String>>>,
}

/// Runs the controller until `shutdown`, woken by `woken` (from the stack watches, see
/// [`Members::observer`]). `all_namespaces`: whether those watches cover every namespace.
pub async fn run(
    client: Client,
    writer: Writer,
    members: Arc<Members>,
    woken: mpsc::Receiver<String>,
    all_namespaces: bool,
    shutdown: CancellationToken,
) {
    let api: Api<Readable<SolutionBlueprint>> = Api::all(client);
    let ctx = Arc::new(Context {
        writer,
        all_namespaces,
        members,
        backoff: Backoff::new(Duration::from_secs(1)),
        checks: Mutex::new(HashMap::new()),
    });
    let wakes = tokio_stream_of(woken).map(|name| ObjectRef::<Readable<SolutionBlueprint>>::new(&name));
    Controller::new(api, watcher::Config::default())
        .reconcile_on(wakes)
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(object = %object, "reconciled"),
                Err(error) => debug!(%error, "blueprint reconcile failed"),
            }
        })
        .await;
}

fn tokio_stream_of(mut receiver: mpsc::Receiver<String>) -> impl futures::Stream<Item = String> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

async fn reconcile(read: Arc<Readable<SolutionBlueprint>>, ctx: Arc<Context>) -> Result<Action> {
    let blueprint = match &read.object {
        Ok(blueprint) => blueprint,
        Err(reason) => {
            // Its instances say so (Stalled, InvalidBlueprint); it changes only by a new write.
            warn!(blueprint = %read.name_any(), reason, "a SolutionBlueprint cannot be read");
            return Ok(Action::await_change());
        }
    };
    let work = reconcile_inner(blueprint, &ctx);
    reconciler::reconcile(CONTROLLER, read.as_ref(), &ctx.writer.metrics, &ctx.backoff, work).await
}

fn error_policy(blueprint: Arc<Readable<SolutionBlueprint>>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = reconciler::retry_delay(CONTROLLER, blueprint.as_ref(), error, &ctx.writer.metrics, &ctx.backoff);
    Action::requeue(delay)
}

async fn reconcile_inner(blueprint: &SolutionBlueprint, ctx: &Context) -> Result<Action> {
    if !ctx.members.synced() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let uid = blueprint.uid().unwrap_or_default();
    let members = ctx.members.of(&blueprint.name_any());
    if members.is_empty() && !ctx.all_namespaces {
        return Ok(Action::await_change());
    }
    let checks: Vec<(String, std::result::Result<(), String>)> = blueprint
        .spec
        .revisions
        .iter()
        .map(|revision| {
            // By content too: a revision removed and published again under its version
            // (admission compares only entries present on both sides) is checked anew.
            let content = serde_json::to_vec(revision).map(|v| digest(&v)).unwrap_or_default();
            let key = (uid.clone(), format!("{}@{content:x}", revision.version));
            let cached = ctx.checks.lock().ok().and_then(|c| c.get(&key).cloned());
            let result = cached.unwrap_or_else(|| {
                let result = blueprint::check(revision);
                if let Ok(mut checks) = ctx.checks.lock() {
                    if checks.len() >= 4096 {
                        checks.clear();
                    }
                    checks.insert(key, result.clone());
                }
                result
            });
            (revision.version.clone(), result)
        })
        .collect();

    let now = jiff::Timestamp::now();
    let target = blueprint::target(blueprint);
    let previous = blueprint.status.as_ref().and_then(|s| s.rollout.as_ref());
    let spec = blueprint.spec.rollout.clone().unwrap_or_default();
    let invalid_target = target.as_ref().and_then(|t| {
        checks
            .iter()
            .find(|(v, _)| semver::Version::parse(v).ok().as_ref() == Some(t))
            .and_then(|(_, r)| r.clone().err())
    });
    let plan = match (&target, &invalid_target) {
        (Some(target), None) => rollout::plan(target, &spec, &members, previous, now),
        (Some(target), Some(why)) => rollout::Plan {
            status: Some(RolloutStatus {
                version: target.to_string(),
                phase: phase::HALTED.into(),
                failed: vec![bounded(&format!("revision {target}: {why}"), 512)],
                ..Default::default()
            }),
            ..Default::default()
        },
        (None, _) => rollout::Plan::default(),
    };

    let mut retry = false;
    if !plan.moves.is_empty() {
        ctx.writer.may_write()?;
        let client = ctx.writer.client.clone();
        let results: Vec<Result<bool>> = futures::stream::iter(plan.moves.clone())
            .map(|(key, version, over)| {
                let client = client.clone();
                async move { move_stack(client, &key, &version, over.as_deref()).await }
            })
            .buffer_unordered(MOVES_AT_ONCE)
            .collect()
            .await;
        let moved = results.iter().filter(|r| matches!(r, Ok(true))).count();
        info!(blueprint = %blueprint.name_any(), moved, of = plan.moves.len(), "rollout moved stacks");
        // A move that failed (or met a newer stack) does not hold the rollout's status back:
        // the wave is recorded as started, its deadline runs, and the move is tried again.
        retry = results.iter().any(|r| !matches!(r, Ok(true)));
    }

    let status = status(blueprint, &members, &checks, target.as_ref(), plan.status.clone(), &now);
    if blueprint.status.as_ref() != Some(&status) {
        ctx.writer.may_write()?;
        let api: Api<SolutionBlueprint> = Api::all(ctx.writer.client.clone());
        let patch =
            serde_json::json!({"apiVersion": "citystack.io/v1alpha1", "kind": "SolutionBlueprint", "status": status});
        api.patch_status(&blueprint.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
            .await
            .map_err(|e| Error::kube("write SolutionBlueprint status", e))?;
    }
    let wake = plan.wake_after.map_or(RESYNC, |s| Duration::from_secs(s.clamp(1, 300).unsigned_abs()));
    Ok(Action::requeue(if retry { wake.min(MOVE_RETRY) } else { wake }))
}

/// Records `version` on the stack `key` (`namespace/name`), written over resourceVersion
/// `over` only (a stack changed since, e.g. paused, is planned again first): its stack
/// controller does the rest. `Ok(false)`: not moved now (changed, gone, or refused; logged).
async fn move_stack(client: Client, key: &str, version: &str, over: Option<&str>) -> Result<bool> {
    let Some((namespace, name)) = key.split_once('/') else { return Ok(false) };
    let api: Api<crate::api::SolutionStack> = Api::namespaced(client, namespace);
    let patch =
        serde_json::json!({"metadata": {"resourceVersion": over, "annotations": {VERSION_ANNOTATION: version}}});
    match api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(true),
        // Changed since it was seen, or deleted: its watch event replans the rollout.
        Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => Ok(false),
        Err(error) => {
            warn!(stack = key, error = %crate::error::Error::kube("move", error), "rollout could not move a stack");
            Ok(false)
        }
    }
}

/// The blueprint's status (pure but for the time given).
fn status(
    blueprint: &SolutionBlueprint,
    members: &[Member],
    checks: &[(String, std::result::Result<(), String>)],
    target: Option<&semver::Version>,
    rollout: Option<RolloutStatus>,
    now: &jiff::Timestamp,
) -> SolutionBlueprintStatus {
    let version_of = |m: &Member| m.recorded.clone().or_else(|| m.running.clone()).or_else(|| Some(m.wanted.clone()));
    let ready_on =
        |m: &Member, v: &str| m.running.as_deref() == Some(v) && m.ready && version_of(m).as_deref() == Some(v);
    let mut revisions: Vec<RevisionStatus> = checks
        .iter()
        .map(|(version, check)| {
            let on: Vec<&Member> =
                members.iter().filter(|m| version_of(m).as_deref() == Some(version.as_str())).collect();
            RevisionStatus {
                version: version.clone(),
                valid: check.is_ok(),
                message: check.clone().err().map(|e| bounded(&e, 512)),
                instances: count(on.len()),
                ready: count(on.iter().filter(|m| ready_on(m, version)).count()),
                updating: count(on.iter().filter(|m| !ready_on(m, version) && m.stalled.is_none()).count()),
                failed: count(on.iter().filter(|m| m.stalled.is_some()).count()),
            }
        })
        .collect();
    revisions.sort_by(|a, b| match (semver::Version::parse(&a.version), semver::Version::parse(&b.version)) {
        (Ok(a), Ok(b)) => b.cmp(&a),
        _ => b.version.cmp(&a.version),
    });
    let target_text = target.map(ToString::to_string);
    let updated = members.iter().filter(|m| target_text.is_some() && version_of(m) == target_text).count();
    let verdict = match &rollout {
        Some(r) if r.phase == phase::HALTED => Verdict::Stalled {
            reason: "RolloutHalted".into(),
            message: format!("the rollout to {} halted: {}", r.version, r.failed.join("; ")),
        },
        Some(r) if r.phase == phase::PAUSED => {
            Verdict::Progressing { reason: "Paused".into(), message: format!("the rollout to {} is paused", r.version) }
        }
        Some(r) if r.phase == phase::COMPLETE => Verdict::Ready {
            reason: "RolledOut".into(),
            message: format!("every tracking instance runs {}", r.version),
        },
        Some(r) => Verdict::Progressing {
            reason: "RollingOut".into(),
            message: format!("rolling out {}: wave {} ({})", r.version, r.wave, r.phase),
        },
        None => Verdict::Ready { reason: "Published".into(), message: String::new() },
    };
    let generation = blueprint.metadata.generation;
    let previous = blueprint.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::from_second(now.as_second()).unwrap_or_default(),
    );
    let conditions: [ConditionSpec; 3] = verdict.conditions();
    SolutionBlueprintStatus {
        observed_generation: generation,
        latest_version: blueprint::versions(blueprint).into_iter().find(|v| v.pre.is_empty()).map(|v| v.to_string()),
        instances: count(members.len()),
        updated: count(updated),
        ready: count(members.iter().filter(|m| m.ready).count()),
        revisions,
        rollout,
        conditions: merge_conditions(previous, &conditions, generation, &now),
    }
}

fn digest(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
