//! Steady state is free: once Ready, neither a resync nor a fresh operator over the converged
//! stack sends a single write request to the API server.

use citystack::api::SolutionStack;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::json;

use crate::harness::{self, DEADLINE, Operator, wait_ready, wait_until};

#[tokio::test]
async fn resync_and_restart_send_no_writes() {
    let client = harness::client().await;
    let ns = harness::namespace(&client, "steady", json!({})).await;
    let stacks: Api<SolutionStack> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "idp"}, "stringData": {"issuer-uri": "https://idp.example"}
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    harness::apply(&secrets, &secret).await;
    let stack = harness::stack(
        r#"
apiVersion: citystack.io/v1alpha1
kind: SolutionStack
metadata: {name: edu}
spec:
  components:
    - {name: grading, image: registry.example/grading:1, replicas: 2, ports: [{name: http, port: 8080}],
       resources: {requests: {cpu: "0.25", memory: 1Gi}}, readinessProbe: {httpGet: {path: /ready, port: http}}}
    - {name: portal, image: registry.example/portal:1, replicas: 1, ports: [{name: http, port: 80}], uses: [idp], dependsOn: [grading]}
  bindings:
    - {name: idp, secretRef: {name: idp}, env: [{name: OIDC_ISSUER, key: issuer-uri}]}
"#,
    );
    // A 2-second resync so several full resyncs happen within the test.
    let operator = Operator::start(&ns, 2).await;
    harness::apply(&stacks, &stack).await;
    wait_ready(&stacks, "edu").await;
    // Let the last status write's own watch event settle: one reconcile with nothing to do.
    let settled = operator.reconciles().await;
    wait_until("a reconcile after Ready", DEADLINE, || async { (operator.reconciles().await > settled).then_some(()) })
        .await;

    let writes = operator.writes().await;
    let reconciles = operator.reconciles().await;
    wait_until("two full resyncs", DEADLINE, || async {
        (operator.reconciles().await >= reconciles + 2.0).then_some(())
    })
    .await;
    assert_eq!(operator.writes().await, writes, "a resync of a converged stack sent write requests");
    let skipped = operator.metric("citystack_child_applies_total", &[("outcome", "skipped")]).await;
    assert!(skipped >= 6.0, "resyncs compared every child ({skipped} skips)");
    drop(operator);

    // A fresh operator over the converged cluster: its initial reconcile writes nothing.
    let fresh = Operator::start(&ns, 300).await;
    wait_until("the fresh operator's first reconcile", DEADLINE, || async {
        (fresh.reconciles().await >= 1.0).then_some(())
    })
    .await;
    // The first reconcile is done once its outcome is counted (applied or skipped children).
    wait_until("the first reconcile compared all 3 children", DEADLINE, || async {
        (fresh.metric("citystack_child_applies_total", &[]).await >= 3.0).then_some(())
    })
    .await;
    assert_eq!(
        fresh.writes().await,
        0.0,
        "a fresh operator over a converged stack sent write requests:\n{}",
        fresh.log()
    );
    harness::delete_namespace(&client, &ns).await;
}
