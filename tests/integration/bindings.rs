//! secretRef bindings: projection per servicebinding.io, rotation rolls pods exactly once, an
//! unchanged Secret never rolls them, a missing Secret recovers by itself.

use citystack::api::SolutionStack;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use crate::harness::{self, DEADLINE, Operator, condition, wait_ready, wait_stack, wait_until};

const STACK: &str = r#"
apiVersion: citystack.io/v1alpha1
kind: SolutionStack
metadata: {name: health}
spec:
  components:
    - name: records
      image: registry.example/records:1
      replicas: 2
      uses: [fhir]
  bindings:
    - name: fhir
      secretRef: {name: fhir-store}
      env: [{name: FHIR_URL, key: uri}]
"#;

fn secret(uri: &str) -> Secret {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "fhir-store"},
        "stringData": {"type": "fhir", "uri": uri, "password": "s3cret-value"}
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn binding_hash(d: &Deployment) -> Option<String> {
    d.spec.as_ref()?.template.metadata.as_ref()?.annotations.as_ref()?.get("citystack.io/binding-hash").cloned()
}

#[tokio::test]
async fn missing_secret_waits_then_recovers_and_rotation_rolls_once() {
    let client = harness::client().await;
    let ns = harness::namespace(&client, "bind", json!({})).await;
    let operator = Operator::start(&ns, 300).await;
    let stacks: Api<SolutionStack> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);

    // No Secret yet: the component waits and the condition names the Secret.
    harness::apply(&stacks, &harness::stack(STACK)).await;
    let waiting = wait_stack(&stacks, "health", "waiting for the Secret", |s| {
        condition(s, "Ready")
            .is_some_and(|c| c.reason == "MissingReference" && c.message.contains("Secret fhir-store not found"))
    })
    .await;
    let binding = &waiting.status.clone().unwrap_or_default().bindings[0];
    assert!(!binding.ready);
    assert_eq!(binding.reason.as_deref(), Some("MissingReference"));
    assert!(deployments.get_opt("health-records").await.unwrap_or_else(|e| panic!("{e}")).is_none());

    // The Secret appears: the stack recovers by itself (Secret watch, no poll: resync is 300 s).
    harness::apply(&secrets, &secret("https://fhir.example/r4")).await;
    let ready = wait_ready(&stacks, "health").await;
    assert!(ready.status.clone().unwrap_or_default().bindings[0].ready);
    let deployment = deployments.get("health-records").await.unwrap_or_else(|e| panic!("{e}"));
    let pod = deployment.spec.clone().and_then(|s| s.template.spec).unwrap_or_default();
    let container = &pod.containers[0];
    let mount = container.volume_mounts.clone().unwrap_or_default();
    assert_eq!((mount[0].mount_path.as_str(), mount[0].read_only), ("/bindings/fhir", Some(true)));
    let volume = pod.volumes.clone().unwrap_or_default();
    assert_eq!(
        volume[0].secret.as_ref().and_then(|s| s.secret_name.as_deref()),
        Some("fhir-store"),
        "mounted directly, not copied"
    );
    let env = container.env.clone().unwrap_or_default();
    assert!(env.iter().any(|e| e.name == "SERVICE_BINDING_ROOT" && e.value.as_deref() == Some("/bindings")));
    assert!(env.iter().any(|e| {
        e.name == "FHIR_URL"
            && e.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()).is_some_and(|r| r.key == "uri")
    }));
    let first_hash = binding_hash(&deployment).unwrap_or_else(|| panic!("no binding hash"));
    let generation = deployment.metadata.generation.unwrap_or(0);

    // Same data, new resourceVersion (a label): no roll.
    let reconciles = operator.reconciles().await;
    secrets
        .patch(
            "fhir-store",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_until("a reconcile after the label change", DEADLINE, || async {
        (operator.reconciles().await > reconciles).then_some(())
    })
    .await;
    wait_ready(&stacks, "health").await;
    let unchanged = deployments.get("health-records").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(unchanged.metadata.generation, Some(generation), "unchanged data must not roll the pods");

    // Rotated data: the pods roll exactly once.
    harness::apply(&secrets, &secret("https://fhir-2.example/r4")).await;
    wait_until("binding hash changed", DEADLINE, || async {
        let d = deployments.get("health-records").await.ok()?;
        (binding_hash(&d).as_ref() != Some(&first_hash)).then_some(())
    })
    .await;
    wait_ready(&stacks, "health").await;
    let rolled = deployments.get("health-records").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rolled.metadata.generation, Some(generation + 1), "exactly one new pod template");
    let sets = replicasets
        .list(&ListParams::default().labels("app.kubernetes.io/instance=health"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sets.items.len(), 2, "one ReplicaSet before and one after the rotation");

    // No Secret value leaked into status, Events or the log.
    let status =
        serde_json::to_string(&stacks.get("health").await.unwrap_or_else(|e| panic!("{e}")).status).unwrap_or_default();
    assert!(!status.contains("s3cret-value"));
    assert!(!operator.log().contains("s3cret-value"));
    harness::delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn missing_key_is_named() {
    let client = harness::client().await;
    let ns = harness::namespace(&client, "key", json!({})).await;
    let _operator = Operator::start(&ns, 300).await;
    let stacks: Api<SolutionStack> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let without_uri: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "fhir-store"}, "stringData": {"type": "fhir"}
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    harness::apply(&secrets, &without_uri).await;
    harness::apply(&stacks, &harness::stack(STACK)).await;
    wait_stack(&stacks, "health", "missing key named", |s| {
        condition(s, "Ready").is_some_and(|c| c.message.contains("Secret fhir-store has no key uri (for env FHIR_URL)"))
    })
    .await;
    harness::apply(&secrets, &secret("https://fhir.example/r4")).await;
    wait_ready(&stacks, "health").await;
    harness::delete_namespace(&client, &ns).await;
}
