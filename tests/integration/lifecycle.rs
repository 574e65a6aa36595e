//! Create → Ready with the right objects; scale; image change; remove a component; hand
//! edits reverted; deleted children recreated; stack deletion garbage-collects children;
//! pods admitted under PodSecurity "restricted".

use citystack::api::SolutionStack;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;

use crate::harness::{self, DEADLINE, Operator, wait_ready, wait_until};

const STACK: &str = r#"
apiVersion: citystack.io/v1alpha1
kind: SolutionStack
metadata: {name: city}
spec:
  solution: smart-tourism
  components:
    - name: api
      image: registry.example/tourism-api:1.0.0
      replicas: 2
      ports: [{name: http, port: 8080, servicePort: 80}]
      resources: {requests: {cpu: "0.1", memory: 64Mi}}
    - name: web
      image: registry.example/tourism-web:1.0.0
      replicas: 1
      ports: [{name: http, port: 3000}]
      expose: NodePort
    - name: worker
      image: registry.example/tourism-worker:1.0.0
"#;

#[tokio::test]
async fn stack_lifecycle() {
    let client = harness::client().await;
    let ns = harness::namespace(&client, "life", json!({"pod-security.kubernetes.io/enforce": "restricted"})).await;
    let _operator = Operator::start(&ns, 300).await;
    let stacks: Api<SolutionStack> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);

    // Create → Ready, with a Deployment per component and a Service per component with ports.
    let stack = harness::apply(&stacks, &harness::stack(STACK)).await;
    let ready = wait_ready(&stacks, "city").await;
    let status = ready.status.clone().unwrap_or_default();
    assert_eq!(status.ready.as_deref(), Some("3/3"));
    let api = deployments.get("city-api").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(api.spec.as_ref().and_then(|s| s.replicas), Some(2));
    let owner = &api.metadata.owner_references.clone().unwrap_or_default()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("SolutionStack", stack.metadata.uid.as_deref().unwrap_or(""), Some(true))
    );
    let labels = api.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("app.kubernetes.io/managed-by").map(String::as_str), Some("citystack"));
    assert_eq!(labels.get("citystack.io/solution").map(String::as_str), Some("smart-tourism"));
    let selector = api.spec.as_ref().and_then(|s| s.selector.match_labels.clone()).unwrap_or_default();
    assert_eq!(
        selector.keys().cloned().collect::<Vec<_>>(),
        ["app.kubernetes.io/component", "app.kubernetes.io/instance"]
    );
    let svc = services.get("city-api").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(svc.spec.as_ref().and_then(|s| s.ports.as_ref()).map(|p| p[0].port), Some(80));
    let web = services.get("city-web").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(web.spec.as_ref().and_then(|s| s.type_.clone()).as_deref(), Some("NodePort"));
    assert!(services.get_opt("city-worker").await.unwrap_or_else(|e| panic!("{e}")).is_none(), "no ports, no Service");
    assert_eq!(
        status.components.iter().find(|c| c.name == "api").and_then(|c| c.service.clone()),
        Some(format!("city-api.{ns}.svc"))
    );
    // Ready implies the ReplicaSets' pods were admitted by PodSecurity "restricted".
    let running = pods
        .list(&ListParams::default().labels("app.kubernetes.io/instance=city"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(running.items.len(), 4, "2 api + 1 web + 1 worker pods");

    // Scale and change an image: rolled out, Ready again at the new generation.
    let mut changed = harness::stack(STACK);
    changed.spec.components[0].replicas = Some(3);
    changed.spec.components[1].image = "registry.example/tourism-web:1.1.0".into();
    harness::apply(&stacks, &changed).await;
    wait_ready(&stacks, "city").await;
    let api = deployments.get("city-api").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(api.status.as_ref().and_then(|s| s.ready_replicas), Some(3));
    let web = deployments.get("city-web").await.unwrap_or_else(|e| panic!("{e}"));
    let image = web.spec.and_then(|s| s.template.spec).map(|p| p.containers[0].image.clone().unwrap_or_default());
    assert_eq!(image.as_deref(), Some("registry.example/tourism-web:1.1.0"));

    // A hand edit of a field we own is reverted; a deleted Service is recreated.
    deployments
        .patch("city-api", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 7}})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_until("hand-scaled Deployment reverted to 3", DEADLINE, || async {
        let d = deployments.get("city-api").await.ok()?;
        (d.spec?.replicas == Some(3)).then_some(())
    })
    .await;
    let old_uid = services.get("city-web").await.ok().and_then(|s| s.metadata.uid);
    services.delete("city-web", &DeleteParams::default()).await.unwrap_or_else(|e| panic!("{e}"));
    wait_until("deleted Service recreated", DEADLINE, || async {
        let s = services.get_opt("city-web").await.ok()??;
        (s.metadata.uid != old_uid).then_some(())
    })
    .await;

    // Removing a component prunes its children; the others stay.
    let mut fewer = changed.clone();
    fewer.spec.components.retain(|c| c.name != "web");
    harness::apply(&stacks, &fewer).await;
    let pruned = wait_ready(&stacks, "city").await;
    assert_eq!(pruned.status.and_then(|s| s.ready).as_deref(), Some("2/2"));
    wait_until("web children pruned", DEADLINE, || async {
        let gone =
            deployments.get_opt("city-web").await.ok()?.is_none() && services.get_opt("city-web").await.ok()?.is_none();
        gone.then_some(())
    })
    .await;
    assert!(deployments.get_opt("city-api").await.unwrap_or_else(|e| panic!("{e}")).is_some());

    // Deleting the stack garbage-collects every child through the ownerReferences.
    stacks.delete("city", &DeleteParams::default()).await.unwrap_or_else(|e| panic!("{e}"));
    wait_until("children garbage-collected", DEADLINE, || async {
        let left = deployments.list(&ListParams::default()).await.ok()?.items.len()
            + services.list(&ListParams::default()).await.ok()?.items.len();
        (left == 0).then_some(())
    })
    .await;
    harness::delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn paused_stack_writes_only_status() {
    let client = harness::client().await;
    let ns = harness::namespace(&client, "paused", json!({})).await;
    let _operator = Operator::start(&ns, 300).await;
    let stacks: Api<SolutionStack> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let mut paused = harness::stack(STACK);
    paused.spec.paused = true;
    harness::apply(&stacks, &paused).await;
    let observed = harness::wait_stack(&stacks, "city", "Paused condition", |s| {
        harness::condition(s, "Paused").is_some_and(|c| c.status == "True")
    })
    .await;
    assert_eq!(harness::condition(&observed, "Reconciling").map(|c| c.status.as_str()), Some("False"));
    assert!(
        deployments.list(&ListParams::default()).await.unwrap_or_else(|e| panic!("{e}")).items.is_empty(),
        "paused: nothing created"
    );
    harness::delete_namespace(&client, &ns).await;
}
