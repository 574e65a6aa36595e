//! AzureResources against the ARM simulator (an in-process HTTPS server speaking the ARM
//! contract, with an Entra-style token endpoint): the operator reaches it exactly as it
//! would reach Azure, with a ClientSecretCredential, only the endpoints and CA differ.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use citystack::api::AzureResource;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use serde_json::{Value, json};

use crate::harness::{self, DEADLINE, Operator, wait_until};

/// Subscription used by the tests.
pub const SUBSCRIPTION: &str = "6f1c2a0e-3b7d-4c55-9a1e-2f5d7c9b0a11";
/// Tenant of the tests' credential.
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// Client id the simulator accepts in every tenant (a GUID: the operator refuses other shapes).
pub const CLIENT_ID: &str = "5d2e8c1a-9b7f-4e3d-a6c5-0f1e2d3c4b5a";

/// An in-process ARM simulator and what an operator needs to reach it.
pub struct Sim {
    server: armsim::Server,
    http: reqwest::Client,
    ca_file: PathBuf,
}

impl Drop for Sim {
    /// The CA file is named after the simulator's port: left behind, every run would add
    /// dozens to the temp directory.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_file);
    }
}

impl Sim {
    /// Starts a simulator whose long-running operations take `operation` to finish.
    pub async fn start(operation: Duration) -> Sim {
        Self::start_with(armsim::Config { operation_time: operation, ..Default::default() }).await
    }

    /// Starts a simulator whose storage accounts live in Azurite (`ARMSIM_AZURITE_BLOB` and
    /// `ARMSIM_AZURITE_QUEUE`, which `make test` exports after starting Azurite).
    pub async fn start_with_azurite() -> Sim {
        let blob = std::env::var("ARMSIM_AZURITE_BLOB").unwrap_or_else(|_| {
            panic!("ARMSIM_AZURITE_BLOB unset: start Azurite with hack/azurite/up.sh (make test does)")
        });
        let queue = std::env::var("ARMSIM_AZURITE_QUEUE").ok();
        Self::start_with(armsim::Config {
            operation_time: Duration::from_millis(300),
            azurite_blob: Some(blob),
            azurite_queue: queue,
            ..Default::default()
        })
        .await
    }

    async fn start_with(config: armsim::Config) -> Sim {
        let config = armsim::Config { client_id: CLIENT_ID.into(), ..config };
        let server = armsim::start(config).await.unwrap_or_else(|e| panic!("armsim: {e}"));
        let ca_file = std::env::temp_dir().join(format!("armsim-ca-{}.pem", server.addr.port()));
        std::fs::write(&ca_file, &server.ca_pem).unwrap_or_else(|e| panic!("{e}"));
        let cert = reqwest::Certificate::from_pem(server.ca_pem.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let http = reqwest::Client::builder().add_root_certificate(cert).build().unwrap_or_else(|e| panic!("{e}"));
        Sim { server, http, ca_file }
    }

    /// `citystack run` flags that point the operator at this simulator.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--azure-cloud".into(),
            "custom".into(),
            "--azure-arm-endpoint".into(),
            self.server.endpoint.clone(),
            "--azure-authority-host".into(),
            self.server.endpoint.clone(),
            "--azure-ca-bundle".into(),
            self.ca_file.to_string_lossy().into_owned(),
        ]
    }

    /// Calls the admin API.
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.server.endpoint));
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("armsim admin {path}: {e}"));
        let bytes = response.bytes().await.unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }

    /// A bearer token for the simulator's test client, as someone other than citystack gets one.
    async fn token(&self) -> String {
        let form = format!(
            "grant_type=client_credentials&client_id={CLIENT_ID}&client_secret=not-a-secret&scope=https%3A%2F%2Fmanagement.azure.com%2F.default"
        );
        let token = self
            .http
            .post(format!("{}/tenant-b/oauth2/v2.0/token", self.server.endpoint))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap_or_else(|e| panic!("token: {e}"));
        let token: Value = serde_json::from_slice(&token.bytes().await.unwrap_or_default()).unwrap_or(Value::Null);
        token.get("access_token").and_then(Value::as_str).unwrap_or_default().to_owned()
    }

    /// PUTs `body` at `path` as someone else would (not citystack): a bearer token from the
    /// simulator's token endpoint, no ownership tag.
    pub async fn foreign_put(&self, path: &str, body: Value) {
        let response = self
            .http
            .put(format!("{}{path}?api-version=2024-04-01", self.server.endpoint))
            .bearer_auth(self.token().await)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT {path}: {e}"));
        assert!(response.status().is_success(), "PUT {path}: {}", response.status());
    }

    /// GETs `path` through ARM as someone else would (Null on any error).
    pub async fn foreign_get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}?api-version=2024-04-01", self.server.endpoint))
            .bearer_auth(self.token().await)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        serde_json::from_slice(&response.bytes().await.unwrap_or_default()).unwrap_or(Value::Null)
    }

    /// The request log: (method, path) of every ARM request since the last reset.
    pub async fn requests(&self) -> Vec<(String, String)> {
        let log = self.admin(reqwest::Method::GET, "/_admin/requests", None).await;
        log.as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| Some((r.get("method")?.as_str()?.to_owned(), r.get("path")?.as_str()?.to_owned())))
            .filter(|(_, path)| path.starts_with("/subscriptions/"))
            .collect()
    }
}

/// The namespace's default credential Secret for the simulator's test client.
pub async fn credential_secret(client: &Client, ns: &str) {
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "citystack-azure"},
        "stringData": {
            "AZURE_TENANT_ID": TENANT,
            "AZURE_CLIENT_ID": CLIENT_ID,
            "AZURE_CLIENT_SECRET": "not-a-secret",
            "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION
        }
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    harness::apply(&Api::<Secret>::namespaced(client.clone(), ns), &secret).await;
}

/// A test namespace with the default credential Secret, a fresh simulator whose operations
/// take `operation`, and an operator for the namespace pointed at it (`resync` seconds).
pub async fn setup(prefix: &str, operation: Duration, resync: u64) -> (Client, String, Sim, Operator) {
    let client = harness::client().await;
    let ns = harness::namespace(&client, prefix, json!({})).await;
    credential_secret(&client, &ns).await;
    let sim = Sim::start(operation).await;
    let flags = sim.flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let operator = Operator::start_with(&ns, resync, &flags).await;
    (client, ns, sim, operator)
}

/// `base` with the keys of `extra` added (a spec from shared fields plus the kind's own).
pub fn merged(base: &Value, extra: Value) -> Value {
    let mut spec = base.clone();
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    spec
}

pub fn azr(name: &str, spec: Value) -> AzureResource {
    serde_json::from_value(json!({"apiVersion": "citystack.io/v1alpha1", "kind": "AzureResource", "metadata": {"name": name}, "spec": spec}))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Waits until the AzureResource is Ready at its current generation.
pub async fn wait_azr_ready(api: &Api<AzureResource>, name: &str) -> AzureResource {
    let mut last = None;
    let found = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Ok(o) = api.get(name).await {
                let current = o.status.as_ref().and_then(|s| s.observed_generation) == o.metadata.generation;
                let ready = o
                    .status
                    .as_ref()
                    .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                if current && ready {
                    return o;
                }
                last = o.status.clone();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("AzureResource {name} not Ready; last status: {last:#?}"))
}

pub async fn binding_data(client: &Client, ns: &str, azr: &AzureResource) -> BTreeMap<String, String> {
    let name = azr
        .status
        .as_ref()
        .and_then(|s| s.binding.as_ref())
        .map(|b| b.name.clone())
        .unwrap_or_else(|| panic!("no binding"));
    let secret = Api::<Secret>::namespaced(client.clone(), ns).get(&name).await.unwrap_or_else(|e| panic!("{e}"));
    secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curated_kinds_provision_and_export_bindings() {
    let (client, ns, sim, operator) = setup("azure", Duration::from_millis(500), 3).await;
    let api: Api<AzureResource> = Api::namespaced(client.clone(), &ns);

    harness::apply(&api, &azr("rg", json!({"kind": "ResourceGroup", "name": "rg-city", "location": "southeastasia"})))
        .await;
    wait_azr_ready(&api, "rg").await;
    let base = json!({"resourceGroup": "rg-city", "location": "South East Asia"});
    let with = |extra: Value| merged(&base, extra);
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "archive",
            with(json!({"kind": "StorageAccount", "containers": ["raw", "processed"], "queues": ["jobs"]})),
            &[
                "type",
                "provider",
                "account-name",
                "account-key",
                "connection-string",
                "blob-endpoint",
                "queue-endpoint",
            ],
        ),
        (
            "records",
            with(json!({"kind": "PostgreSQLFlexibleServer", "databases": ["patients"]})),
            &["host", "port", "database", "username", "password", "sslmode"],
        ),
        ("cache", with(json!({"kind": "RedisCache"})), &["host", "port", "password", "ssl"]),
        (
            "telemetry",
            with(json!({"kind": "EventHubNamespace", "hubs": ["vehicles"]})),
            &["connection-string", "fully-qualified-namespace", "hub"],
        ),
        ("vault", with(json!({"kind": "KeyVault"})), &["vault-uri"]),
        ("vision", with(json!({"kind": "CognitiveServicesAccount"})), &["endpoint", "key"]),
    ];
    for (name, spec, _) in &cases {
        harness::apply(&api, &azr(name, spec.clone())).await;
    }
    for (name, _, keys) in &cases {
        let ready = wait_azr_ready(&api, name).await;
        let status = ready.status.clone().unwrap_or_default();
        assert!(
            status.resource_id.as_deref().is_some_and(
                |id| id.starts_with(&format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-city/providers/"))
            ),
            "{status:?}"
        );
        let data = binding_data(&client, &ns, &ready).await;
        for key in *keys {
            assert!(
                data.get(*key).is_some_and(|v| !v.is_empty()),
                "{name}: binding key {key} missing in {:?}",
                data.keys()
            );
        }
        assert_eq!(data.get("provider").map(String::as_str), Some("azure"));
        // Secrets stay out of status.
        let shown = serde_json::to_string(&status).unwrap_or_default();
        for secret_key in ["account-key", "password", "connection-string", "key"] {
            if let Some(v) = data.get(secret_key) {
                assert!(!shown.contains(v.as_str()), "{name}: {secret_key} leaked into status");
            }
        }
    }
    let records = api.get("records").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(binding_data(&client, &ns, &records).await.get("database").map(String::as_str), Some("patients"));
    // The generated PostgreSQL password never reaches the log.
    let password = binding_data(&client, &ns, &records).await.get("password").cloned().unwrap_or_default();
    assert!(!operator.log().contains(&password));

    let provisioning = sim.requests().await;
    eprintln!("ARM requests while provisioning 7 resources (+ children): {}", summary(&provisioning));

    // Steady state: across resyncs (every 3 s) no PUT, PATCH or DELETE, and at most one GET
    // and one list-keys POST per ARM resource (children included) per resync interval.
    sim.admin(reqwest::Method::POST, "/_admin/reset-log", None).await;
    let window = std::time::Instant::now();
    let azure_reconciles =
        || async { operator.metric("citystack_reconciles_total", &[("controller", "azureresource")]).await };
    let reconciles = azure_reconciles().await;
    wait_until("three resyncs of every AzureResource", DEADLINE, || async {
        (azure_reconciles().await >= reconciles + 21.0).then_some(())
    })
    .await;
    let steady = sim.requests().await;
    // The resync's jitter only lengthens it: count intervals of the resync itself.
    let intervals = (window.elapsed().as_secs_f64() / 3.0).floor() as usize + 1;
    eprintln!("ARM requests in {:.1} s of steady state: {}", window.elapsed().as_secs_f64(), summary(&steady));
    let writes: Vec<_> = steady.iter().filter(|(m, _)| m != "GET" && m != "POST").collect();
    assert!(writes.is_empty(), "a resync wrote to ARM: {writes:?}");
    let mut per_path: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (method, path) in &steady {
        *per_path.entry((method.clone(), path.to_ascii_lowercase())).or_default() += 1;
    }
    let excess: Vec<_> = per_path.iter().filter(|(_, n)| **n > intervals).collect();
    assert!(excess.is_empty(), "more than one call per resource per resync ({intervals} intervals): {excess:?}");

    // A fresh operator over converged resources: no PUT either.
    drop(operator);
    sim.admin(reqwest::Method::POST, "/_admin/reset-log", None).await;
    let flags = sim.flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let fresh = Operator::start_with(&ns, 300, &flags).await;
    wait_until("the fresh operator reconciled every AzureResource", DEADLINE, || async {
        (fresh.metric("citystack_reconciles_total", &[("controller", "azureresource")]).await >= 7.0).then_some(())
    })
    .await;
    wait_until("their statuses settle", DEADLINE, || async {
        let all = api.list(&Default::default()).await.ok()?;
        all.items.iter().all(|o| condition(o, "Ready").is_some_and(|c| c.0 == "True")).then_some(())
    })
    .await;
    let restart_writes: Vec<_> = sim.requests().await.into_iter().filter(|(m, _)| m != "GET" && m != "POST").collect();
    assert!(restart_writes.is_empty(), "a fresh operator wrote to ARM: {restart_writes:?}");
    harness::delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_with_inline_azure_bindings_and_key_rotation() {
    use citystack::api::SolutionStack;
    use k8s_openapi::api::apps::v1::Deployment;

    let (client, ns, sim, _operator) = setup("azstack", Duration::from_millis(300), 3).await;
    let stacks: Api<SolutionStack> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let azrs: Api<AzureResource> = Api::namespaced(client.clone(), &ns);

    let stack = harness::stack(
        r#"
apiVersion: citystack.io/v1alpha1
kind: SolutionStack
metadata: {name: tourism}
spec:
  azure: {resourceGroup: rg-tourism, location: southeastasia}
  components:
    - {name: api, image: registry.example/tourism-api:1, replicas: 2, uses: [cache]}
  bindings:
    - name: group
      azure: {kind: ResourceGroup, name: rg-tourism}
    - name: cache
      azure: {kind: RedisCache}
      env: [{name: REDIS_HOST, key: host}]
"#,
    );
    harness::apply(&stacks, &stack).await;
    let ready = harness::wait_ready(&stacks, "tourism").await;
    let status = ready.status.clone().unwrap_or_default();
    let cache = status.bindings.iter().find(|b| b.name == "cache").cloned().unwrap_or_default();
    assert_eq!((cache.source.as_str(), cache.ready), ("azure", true), "{cache:?}");
    assert_eq!(cache.secret_name.as_deref(), Some("tourism-cache-binding"));
    // The child AzureResource is owned by the stack and carries the stack's defaults.
    let child = azrs.get("tourism-cache").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(child.spec.resource_group.as_deref(), Some("rg-tourism"));
    assert_eq!(child.metadata.owner_references.unwrap_or_default()[0].kind, "SolutionStack");
    let deployment = deployments.get("tourism-api").await.unwrap_or_else(|e| panic!("{e}"));
    let pod = deployment.spec.clone().and_then(|s| s.template.spec).unwrap_or_default();
    assert_eq!(
        pod.volumes.unwrap_or_default()[0].secret.as_ref().and_then(|s| s.secret_name.as_deref()),
        Some("tourism-cache-binding")
    );
    let generation = deployment.metadata.generation.unwrap_or(0);

    // Keys regenerated in Azure: noticed within a resync, the Secret updated, pods rolled once.
    let id = child.status.and_then(|s| s.resource_id).unwrap_or_default();
    sim.admin(reqwest::Method::POST, "/_admin/regenerate", Some(json!({"resourceId": id}))).await;
    wait_until("the rotated key rolls the pods", DEADLINE, || async {
        let d = deployments.get("tourism-api").await.ok()?;
        (d.metadata.generation != Some(generation)).then_some(())
    })
    .await;
    harness::wait_ready(&stacks, "tourism").await;
    // Several resyncs later, still exactly one roll.
    let reconciles = _operator.reconciles().await;
    wait_until("more resyncs", DEADLINE, || async { (_operator.reconciles().await >= reconciles + 4.0).then_some(()) })
        .await;
    let rolled = deployments.get("tourism-api").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rolled.metadata.generation, Some(generation + 1), "exactly one roll for one rotation");
    harness::delete_namespace(&client, &ns).await;
}

/// Requests counted by method, e.g. `GET 31, POST 6, PUT 13`.
fn summary(requests: &[(String, String)]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (method, _) in requests {
        *counts.entry(method.as_str()).or_default() += 1;
    }
    counts.iter().map(|(m, n)| format!("{m} {n}")).collect::<Vec<_>>().join(", ")
}

pub fn condition(o: &AzureResource, type_: &str) -> Option<(String, String, String)> {
    o.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until `check` holds for the AzureResource at its current generation.
pub async fn wait_azr(
    api: &Api<AzureResource>,
    name: &str,
    what: &str,
    check: impl Fn(&AzureResource) -> bool,
) -> AzureResource {
    let mut last = None;
    let found = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Ok(o) = api.get(name).await {
                let current = o.status.as_ref().and_then(|s| s.observed_generation) == o.metadata.generation;
                if current && check(&o) {
                    return o;
                }
                last = o.status.clone();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("AzureResource {name}: {what}; last status: {last:#?}"))
}

/// The requests logged between `from` and `to` milliseconds after the first 429 (exclusive).
/// Panics when there is no 429.
pub fn requests_after_the_first_429(
    log: &[(i64, String, String, u64)],
    from: i64,
    to: i64,
) -> Vec<(i64, String, String, u64)> {
    let throttled_at = log
        .iter()
        .find(|(_, _, _, status)| *status == 429)
        .map(|(t, ..)| *t)
        .unwrap_or_else(|| panic!("no 429 in {log:?}"));
    log.iter().filter(|(t, ..)| *t > throttled_at + from && *t < throttled_at + to).cloned().collect()
}

/// Time (ms since the epoch), method, path and status of each logged ARM request.
pub async fn timed_requests(sim: &Sim) -> Vec<(i64, String, String, u64)> {
    let log = sim.admin(reqwest::Method::GET, "/_admin/requests", None).await;
    log.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let time: jiff::Timestamp = r.get("time")?.as_str()?.parse().ok()?;
            let path = r.get("path")?.as_str()?.to_owned();
            path.starts_with("/subscriptions/").then_some(())?;
            Some((time.as_millisecond(), r.get("method")?.as_str()?.to_owned(), path, r.get("status")?.as_u64()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_honoured_and_failed_operations_stall() {
    let (client, ns, sim, _operator) = setup("throttle", Duration::from_millis(300), 300).await;
    let api: Api<AzureResource> = Api::namespaced(client.clone(), &ns);

    // The first ARM call answers 429 with Retry-After: 3.
    sim.admin(
        reqwest::Method::POST,
        "/_admin/faults",
        Some(json!({"method": "GET", "pathContains": "rg-throttle", "status": 429, "retryAfter": 3, "count": 1})),
    )
    .await;
    harness::apply(&api, &azr("rg", json!({"kind": "ResourceGroup", "name": "rg-throttle", "location": "eastus"})))
        .await;
    wait_azr_ready(&api, "rg").await;
    let early = requests_after_the_first_429(&timed_requests(&sim).await, 0, 3000);
    assert!(early.is_empty(), "requests to the throttled subscription before Retry-After expired: {early:?}");

    // A long-running operation that ends Failed: Ready=False with the ARM error code, Stalled.
    sim.admin(reqwest::Method::POST, "/_admin/faults", Some(json!({"method": "PUT", "pathContains": "redis/", "operation": "Failed", "code": "InternalServerError", "count": 1}))).await;
    harness::apply(&api, &azr("cache", json!({"kind": "RedisCache", "name": "citycache-failing", "resourceGroup": "rg-throttle", "location": "eastus"}))).await;
    let failed = wait_azr(&api, "cache", "Stalled with the ARM error", |o| {
        condition(o, "Stalled").is_some_and(|c| c.0 == "True")
    })
    .await;
    let (status, reason, message) = condition(&failed, "Ready").unwrap_or_default();
    assert_eq!((status.as_str(), reason.as_str()), ("False", "AzureOperationFailed"));
    assert!(message.contains("InternalServerError"), "{message}");
    harness::delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_deletion_policies() {
    let client = harness::client().await;
    let ns = harness::namespace(&client, "azdel", json!({})).await;
    let sim = Sim::start(Duration::from_millis(300)).await;
    let flags = sim.flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let _operator = Operator::start_with(&ns, 300, &flags).await;
    let api: Api<AzureResource> = Api::namespaced(client.clone(), &ns);

    // No credential Secret yet: a condition that says so; it recovers when the Secret appears.
    harness::apply(&api, &azr("rg", json!({"kind": "ResourceGroup", "name": "rg-del", "location": "eastus"}))).await;
    wait_azr(&api, "rg", "missing credential named", |o| {
        condition(o, "Ready")
            .is_some_and(|(_, reason, message)| reason == "MissingReference" && message.contains("citystack-azure"))
    })
    .await;
    credential_secret(&client, &ns).await;
    wait_azr_ready(&api, "rg").await;

    // Default policies: Redis (no data) is deleted in Azure; a storage account is orphaned.
    let base = json!({"resourceGroup": "rg-del", "location": "eastus"});
    let with = |extra: Value| merged(&base, extra);
    harness::apply(&api, &azr("cache", with(json!({"kind": "RedisCache"})))).await;
    harness::apply(&api, &azr("files", with(json!({"kind": "StorageAccount"})))).await;
    let cache = wait_azr_ready(&api, "cache").await;
    let files = wait_azr_ready(&api, "files").await;
    assert!(cache.metadata.finalizers.clone().unwrap_or_default().iter().any(|f| f == "citystack.io/azure-cleanup"));
    assert!(files.metadata.finalizers.clone().unwrap_or_default().is_empty(), "Orphan needs no finalizer");
    assert_eq!(files.status.as_ref().and_then(|s| s.deletion_policy), Some(citystack::api::DeletionPolicy::Orphan));
    let cache_id = cache.status.and_then(|s| s.resource_id).unwrap_or_default();
    let files_id = files.status.and_then(|s| s.resource_id).unwrap_or_default();
    api.delete("cache", &Default::default()).await.unwrap_or_else(|e| panic!("{e}"));
    api.delete("files", &Default::default()).await.unwrap_or_else(|e| panic!("{e}"));
    wait_until("both objects gone", DEADLINE, || async {
        (api.get_opt("cache").await.ok()?.is_none() && api.get_opt("files").await.ok()?.is_none()).then_some(())
    })
    .await;
    let log = sim.requests().await;
    assert!(
        log.iter().any(|(m, p)| m == "DELETE" && p.eq_ignore_ascii_case(&cache_id)),
        "Delete policy deletes in Azure"
    );
    assert!(
        !log.iter().any(|(m, p)| m == "DELETE" && p.eq_ignore_ascii_case(&files_id)),
        "Orphan policy never deletes"
    );

    // The resource group removed out of band: deleting the object still completes (404 = gone).
    harness::apply(&api, &azr("queue-cache", with(json!({"kind": "RedisCache", "deletionPolicy": "Delete"})))).await;
    wait_azr_ready(&api, "queue-cache").await;
    let group = format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-del");
    sim.admin(reqwest::Method::DELETE, &format!("/_admin/resources?id={group}"), None).await;
    api.delete("queue-cache", &Default::default()).await.unwrap_or_else(|e| panic!("{e}"));
    wait_until("deleted after its group vanished", DEADLINE, || async {
        api.get_opt("queue-cache").await.ok()?.is_none().then_some(())
    })
    .await;
    harness::delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_identity_only_in_trusted_namespaces() {
    let client = harness::client().await;
    let trusted = harness::namespace(&client, "trusted", json!({"citystack.io/azure": "trusted"})).await;
    let other = harness::namespace(&client, "untrusted", json!({})).await;
    let sim = Sim::start(Duration::from_millis(300)).await;
    let mut flags = sim.flags();
    flags.extend(
        [
            "--azure-identity",
            "client-secret",
            "--trusted-namespaces",
            "citystack.io/azure=trusted",
            "--azure-subscription-id",
            SUBSCRIPTION,
        ]
        .map(String::from),
    );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let env = [("AZURE_TENANT_ID", TENANT), ("AZURE_CLIENT_ID", CLIENT_ID), ("AZURE_CLIENT_SECRET", "not-a-secret")];
    // One operator per namespace (the harness scopes operators to one namespace).
    let _a = Operator::start_with_env(&trusted, 300, &flags, &env).await;
    let _b = Operator::start_with_env(&other, 300, &flags, &env).await;
    let in_trusted: Api<AzureResource> = Api::namespaced(client.clone(), &trusted);
    let in_other: Api<AzureResource> = Api::namespaced(client.clone(), &other);
    harness::apply(
        &in_trusted,
        &azr("rg", json!({"kind": "ResourceGroup", "name": "rg-trusted", "location": "eastus"})),
    )
    .await;
    wait_azr_ready(&in_trusted, "rg").await;
    harness::apply(&in_other, &azr("rg", json!({"kind": "ResourceGroup", "name": "rg-other", "location": "eastus"})))
        .await;
    let refused = wait_azr(&in_other, "rg", "refused", |o| {
        condition(o, "Ready").is_some_and(|c| c.0 == "False" && c.2.contains("trusted"))
    })
    .await;
    assert!(condition(&refused, "Ready").is_some_and(|c| c.2.contains("--trusted-namespaces")));
    // Observing an existing resource by name is also refused there.
    harness::apply(&in_other, &azr("peek", json!({"kind": "ResourceGroup", "name": "rg-trusted", "mode": "Observe"})))
        .await;
    wait_azr(&in_other, "peek", "observe refused", |o| {
        condition(o, "Ready").is_some_and(|c| c.0 == "False" && c.2.contains("trusted"))
    })
    .await;
    assert!(
        !sim.requests().await.iter().any(|(_, p)| p.contains("rg-other")),
        "no ARM call for the untrusted namespace"
    );
    harness::delete_namespace(&client, &trusted).await;
    harness::delete_namespace(&client, &other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projected_storage_connection_string_works_in_azurite() {
    use citystack::api::SolutionStack;

    let python = std::env::var("CITYSTACK_PYTHON")
        .unwrap_or_else(|_| panic!("CITYSTACK_PYTHON unset: a Python with azure-storage-blob (make test sets one up)"));
    let client = harness::client().await;
    let ns = harness::namespace(&client, "azurite", json!({})).await;
    credential_secret(&client, &ns).await;
    let sim = Sim::start_with_azurite().await;
    let flags = sim.flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let _operator = Operator::start_with(&ns, 300, &flags).await;
    let stacks: Api<SolutionStack> = Api::namespaced(client.clone(), &ns);
    let stack = harness::stack(
        r#"
apiVersion: citystack.io/v1alpha1
kind: SolutionStack
metadata: {name: archive}
spec:
  azure: {resourceGroup: rg-archive, location: southeastasia}
  components:
    - {name: ingest, image: registry.example/ingest:1, replicas: 1, uses: [store],
       env: [{name: CONTAINER, value: raw}]}
  bindings:
    - {name: group, azure: {kind: ResourceGroup, name: rg-archive}}
    - name: store
      azure: {kind: StorageAccount, containers: [raw]}
      env: [{name: STORAGE_CONNECTION_STRING, key: connection-string}]
"#,
    );
    harness::apply(&stacks, &stack).await;
    harness::wait_ready(&stacks, "archive").await;
    // The workload's view: the Secret projected into the pod, read by the workload's client.
    let secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("archive-store-binding")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let connection = secret
        .data
        .unwrap_or_default()
        .get("connection-string")
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .unwrap_or_default();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("hack/python/blob_roundtrip.py");
    let output = std::process::Command::new(&python)
        .arg(&script)
        .arg("raw")
        .env("CONNECTION_STRING", &connection)
        .output()
        .unwrap_or_else(|e| panic!("run {python}: {e}"));
    assert!(output.status.success(), "blob round trip failed: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "written through the projected binding");
    harness::delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_refuses_another_owner_generic_exports_and_groups_keep_foreign_resources() {
    let (client, ns, sim, _operator) = setup("adopt", Duration::from_millis(300), 300).await;
    let api: Api<AzureResource> = Api::namespaced(client.clone(), &ns);
    harness::apply(
        &api,
        &azr(
            "rg",
            json!({"kind": "ResourceGroup", "name": "rg-adopt", "location": "eastus", "deletionPolicy": "Delete"}),
        ),
    )
    .await;
    wait_azr_ready(&api, "rg").await;
    let base = json!({"resourceGroup": "rg-adopt", "location": "eastus"});
    let with = |extra: Value| merged(&base, extra);

    // Adopt refuses a resource that another citystack object owns.
    harness::apply(&api, &azr("cache", with(json!({"kind": "RedisCache", "name": "adopt-cache-1"})))).await;
    wait_azr_ready(&api, "cache").await;
    harness::apply(&api, &azr("grab", with(json!({"kind": "RedisCache", "name": "adopt-cache-1", "mode": "Adopt"}))))
        .await;
    let refused = wait_azr(&api, "grab", "refused", |o| condition(o, "Stalled").is_some_and(|c| c.0 == "True")).await;
    let (_, reason, message) = condition(&refused, "Ready").unwrap_or_default();
    assert_eq!(reason, "AzureConflict");
    assert!(message.contains("owned by another citystack object"), "{message}");

    // Generic: any ARM type; exports are JSON pointers into the GET response.
    harness::apply(
        &api,
        &azr(
            "site",
            with(json!({
                "kind": "Generic",
                "name": "city-portal",
                "properties": {"defaultHostName": "city-portal.azurewebsites.net"},
                "generic": {"type": "Microsoft.Web/sites", "apiVersion": "2024-04-01",
                            "exports": [{"key": "host", "pointer": "/properties/defaultHostName"}]}
            })),
        ),
    )
    .await;
    let site = wait_azr_ready(&api, "site").await;
    assert_eq!(
        binding_data(&client, &ns, &site).await.get("host").map(String::as_str),
        Some("city-portal.azurewebsites.net")
    );
    assert_eq!(
        site.status.and_then(|s| s.outputs.get("host").cloned()).as_deref(),
        Some("city-portal.azurewebsites.net")
    );

    // A resource group is deleted only when everything in it carries the group object's own
    // owner tag: a hand-made resource, and a sibling AzureResource whose policy is Orphan
    // (the Generic site), both block it; the Stalled condition names them; once they are gone
    // the deletion finishes. The Delete-policy Redis siblings go first.
    let foreign =
        format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-adopt/providers/Microsoft.Web/sites/hand-made");
    sim.foreign_put(&foreign, json!({"location": "eastus", "properties": {}})).await;
    for name in ["grab", "cache", "site"] {
        api.delete(name, &Default::default()).await.unwrap_or_else(|e| panic!("{e}"));
    }
    wait_until("the siblings are gone", DEADLINE, || async {
        let mut left = 0;
        for name in ["grab", "cache", "site"] {
            left += usize::from(api.get_opt(name).await.ok()?.is_some());
        }
        (left == 0).then_some(())
    })
    .await;
    api.delete("rg", &Default::default()).await.unwrap_or_else(|e| panic!("{e}"));
    let blocked = wait_azr(&api, "rg", "deletion blocked, naming the foreign resources", |o| {
        condition(o, "Stalled").is_some_and(|c| {
            let message = c.2.to_ascii_lowercase();
            c.0 == "True"
                && c.1 == "DeletionBlocked"
                && message.contains("hand-made")
                && message.contains("city-portal")
        })
    })
    .await;
    assert!(condition(&blocked, "Stalled").is_some_and(|c| c.2.contains("2 resource(s)")), "{blocked:?}");
    assert!(!sim.requests().await.iter().any(|(m, p)| m == "DELETE"
        && p.eq_ignore_ascii_case(&format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-adopt"))));
    let site =
        format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-adopt/providers/Microsoft.Web/sites/city-portal");
    sim.admin(reqwest::Method::DELETE, &format!("/_admin/resources?id={foreign}"), None).await;
    sim.admin(reqwest::Method::DELETE, &format!("/_admin/resources?id={site}"), None).await;
    wait_until("the group's deletion completes", DEADLINE, || async {
        api.get_opt("rg").await.ok()?.is_none().then_some(())
    })
    .await;
    harness::delete_namespace(&client, &ns).await;
}
