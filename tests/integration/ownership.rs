//! A derived child name taken by another owner is never written nor pruned nor counted; a
//! child the API server refuses for good is Stalled with its message, without hot retries,
//! while the stack's other components converge.

use citystack::api::{ComponentState, SolutionStack};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::harness::{self, DEADLINE, Operator, condition, wait_ready, wait_stack, wait_until};

fn stack(name: &str, components: serde_json::Value) -> SolutionStack {
    serde_json::from_value(json!({
        "apiVersion": "citystack.io/v1alpha1", "kind": "SolutionStack",
        "metadata": {"name": name}, "spec": {"components": components}
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn component_state(stack: &SolutionStack, name: &str) -> Option<ComponentState> {
    stack.status.as_ref()?.components.iter().find(|c| c.name == name).map(|c| c.state)
}

/// (resourceVersion, controller owner UID) of a Deployment and a Service of that name.
async fn fingerprint(client: &Client, ns: &str, name: &str) -> (String, String, Vec<String>, Vec<String>) {
    let d = Api::<Deployment>::namespaced(client.clone(), ns).get(name).await.unwrap_or_else(|e| panic!("{e}"));
    let s = Api::<Service>::namespaced(client.clone(), ns).get(name).await.unwrap_or_else(|e| panic!("{e}"));
    let owners = |refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]| {
        refs.iter().map(|r| r.uid.clone()).collect::<Vec<_>>()
    };
    (
        d.resource_version().unwrap_or_default(),
        s.resource_version().unwrap_or_default(),
        owners(d.owner_references()),
        owners(s.owner_references()),
    )
}

#[tokio::test]
async fn another_owners_object_is_never_written_pruned_or_counted() {
    let client = harness::client().await;
    let ns = harness::namespace(&client, "owners", json!({})).await;
    // A short resync, so "across resyncs" is many reconciles within the test.
    let operator = Operator::start(&ns, 2).await;
    let stacks: Api<SolutionStack> = Api::namespaced(client.clone(), &ns);
    let port = json!([{"name": "http", "port": 8080}]);

    // Stacks `a-b` (component `c`) and `a` (component `b-c`) both derive `a-b-c`.
    harness::apply(&stacks, &stack("a-b", json!([{"name": "c", "image": "registry.example/c:1", "ports": port}])))
        .await;
    wait_ready(&stacks, "a-b").await;
    let before = fingerprint(&client, &ns, "a-b-c").await;
    let second = json!([{"name": "b-c", "image": "registry.example/other:2", "ports": port}]);
    harness::apply(&stacks, &stack("a", second)).await;
    let a = wait_stack(&stacks, "a", "Stalled with reason Conflict", |s| {
        condition(s, "Stalled").is_some_and(|c| c.status == "True" && c.reason == "Conflict")
    })
    .await;
    let stalled = condition(&a, "Stalled").map(|c| c.message.clone()).unwrap_or_default();
    assert!(stalled.contains("a-b-c") && stalled.contains("SolutionStack a-b"), "{stalled}");
    assert_eq!(component_state(&a, "b-c"), Some(ComponentState::Conflict));
    assert_eq!(
        a.status.as_ref().and_then(|s| s.ready.clone()).as_deref(),
        Some("0/1"),
        "the other stack's Deployment is not counted"
    );

    // A Service a Helm release owns, whose name stack `web` with component `api` derives.
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let helm: Service = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web-api", "labels": {"app.kubernetes.io/managed-by": "Helm"},
                     "annotations": {"meta.helm.sh/release-name": "shop"}},
        "spec": {"selector": {"app": "shop"}, "ports": [{"port": 80, "targetPort": 9000}]}}))
    .unwrap_or_else(|e| panic!("{e}"));
    let helm = harness::apply(&services, &helm).await;
    harness::apply(&stacks, &stack("web", json!([{"name": "api", "image": "registry.example/api:1", "ports": port}])))
        .await;
    let web = wait_stack(&stacks, "web", "Stalled with reason Conflict", |s| {
        condition(s, "Stalled").is_some_and(|c| c.status == "True" && c.reason == "Conflict")
    })
    .await;
    let stalled = condition(&web, "Stalled").map(|c| c.message.clone()).unwrap_or_default();
    assert!(stalled.contains("Service web-api") && stalled.contains("Helm release shop"), "{stalled}");

    // Many resyncs later, the other owners' objects are byte-identical.
    let start = operator.reconciles().await;
    wait_until("several resyncs", DEADLINE, || async { (operator.reconciles().await >= start + 6.0).then_some(()) })
        .await;
    assert_eq!(fingerprint(&client, &ns, "a-b-c").await, before, "stack a-b's children were written");
    let now = services.get("web-api").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(now.resource_version(), helm.resource_version(), "the Helm Service was written");

    // Deleting the stacks that lost the name deletes nothing of the other owners'.
    stacks.delete("web", &DeleteParams::default()).await.unwrap_or_else(|e| panic!("{e}"));
    stacks.delete("a", &DeleteParams::default()).await.unwrap_or_else(|e| panic!("{e}"));
    wait_until("stacks gone", DEADLINE, || async {
        (stacks.get_opt("web").await.ok()?.is_none() && stacks.get_opt("a").await.ok()?.is_none()).then_some(())
    })
    .await;
    let after = services.get("web-api").await.unwrap_or_else(|e| panic!("the Helm Service was deleted: {e}"));
    assert_eq!(after.resource_version(), helm.resource_version());
    assert_eq!(fingerprint(&client, &ns, "a-b-c").await, before);
    assert!(!operator.log().contains("Status {"), "a client Debug dump in the log");
    harness::delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn a_refused_child_stalls_without_hot_retries_and_the_rest_converges() {
    let client = harness::client().await;
    let ns = harness::namespace(&client, "refused", json!({})).await;
    let operator = Operator::start(&ns, 300).await;
    let stacks: Api<SolutionStack> = Api::namespaced(client.clone(), &ns);
    // A cluster policy refuses Deployments of more than three replicas in this namespace: the
    // "403/422 by policy" a platform team sets up, which admission of the stack cannot know.
    let gvk = |kind: &str| GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
    let policies: Api<DynamicObject> =
        Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk("ValidatingAdmissionPolicy")));
    let bindings: Api<DynamicObject> =
        Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk("ValidatingAdmissionPolicyBinding")));
    let policy_name = format!("{ns}-replicas");
    let policy: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": policy_name},
        "spec": {"failurePolicy": "Fail",
                 "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                     "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}]},
                 "validations": [{"expression": "!has(object.spec.replicas) || object.spec.replicas <= 3",
                                  "message": "at most 3 replicas in this namespace"}]}
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    let binding: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": policy_name},
        "spec": {"policyName": policy_name, "validationActions": ["Deny"],
                 "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}}
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    let params = PatchParams::apply("citystack-tests").force();
    policies.patch(&policy_name, &params, &Patch::Apply(&policy)).await.unwrap_or_else(|e| panic!("{e}"));
    bindings.patch(&policy_name, &params, &Patch::Apply(&binding)).await.unwrap_or_else(|e| panic!("{e}"));
    // The policy takes effect once the API server has loaded it: probe with a dry run.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let probe: Deployment = serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "probe"}, "spec": {"replicas": 9, "selector": {"matchLabels": {"a": "b"}},
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}}))
    .unwrap_or_else(|e| panic!("{e}"));
    wait_until("the policy is in force", DEADLINE, || async {
        let dry = PatchParams::apply("citystack-tests").force().dry_run();
        deployments.patch("probe", &dry, &Patch::Apply(&probe)).await.is_err().then_some(())
    })
    .await;

    let components = json!([
        {"name": "small", "image": "registry.example/small:1", "replicas": 1},
        {"name": "big", "image": "registry.example/big:1", "replicas": 5},
    ]);
    harness::apply(&stacks, &stack("city", components)).await;
    let city = wait_stack(&stacks, "city", "Stalled with reason KubeRejected and small Ready", |s| {
        condition(s, "Stalled").is_some_and(|c| c.status == "True" && c.reason == "KubeRejected")
            && component_state(s, "small") == Some(ComponentState::Ready)
    })
    .await;
    let message = condition(&city, "Stalled").map(|c| c.message.clone()).unwrap_or_default();
    assert!(message.contains("city-big") && message.contains("at most 3 replicas"), "{message}");
    assert!(!message.contains("Status {") && !message.contains("ApiError"), "a client dump: {message}");
    assert_eq!(component_state(&city, "big"), Some(ComponentState::Failed));
    assert_eq!(condition(&city, "Reconciling").map(|c| c.status.as_str()), Some("False"));

    // No hot retry: while two other stacks are created and converge (many reconciles, many
    // seconds), the refused Deployment is not sent again. Counted from the first one's
    // readiness, so the one reconcile the Stalled status write itself wakes is behind us.
    let attempts = || async {
        operator.metric("citystack_kube_requests_total", &[("verb", "patch"), ("resource", "deployments")]).await
    };
    harness::apply(&stacks, &stack("other", json!([{"name": "x", "image": "registry.example/x:1"}]))).await;
    wait_ready(&stacks, "other").await;
    let before = attempts().await;
    harness::apply(&stacks, &stack("third", json!([{"name": "y", "image": "registry.example/y:1"}]))).await;
    wait_ready(&stacks, "third").await;
    // "third" takes one patch; "city" none.
    let sent = attempts().await - before;
    assert!(sent <= 1.0, "the refused child was retried: {sent} patches while one stack converged");

    // The fix is a spec change: it is applied at once.
    let fixed = json!([
        {"name": "small", "image": "registry.example/small:1", "replicas": 1},
        {"name": "big", "image": "registry.example/big:1", "replicas": 3},
    ]);
    harness::apply(&stacks, &stack("city", fixed)).await;
    wait_ready(&stacks, "city").await;
    let _ = bindings.delete(&policy_name, &DeleteParams::default()).await;
    let _ = policies.delete(&policy_name, &DeleteParams::default()).await;
    harness::delete_namespace(&client, &ns).await;
}
