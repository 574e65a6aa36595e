//! Plumbing both controllers share: the writer (client, leader gate, metrics), the reconcile
//! wrapper (span, metrics, backoff, not-leader), the error policy's delay, the status write
//! with its Event on a Ready change, the kstatus condition triple computed from one verdict,
//! the cache's stripping of managedFields, and the clock.
//!
//! kstatus (sigs.k8s.io/cli-utils, "kstatus") reads `Ready`, `Reconciling` and `Stalled`: an
//! object is Current when Ready is True and neither Reconciling nor Stalled is; InProgress while
//! Reconciling is True; Failed while Stalled is True. One [`Verdict`] gives all three, so they
//! can never disagree.

use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{Instrument, info, info_span, warn};

use crate::api::{AzureResource, AzureResourceStatus, ConditionSpec, SolutionStack, SolutionStackStatus};
use crate::backoff::Backoff;
use crate::error::{Category, Error, Result, bounded};
use crate::events::Recorder;
use crate::leader::{LeaderGate, NOT_LEADER_RETRY};
use crate::naming::FIELD_MANAGER;
use crate::telemetry::Metrics;

/// What every write needs: the client, the leader gate and the metrics.
#[derive(Clone)]
pub struct Writer {
    /// The Kubernetes client.
    pub client: Client,
    /// Only the leader writes.
    pub gate: LeaderGate,
    /// Apply outcomes are counted here.
    pub metrics: Metrics,
}

impl Writer {
    /// Errors: `NotLeader` when this instance must not write now.
    pub fn may_write(&self) -> Result<()> {
        if self.gate.is_leader() { Ok(()) } else { Err(Error::NotLeader) }
    }
}

/// A custom resource with a kstatus status: what [`write_status`] needs to know.
pub trait WithStatus:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + Debug + DeserializeOwned + Serialize
{
    /// The status type.
    type Status: Serialize + PartialEq;
    /// The recorded status.
    fn status(&self) -> Option<&Self::Status>;
    /// The conditions of a status.
    fn conditions(status: &Self::Status) -> &[Condition];
}

impl WithStatus for SolutionStack {
    type Status = SolutionStackStatus;
    fn status(&self) -> Option<&SolutionStackStatus> {
        self.status.as_ref()
    }
    fn conditions(status: &SolutionStackStatus) -> &[Condition] {
        &status.conditions
    }
}

impl WithStatus for AzureResource {
    type Status = AzureResourceStatus;
    fn status(&self) -> Option<&AzureResourceStatus> {
        self.status.as_ref()
    }
    fn conditions(status: &AzureResourceStatus) -> &[Condition] {
        &status.conditions
    }
}

/// Runs one reconcile of `object` inside a span, counting it in the metrics: a success resets
/// the object's backoff; a refusal as not-leader is re-queued after [`NOT_LEADER_RETRY`]
/// (never dropped).
pub async fn reconcile<K, F>(
    controller: &'static str,
    object: &K,
    metrics: &Metrics,
    backoff: &Backoff<ObjectRef<K>>,
    work: F,
) -> Result<Action>
where
    K: Resource<DynamicType = ()>,
    ObjectRef<K>: Hash + Eq,
    F: Future<Output = Result<Action>>,
{
    let span = info_span!(
        "reconcile",
        controller,
        object.namespace = object.namespace().unwrap_or_default(),
        object.name = object.name_any(),
        generation = object.meta().generation.unwrap_or(0)
    );
    async move {
        let started = Instant::now();
        metrics.reconcile_started(controller);
        let result = match work.await {
            Err(Error::NotLeader) => Ok(Action::requeue(NOT_LEADER_RETRY)),
            other => other,
        };
        metrics.reconcile_finished(controller, started.elapsed());
        if result.is_ok() {
            backoff.succeeded(&ObjectRef::from_obj(object));
        }
        result
    }
    .instrument(span)
    .await
}

/// The error policy's delay for a failed reconcile of `object`: its exponential backoff, or
/// the error's `Retry-After` when that is longer (a throttled subscription is never called
/// early). Counts the failure and logs it (category and message; never a secret value).
pub fn retry_delay<K>(
    controller: &'static str,
    object: &K,
    error: &Error,
    metrics: &Metrics,
    backoff: &Backoff<ObjectRef<K>>,
) -> Duration
where
    K: Resource<DynamicType = ()>,
    ObjectRef<K>: Hash + Eq,
{
    let category = error.category();
    metrics.reconcile_failed(controller, category);
    // A throttle names its own wait (ARM's Retry-After, or our budget's next token): waiting
    // longer each time would starve objects that lost the race for tokens while the budget
    // refills, so they retry after that wait, spread by up to a second so they do not all
    // come back at once.
    let delay = match error.retry_after() {
        Some(after) => after + Duration::from_millis(rand::Rng::random_range(&mut rand::rng(), 0..=1000)),
        None => backoff.failed(ObjectRef::from_obj(object)),
    };
    let (namespace, name, retry_in_seconds) =
        (object.namespace().unwrap_or_default(), object.name_any(), delay.as_secs_f64());
    if category == Category::AzureThrottled {
        // Expected under load (our budget or ARM's pacing), and retried at the named time.
        info!(controller, object.namespace = namespace, object.name = name, %category, %error, retry_in_seconds, "reconcile throttled");
    } else {
        warn!(controller, object.namespace = namespace, object.name = name, %category, %error, retry_in_seconds, "reconcile failed");
    }
    delay
}

/// Writes `status` with server-side apply under the field manager, only when it differs from
/// the recorded one, then publishes one Event if the Ready reason changed (Normal for Ready and
/// for `normal_reasons`, Warning otherwise).
///
/// Returns the object as the API server stored it when a write was sent (`None`: the
/// recorded status is already `status`).
///
/// Errors: `NotLeader`; the status patch fails.
pub async fn write_status<K: WithStatus>(
    writer: &Writer,
    recorder: &Recorder,
    object: &K,
    status: &K::Status,
    normal_reasons: &[&str],
) -> Result<Option<K>> {
    if object.status() == Some(status) {
        return Ok(None);
    }
    writer.may_write()?;
    let api: Api<K> = Api::namespaced(writer.client.clone(), &object.namespace().unwrap_or_default());
    // Server-side apply removes only fields this manager owns: a field someone else wrote
    // (e.g. status.operation) and that the new status leaves out is sent empty (null, [] or
    // {}), which takes it over and clears it. Status is computed here, never taken from others.
    let mut body = serde_json::to_value(status).map_err(|e| Error::encoding(format!("{} status", K::kind(&())), e))?;
    if let (Some(serde_json::Value::Object(previous)), Some(new)) =
        (object.status().and_then(|s| serde_json::to_value(s).ok()), body.as_object_mut())
    {
        for (key, value) in previous {
            // The same JSON type, emptied: a list or map must stay one for readers.
            let empty = match value {
                serde_json::Value::Array(_) => serde_json::json!([]),
                serde_json::Value::Object(_) => serde_json::json!({}),
                _ => serde_json::Value::Null,
            };
            new.entry(key.clone()).or_insert(empty);
        }
    }
    let patch = serde_json::json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": body});
    let written = api
        .patch_status(&object.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(|e| Error::kube(format!("write {} status", K::kind(&())), e))?;
    let previous = object.status().map(K::conditions).unwrap_or_default();
    if let Some(event) = ready_change_event(previous, K::conditions(status), normal_reasons) {
        publish(recorder, object, event);
    }
    Ok(Some(written))
}

/// Queues an Event about `object` (see [`Recorder::publish`]: never waits, best effort).
pub fn publish<K: Resource<DynamicType = ()>>(recorder: &Recorder, object: &K, event: Event) {
    recorder.publish(event, object.object_ref(&()));
}

/// Predicate for a controller's own objects: changes only when something the reconcile acts on
/// changes (generation, i.e. the spec; annotations; finalizers; deletion), never for a status
/// write. Without it each status write wakes the object again, and a status that differs at
/// every turn (a countdown) would turn into a write loop. Use with `predicate_filter`.
pub fn intent<K: Resource>(object: &K) -> Option<u64> {
    use std::hash::{DefaultHasher, Hasher};
    let meta = object.meta();
    let mut hasher = DefaultHasher::new();
    meta.generation.hash(&mut hasher);
    meta.annotations.hash(&mut hasher);
    meta.finalizers.hash(&mut hasher);
    meta.deletion_timestamp.is_some().hash(&mut hasher);
    Some(hasher.finish())
}

/// The API of a namespaced kind in `namespace`, or in all namespaces for `None`.
pub fn api<K>(client: Client, namespace: &Option<String>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    }
}

/// Whether a cached object keeps this annotation (see [`strip`]).
pub fn kept_annotation(key: &str) -> bool {
    key.starts_with("citystack.io/") || key == crate::ownership::HELM_RELEASE
}

/// Drops what reconciles never read from cached objects: managedFields, and every annotation
/// but ours (`citystack.io/`) and Helm's release name (named in ownership conflicts). Above
/// all `kubectl.kubernetes.io/last-applied-configuration`: a second copy of the object, which
/// on a Secret holds its data in clear text and must never sit in a cache.
pub fn strip<K: Resource>(object: &mut K) {
    // None rather than an emptied list, whose buffer would stay allocated.
    object.meta_mut().managed_fields = None;
    let annotations = object.annotations_mut();
    annotations.retain(|key, _| kept_annotation(key));
    if annotations.is_empty() {
        object.meta_mut().annotations = None;
    }
}

/// Reason of `Stalled=False`.
pub const NOT_STALLED: &str = "NotStalled";

/// What one reconcile concluded about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Converged: Ready=True.
    Ready {
        /// PascalCase reason, e.g. `Provisioned`.
        reason: String,
        /// Detail.
        message: String,
    },
    /// Work under way or a transient failure being retried: Ready=False, Reconciling=True.
    Progressing {
        /// PascalCase reason, e.g. `Provisioning` or an error category.
        reason: String,
        /// Detail.
        message: String,
    },
    /// Needs a person (a spec change, a credential, another owner's resource): Ready=False,
    /// Stalled=True.
    Stalled {
        /// PascalCase reason: an error category.
        reason: String,
        /// What, where, what to do.
        message: String,
    },
}

impl Verdict {
    /// The Ready, Reconciling and Stalled conditions for this verdict (kstatus).
    pub fn conditions(&self) -> [ConditionSpec; 3] {
        match self {
            Verdict::Ready { reason, message } => [
                ConditionSpec::new("Ready", true, reason.clone(), message.clone()),
                ConditionSpec::new("Reconciling", false, "Converged", ""),
                ConditionSpec::new("Stalled", false, NOT_STALLED, ""),
            ],
            Verdict::Progressing { reason, message } => [
                ConditionSpec::new("Ready", false, reason.clone(), message.clone()),
                ConditionSpec::new("Reconciling", true, reason.clone(), message.clone()),
                ConditionSpec::new("Stalled", false, NOT_STALLED, ""),
            ],
            Verdict::Stalled { reason, message } => [
                ConditionSpec::new("Ready", false, reason.clone(), message.clone()),
                ConditionSpec::new("Reconciling", false, reason.clone(), ""),
                ConditionSpec::new("Stalled", true, reason.clone(), message.clone()),
            ],
        }
    }

    /// The verdict's reason.
    pub fn reason(&self) -> &str {
        match self {
            Verdict::Ready { reason, .. } | Verdict::Progressing { reason, .. } | Verdict::Stalled { reason, .. } => {
                reason
            }
        }
    }
}

/// The Event to publish when the Ready condition's reason changed from `previous` to `now`
/// (one Event per change, not per reconcile): Normal when Ready or progressing normally,
/// Warning otherwise. An object's first status that only says work is under way (a normal
/// reason, not Ready) is no change and gets none: the object was just created, and an Event
/// is a write to the API server (one of ~10 per stack while a fleet rolls out). The note is
/// bounded to 1 KiB (Events API limit).
pub fn ready_change_event(previous: &[Condition], now: &[Condition], normal_reasons: &[&str]) -> Option<Event> {
    let ready = |conditions: &[Condition]| conditions.iter().find(|c| c.type_ == "Ready").cloned();
    let (before, after) = (ready(previous), ready(now)?);
    if before.as_ref().map(|c| &c.reason) == Some(&after.reason) {
        return None;
    }
    let normal = after.status == "True" || normal_reasons.contains(&after.reason.as_str());
    if before.is_none() && normal && after.status != "True" {
        return None;
    }
    Some(Event {
        type_: if normal { EventType::Normal } else { EventType::Warning },
        reason: after.reason.clone(),
        note: Some(bounded(&after.message, 1024)),
        action: "Reconcile".into(),
        secondary: None,
    })
}

/// The current time, whole seconds (condition timestamps carry seconds).
pub fn now() -> Time {
    Time(jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::merge_conditions;

    fn statuses(v: &Verdict) -> [bool; 3] {
        v.conditions().map(|c| c.status)
    }

    #[test]
    fn only_what_the_reconcile_acts_on_wakes_an_object() {
        let object: AzureResource = serde_json::from_value(serde_json::json!({
            "apiVersion": "citystack.io/v1alpha1", "kind": "AzureResource",
            "metadata": {"name": "db", "namespace": "ns", "generation": 1},
            "spec": {"kind": "ResourceGroup", "name": "rg"}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let before = intent(&object);
        let mut written = object.clone();
        written.status = Some(AzureResourceStatus { azure_name: Some("rg".into()), ..Default::default() });
        written.metadata.resource_version = Some("7".into());
        assert_eq!(intent(&written), before, "a status write alone");
        let changes: [fn(&mut AzureResource); 4] = [
            |o| o.metadata.generation = Some(2),
            |o| {
                o.annotations_mut().insert("citystack.io/abandon".into(), "true".into());
            },
            |o| o.finalizers_mut().push("citystack.io/azure".into()),
            |o| o.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH)),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut changed = object.clone();
            change(&mut changed);
            assert_ne!(intent(&changed), before, "change {i}");
        }
    }

    #[test]
    fn one_verdict_gives_a_consistent_triple() {
        let r = |s: &str| s.to_owned();
        assert_eq!(statuses(&Verdict::Ready { reason: r("Provisioned"), message: r("") }), [true, false, false]);
        assert_eq!(statuses(&Verdict::Progressing { reason: r("Provisioning"), message: r("") }), [false, true, false]);
        assert_eq!(statuses(&Verdict::Stalled { reason: r("AzureConflict"), message: r("x") }), [false, false, true]);
    }

    #[test]
    fn an_event_per_ready_reason_change_only() {
        let t = now();
        let progressing = Verdict::Progressing { reason: "Provisioning".into(), message: "m".into() };
        let stalled = Verdict::Stalled { reason: "AzureConflict".into(), message: "owned by x".into() };
        let a = merge_conditions(&[], &progressing.conditions(), Some(1), &t);
        let b = merge_conditions(&a, &stalled.conditions(), Some(1), &t);
        // A first status that only says work is under way: no Event; a first failure or a
        // first Ready: one.
        assert!(ready_change_event(&[], &a, &["Provisioning"]).is_none());
        let first_failure = ready_change_event(&[], &b, &["Provisioning"]);
        assert_eq!(first_failure.map(|e| e.type_), Some(EventType::Warning));
        let ready = Verdict::Ready { reason: "Provisioned".into(), message: "m".into() };
        let c = merge_conditions(&[], &ready.conditions(), Some(1), &t);
        assert_eq!(ready_change_event(&[], &c, &["Provisioning"]).map(|e| e.type_), Some(EventType::Normal));
        assert!(ready_change_event(&a, &a, &["Provisioning"]).is_none());
        let warning = ready_change_event(&a, &b, &["Provisioning"]);
        assert_eq!(warning.as_ref().map(|e| (e.type_, e.reason.as_str())), Some((EventType::Warning, "AzureConflict")));
        let recovered = ready_change_event(&b, &a, &["Provisioning"]);
        assert_eq!(recovered.map(|e| e.type_), Some(EventType::Normal));
    }
}
