//! SolutionBlueprints: a stack instantiates a published revision with its parameters; bad
//! parameters are Stalled naming the parameter; published revisions are immutable; a stack
//! tracking a range records its revision and stays on it while the rollout is paused; a
//! converged fleet of instances costs no writes.

use citystack::api::{SolutionBlueprint, SolutionStack};
use citystack::blueprint::VERSION_ANNOTATION;
use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::harness::{self, DEADLINE, Operator, condition, wait_ready, wait_stack, wait_until};

fn revision(version: &str) -> serde_json::Value {
    json!({
        "version": version,
        "parameters": {
            "city": {"type": "string", "required": true, "pattern": "^[a-z][-a-z]*$", "description": "City code"},
            "replicas": {"type": "integer", "default": 1, "minimum": 1, "maximum": 5}
        },
        "template": {
            "components": [{
                "name": "api",
                "image": format!("registry.example/transport-api:{version}"),
                "replicas": "${params.replicas}",
                "env": [{"name": "CITY", "value": "${params.city}"}, {"name": "INSTANCE", "value": "${instance.namespace}/${instance.name}"}]
            }]
        }
    })
}

fn blueprint(name: &str, versions: &[&str]) -> SolutionBlueprint {
    let revisions: Vec<_> = versions.iter().map(|v| revision(v)).collect();
    serde_json::from_value(json!({
        "apiVersion": "citystack.io/v1alpha1",
        "kind": "SolutionBlueprint",
        "metadata": {"name": name},
        "spec": {"solution": "smart-transport", "revisions": revisions}
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn instance(name: &str, blueprint: &str, version: &str, parameters: serde_json::Value) -> SolutionStack {
    serde_json::from_value(json!({
        "apiVersion": "citystack.io/v1alpha1",
        "kind": "SolutionStack",
        "metadata": {"name": name},
        "spec": {"blueprint": {"name": blueprint, "version": version, "parameters": parameters}}
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn env(deployment: &Deployment, name: &str) -> Option<String> {
    let spec = deployment.spec.as_ref()?.template.spec.as_ref()?;
    spec.containers.first()?.env.as_ref()?.iter().find(|e| e.name == name)?.value.clone()
}

#[tokio::test]
async fn stacks_instantiate_published_revisions() {
    let client = harness::client().await;
    let ns = harness::namespace(&client, "blueprint", json!({})).await;
    let _operator = Operator::start_with(&ns, 300, &["--blueprint-rollouts"]).await;
    let stacks: Api<SolutionStack> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let blueprints: Api<SolutionBlueprint> = Api::all(client.clone());
    // Blueprints are cluster-scoped: one per test run, named after its namespace.
    let name = ns.clone();
    harness::apply(&blueprints, &blueprint(&name, &["1.0.0", "1.1.0"])).await;

    // An exact version: that revision, with the parameters and the instance's identity.
    harness::apply(&stacks, &instance("pinned", &name, "1.0.0", json!({"city": "hanoi", "replicas": 2}))).await;
    let pinned = wait_ready(&stacks, "pinned").await;
    let status = pinned.status.as_ref().and_then(|s| s.blueprint.clone()).unwrap_or_default();
    assert_eq!(
        (status.name.as_str(), status.version.as_str(), status.parameters.as_str()),
        (name.as_str(), "1.0.0", "Valid")
    );
    let api = deployments.get("pinned-api").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(env(&api, "CITY").as_deref(), Some("hanoi"));
    assert_eq!(env(&api, "INSTANCE"), Some(format!("{ns}/pinned")));
    assert_eq!(api.spec.as_ref().and_then(|s| s.replicas), Some(2));
    let image = api
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone());
    assert_eq!(image.as_deref(), Some("registry.example/transport-api:1.0.0"));
    assert!(pinned.annotations().get(VERSION_ANNOTATION).is_none(), "an exact version needs no record");

    // A range: the highest revision in it, recorded on the stack.
    harness::apply(&stacks, &instance("tracking", &name, "^1", json!({"city": "hue"}))).await;
    let tracking = wait_ready(&stacks, "tracking").await;
    assert_eq!(tracking.annotations().get(VERSION_ANNOTATION).map(String::as_str), Some("1.1.0"));
    assert_eq!(tracking.status.as_ref().and_then(|s| s.blueprint.as_ref()).map(|b| b.version.as_str()), Some("1.1.0"));

    // Bad parameters (a wrong type, an unknown one, a required one missing): Stalled, every
    // bad one named by its path; nothing created.
    harness::apply(&stacks, &instance("bad", &name, "1.0.0", json!({"replicas": "two", "colour": "red"}))).await;
    let bad =
        wait_stack(&stacks, "bad", "Stalled", |s| condition(s, "Stalled").is_some_and(|c| c.status == "True")).await;
    let stalled = condition(&bad, "Stalled").cloned().unwrap_or_else(|| panic!("no Stalled condition"));
    assert_eq!(stalled.reason, "InvalidParameters");
    for path in
        ["spec.blueprint.parameters.city", "spec.blueprint.parameters.colour", "spec.blueprint.parameters.replicas"]
    {
        assert!(stalled.message.contains(path), "{path} not named in: {}", stalled.message);
    }
    assert_eq!(bad.status.as_ref().and_then(|s| s.blueprint.as_ref()).map(|b| b.parameters.as_str()), Some("Invalid"));
    assert!(deployments.get_opt("bad-api").await.unwrap_or_else(|e| panic!("{e}")).is_none());
    harness::apply(&stacks, &instance("big", &name, "1.0.0", json!({"city": "hue", "replicas": 9}))).await;
    let big =
        wait_stack(&stacks, "big", "Stalled", |s| condition(s, "Stalled").is_some_and(|c| c.status == "True")).await;
    let message = condition(&big, "Stalled").map(|c| c.message.clone()).unwrap_or_default();
    assert!(message.starts_with("spec.blueprint.parameters.replicas: "), "{message}");

    // What admission can see of a parameter schema is refused there.
    for (field, parameter) in [
        ("minimum", json!({"type": "integer", "default": 3, "minimum": 5, "maximum": 2})),
        ("items", json!({"type": "string", "default": "x", "items": {"type": "string"}})),
        ("needs items", json!({"type": "array", "default": []})),
    ] {
        let mut schema = serde_json::to_value(blueprint(&format!("{name}-adm"), &["1.0.0"])).unwrap_or_default();
        schema["spec"]["revisions"][0]["parameters"]["odd"] = parameter;
        let object: SolutionBlueprint = serde_json::from_value(schema).unwrap_or_else(|e| panic!("{e}"));
        let refused = blueprints.create(&Default::default(), &object).await;
        assert!(refused.is_err(), "{field}: a schema admission can check was admitted");
    }

    // A blueprint that does not exist: named, and the stack starts once it is published.
    let later = format!("{name}-later");
    harness::apply(&stacks, &instance("early", &later, "1.0.0", json!({"city": "danang"}))).await;
    let early = wait_stack(&stacks, "early", "waiting for its blueprint", |s| {
        condition(s, "Ready").is_some_and(|c| c.message.contains(&format!("SolutionBlueprint {later} does not exist")))
    })
    .await;
    assert!(early.status.is_some());
    harness::apply(&blueprints, &blueprint(&later, &["1.0.0"])).await;
    wait_ready(&stacks, "early").await;

    // A published revision is immutable (CEL transition rule at admission).
    let mut changed = serde_json::to_value(blueprint(&name, &["1.0.0", "1.1.0"])).unwrap_or_default();
    changed["spec"]["revisions"][0]["template"]["components"][0]["image"] = json!("registry.example/other:1");
    let refused = blueprints
        .patch(&name, &PatchParams::apply("citystack-tests").force(), &Patch::Apply(&changed))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(refused.contains("revision 1.0.0 is published and immutable"), "{refused}");
    // Nor removed: published again with other content, it would change the stacks running it.
    let removed = blueprints
        .patch(&name, &PatchParams::apply("citystack-tests").force(), &Patch::Apply(&blueprint(&name, &["1.1.0"])))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(removed.contains("a published revision is never removed"), "{removed}");

    // A newer revision is published with its rollout paused: a new stack in range starts on
    // it, the recorded one stays where it is.
    let mut paused = blueprint(&name, &["1.0.0", "1.1.0", "1.2.0"]);
    paused.spec.rollout = Some(citystack::api::RolloutSpec { paused: true, ..Default::default() });
    harness::apply(&blueprints, &paused).await;
    harness::apply(&stacks, &instance("newcomer", &name, "^1", json!({"city": "hue"}))).await;
    let newcomer = wait_ready(&stacks, "newcomer").await;
    assert_eq!(newcomer.annotations().get(VERSION_ANNOTATION).map(String::as_str), Some("1.2.0"));
    let tracking = stacks.get("tracking").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tracking.annotations().get(VERSION_ANNOTATION).map(String::as_str), Some("1.1.0"));
    let image = wait_until("tracking still runs 1.1.0", DEADLINE, || async {
        let d = deployments.get("tracking-api").await.ok()?;
        d.spec?.template.spec?.containers.first()?.image.clone()
    })
    .await;
    assert_eq!(image, "registry.example/transport-api:1.1.0");
    let rollout = wait_until("the rollout shows Paused", DEADLINE, || async {
        let rollout = blueprints.get(&name).await.ok()?.status?.rollout?;
        (rollout.phase == "Paused").then_some(rollout)
    })
    .await;
    assert_eq!(rollout.version, "1.2.0");
    let tracking = stacks.get("tracking").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tracking.annotations().get(VERSION_ANNOTATION).map(String::as_str), Some("1.1.0"));

    // A revision whose expression fails: its check names the field, the rollout halts before
    // moving anyone, and a stack asking for it is Stalled naming the template field.
    let mut broken = blueprint(&name, &["1.0.0", "1.1.0", "1.2.0", "1.3.0"]);
    broken.spec.revisions[3].template["components"][0]["env"][0]["value"] = json!("${params.town}");
    broken.spec.rollout = Some(citystack::api::RolloutSpec { paused: false, ..Default::default() });
    harness::apply(&blueprints, &broken).await;
    let status = wait_until("1.3.0 checked", DEADLINE, || async {
        let status = blueprints.get(&name).await.ok()?.status?;
        let checked = status.revisions.iter().any(|r| r.version == "1.3.0" && !r.valid);
        let halted = status.rollout.as_ref().is_some_and(|r| r.version == "1.3.0" && r.phase == "Halted");
        (checked && halted).then_some(status)
    })
    .await;
    let message =
        status.revisions.iter().find(|r| r.version == "1.3.0").and_then(|r| r.message.clone()).unwrap_or_default();
    assert!(message.starts_with("template.components[0].env[0].value: `params.town`"), "{message}");
    harness::apply(&stacks, &instance("broken", &name, "1.3.0", json!({"city": "hue"}))).await;
    let broken =
        wait_stack(&stacks, "broken", "Stalled", |s| condition(s, "Stalled").is_some_and(|c| c.status == "True")).await;
    let stalled = condition(&broken, "Stalled").cloned().unwrap_or_else(|| panic!("no Stalled condition"));
    assert_eq!(stalled.reason, "InvalidBlueprint");
    assert!(stalled.message.contains("template.components[0].env[0].value"), "{}", stalled.message);
    let tracking = stacks.get("tracking").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tracking.annotations().get(VERSION_ANNOTATION).map(String::as_str), Some("1.1.0"));

    // A blueprint deleted: its instance says so at once, and keeps its children.
    let _ = blueprints.delete(&later, &Default::default()).await;
    wait_stack(&stacks, "early", "its blueprint gone", |s| {
        condition(s, "Ready").is_some_and(|c| c.message.contains(&format!("SolutionBlueprint {later} does not exist")))
    })
    .await;
    assert!(deployments.get_opt("early-api").await.unwrap_or_else(|e| panic!("{e}")).is_some());

    let _ = blueprints.delete(&name, &Default::default()).await;
    harness::delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn a_converged_fleet_of_instances_costs_no_writes() {
    let client = harness::client().await;
    let ns = harness::namespace(&client, "bp-steady", json!({})).await;
    let stacks: Api<SolutionStack> = Api::namespaced(client.clone(), &ns);
    let blueprints: Api<SolutionBlueprint> = Api::all(client.clone());
    let name = ns.clone();
    harness::apply(&blueprints, &blueprint(&name, &["1.0.0"])).await;
    // A 2-second resync so several full resyncs happen within the test.
    let operator = Operator::start_with(&ns, 2, &["--blueprint-rollouts"]).await;
    let names: Vec<String> = (0..5).map(|i| format!("city{i}")).collect();
    for stack in &names {
        harness::apply(&stacks, &instance(stack, &name, "^1", json!({"city": "hue"}))).await;
    }
    for stack in &names {
        wait_ready(&stacks, stack).await;
    }
    wait_until("the blueprint's status counts 5 Ready instances", DEADLINE, || async {
        let status = blueprints.get(&name).await.ok()?.status?;
        let complete = status.rollout.as_ref().is_some_and(|r| r.phase == "Complete");
        (complete && status.ready == 5 && status.instances == 5).then_some(())
    })
    .await;
    let settled = operator.reconciles().await;
    wait_until("a reconcile after Ready", DEADLINE, || async { (operator.reconciles().await > settled).then_some(()) })
        .await;

    let writes = operator.writes().await;
    let reconciles = operator.reconciles().await;
    wait_until("two full resyncs", DEADLINE, || async {
        (operator.reconciles().await >= reconciles + 10.0).then_some(())
    })
    .await;
    assert_eq!(
        operator.writes().await,
        writes,
        "a resync of converged instances sent write requests:\n{}",
        operator.log()
    );
    drop(operator);

    // A fresh operator: its first reconciles (stacks and blueprint) write nothing.
    let fresh = Operator::start_with(&ns, 300, &["--blueprint-rollouts"]).await;
    wait_until("the fresh operator reconciled every instance", DEADLINE, || async {
        (fresh.reconciles().await >= 6.0).then_some(())
    })
    .await;
    wait_until("the first reconciles compared every child", DEADLINE, || async {
        (fresh.metric("citystack_child_applies_total", &[]).await >= 5.0).then_some(())
    })
    .await;
    assert_eq!(fresh.writes().await, 0.0, "a fresh operator over converged instances wrote:\n{}", fresh.log());
    let _ = blueprints.delete(&name, &Default::default()).await;
    harness::delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn objects_nested_too_deep_to_read_stop_nothing_else() {
    // A stack, a blueprint and an AzureResource nested deeper than serde_json reads (128
    // levels): each used to fail its whole watch, and every stack waited for ever.
    let client = harness::client().await;
    let ns = harness::namespace(&client, "bp-deep", json!({})).await;
    let stacks: Api<SolutionStack> = Api::namespaced(client.clone(), &ns);
    let blueprints: Api<SolutionBlueprint> = Api::all(client.clone());
    let name = ns.clone();
    // The API server stores JSON nested 200 levels deep where unknown fields are preserved;
    // serde_json reads 128. Created through raw requests: the typed client cannot read them.
    let mut deep = json!("x");
    for _ in 0..200 {
        deep = json!({ "a": deep });
    }
    let raw = |object: serde_json::Value| serde_json::to_vec(&object).unwrap_or_default();
    let mut template = revision("1.0.0")["template"].clone();
    template["deep"] = deep.clone();
    let deep_blueprint = json!({
        "apiVersion": "citystack.io/v1alpha1", "kind": "SolutionBlueprint", "metadata": {"name": format!("{name}-deep")},
        "spec": {"revisions": [{"version": "1.0.0", "template": template}]}
    });
    let deep_stack = json!({
        "apiVersion": "citystack.io/v1alpha1", "kind": "SolutionStack", "metadata": {"name": "deep", "namespace": ns},
        "spec": {"blueprint": {"name": name, "version": "1.0.0", "parameters": {"city": "hue", "x": deep}}}
    });
    let deep_azure = json!({
        "apiVersion": "citystack.io/v1alpha1", "kind": "AzureResource", "metadata": {"name": "deep", "namespace": ns},
        "spec": {"kind": "StorageAccount", "mode": "Observe", "resourceGroup": "rg-deep", "properties": deep}
    });
    for (url, body) in [
        ("/apis/citystack.io/v1alpha1/solutionblueprints".to_owned(), raw(deep_blueprint)),
        (format!("/apis/citystack.io/v1alpha1/namespaces/{ns}/solutionstacks"), raw(deep_stack)),
        (format!("/apis/citystack.io/v1alpha1/namespaces/{ns}/azureresources"), raw(deep_azure)),
    ] {
        let request = http::Request::post(url).header("content-type", "application/json").body(body);
        let response = client.request_text(request.unwrap_or_else(|e| panic!("{e}"))).await;
        assert!(response.is_ok(), "the API server refused a deep object: {response:?}");
    }
    harness::apply(&blueprints, &blueprint(&name, &["1.0.0"])).await;
    let _operator = Operator::start(&ns, 300).await;
    // Stacks around them are served.
    harness::apply(&stacks, &instance("fine", &name, "1.0.0", json!({"city": "hue"}))).await;
    wait_ready(&stacks, "fine").await;
    harness::apply(&stacks, &instance("on-deep", &format!("{name}-deep"), "1.0.0", json!({"city": "hue"}))).await;
    let stalled =
        wait_stack(&stacks, "on-deep", "Stalled", |s| condition(s, "Stalled").is_some_and(|c| c.status == "True"))
            .await;
    let message = condition(&stalled, "Stalled").map(|c| c.message.clone()).unwrap_or_default();
    assert!(message.contains("cannot be read: nested more than 128 levels deep"), "{message}");
    for blueprint in [name.clone(), format!("{name}-deep")] {
        let _ = blueprints.delete(&blueprint, &Default::default()).await;
    }
    harness::delete_namespace(&client, &ns).await;
}
