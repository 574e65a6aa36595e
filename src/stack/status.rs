//! Observed children → status and conditions. Pure.
//!
//! Conditions follow the kstatus rules Flux uses (sigs.k8s.io/cli-utils kstatus): a stack is
//! Current when `observedGeneration` equals `metadata.generation` and neither `Reconciling`
//! nor `Stalled` is True. So Ready=False always comes with Reconciling=True (rolling out,
//! waiting, retrying) or Stalled=True (needs a change).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::api::{
    BindingStatus, ComponentState, ComponentStatus, ConditionSpec, SolutionStack, SolutionStackStatus, merge_conditions,
};
use crate::error::{Category, Error};
use crate::stack::resolve::BindingState;

/// Reason of Ready=True.
pub const REASON_AVAILABLE: &str = "Available";
/// Reason while Deployments roll out.
pub const REASON_ROLLING_OUT: &str = "RollingOut";
/// Reason while components wait for their dependencies.
pub const REASON_WAITING: &str = "WaitingForDependency";
/// Reason when a Deployment exceeded its progress deadline.
pub const REASON_DEADLINE: &str = "ProgressDeadlineExceeded";
/// Reason while Azure bindings are being provisioned (all components ready).
pub const REASON_PROVISIONING: &str = "Provisioning";
/// Reason of the Paused condition.
pub const REASON_PAUSED: &str = "Paused";

/// What happened to one component in this reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Its children were applied (or already converged).
    Applied,
    /// Held back: each entry names a dependency and why it is not Ready.
    Held(Vec<(String, String)>),
    /// A child could not be written: a name another owner holds (`Conflict`), a child the API
    /// server refuses (`KubeRejected`), or a transient failure being retried.
    Failed {
        /// The error's category.
        category: Category,
        /// The error's message (names the child and the field).
        message: String,
    },
}

/// Everything status computation looks at.
pub struct Observation<'a> {
    /// The stack as read at the start of the reconcile.
    pub stack: &'a SolutionStack,
    /// The spec-level failure that stops the reconcile (invalid spec, cycle), if any.
    pub spec_error: Option<&'a Error>,
    /// The first child that needs a person (a conflict, a refused child), if any.
    pub child_error: Option<&'a Error>,
    /// A transient failure of this reconcile (API error), if any.
    pub transient_error: Option<&'a Error>,
    /// The state of each binding, by name.
    pub bindings: &'a BTreeMap<String, BindingState>,
    /// The plan for each component, by name (absent when the reconcile stopped early).
    pub plans: &'a BTreeMap<String, Plan>,
    /// The observed Deployment of each component, by component name.
    pub deployments: &'a BTreeMap<String, Deployment>,
    /// The Service DNS name of each component that has a Service.
    pub services: &'a BTreeMap<String, String>,
    /// The blueprint revision the stack runs, when it instantiates one.
    pub blueprint: Option<&'a crate::api::BlueprintStatus>,
}

/// Whether a Deployment has its current generation rolled out and available, as
/// `kubectl rollout status` decides it.
///
/// Errors: a short description of what is still missing; `Err(None)`-like states are
/// reported as text. `Stalled(..)` when the rollout exceeded `progressDeadlineSeconds`.
pub fn rollout(deployment: &Deployment) -> Rollout {
    let generation = deployment.metadata.generation.unwrap_or(0);
    let Some(status) = deployment.status.as_ref() else {
        return Rollout::Progressing("waiting for the Deployment controller".into());
    };
    if status.observed_generation.unwrap_or(0) < generation {
        return Rollout::Progressing(format!(
            "waiting for the Deployment controller to observe generation {generation}"
        ));
    }
    let deadline = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Progressing" && c.status == "False" && c.reason.as_deref() == Some(REASON_DEADLINE));
    if deadline {
        return Rollout::Failed(format!("Deployment {} exceeded its progress deadline", deployment.name_any()));
    }
    let want = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < want {
        return Rollout::Progressing(format!("{updated} of {want} replicas updated"));
    }
    if replicas > updated {
        return Rollout::Progressing(format!("{} old replicas pending termination", replicas - updated));
    }
    if available < updated {
        return Rollout::Progressing(format!("{available} of {updated} updated replicas available"));
    }
    Rollout::Complete
}

/// The rollout state of a Deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rollout {
    /// Current generation rolled out and available.
    Complete,
    /// Still rolling out; says what is missing.
    Progressing(String),
    /// Exceeded its progress deadline; needs a change.
    Failed(String),
}

/// Computes the full status, merging conditions over the previous ones at time `now`.
pub fn compute(obs: &Observation<'_>, now: &Time) -> SolutionStackStatus {
    let stack = obs.stack;
    let components: Vec<ComponentStatus> =
        stack.spec.components.iter().map(|c| component_status(obs, &c.name)).collect();
    let bindings: Vec<BindingStatus> = stack
        .spec
        .bindings
        .iter()
        .map(|b| {
            let mut status = BindingStatus {
                name: b.name.clone(),
                source: match (&b.secret_ref, &b.azure) {
                    (Some(_), _) => "secretRef",
                    (None, Some(_)) => "azure",
                    (None, None) => "azureResourceRef",
                }
                .into(),
                secret_name: match obs.bindings.get(&b.name) {
                    Some(BindingState::Ready(resolved)) => Some(resolved.secret_name.clone()),
                    _ => b.secret_ref.as_ref().map(|r| r.name.clone()),
                },
                ready: false,
                reason: None,
                message: None,
            };
            match obs.bindings.get(&b.name) {
                Some(BindingState::Ready(_)) => status.ready = true,
                Some(BindingState::Pending { message }) => {
                    status.reason = Some("Provisioning".into());
                    status.message = Some(message.clone());
                }
                Some(BindingState::NotReady { category, message }) => {
                    status.reason = Some(category.as_str().into());
                    status.message = Some(message.clone());
                }
                Some(BindingState::Stalled { reason, message }) => {
                    status.reason = Some(reason.clone());
                    status.message = Some(message.clone());
                }
                None => status.reason = Some("Unresolved".into()),
            }
            status
        })
        .collect();
    let ready_count = components.iter().filter(|c| c.state == ComponentState::Ready).count();
    let conditions = conditions(obs, &components, ready_count);
    let previous = stack.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    SolutionStackStatus {
        observed_generation: stack.metadata.generation,
        conditions: merge_conditions(previous, &conditions, stack.metadata.generation, now),
        ready: Some(format!("{ready_count}/{}", components.len())),
        components,
        bindings,
        blueprint: obs.blueprint.cloned(),
    }
}

fn component_status(obs: &Observation<'_>, name: &str) -> ComponentStatus {
    let mut status =
        ComponentStatus { name: name.into(), service: obs.services.get(name).cloned(), ..Default::default() };
    let deployment = obs.deployments.get(name);
    if let Some(s) = deployment.and_then(|d| d.status.as_ref()) {
        status.replicas = s.replicas.unwrap_or(0);
        status.ready_replicas = s.ready_replicas.unwrap_or(0);
        status.updated_replicas = s.updated_replicas.unwrap_or(0);
    }
    match obs.plans.get(name) {
        Some(Plan::Held(waits)) => {
            status.state = ComponentState::Waiting;
            status.waiting_for = waits.iter().map(|(dep, _)| dep.clone()).collect();
            status.message =
                Some(waits.iter().map(|(dep, why)| format!("{dep}: {why}")).collect::<Vec<_>>().join("; "));
            return status;
        }
        Some(Plan::Failed { category, message }) => {
            status.state = match category {
                Category::Conflict => ComponentState::Conflict,
                c if c.stalls() => ComponentState::Failed,
                _ => ComponentState::Progressing,
            };
            status.message = Some(if category.stalls() { message.clone() } else { format!("retrying: {message}") });
            return status;
        }
        Some(Plan::Applied) | None => {}
    }
    match deployment.map(rollout) {
        None => {
            status.state = ComponentState::Progressing;
            status.message = Some("Deployment not created yet".into());
        }
        Some(Rollout::Complete) => status.state = ComponentState::Ready,
        Some(Rollout::Progressing(why)) => {
            status.state = ComponentState::Progressing;
            status.message = Some(why);
        }
        Some(Rollout::Failed(why)) => {
            status.state = ComponentState::Failed;
            status.message = Some(why);
        }
    }
    status
}

/// Reason and message of the Reconciling or Stalled condition, when it is True.
type Verdict = Option<(String, String)>;

/// The first binding whose AzureResource is Stalled: (binding, reason, message).
fn stalled_binding(obs: &Observation<'_>) -> Option<(String, String, String)> {
    obs.bindings.iter().find_map(|(name, state)| match state {
        BindingState::Stalled { reason, message } => Some((name.clone(), reason.clone(), message.clone())),
        _ => None,
    })
}

fn conditions(obs: &Observation<'_>, components: &[ComponentStatus], ready_count: usize) -> Vec<ConditionSpec> {
    let total = components.len();
    let not_ready: Vec<String> = components
        .iter()
        .filter(|c| c.state != ComponentState::Ready)
        .map(|c| format!("{}: {}", c.name, c.message.as_deref().unwrap_or("not ready")))
        .collect();
    let summary = format!("{ready_count}/{total} components ready");
    let detail = if not_ready.is_empty() { summary.clone() } else { format!("{summary}; {}", not_ready.join("; ")) };

    let unready_azure: Vec<String> = obs
        .stack
        .spec
        .bindings
        .iter()
        .filter(|b| b.secret_ref.is_none())
        .filter_map(|b| match obs.bindings.get(&b.name) {
            Some(BindingState::Ready(_)) => None,
            Some(BindingState::Pending { message } | BindingState::NotReady { message, .. }) => {
                Some(format!("{}: {message}", b.name))
            }
            Some(BindingState::Stalled { message, .. }) => Some(format!("{}: {message}", b.name)),
            None => Some(format!("{}: not resolved", b.name)),
        })
        .collect();

    // Order of precedence: a spec that needs a change, a child that cannot be written, a
    // failed rollout, a stalled binding, a
    // transient error, waiting, rolling out, ready.
    let (ready, reconciling, stalled): (ConditionSpec, Verdict, Verdict) = if let Some(error) =
        obs.spec_error.or(obs.child_error)
    {
        let reason = error.category().as_str().to_owned();
        (ConditionSpec::new("Ready", false, reason.clone(), error.to_string()), None, Some((reason, error.to_string())))
    } else if let Some(failed) = components.iter().find(|c| c.state == ComponentState::Failed) {
        let message = format!("{}: {}", failed.name, failed.message.as_deref().unwrap_or_default());
        (
            ConditionSpec::new("Ready", false, REASON_DEADLINE, detail.clone()),
            None,
            Some((REASON_DEADLINE.into(), message)),
        )
    } else if let Some((name, reason, message)) = stalled_binding(obs) {
        // An AzureResource that needs a person makes every stack binding it need one too.
        let message = format!("binding {name}: {message}");
        (ConditionSpec::new("Ready", false, reason.clone(), message.clone()), None, Some((reason, message)))
    } else if let Some(error) = obs.transient_error {
        let reason = error.category().as_str().to_owned();
        let message = format!("retrying: {error}");
        (ConditionSpec::new("Ready", false, reason.clone(), message.clone()), Some((reason, message)), None)
    } else if ready_count == total && unready_azure.is_empty() {
        (ConditionSpec::new("Ready", true, REASON_AVAILABLE, summary), None, None)
    } else if ready_count == total {
        // An Azure binding counts toward Ready even when no component uses it yet.
        let message = format!("{summary}; waiting for Azure bindings: {}", unready_azure.join("; "));
        (
            ConditionSpec::new("Ready", false, REASON_PROVISIONING, message.clone()),
            Some((REASON_PROVISIONING.into(), message)),
            None,
        )
    } else {
        let waiting = components.iter().any(|c| c.state == ComponentState::Waiting);
        let missing = obs
            .bindings
            .values()
            .any(|b| matches!(b, BindingState::NotReady { category: Category::MissingReference, .. }));
        let reason = match (waiting, missing) {
            (true, true) => Category::MissingReference.as_str(),
            (true, false) => REASON_WAITING,
            _ => REASON_ROLLING_OUT,
        };
        (ConditionSpec::new("Ready", false, reason, detail.clone()), Some((reason.into(), detail)), None)
    };

    let paused = obs.stack.spec.paused;
    let mut out = vec![ready];
    out.push(match (reconciling, paused) {
        (Some((reason, message)), false) => ConditionSpec::new("Reconciling", true, reason, message),
        _ => ConditionSpec::new("Reconciling", false, if paused { REASON_PAUSED } else { "Converged" }, ""),
    });
    out.push(match stalled {
        Some((reason, message)) => ConditionSpec::new("Stalled", true, reason, message),
        None => ConditionSpec::new("Stalled", false, "NotStalled", ""),
    });
    if paused {
        out.push(ConditionSpec::new(
            "Paused",
            true,
            REASON_PAUSED,
            "spec.paused is true: the operator writes nothing but status",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentSpec, DeploymentStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn stack(components: &[&str]) -> SolutionStack {
        let components: Vec<_> = components.iter().map(|c| serde_json::json!({"name": c, "image": "x"})).collect();
        let mut stack: SolutionStack = serde_json::from_value(serde_json::json!({
            "apiVersion": "citystack.io/v1alpha1", "kind": "SolutionStack",
            "metadata": {"name": "s", "namespace": "n", "generation": 3},
            "spec": {"components": components}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        stack.status = None;
        stack
    }

    fn deployment(generation: i64, observed: i64, want: i32, updated: i32, available: i32) -> Deployment {
        Deployment {
            metadata: ObjectMeta { name: Some("d".into()), generation: Some(generation), ..Default::default() },
            spec: Some(DeploymentSpec { replicas: Some(want), ..Default::default() }),
            status: Some(DeploymentStatus {
                observed_generation: Some(observed),
                replicas: Some(updated),
                updated_replicas: Some(updated),
                available_replicas: Some(available),
                ready_replicas: Some(available),
                ..Default::default()
            }),
        }
    }

    fn at(s: i64) -> Time {
        Time(jiff::Timestamp::from_second(s).unwrap_or_default())
    }

    fn cond<'a>(
        status: &'a SolutionStackStatus,
        type_: &str,
    ) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("no {type_}"))
    }

    fn observe(
        stack: &SolutionStack,
        deployments: BTreeMap<String, Deployment>,
        plans: BTreeMap<String, Plan>,
    ) -> SolutionStackStatus {
        let bindings = BTreeMap::new();
        let services = BTreeMap::new();
        let obs = Observation {
            stack,
            spec_error: None,
            blueprint: None,
            child_error: None,
            transient_error: None,
            bindings: &bindings,
            plans: &plans,
            deployments: &deployments,
            services: &services,
        };
        compute(&obs, &at(100))
    }

    #[test]
    fn azure_bindings_count_toward_ready_and_stall_the_stack() {
        let mut s = stack(&["a"]);
        s.spec.bindings = serde_json::from_value(serde_json::json!([
            {"name": "cache", "azure": {"kind": "RedisCache"}},
        ]))
        .unwrap_or_else(|e| panic!("{e}"));
        let deployments = BTreeMap::from([("a".to_owned(), deployment(2, 2, 2, 2, 2))]);
        let (plans, services) = (BTreeMap::new(), BTreeMap::new());
        let with = |state: BindingState| {
            let bindings = BTreeMap::from([("cache".to_owned(), state)]);
            compute(
                &Observation {
                    stack: &s,
                    spec_error: None,
                    blueprint: None,
                    child_error: None,
                    transient_error: None,
                    bindings: &bindings,
                    plans: &plans,
                    deployments: &deployments,
                    services: &services,
                },
                &at(100),
            )
        };
        // Component a does not use the binding; the stack is still not Ready without it.
        let pending =
            with(BindingState::Pending { message: "AzureResource s-cache: provisioningState Creating".into() });
        assert_eq!(cond(&pending, "Ready").status, "False");
        assert_eq!(cond(&pending, "Reconciling").status, "True");
        assert!(cond(&pending, "Ready").message.contains("s-cache"), "{:?}", cond(&pending, "Ready"));
        let stalled = with(BindingState::Stalled {
            reason: "AzureRejected".into(),
            message: "AzureResource s-cache is Stalled: AzureRejected: PUT x: ARM 400 InvalidSku: no".into(),
        });
        let c = cond(&stalled, "Stalled");
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "AzureRejected"));
        assert!(c.message.contains("binding cache") && c.message.contains("InvalidSku"), "{c:?}");
        assert_eq!(cond(&stalled, "Reconciling").status, "False");
        assert_eq!(stalled.bindings[0].reason.as_deref(), Some("AzureRejected"));
    }

    #[test]
    fn all_rolled_out_is_ready() {
        let s = stack(&["a"]);
        let status = observe(&s, BTreeMap::from([("a".into(), deployment(2, 2, 2, 2, 2))]), BTreeMap::new());
        assert_eq!(cond(&status, "Ready").status, "True");
        assert_eq!(cond(&status, "Reconciling").status, "False");
        assert_eq!(cond(&status, "Stalled").status, "False");
        assert_eq!(status.ready.as_deref(), Some("1/1"));
        assert_eq!(status.observed_generation, Some(3));
    }

    #[test]
    fn unobserved_generation_is_not_ready() {
        let s = stack(&["a"]);
        let status = observe(&s, BTreeMap::from([("a".into(), deployment(3, 2, 2, 2, 2))]), BTreeMap::new());
        assert_eq!(cond(&status, "Ready").status, "False");
        assert_eq!(cond(&status, "Reconciling").status, "True");
        assert_eq!(cond(&status, "Ready").reason, REASON_ROLLING_OUT);
    }

    #[test]
    fn waiting_component_is_reconciling() {
        let s = stack(&["a", "b"]);
        let plans =
            BTreeMap::from([("b".to_string(), Plan::Held(vec![("a".into(), "1 of 2 replicas updated".into())]))]);
        let status = observe(&s, BTreeMap::from([("a".into(), deployment(1, 1, 2, 1, 1))]), plans);
        assert_eq!(cond(&status, "Ready").reason, REASON_WAITING);
        assert_eq!(cond(&status, "Reconciling").status, "True");
        assert_eq!(status.components[1].state, ComponentState::Waiting);
        assert_eq!(status.components[1].waiting_for, ["a"]);
    }

    #[test]
    fn progress_deadline_is_stalled() {
        let s = stack(&["a"]);
        let mut d = deployment(1, 1, 2, 1, 0);
        if let Some(st) = d.status.as_mut() {
            st.conditions = Some(vec![DeploymentCondition {
                type_: "Progressing".into(),
                status: "False".into(),
                reason: Some(REASON_DEADLINE.into()),
                ..Default::default()
            }]);
        }
        let status = observe(&s, BTreeMap::from([("a".into(), d)]), BTreeMap::new());
        assert_eq!(cond(&status, "Stalled").status, "True");
        assert_eq!(cond(&status, "Reconciling").status, "False");
        assert_eq!(cond(&status, "Ready").reason, REASON_DEADLINE);
    }

    #[test]
    fn spec_error_is_stalled_with_category() {
        let s = stack(&["a"]);
        let error = Error::DependencyCycle("a -> b -> a".into());
        let (bindings, plans, deployments, services) =
            (BTreeMap::new(), BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        let obs = Observation {
            stack: &s,
            spec_error: Some(&error),
            blueprint: None,
            child_error: None,
            transient_error: None,
            bindings: &bindings,
            plans: &plans,
            deployments: &deployments,
            services: &services,
        };
        let status = compute(&obs, &at(1));
        assert_eq!(cond(&status, "Stalled").reason, "DependencyCycle");
        assert!(cond(&status, "Stalled").message.contains("a -> b -> a"));
        assert_eq!(cond(&status, "Ready").status, "False");
        assert_eq!(cond(&status, "Reconciling").status, "False");
    }

    #[test]
    fn a_child_that_cannot_be_written_is_reported_on_its_component() {
        let s = stack(&["web", "api"]);
        let conflict =
            crate::ownership::conflict("Service s-api", "Helm release shop", "rename the component, or delete it");
        let refused = Error::refused(Category::KubeRejected, "apply Deployment s-web: Duplicate value: \"DB_HOST\"");
        let busy = Error::refused(Category::KubeApi, "apply Deployment s-web: etcd timeout");
        // (plan of api, the stack's child error, the transient error) ->
        // (api state, Ready reason, Stalled, Reconciling)
        type Row<'a> = (
            &'a str,
            Category,
            &'a str,
            Option<&'a Error>,
            Option<&'a Error>,
            ComponentState,
            &'a str,
            &'a str,
            &'a str,
        );
        let rows: [Row<'_>; 3] = [
            (
                "conflict",
                Category::Conflict,
                "Service s-api already exists",
                Some(&conflict),
                None,
                ComponentState::Conflict,
                "Conflict",
                "True",
                "False",
            ),
            (
                "refused",
                Category::KubeRejected,
                "Duplicate value",
                Some(&refused),
                None,
                ComponentState::Failed,
                "KubeRejected",
                "True",
                "False",
            ),
            (
                "transient",
                Category::KubeApi,
                "etcd timeout",
                None,
                Some(&busy),
                ComponentState::Progressing,
                "KubeApi",
                "False",
                "True",
            ),
        ];
        for (name, category, message, child_error, transient_error, state, reason, stalled, reconciling) in rows {
            let plans = BTreeMap::from([
                ("web".to_owned(), Plan::Applied),
                ("api".to_owned(), Plan::Failed { category, message: message.into() }),
            ]);
            let deployments = BTreeMap::from([("web".to_owned(), deployment(1, 1, 1, 1, 1))]);
            let (bindings, services) = (BTreeMap::new(), BTreeMap::new());
            let obs = Observation {
                stack: &s,
                spec_error: None,
                blueprint: None,
                child_error,
                transient_error,
                bindings: &bindings,
                plans: &plans,
                deployments: &deployments,
                services: &services,
            };
            let status = compute(&obs, &at(1));
            let api = status.components.iter().find(|c| c.name == "api").unwrap_or_else(|| panic!("{name}"));
            assert_eq!(api.state, state, "{name}");
            assert!(api.message.as_deref().unwrap_or_default().contains(message), "{name}: {api:?}");
            let web = status.components.iter().find(|c| c.name == "web").unwrap_or_else(|| panic!("{name}"));
            assert_eq!(web.state, ComponentState::Ready, "{name}: the other component goes on");
            assert_eq!(cond(&status, "Ready").reason, reason, "{name}");
            assert_eq!(cond(&status, "Stalled").status, stalled, "{name}");
            assert_eq!(cond(&status, "Reconciling").status, reconciling, "{name}");
            assert_eq!(status.ready.as_deref(), Some("1/2"), "{name}");
        }
    }

    #[test]
    fn recomputing_an_unchanged_state_gives_an_equal_status() {
        let mut s = stack(&["a"]);
        let first = observe(&s, BTreeMap::from([("a".into(), deployment(1, 1, 1, 1, 1))]), BTreeMap::new());
        s.status = Some(first.clone());
        let bindings = BTreeMap::new();
        let (plans, services) = (BTreeMap::new(), BTreeMap::new());
        let deployments = BTreeMap::from([("a".into(), deployment(1, 1, 1, 1, 1))]);
        let obs = Observation {
            stack: &s,
            spec_error: None,
            blueprint: None,
            child_error: None,
            transient_error: None,
            bindings: &bindings,
            plans: &plans,
            deployments: &deployments,
            services: &services,
        };
        assert_eq!(compute(&obs, &at(500)), first);
    }
}
