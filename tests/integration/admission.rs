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

/// Creates each `(what, object, expected)` and asserts the API server refuses it with 422 and
/// a message holding every `expected` text; reports all mismatches at once.
async fn assert_refused(api: &Api<DynamicObject>, cases: &[(&str, Value, &[&str])]) {
    let mut failures = Vec::new();
    for (what, object, expected) in cases {
        let object: DynamicObject = serde_json::from_value(object.clone())
            .unwrap_or_else(|e| panic!("{what}: test object does not deserialize: {e}"));
        match api.create(&PostParams::default(), &object).await {
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
    // What the API server, PodSecurity "restricted" or the servicebinding.io projection would
    // refuse later, refused now.
    let c = |extra: Value| {
        let mut component =
            json!({"name": "web", "image": "registry.example/web:1", "ports": [{"name": "http", "port": 8080}]});
        if let (Some(base), Some(extra)) = (component.as_object_mut(), extra.as_object()) {
            base.extend(extra.clone());
        }
        stack("s", json!({"components": [component], "bindings": [{"name": "db", "secretRef": {"name": "db"}}]}))
    };
    let more: Vec<(&str, Value, &[&str])> = vec![
        (
            "duplicate env names",
            c(json!({"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]})),
            &["spec.components[0].env[1]", "Duplicate value"],
        ),
        (
            "SERVICE_BINDING_ROOT in env",
            c(json!({"uses": ["db"], "env": [{"name": "SERVICE_BINDING_ROOT", "value": "/x"}]})),
            &["spec.components[0].env", "SERVICE_BINDING_ROOT is set by citystack"],
        ),
        (
            "SERVICE_BINDING_ROOT in a binding's env",
            stack(
                "s",
                json!({"components": [component("web")], "bindings": [{"name": "db", "secretRef": {"name": "db"}, "env": [{"name": "SERVICE_BINDING_ROOT", "key": "k"}]}]}),
            ),
            &["spec.bindings[0].env", "SERVICE_BINDING_ROOT"],
        ),
        (
            "duplicate containerPort",
            c(json!({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80, "servicePort": 81}]})),
            &["spec.components[0].ports", "containerPort) must be unique per protocol"],
        ),
        (
            "duplicate servicePort, one protocol",
            c(
                json!({"ports": [{"name": "a", "port": 53, "protocol": "UDP"}, {"name": "b", "port": 54, "servicePort": 53, "protocol": "UDP"}]}),
            ),
            &["spec.components[0].ports", "servicePort (default: port) must be unique per protocol"],
        ),
        (
            "readiness probe without handler",
            c(json!({"readinessProbe": {"periodSeconds": 5}})),
            &["spec.components[0].readinessProbe", "exactly one handler"],
        ),
        (
            "liveness probe with two handlers",
            c(json!({"livenessProbe": {"httpGet": {"port": 8080}, "tcpSocket": {"port": 8080}}})),
            &["spec.components[0].livenessProbe", "exactly one handler"],
        ),
        (
            "probe names an unknown port",
            c(json!({"readinessProbe": {"httpGet": {"port": "metrics", "path": "/"}}})),
            &["spec.components[0].ports", "a probe port must be a number from 1 to 65535 or the name"],
        ),
        (
            "tcp probe names an unknown port",
            c(json!({"livenessProbe": {"tcpSocket": {"port": "admin"}}})),
            &["spec.components[0].ports", "a probe port must be"],
        ),
        (
            "privileged",
            c(json!({"securityContext": {"privileged": true}})),
            &["spec.components[0].securityContext.privileged", "PodSecurity restricted"],
        ),
        (
            "privilege escalation",
            c(json!({"securityContext": {"allowPrivilegeEscalation": true}})),
            &["spec.components[0].securityContext.allowPrivilegeEscalation"],
        ),
        (
            "runs as root by uid",
            c(json!({"securityContext": {"runAsUser": 0}})),
            &["spec.components[0].securityContext", "runAsUser must not be 0"],
        ),
        (
            "runAsNonRoot false",
            c(json!({"securityContext": {"runAsNonRoot": false}})),
            &["spec.components[0].securityContext", "runAsNonRoot must not be false"],
        ),
        (
            "added capability",
            c(json!({"securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}})),
            &["spec.components[0].securityContext.capabilities.add", "NET_BIND_SERVICE"],
        ),
        (
            "unconfined seccomp",
            c(json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}}})),
            &["spec.components[0].securityContext.seccompProfile.type"],
        ),
        (
            "toleration Exists with a value",
            c(json!({"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]})),
            &["spec.components[0].tolerations", "operator Exists must have no value"],
        ),
        (
            "toleration without key, Equal",
            c(json!({"tolerations": [{"operator": "Equal", "value": "v"}]})),
            &["spec.components[0].tolerations", "without key must have operator Exists"],
        ),
        (
            "toleration with an unknown effect",
            c(json!({"tolerations": [{"key": "k", "effect": "Sometimes"}]})),
            &["spec.components[0].tolerations", "effect must be"],
        ),
        (
            "tolerationSeconds without NoExecute",
            c(json!({"tolerations": [{"key": "k", "effect": "NoSchedule", "tolerationSeconds": 30}]})),
            &["spec.components[0].tolerations", "tolerationSeconds needs effect NoExecute"],
        ),
        (
            "toleration with an unknown operator",
            c(json!({"tolerations": [{"key": "k", "operator": "In"}]})),
            &["spec.components[0].tolerations", "operator must be Exists or Equal"],
        ),
        ("image with a space", c(json!({"image": "registry.example/web app:1"})), &["spec.components[0].image"]),
        ("image with an upper-case path", c(json!({"image": "registry.example/Web:1"})), &["spec.components[0].image"]),
        ("image with an empty tag", c(json!({"image": "registry.example/web:"})), &["spec.components[0].image"]),
        (
            "nodeSelector key not a label key",
            c(json!({"nodeSelector": {"bad key!": "x"}})),
            &["spec.components[0].nodeSelector", "label keys"],
        ),
        (
            "nodeSelector value not a label value",
            c(json!({"nodeSelector": {"disk": "not ok!"}})),
            &["spec.components[0].nodeSelector.disk"],
        ),
        ("replicas above the bound", c(json!({"replicas": 5000})), &["spec.components[0].replicas"]),
        (
            "inline Azure binding with a bad storage account name",
            stack(
                "s",
                json!({"components": [component("web")], "bindings": [{"name": "files", "azure": {"kind": "StorageAccount", "name": "Bad_Name"}}]}),
            ),
            &["spec.bindings[0].azure.name", "StorageAccount name is 3 to 24 lowercase letters and digits"],
        ),
        (
            "inline Azure binding with a bad location",
            stack(
                "s",
                json!({"components": [component("web")], "bindings": [{"name": "files", "azure": {"kind": "StorageAccount", "location": "south-east-asia!"}}]}),
            ),
            &["spec.bindings[0].azure.location"],
        ),
        (
            "stack Azure defaults with a resource group ending in a period",
            stack("s", json!({"components": [component("web")], "azure": {"resourceGroup": "rg-city."}})),
            &["spec.azure.resourceGroup"],
        ),
    ];
    let cases: Vec<_> = cases.into_iter().chain(more).collect();
    assert!(cases.len() >= 40, "the table holds {} invalid stacks", cases.len());
    assert_refused(&stacks, &cases).await;

    // And what is valid is accepted, including look-alikes of the refused ones.
    let port = |name: &str, port: i32, protocol: &str| json!({"name": name, "port": port, "protocol": protocol});
    let valid: Vec<(&str, Value)> = vec![
        ("plain", json!({"components": [component("web")]})),
        (
            "DNS on TCP and UDP",
            json!({"components": [{"name": "dns", "image": "registry.example/coredns:1.11", "ports": [port("dns-tcp", 53, "TCP"), port("dns-udp", 53, "UDP")]}]}),
        ),
        (
            "probes on named ports, NET_BIND_SERVICE, an Exists toleration, a digest, a prefixed node label",
            json!({"components": [{"name": "web", "image": "registry.example:5000/city/web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 9000}],
                "readinessProbe": {"httpGet": {"port": "http", "path": "/ready"}},
                "livenessProbe": {"tcpSocket": {"port": "admin"}},
                "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}, "runAsUser": 1000},
                "tolerations": [{"operator": "Exists"}, {"key": "dedicated", "operator": "Equal", "value": "city", "effect": "NoExecute", "tolerationSeconds": 60}],
                "nodeSelector": {"topology.kubernetes.io/zone": "zone-1"}}]}),
        ),
        (
            "a binding's env beside SERVICE_BINDING_ROOT-free component env",
            json!({"components": [{"name": "web", "image": "web", "uses": ["db"], "env": [{"name": "MODE", "value": "prod"}]}],
                   "bindings": [{"name": "db", "secretRef": {"name": "db"}, "env": [{"name": "DB_HOST", "key": "host"}]}]}),
        ),
    ];
    for (i, (what, spec)) in valid.into_iter().enumerate() {
        let object: DynamicObject =
            serde_json::from_value(stack(&format!("ok{i}"), spec)).unwrap_or_else(|e| panic!("{e}"));
        stacks
            .create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("valid stack {what} refused: {e}"));
    }
    harness::delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn invalid_azure_resources_are_rejected_naming_the_field() {
    let client = harness::client().await;
    let ns = harness::namespace(&client, "admission-azr", json!({})).await;
    let resources: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &ApiResource::erase::<citystack::api::AzureResource>(&()));
    let azr = |spec: Value| json!({"apiVersion": "citystack.io/v1alpha1", "kind": "AzureResource", "metadata": {"name": "r"}, "spec": spec});
    let many_tags: serde_json::Map<String, Value> = (0..33).map(|i| (format!("t{i}"), json!("v"))).collect();
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "storage account name with upper case",
            azr(json!({"kind": "StorageAccount", "name": "CityFiles"})),
            &["spec.name", "StorageAccount name"],
        ),
        (
            "key vault name starting with a digit",
            azr(json!({"kind": "KeyVault", "name": "1vault"})),
            &["spec.name", "KeyVault name"],
        ),
        (
            "event hubs namespace name too short",
            azr(json!({"kind": "EventHubNamespace", "name": "hubs"})),
            &["spec.name", "EventHubNamespace name"],
        ),
        (
            "postgres name starting with a hyphen",
            azr(json!({"kind": "PostgreSQLFlexibleServer", "name": "-pg"})),
            &["spec.name", "PostgreSQLFlexibleServer name"],
        ),
        (
            "redis name with an underscore",
            azr(json!({"kind": "RedisCache", "name": "city_cache"})),
            &["spec.name", "RedisCache name"],
        ),
        (
            "resource group name ending in a period",
            azr(json!({"kind": "ResourceGroup", "name": "rg."})),
            &["spec.name", "ResourceGroup name"],
        ),
        (
            "location with a path",
            azr(json!({"kind": "RedisCache", "location": "eastus/../westus"})),
            &["spec.location"],
        ),
        (
            "resource group ending in a period",
            azr(json!({"kind": "RedisCache", "resourceGroup": "rg-city."})),
            &["spec.resourceGroup"],
        ),
        (
            "subscription id not a GUID",
            azr(json!({"kind": "RedisCache", "subscriptionId": "my-subscription"})),
            &["spec.subscriptionId"],
        ),
        (
            "generic type with a dot-dot segment",
            azr(json!({"kind": "Generic", "generic": {"type": "Microsoft.Web/../sites", "apiVersion": "2024-04-01"}})),
            &["spec.generic.type"],
        ),
        (
            "generic type with an empty segment",
            azr(json!({"kind": "Generic", "generic": {"type": "Microsoft.Web//sites", "apiVersion": "2024-04-01"}})),
            &["spec.generic.type"],
        ),
        (
            "generic type without a namespace",
            azr(json!({"kind": "Generic", "generic": {"type": "sites/x", "apiVersion": "2024-04-01"}})),
            &["spec.generic.type"],
        ),
        (
            "tag name with a slash",
            azr(json!({"kind": "RedisCache", "tags": {"team/city": "x"}})),
            &["spec.tags", "tag name"],
        ),
        ("too many tags", azr(json!({"kind": "RedisCache", "tags": many_tags})), &["spec.tags"]),
        (
            "container name with upper case",
            azr(json!({"kind": "StorageAccount", "containers": ["Raw"]})),
            &["spec.containers[0]"],
        ),
        (
            "hub name starting with a hyphen",
            azr(json!({"kind": "EventHubNamespace", "hubs": ["-hub"]})),
            &["spec.hubs[0]"],
        ),
        (
            "database name starting with a digit",
            azr(json!({"kind": "PostgreSQLFlexibleServer", "databases": ["1db"]})),
            &["spec.databases[0]"],
        ),
        (
            "containers on a cache",
            azr(json!({"kind": "RedisCache", "containers": ["raw"]})),
            &["spec.containers", "only allowed for kind StorageAccount"],
        ),
        (
            "object name longer than a label value",
            json!({"apiVersion": "citystack.io/v1alpha1", "kind": "AzureResource", "metadata": {"name": "r".repeat(64)},
                   "spec": {"kind": "RedisCache"}}),
            &["metadata.name must be at most 63 characters"],
        ),
    ];
    assert_refused(&resources, &cases).await;
    let valid = [
        json!({"kind": "StorageAccount", "name": "cityfiles01", "location": "southeastasia", "resourceGroup": "rg-city_(prod)"}),
        json!({"kind": "RedisCache", "location": "South East Asia"}),
        json!({"kind": "Generic", "generic": {"type": "Microsoft.Sql/servers/databases", "apiVersion": "2023-08-01-preview"}}),
        json!({"kind": "KeyVault", "name": "city-vault-01", "tags": {"cost-center": "42"}}),
    ];
    for (i, spec) in valid.into_iter().enumerate() {
        let mut object = azr(spec);
        object["metadata"]["name"] = json!(format!("ok{i}"));
        let object: DynamicObject = serde_json::from_value(object).unwrap_or_else(|e| panic!("{e}"));
        resources
            .create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("valid AzureResource {i} refused: {e}"));
    }
    harness::delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn what_cel_cannot_check_is_stalled_before_any_write() {
    let client = harness::client().await;
    let ns = harness::namespace(&client, "precheck", json!({})).await;
    let _operator = harness::Operator::start(&ns, 300).await;
    let stacks: Api<SolutionStack> = Api::namespaced(client.clone(), &ns);
    let cases = [
        (
            "limits",
            json!({"components": [{"name": "web", "image": "registry.example/web:1",
                "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}}}]}),
            "spec.components[web].resources.requests.cpu",
        ),
        (
            "envs",
            json!({"components": [{"name": "web", "image": "registry.example/web:1", "uses": ["db"], "env": [{"name": "DB_HOST", "value": "x"}]}],
                   "bindings": [{"name": "db", "secretRef": {"name": "db"}, "env": [{"name": "DB_HOST", "key": "host"}]}]}),
            "environment variable DB_HOST is set by both its env and binding db",
        ),
        (
            "tolerations",
            json!({"components": [{"name": "web", "image": "registry.example/web:1", "tolerations": [{"key": "bad key", "operator": "Exists"}]}]}),
            "spec.components[web].tolerations[0].key",
        ),
    ];
    for (name, spec, field) in cases {
        let object: SolutionStack = serde_json::from_value(stack(name, spec)).unwrap_or_else(|e| panic!("{e}"));
        harness::apply(&stacks, &object).await;
        let stalled = harness::wait_stack(&stacks, name, "Stalled with reason InvalidSpec", |s| {
            harness::condition(s, "Stalled").is_some_and(|c| c.status == "True" && c.reason == "InvalidSpec")
        })
        .await;
        let message = harness::condition(&stalled, "Stalled").map(|c| c.message.clone()).unwrap_or_default();
        assert!(message.contains(field), "{name}: {message}");
        let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), &ns);
        assert!(
            deployments.get_opt(&format!("{name}-web")).await.ok().flatten().is_none(),
            "{name}: a child was written"
        );
    }
    harness::delete_namespace(&client, &ns).await;
}
