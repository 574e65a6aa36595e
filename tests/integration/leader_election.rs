//! Two replicas with leader election: one writer at a time; when the leader dies the other
//! takes over within the lease duration; SIGTERM releases the lease and exits cleanly.

use citystack::api::SolutionStack;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::json;

use crate::harness::{self, DEADLINE, Operator, wait_ready, wait_until};

const STACK: &str = r#"
apiVersion: citystack.io/v1alpha1
kind: SolutionStack
metadata: {name: gov}
spec:
  components:
    - {name: portal, image: registry.example/portal:1, replicas: 1, ports: [{name: http, port: 8080}]}
    - {name: forms, image: registry.example/forms:1, replicas: 1}
"#;

async fn pair(ns: &str) -> (Operator, Operator) {
    let lease_ns = harness::lease_namespace(ns);
    let flags = [
        "--leader-elect",
        "--lease-namespace",
        &lease_ns,
        "--lease-name",
        ns,
        "--lease-duration",
        "6",
        "--lease-grace",
        "2",
    ];
    (Operator::start_with(ns, 300, &flags).await, Operator::start_with(ns, 300, &flags).await)
}

/// Waits until exactly one of the two reports itself leader; returns (leader, follower).
async fn sorted(a: Operator, b: Operator) -> (Operator, Operator) {
    wait_until("exactly one leader", DEADLINE, || async { (a.is_leader().await != b.is_leader().await).then_some(()) })
        .await;
    if a.is_leader().await { (a, b) } else { (b, a) }
}

#[tokio::test]
async fn one_writer_and_failover() {
    let client = harness::client().await;
    let ns = harness::namespace(&client, "leader", json!({})).await;
    let stacks: Api<SolutionStack> = Api::namespaced(client.clone(), &ns);
    let (a, b) = pair(&ns).await;
    let (mut leader, follower) = sorted(a, b).await;

    let stack = harness::stack(STACK);
    harness::apply(&stacks, &stack).await;
    wait_ready(&stacks, "gov").await;
    assert!(leader.writes().await > 0.0, "the leader created the children");
    assert_eq!(follower.writes().await, 0.0, "the follower wrote:\n{}", follower.log());
    assert!(follower.reconciles().await > 0.0, "the follower's caches see the stack");

    // The leader dies without releasing the lease: the follower takes over after it expires.
    leader.kill();
    wait_until("the follower becomes leader", DEADLINE, || async { follower.is_leader().await.then_some(()) }).await;
    let mut scaled = stack.clone();
    scaled.spec.components[0].replicas = Some(2);
    harness::apply(&stacks, &scaled).await;
    let ready = wait_ready(&stacks, "gov").await;
    assert_eq!(ready.status.and_then(|s| s.ready).as_deref(), Some("2/2"));
    assert!(follower.writes().await > 0.0, "the new leader applied the change");
    harness::delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn sigterm_releases_the_lease() {
    let client = harness::client().await;
    let ns = harness::namespace(&client, "term", json!({})).await;
    let lease_ns = harness::lease_namespace(&ns);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &lease_ns);
    let flags = [
        "--leader-elect",
        "--lease-namespace",
        &lease_ns,
        "--lease-name",
        &ns,
        "--lease-duration",
        "30",
        "--lease-grace",
        "5",
    ];
    let mut only = Operator::start_with(&ns, 300, &flags).await;
    wait_until("leader", DEADLINE, || async { only.is_leader().await.then_some(()) }).await;
    let holder = || async { leases.get(&ns).await.ok().and_then(|l| l.spec?.holder_identity) };
    assert!(holder().await.is_some(), "the Lease names its holder");
    assert!(only.terminate().await, "SIGTERM ends the operator cleanly:\n{}", only.log());
    assert_eq!(holder().await, None, "the lease was released on SIGTERM:\n{}", only.log());
    harness::delete_namespace(&client, &ns).await;
}
