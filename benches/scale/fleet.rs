//! The fleet: N stacks of 3 components each (two with a Service, unless the run leaves
//! Services out) and one secretRef binding, spread over namespaces; and the bare client that server-side-applies the very objects the
//! operator renders for them.

use std::collections::BTreeMap;
use std::sync::Arc;

use citystack::api::SolutionStack;
use citystack::binding::{ResolvedBinding, data_hash};
use citystack::stack::render::{self, ChildKind};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

/// Label on every object the bench creates (namespaces included), for clean-up.
pub const BENCH_LABEL: &str = "citystack.io/bench";

/// The password the bound Secret holds; a bench value, not a secret.
const DB: [(&str, &str); 5] = [
    ("type", "postgresql"),
    ("host", "db.bench.example"),
    ("port", "5432"),
    ("username", "app"),
    ("password", "bench"),
];

/// Namespace of stack `i` for a run prefix (`op`, `bare`, `idle`).
pub fn namespace(prefix: &str, i: usize, per_namespace: usize) -> String {
    format!("bench-{prefix}-{}", i / per_namespace.max(1))
}

/// Stack `i` of the fleet, in `namespace`; with `services` false no component declares a
/// port, so none gets a Service.
pub fn stack(i: usize, namespace: &str, services: bool) -> SolutionStack {
    let mut value = json!({
        "apiVersion": "citystack.io/v1alpha1", "kind": "SolutionStack",
        "metadata": {"name": format!("s{i}"), "namespace": namespace, "labels": {BENCH_LABEL: "stack"}},
        "spec": {
            "solution": "bench",
            "components": [
                {"name": "web", "image": "registry.example/bench-web:1.0.0", "ports": [{"name": "http", "port": 8080}],
                 "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}, "uses": ["db"]},
                {"name": "api", "image": "registry.example/bench-api:1.0.0", "ports": [{"name": "grpc", "port": 9090}],
                 "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}, "uses": ["db"]},
                {"name": "worker", "image": "registry.example/bench-worker:1.0.0",
                 "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}},
            ],
            "bindings": [{"name": "db", "secretRef": {"name": "db"}}],
        }
    });
    if !services && let Some(components) = value.pointer_mut("/spec/components").and_then(Value::as_array_mut) {
        for component in components {
            component.as_object_mut().map(|c| c.remove("ports"));
        }
    }
    serde_json::from_value(value).unwrap_or_else(|e| panic!("bench stack: {e}"))
}

fn secret_data() -> BTreeMap<String, ByteString> {
    DB.iter().map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec()))).collect()
}

/// Creates (applies) the namespaces and each one's bound Secret `db`.
pub async fn prepare_namespaces(client: &Client, names: &[String]) {
    let params = PatchParams::apply("citystack-bench").force();
    futures::stream::iter(names.iter().cloned())
        .for_each_concurrent(8, |name| {
            let (client, params) = (client.clone(), params.clone());
            async move {
                let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {BENCH_LABEL: "namespace"}}});
                Api::<Namespace>::all(client.clone())
                    .patch(&name, &params, &Patch::Apply(&ns))
                    .await
                    .unwrap_or_else(|e| panic!("namespace {name}: {e}"));
                let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "servicebinding.io/postgresql",
                    "metadata": {"name": "db", "labels": {BENCH_LABEL: "secret"}},
                    "stringData": DB.iter().map(|(k, v)| ((*k).to_owned(), Value::from(*v))).collect::<serde_json::Map<_, _>>()});
                Api::<Secret>::namespaced(client, &name)
                    .patch("db", &params, &Patch::Apply(&secret))
                    .await
                    .unwrap_or_else(|e| panic!("secret {name}/db: {e}"));
            }
        })
        .await;
}

/// Deletes the namespaces `names` and waits (at most `deadline`) until the API server no
/// longer lists any of them, so that their objects no longer cost the control plane anything
/// (a later phase would otherwise pay for them).
pub async fn remove_namespaces(client: &Client, names: &[String], deadline: std::time::Duration) {
    let api = Api::<Namespace>::all(client.clone());
    futures::stream::iter(names.iter().cloned())
        .for_each_concurrent(8, |name| {
            let api = api.clone();
            async move {
                if let Err(e) = api.delete(&name, &Default::default()).await {
                    eprintln!("bench: deleting namespace {name}: {e}");
                }
            }
        })
        .await;
    let wanted: std::collections::BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let until = std::time::Instant::now() + deadline;
    let selector = kube::api::ListParams::default().labels(&format!("{BENCH_LABEL}=namespace"));
    loop {
        match api.list_metadata(&selector).await {
            Ok(list) => {
                let left = list.items.iter().filter(|ns| wanted.contains(ns.name_any().as_str())).count();
                if left == 0 {
                    return;
                }
                eprintln!("bench: {left} namespaces terminating");
            }
            Err(e) => eprintln!("bench: listing namespaces: {e}"),
        }
        if std::time::Instant::now() > until {
            eprintln!("bench: namespaces still terminating after {deadline:?}");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    }
}

/// The children the operator renders for stack `i` in `namespace`, with the binding
/// resolved exactly as it resolves it (same Secret data, same hash), without an owner (no
/// stack exists), labelled for the bench instead of `managed-by: citystack` so the operator's
/// caches never see them.
pub fn rendered(i: usize, namespace: &str, services: bool) -> Vec<(ChildKind, String, Value)> {
    let stack = stack(i, namespace, services);
    let resolved = BTreeMap::from([(
        "db".to_owned(),
        ResolvedBinding { name: "db".into(), secret_name: "db".into(), data_hash: Some(data_hash(&secret_data())) },
    )]);
    let children = render::render(&stack, None, &resolved).unwrap_or_else(|e| panic!("render: {e}"));
    children
        .into_iter()
        .map(|mut child| {
            if let Some(labels) = child.object.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
                labels.insert("app.kubernetes.io/managed-by".into(), "citystack-bench".into());
                labels.insert(BENCH_LABEL.into(), "bare".into());
            }
            (child.kind, child.name, child.object)
        })
        .collect()
}

/// Server-side applies every rendered child of stacks `0..n`, one stack after the other per
/// task and `concurrency` stacks at once (the operator's shape: one reconcile applies one
/// stack's children in turn). Calls `started(i)` before stack `i`'s first apply.
pub async fn bare_apply(
    client: &Client,
    n: usize,
    per_namespace: usize,
    concurrency: usize,
    services: bool,
    started: Arc<dyn Fn(usize) + Send + Sync>,
) {
    let params = PatchParams::apply("citystack-bench-bare").force();
    futures::stream::iter(0..n)
        .map(|i| {
            let (client, params, started) = (client.clone(), params.clone(), started.clone());
            async move {
                let ns = namespace("bare", i, per_namespace);
                started(i);
                for (kind, name, object) in rendered(i, &ns, services) {
                    let result = match kind {
                        ChildKind::Deployment => Api::<Deployment>::namespaced(client.clone(), &ns)
                            .patch(&name, &params, &Patch::Apply(&object))
                            .await
                            .map(|o| o.name_any()),
                        ChildKind::Service => Api::<Service>::namespaced(client.clone(), &ns)
                            .patch(&name, &params, &Patch::Apply(&object))
                            .await
                            .map(|o| o.name_any()),
                        ChildKind::AzureResource => continue,
                    };
                    result.map_err(|e| format!("apply {name}: {e}"))?;
                }
                Ok::<(), String>(())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await
        .unwrap_or_else(|e| panic!("bare client: {e}"));
}

/// Creates stacks `range` (concurrently, 16 at once), calling `created(i)` just before each.
pub async fn create_stacks(
    client: &Client,
    range: std::ops::Range<usize>,
    prefix: &str,
    per_namespace: usize,
    services: bool,
    created: Arc<dyn Fn(usize) + Send + Sync>,
) {
    let params = PatchParams::apply("citystack-bench").force();
    futures::stream::iter(range)
        .for_each_concurrent(16, |i| {
            let (client, params, created) = (client.clone(), params.clone(), created.clone());
            async move {
                let ns = namespace(prefix, i, per_namespace);
                let stack = stack(i, &ns, services);
                created(i);
                Api::<SolutionStack>::namespaced(client, &ns)
                    .patch(&stack.name_any(), &params, &Patch::Apply(&stack))
                    .await
                    .unwrap_or_else(|e| panic!("create stack {ns}/s{i}: {e}"));
            }
        })
        .await;
}
