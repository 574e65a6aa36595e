//! Invalid stacks are rejected by the API server at admission (OpenAPI + CEL), with a message
//! that names the field.

use citystack::api::SolutionStack;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::{Value, json};

use crate::harness;

fn stack(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "citystack.io/v1alpha1", "kind": "SolutionStack", "metadata": {"name": name}, "spec": spec})
}

fn component(name: &str) -> Value {
    json!({"name": name, "image": "registry.example/x:1"})
}

#[tokio::test]
async fn invalid_stacks_are_rejected_naming_the_field() {
    let client = harness::client().await;
    let ns = harness::namespace(&client, "admission", json!({})).await;
    // Untyped, so the test can send what a user could send (values our types would refuse).
    let stacks: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &ApiResource::erase::<SolutionStack>(&()));
    let long = "a".repeat(40);
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "uppercase component name",
            stack("s", json!({"components": [component("Web")]})),
            &["spec.components[0].name"],
        ),
        (
            "duplicate component names",
            stack("s", json!({"components": [component("web"), component("web")]})),
            &["spec.components[1]", "Duplicate value"],
        ),
        ("no components", stack("s", json!({"components": []})), &["spec.components"]),
        (
            "uses an unknown binding",
            stack("s", json!({"components": [{"name": "web", "image": "x", "uses": ["db"]}]})),
            &["spec.components[web].uses: db is not the name of an entry in spec.bindings"],
        ),
        (
            "dependsOn an unknown entry",
            stack("s", json!({"components": [{"name": "web", "image": "x", "dependsOn": ["cache"]}]})),
            &["spec.components[web].dependsOn: cache is not the name"],
        ),
        (
            "self dependency",
            stack("s", json!({"components": [{"name": "web", "image": "x", "dependsOn": ["web"]}]})),
            &["spec.components[0].dependsOn", "must not name the component itself"],
        ),
        (
            "port name too long",
            stack(
                "s",
                json!({"components": [{"name": "web", "image": "x", "ports": [{"name": "a-very-long-port-name", "port": 80}]}]}),
            ),
            &["spec.components[0].ports[0].name"],
        ),
        (
            "duplicate port names",
            stack(
                "s",
                json!({"components": [{"name": "web", "image": "x", "ports": [{"name": "http", "port": 80}, {"name": "http", "port": 81}]}]}),
            ),
            &["spec.components[0].ports[1]", "Duplicate value"],
        ),
        (
            "duplicate service ports",
            stack(
                "s",
                json!({"components": [{"name": "web", "image": "x", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81, "servicePort": 80}]}]}),
            ),
            &["spec.components[0].ports", "servicePort"],
        ),
        (
            "component and binding share a name",
            stack(
                "s",
                json!({"components": [component("db")], "bindings": [{"name": "db", "secretRef": {"name": "x"}}]}),
            ),
            &["spec.bindings[db]: the name is also used by a component"],
        ),
        (
            "derived name too long",
            stack(&long, json!({"components": [component(&"b".repeat(30))]})),
            &["spec.components", "must fit in 63 characters"],
        ),
        (
            "expose without ports",
            stack("s", json!({"components": [{"name": "web", "image": "x", "expose": "LoadBalancer"}]})),
            &["spec.components[0].expose", "needs at least one entry in ports"],
        ),
        (
            "negative replicas",
            stack("s", json!({"components": [{"name": "web", "image": "x", "replicas": -1}]})),
            &["spec.components[0].replicas"],
        ),
        (
            "binding without a source",
            stack("s", json!({"components": [component("web")], "bindings": [{"name": "db"}]})),
            &["spec.bindings[0]", "needs exactly one source"],
        ),
        ("stack name not DNS-1035", stack("1city", json!({"components": [component("web")]})), &["metadata.name"]),
        (
            "unknown expose value",
            stack(
                "s",
                json!({"components": [{"name": "web", "image": "x", "ports": [{"name": "http", "port": 80}], "expose": "Ingress"}]}),
            ),
            &["spec.components[0].expose"],
        ),
    ];
    let mut failures = Vec::new();
    for (what, object, expected) in &cases {
        let object: DynamicObject = match serde_json::from_value(object.clone()) {
            Ok(o) => o,
            Err(e) => panic!("{what}: test object does not deserialize: {e}"),
        };
        match stacks.create(&PostParams::default(), &object).await {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(kube::Error::Api(status)) => {
                if status.code != 422 || !expected.iter().all(|e| status.message.contains(e)) {
                    failures.push(format!("{what}: {} {}", status.code, status.message));
                }
            }
            Err(other) => failures.push(format!("{what}: {other}")),
        }
    }
    assert!(failures.is_empty(), "unexpected admission results:\n{}", failures.join("\n"));

    // And a valid stack is accepted.
    let valid: DynamicObject = serde_json::from_value(stack("ok", json!({"components": [component("web")]})))
        .unwrap_or_else(|e| panic!("{e}"));
    stacks.create(&PostParams::default(), &valid).await.unwrap_or_else(|e| panic!("valid stack refused: {e}"));
    harness::delete_namespace(&client, &ns).await;
}
