//! The Azure run: N AzureResources (RedisCache, a curated kind with a long-running create and
//! keys) against the ARM simulator, counted from the simulator's request log.

use std::time::{Duration, Instant};

use citystack::api::AzureResource;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::fleet::BENCH_LABEL;

/// The simulator's test credential (valid in every tenant).
const TENANT: &str = "3f9d2c1a-7b4e-4d8a-9c6f-1e2d3c4b5a60";
const CLIENT_ID: &str = "5d2e8c1a-9b7f-4e3d-a6c5-0f1e2d3c4b5a";
const SUBSCRIPTION: &str = "8c1e4b7a-2d5f-4a9c-b3e6-7f0a1d2c3b4e";

/// The ARM simulator, in process.
pub struct Sim {
    server: armsim::Server,
    http: reqwest::Client,
    ca_file: std::path::PathBuf,
}

impl Sim {
    /// Starts the simulator; long-running operations stay non-terminal for `operation`.
    pub async fn start(operation: Duration, dir: &std::path::Path) -> Sim {
        let config = armsim::Config { client_id: CLIENT_ID.into(), operation_time: operation, ..Default::default() };
        let server = armsim::start(config).await.unwrap_or_else(|e| panic!("armsim: {e}"));
        let ca_file = dir.join("armsim-ca.pem");
        std::fs::write(&ca_file, &server.ca_pem).unwrap_or_else(|e| panic!("{e}"));
        let cert = reqwest::Certificate::from_pem(server.ca_pem.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let http = reqwest::Client::builder().add_root_certificate(cert).build().unwrap_or_else(|e| panic!("{e}"));
        Sim { server, http, ca_file }
    }

    /// `citystack run` flags that point the operator at the simulator.
    pub fn flags(&self) -> Vec<String> {
        let endpoint = self.server.endpoint.clone();
        let ca = self.ca_file.to_string_lossy().into_owned();
        [
            "--azure-cloud",
            "custom",
            "--azure-arm-endpoint",
            &endpoint,
            "--azure-authority-host",
            &endpoint,
            "--azure-ca-bundle",
            &ca,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    }

    async fn admin(&self, method: reqwest::Method, path: &str) -> Value {
        let response = self.http.request(method, format!("{}{path}", self.server.endpoint)).send().await;
        let bytes = match response {
            Ok(r) => r.bytes().await.unwrap_or_default(),
            Err(e) => panic!("armsim {path}: {e}"),
        };
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }

    /// Empties the request log (and refills the simulator's throttling buckets).
    pub async fn reset_log(&self) {
        self.admin(reqwest::Method::POST, "/_admin/reset-log").await;
    }

    /// ARM requests logged since the last reset (token requests left out).
    pub async fn requests(&self) -> Requests {
        let log = self.admin(reqwest::Method::GET, "/_admin/requests").await;
        let mut counts = Requests::default();
        for entry in log.as_array().into_iter().flatten() {
            let method = entry.get("method").and_then(Value::as_str).unwrap_or_default();
            let path = entry.get("path").and_then(Value::as_str).unwrap_or_default();
            if !path.starts_with("/subscriptions/") {
                continue;
            }
            counts.total += 1;
            match method {
                "GET" | "HEAD" => counts.reads += 1,
                "POST" if path.to_ascii_lowercase().ends_with("/listkeys") => counts.list_keys += 1,
                "PUT" => {
                    counts.writes += 1;
                    counts.puts += 1
                }
                _ => counts.writes += 1,
            }
            if entry.get("status").and_then(Value::as_u64) == Some(429) {
                counts.throttled += 1;
            }
        }
        counts
    }
}

/// ARM requests by class.
#[derive(Debug, Default)]
pub struct Requests {
    pub total: u64,
    pub reads: u64,
    pub list_keys: u64,
    pub writes: u64,
    pub puts: u64,
    pub throttled: u64,
}

/// Namespace of AzureResource `i` (50 per namespace, each with its credential Secret).
pub fn namespace(i: usize) -> String {
    format!("bench-az-{}", i / 50)
}

/// Creates the namespaces' credential Secrets and resource groups (one ResourceGroup
/// AzureResource each).
pub async fn prepare(client: &Client, namespaces: &[String]) {
    let params = PatchParams::apply("citystack-bench").force();
    for ns in namespaces {
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "citystack-azure", "labels": {BENCH_LABEL: "secret"}},
            "stringData": {"AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_ID": CLIENT_ID, "AZURE_CLIENT_SECRET": "not-a-secret", "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION}});
        Api::<Secret>::namespaced(client.clone(), ns)
            .patch("citystack-azure", &params, &Patch::Apply(&secret))
            .await
            .unwrap_or_else(|e| panic!("credential {ns}: {e}"));
        let group = json!({"apiVersion": "citystack.io/v1alpha1", "kind": "AzureResource",
            "metadata": {"name": "group", "labels": {BENCH_LABEL: "group"}},
            "spec": {"kind": "ResourceGroup", "name": format!("rg-{ns}"), "location": "southeastasia"}});
        Api::<AzureResource>::namespaced(client.clone(), ns)
            .patch("group", &params, &Patch::Apply(&group))
            .await
            .unwrap_or_else(|e| panic!("resource group {ns}: {e}"));
    }
}

/// Creates RedisCache `c<i>` for every `i` in `range`, 16 at once; returns each one's create
/// time, by `<namespace>/<name>`.
pub async fn create(client: &Client, range: std::ops::Range<usize>) -> Vec<(String, Instant)> {
    use futures::StreamExt;
    let params = PatchParams::apply("citystack-bench").force();
    futures::stream::iter(range)
        .map(|i| {
            let (client, params) = (client.clone(), params.clone());
            async move {
                let ns = namespace(i);
                let object = json!({"apiVersion": "citystack.io/v1alpha1", "kind": "AzureResource",
                    "metadata": {"name": format!("c{i}"), "labels": {BENCH_LABEL: "cache"}},
                    "spec": {"kind": "RedisCache", "name": format!("bench-cache-{i}"), "resourceGroup": format!("rg-{ns}"), "location": "southeastasia"}});
                let at = Instant::now();
                Api::<AzureResource>::namespaced(client, &ns)
                    .patch(&format!("c{i}"), &params, &Patch::Apply(&object))
                    .await
                    .unwrap_or_else(|e| panic!("create {ns}/c{i}: {e}"));
                (format!("{ns}/c{i}"), at)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await
}
