//! dependsOn: a component is not created before what it depends on is Ready; cycles CEL
//! cannot see are reported as Stalled with the cycle named.

use citystack::api::{ComponentState, SolutionStack};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use serde_json::json;

use crate::harness::{self, Operator, condition, wait_ready, wait_stack};

#[tokio::test]
async fn dependents_wait_until_dependencies_are_ready() {
    let client = harness::client().await;
    let ns = harness::namespace(&client, "deps", json!({})).await;
    let _operator = Operator::start(&ns, 300).await;
    let stacks: Api<SolutionStack> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);

    // `db` cannot schedule (no node has the label), so it never becomes Ready.
    let blocked = harness::stack(
        r#"
apiVersion: citystack.io/v1alpha1
kind: SolutionStack
metadata: {name: gov}
spec:
  components:
    - {name: db, image: registry.example/db:1, replicas: 1, nodeSelector: {citystack.io/test: nowhere}}
    - {name: api, image: registry.example/api:1, replicas: 1, dependsOn: [db]}
    - {name: portal, image: registry.example/portal:1, replicas: 1, dependsOn: [api]}
"#,
    );
    harness::apply(&stacks, &blocked).await;
    let waiting = wait_stack(&stacks, "gov", "api waits for db", |s| {
        s.status.as_ref().is_some_and(|st| {
            st.components
                .iter()
                .any(|c| c.name == "api" && c.state == ComponentState::Waiting && c.waiting_for == ["db"])
        })
    })
    .await;
    let ready = condition(&waiting, "Ready").cloned().unwrap_or_else(|| panic!("no Ready condition"));
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "WaitingForDependency"));
    assert_eq!(condition(&waiting, "Reconciling").map(|c| c.status.as_str()), Some("True"));
    assert!(deployments.get_opt("gov-db").await.unwrap_or_else(|e| panic!("{e}")).is_some());
    assert!(
        deployments.get_opt("gov-api").await.unwrap_or_else(|e| panic!("{e}")).is_none(),
        "api must not exist before db is Ready"
    );
    assert!(deployments.get_opt("gov-portal").await.unwrap_or_else(|e| panic!("{e}")).is_none());

    // Unblock db: api, then portal, roll out; every Deployment is created after its dependency.
    let mut unblocked = blocked.clone();
    unblocked.spec.components[0].node_selector.clear();
    harness::apply(&stacks, &unblocked).await;
    wait_ready(&stacks, "gov").await;
    let created = |name: &'static str| {
        let deployments = deployments.clone();
        async move {
            deployments
                .get(name)
                .await
                .ok()
                .and_then(|d| d.metadata.creation_timestamp)
                .unwrap_or_else(|| panic!("{name} missing"))
        }
    };
    let (db, api, portal) = (created("gov-db").await, created("gov-api").await, created("gov-portal").await);
    assert!(db.0 <= api.0 && api.0 <= portal.0, "creation order db {db:?} <= api {api:?} <= portal {portal:?}");
    harness::delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn dependency_cycle_is_stalled_and_named() {
    let client = harness::client().await;
    let ns = harness::namespace(&client, "cycle", json!({})).await;
    let _operator = Operator::start(&ns, 300).await;
    let stacks: Api<SolutionStack> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let cyclic = harness::stack(
        r#"
apiVersion: citystack.io/v1alpha1
kind: SolutionStack
metadata: {name: loop}
spec:
  components:
    - {name: a, image: registry.example/a:1, dependsOn: [b]}
    - {name: b, image: registry.example/b:1, dependsOn: [c]}
    - {name: c, image: registry.example/c:1, dependsOn: [a]}
"#,
    );
    harness::apply(&stacks, &cyclic).await;
    let stalled =
        wait_stack(&stacks, "loop", "Stalled", |s| condition(s, "Stalled").is_some_and(|c| c.status == "True")).await;
    let stalled_condition = condition(&stalled, "Stalled").cloned().unwrap_or_else(|| panic!("no Stalled"));
    assert_eq!(stalled_condition.reason, "DependencyCycle");
    assert!(stalled_condition.message.contains("a -> b -> c -> a"), "{}", stalled_condition.message);
    assert_eq!(condition(&stalled, "Ready").map(|c| c.status.as_str()), Some("False"));
    assert!(deployments.list(&Default::default()).await.unwrap_or_else(|e| panic!("{e}")).items.is_empty());

    // Fixing the spec heals it.
    let mut fixed = cyclic.clone();
    fixed.spec.components[2].depends_on.clear();
    harness::apply(&stacks, &fixed).await;
    wait_ready(&stacks, "loop").await;
    harness::delete_namespace(&client, &ns).await;
}
